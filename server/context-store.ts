/**
 * The server's store of context file content, by sha256 (ROOT/server/context/<hex>), and the
 * making of a build's context folder from a client's manifest. Content is written under a temp
 * name and renamed once its digest checks, so a killed upload or server leaves nothing that looks
 * whole. A context folder is a copy (a reflink where the filesystem has them): each build gets the
 * client's modes and mtimes without touching the shared content.
 */
import { constants as C, createWriteStream, lstatSync, promises as fs, type Stats, type WriteStream } from 'node:fs';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import path from 'node:path';
import { MbuildError, UsageError } from '../util/errors.js';
import { layout } from '../store/layout.js';
import type { ManifestEntry } from './manifest.js';

const HEX = /^[0-9a-f]{64}$/;

export class ContextStore {
  readonly dir: string;
  constructor(root: string) {
    this.dir = layout.serverContext(root);
  }

  async init(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    // temp files of a killed upload (the server is the only writer, and it just started)
    for (const n of await fs.readdir(this.dir)) if (n.startsWith('.tmp-')) await fs.rm(path.join(this.dir, n), { force: true });
  }

  blobPath(sha: string): string {
    if (!HEX.test(sha)) throw new UsageError(`invalid sha256 digest "${sha}"`);
    return path.join(this.dir, sha);
  }

  async missing(digests: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const d of new Set(digests)) {
      const ok = await fs.stat(this.blobPath(d)).then((s) => s.isFile(), () => false);
      if (!ok) out.push(d);
    }
    return out;
  }

  /** A writer for one uploaded file: write chunks, then commit (digest checked) or abort. */
  writer(sha: string): BlobWriter {
    return new BlobWriter(this.blobPath(sha), sha);
  }

  /** Removes content no running build reads; returns [count, bytes]. */
  async prune(inUse: Set<string>): Promise<[number, number]> {
    let count = 0;
    let bytes = 0;
    for (const n of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (inUse.has(n) || n.startsWith('.tmp-')) continue;
      const p = path.join(this.dir, n);
      const st = await fs.stat(p).catch(() => undefined);
      if (!st) continue;
      await fs.rm(p, { force: true });
      count++;
      bytes += st.size;
    }
    return [count, bytes];
  }

  /** A file of a context folder from its content (a reflink where the filesystem can), with its mode and mtime. */
  async copyIn(e: ManifestEntry, dest: string): Promise<void> {
    try {
      await fs.copyFile(this.blobPath(e.h!), dest, C.COPYFILE_EXCL | C.COPYFILE_FICLONE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !(await fs.stat(path.dirname(dest)).catch(() => undefined))) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MbuildError('MBUILD_CONTEXT_READ', `the server lost the content of ${e.p} (pruned during the upload?): build again`, { cause: err });
      throw err;
    }
    await fs.chmod(dest, e.m & 0o7777);
    await fs.utimes(dest, e.mt / 1000, e.mt / 1000);
  }

  /** Makes dir (which must not exist) the context the manifest describes. */
  async materialize(entries: ManifestEntry[], dir: string): Promise<void> {
    await fs.mkdir(dir, { mode: 0o755 });
    const dirs = new Set<string>(['']);
    const dirTimes: [string, number, number][] = [];
    const files: [string, ManifestEntry][] = [];
    // the walker gives each folder before its contents: a parent must be a folder made here,
    // never a symlink, so no entry can land outside dir
    for (const e of entries) {
      const rel = checkRel(e.p);
      const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
      if (!dirs.has(parent)) throw new UsageError(`context manifest: ${rel} comes before its folder ${parent}`);
      const dest = path.join(dir, rel);
      const mode = e.m & 0o7777;
      if (e.t === 'd') {
        await fs.mkdir(dest);
        await fs.chmod(dest, mode);
        dirs.add(rel);
        dirTimes.push([dest, e.mt, mode]);
      } else if (e.t === 'l') {
        if (typeof e.l !== 'string') throw new UsageError(`context manifest: symlink ${rel} has no target`);
        await fs.symlink(e.l, dest);
        await fs.lutimes(dest, e.mt / 1000, e.mt / 1000);
      } else if (e.t === 'f') {
        if (!e.h) throw new UsageError(`context manifest: file ${rel} has no digest`);
        files.push([dest, e]);
      } else throw new UsageError(`context manifest: ${rel} has an unknown type`);
    }
    // copies a few at a time: each is a syscall or two, mostly waiting on the disk
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const [dest, e] = files[next++]!;
        await this.copyIn(e, dest);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    // folder times last, deepest first: making entries inside changed them
    for (const [d, mt] of dirTimes.reverse()) await fs.utimes(d, mt / 1000, mt / 1000);
  }
}

/**
 * Keeps a repository's context folder (ROOT/server/contexts/<key>) in step with its manifests:
 * what did not change is left alone, so the worker's stat-keyed hash cache still knows it and a
 * rebuild copies nothing; a fresh clone (new mtimes) only has its times set. The record of what the
 * folder holds is removed while it changes: a server killed mid-sync makes the next one start over.
 */
export async function syncContext(store: ContextStore, entries: ManifestEntry[], dir: string, recordFile: string): Promise<void> {
  let old: Map<string, ManifestEntry> | undefined;
  try {
    old = new Map((JSON.parse(await fs.readFile(recordFile, 'utf8')) as ManifestEntry[]).map((e) => [e.p, e]));
  } catch {
    old = undefined;
  }
  await fs.rm(recordFile, { force: true });
  // what the folder holds, with the times as the filesystem keeps them (they round-trip through seconds)
  const record: ManifestEntry[] = [];
  if (!old) {
    await fs.rm(dir, { recursive: true, force: true });
    await store.materialize(entries, dir);
    for (const e of entries) {
      if (e.t !== 'f') record.push(e);
      else {
        const st = lstatSync(path.join(dir, e.p));
        record.push({ ...e, s: st.size, mt: st.mtimeMs, cmt: e.mt });
      }
    }
  } else {
    const want = new Map(entries.map((e) => [checkRel(e.p), e]));
    // gone, or another kind of entry now: removed first (a folder with what is below it)
    for (const [p, e] of old) {
      const w = want.get(p);
      if (!w || w.t !== e.t || (e.t === 'l' && w.l !== e.l)) await fs.rm(path.join(dir, p), { recursive: true, force: true });
    }
    const dirs = new Set<string>(['']);
    const dirTimes: [string, number][] = [];
    for (const e of entries) {
      const rel = e.p;
      const kept = (st: Stats | undefined) => {
        if (e.t === 'f') {
          const now = st ?? lstatSync(path.join(dir, rel));
          record.push({ ...e, s: now.size, mt: now.mtimeMs, cmt: e.mt });
        }
        else record.push(e);
      };
      const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
      if (!dirs.has(parent)) throw new UsageError(`context manifest: ${rel} comes before its folder ${parent}`);
      const dest = path.join(dir, rel);
      const before = old.get(rel);
      // metadata calls synchronous: a few microseconds each, a context has thousands (see builder/context/sources.ts)
      let st: Stats | undefined;
      try {
        st = lstatSync(dest);
      } catch {
        st = undefined;
      }
      const mode = e.m & 0o7777;
      if (e.t === 'd') {
        if (!st?.isDirectory()) {
          if (st) await fs.rm(dest, { recursive: true, force: true });
          await fs.mkdir(dest);
        }
        if (!st?.isDirectory() || (st.mode & 0o7777) !== mode) await fs.chmod(dest, mode);
        dirs.add(rel);
        dirTimes.push([dest, e.mt]);
      } else if (e.t === 'l') {
        if (typeof e.l !== 'string') throw new UsageError(`context manifest: symlink ${rel} has no target`);
        const same = st?.isSymbolicLink() && before?.t === 'l' && before.l === e.l;
        if (!same) {
          if (st) await fs.rm(dest, { recursive: true, force: true });
          await fs.symlink(e.l, dest);
        }
        if (!same || st!.mtimeMs !== e.mt) await fs.lutimes(dest, e.mt / 1000, e.mt / 1000);
      } else if (e.t === 'f') {
        if (!e.h) throw new UsageError(`context manifest: file ${rel} has no digest`);
        // kept only if it is still the file this folder was given (a size or time off means it was touched)
        const same = st?.isFile() && before?.t === 'f' && before.h === e.h && st.size === before.s && st.mtimeMs === before.mt;
        if (!same) {
          if (st) await fs.rm(dest, { recursive: true, force: true });
          await store.copyIn(e, dest);
          kept(undefined);
        } else {
          if ((st!.mode & 0o7777) !== mode) await fs.chmod(dest, mode);
          // the client's time as last set (the filesystem's copy of it may differ in the last digits)
          if (before!.cmt !== e.mt) {
            await fs.utimes(dest, e.mt / 1000, e.mt / 1000);
            kept(undefined);
          } else kept(st);
        }
        continue;
      } else throw new UsageError(`context manifest: ${rel} has an unknown type`);
      kept(st);
    }
    for (const [d, mt] of dirTimes.reverse()) await fs.utimes(d, mt / 1000, mt / 1000);
  }
  const tmp = `${recordFile}.tmp-${randomBytes(4).toString('hex')}`;
  await fs.writeFile(tmp, JSON.stringify(record));
  await fs.rename(tmp, recordFile);
}

function checkRel(p: unknown): string {
  if (typeof p !== 'string' || p === '' || p.startsWith('/') || p.includes('\0') || p.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new UsageError(`context manifest: invalid path ${JSON.stringify(p)}`);
  }
  return p;
}

export class BlobWriter {
  private readonly tmp: string;
  private readonly out: WriteStream;
  private readonly hash: Hash = createHash('sha256');
  private failed?: Error;
  constructor(private readonly dest: string, private readonly sha: string) {
    this.tmp = path.join(path.dirname(dest), `.tmp-${sha.slice(0, 12)}-${randomBytes(4).toString('hex')}`);
    this.out = createWriteStream(this.tmp, { mode: 0o600 });
    this.out.on('error', (err) => (this.failed ??= err));
  }

  /** Resolves when the stream can take more (backpressure for the upload call). */
  write(chunk: Buffer): Promise<void> {
    this.hash.update(chunk);
    if (this.out.write(chunk)) return Promise.resolve();
    return new Promise((resolve) => this.out.once('drain', resolve));
  }

  async commit(): Promise<void> {
    await new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    if (this.failed) throw this.failed;
    const got = this.hash.digest('hex');
    if (got !== this.sha) {
      await fs.rm(this.tmp, { force: true });
      throw new MbuildError('MBUILD_DIGEST_MISMATCH', `uploaded content for sha256:${this.sha} has digest sha256:${got}`);
    }
    await fs.rename(this.tmp, this.dest);
  }

  abort(): void {
    this.out.destroy();
    void fs.rm(this.tmp, { force: true });
  }
}
