/**
 * The server's store of context file content, by sha256 (ROOT/server/context/<hex>), and the
 * making of a build's context folder from a client's manifest. Content is written under a temp
 * name and renamed once its digest checks, so a killed upload or server leaves nothing that looks
 * whole. A context folder is a copy (a reflink where the filesystem has them): each build gets the
 * client's modes and mtimes without touching the shared content.
 */
import { constants as C, createWriteStream, promises as fs, type WriteStream } from 'node:fs';
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
        try {
          await fs.copyFile(this.blobPath(e.h!), dest, C.COPYFILE_EXCL | C.COPYFILE_FICLONE);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MbuildError('MBUILD_CONTEXT_READ', `the server lost the content of ${e.p} (pruned during the upload?): build again`, { cause: err });
          throw err;
        }
        await fs.chmod(dest, e.m & 0o7777);
        await fs.utimes(dest, e.mt / 1000, e.mt / 1000);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    // folder times last, deepest first: making entries inside changed them
    for (const [d, mt] of dirTimes.reverse()) await fs.utimes(d, mt / 1000, mt / 1000);
  }
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
