/**
 * COPY and ADD. The stage's layers are mounted with a fresh upper layer and the sources are copied
 * into that merged root, so parent directories, symlinks and replaced files behave exactly as in
 * the image: destinations are resolved inside the image root, never on the host.
 */
import {
  chmodSync, copyFileSync, createReadStream, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, promises as fs,
  readlinkSync, rmSync, statSync, symlinkSync, utimesSync, type Stats,
} from 'node:fs';
import path from 'node:path';
import type { CopyInstruction } from '../dockerfile/types.js';
import type { StepRun } from './contract.js';
import { lookupFor, type StageState } from './state.js';
import { expandHeredocContent } from '../dockerfile/heredoc.js';
import { expandWord } from '../expand/shell-word.js';
import { resolveSources, walkSourceSync, type SourceEntry } from '../context/sources.js';
import { resolveInScope } from '../context/scope.js';
import type { IgnoreMatcher } from '../context/dockerignore.js';
import { readUserDb, resolveChown } from './users.js';
import { extractArchive } from '../../snapshotter/diff/apply.js';
import { decompressStream, isArchive } from '../../snapshotter/diff/decompress.js';
import { CopySourceMissingError, MbuildError } from '../../util/errors.js';
import { downloadToFile } from './download.js';
import { digestSources } from '../cache/context-hash.js';
import { CopyNeedsFiles, CopyTarPlanner } from './copy-tar.js';

interface Owner { uid: number; gid: number }

interface CopyPlan {
  dest: string; // absolute image path
  destIsDir: boolean;
  owner?: Owner; // undefined → 0:0
  chmod?: number;
  isAdd: boolean;
}

export function parseChmod(spec: string, ins: CopyInstruction): number {
  if (!/^[0-7]{1,4}$/.test(spec)) throw new MbuildError('MBUILD_PARSE', `invalid --chmod value "${spec}": use an octal mode such as 0755`, { range: ins.range });
  return Number.parseInt(spec, 8);
}

export async function copyStep({ ctx, state, cache, lastFsChange }: StepRun, ins: CopyInstruction): Promise<void> {
  const lookup = lookupFor(state);
  const x = (w: string) => expandWord(w, lookup, ctx.escape);
  const sources = ins.sources.map(x);
  const rawDest = x(ins.dest);
  const workdir = state.config.WorkingDir || '/';
  const destIsDir = rawDest.endsWith('/') || rawDest === '.' || rawDest.endsWith('/.') || rawDest === '';
  const dest = path.posix.isAbsolute(rawDest) ? path.posix.normalize(rawDest) : path.posix.join('/', workdir, rawDest);
  if (sources.length > 1 && !destIsDir) {
    throw new MbuildError('MBUILD_COPY_DEST', `When using ${ins.kind.toUpperCase()} with more than one source file, the destination must be a directory and end with a /`, { range: ins.range });
  }
  const plan: CopyPlan = { dest, destIsDir, chmod: ins.chmod ? parseChmod(ins.chmod, ins) : undefined, isAdd: ins.kind === 'add' };

  const urls = ins.kind === 'add' && ins.from === undefined ? sources.filter((s) => /^https?:\/\//i.test(s)) : [];
  const local = sources.filter((s) => !urls.includes(s));

  const resolve = async (srcRoot: string, ignore: IgnoreMatcher | undefined, fromImage: boolean): Promise<SourceEntry[]> => {
    try {
      return await resolveSources(srcRoot, local, ignore);
    } catch (err) {
      if (err instanceof CopySourceMissingError || (err as MbuildError).code === 'MBUILD_COPY_SOURCE_MISSING') {
        const where = fromImage ? `--from=${ins.from}` : 'the build context';
        throw new CopySourceMissingError(`${ins.kind.toUpperCase()} failed: ${(err as Error).message.replace(/\s*$/, '')} in ${where}`, ins.range);
      }
      throw err;
    }
  };
  // here-document sources as they will be written (expanded unless the terminator was quoted)
  const heredocs = ins.sourceContents?.map((h) => ({ path: h.path, data: h.expand ? expandHeredocContent(h.data, lookup) : h.data }));
  // what the key covers besides the copied content; URLs are fetched every time (no checksum to key on)
  const inputs = {
    op: ins.kind, sources: local, urls: urls.length ? [urls, Date.now(), Math.random()] : undefined, dest, destIsDir,
    chown: ins.chown, chmod: ins.chmod, heredocs, workdir,
  };

  // the last change of the stage, read by nothing later: write the layer tar from the sources
  const asTar = lastFsChange === true && ins.kind === 'copy' && urls.length === 0 && !ins.sourceContents?.length && process.env.MBUILD_COPY_AS_TAR !== '0';
  const copyAsTar = (srcRoot: string, ignore: IgnoreMatcher | undefined, entries: SourceEntry[]) =>
    ctx.snap.view(state.layers, async (lowerRoot) => {
      const owner = ins.chown ? resolveChown(x(ins.chown), await readUserDb(lowerRoot), ins.range) : undefined;
      const planner = new CopyTarPlanner(lowerRoot, { ...plan, owner });
      for (const e of entries) planner.add(srcRoot, e, statSync(e.hostPath), ignore);
      return ctx.snap.commitTar(planner.entries());
    });

  const copyFrom = async (srcRoot: string, ignore: IgnoreMatcher | undefined, fromImage: boolean, entries: SourceEntry[]) => {
    if (asTar) {
      try {
        state.layers.push(await cache.save(await copyAsTar(srcRoot, fromImage ? undefined : ignore, entries)));
        return;
      } catch (err) {
        if (!(err instanceof CopyNeedsFiles)) throw err;
        // something on the way is not plain directories: copy for real (same result, or the exact error)
      }
    }
    const downloads = [...(await Promise.all(urls.map((u) => downloadToFile(ctx.store, u)))), ...(await heredocFiles(ctx.store, heredocs ?? []))];
    try {
      const layer = await ctx.snap.mutate(state.layers, async (root) => {
        if (ins.chown) plan.owner = resolveChown(x(ins.chown), await readUserDb(root), ins.range);
        for (const e of entries) await copyEntry(root, srcRoot, e, plan, fromImage ? undefined : ignore);
        for (const d of downloads) await copyDownload(root, d, plan);
      });
      state.layers.push(await cache.save(layer));
    } finally {
      for (const d of downloads) await fs.rm(path.dirname(d.file), { recursive: true, force: true });
    }
  };

  if (ins.from === undefined) {
    const entries = await resolve(ctx.contextDir, ctx.ignore, false);
    const content = await digestSources(ctx.contextDir, entries, ctx.ignore, ctx.fileHashes);
    const hit = await cache.lookup({ ...inputs, content: content.digest }, content.files);
    if (hit) {
      state.layers.push(hit);
      return;
    }
    await ctx.jobs.add(() => copyFrom(ctx.contextDir, ctx.ignore, false, entries), { throwOnTimeout: true });
  } else {
    const dep = ctx.stageIndexOf(ins.from);
    const src: StageState = dep !== undefined ? await ctx.stageResult(dep) : await ctx.imageState(ins.from);
    const hit = await cache.lookup({ ...inputs, from: src.key });
    if (hit) {
      state.layers.push(hit);
      return;
    }
    await ctx.jobs.add(() => ctx.snap.view(src.layers, async (srcRoot) => copyFrom(srcRoot, undefined, true, await resolve(srcRoot, undefined, true))), { throwOnTimeout: true });
  }
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await fs.lstat(p);
  } catch {
    return null;
  }
}

/** Create the directories of an image path that do not exist yet (0755, owned by --chown's owner). */
export async function ensureDir(root: string, imagePath: string, owner: Owner | undefined, top?: { stat: Stats; chmod?: number }): Promise<string> {
  const parts = imagePath.split('/').filter(Boolean);
  let cur = '/';
  for (let i = 0; i < parts.length; i++) {
    cur = path.posix.join(cur, parts[i]);
    const host = await resolveInScope(root, cur, true);
    const st = await lstatOrNull(host);
    if (st) {
      if (!st.isDirectory()) throw new MbuildError('MBUILD_COPY_DEST', `cannot copy to ${imagePath}: ${cur} is not a directory`);
      continue;
    }
    await fs.mkdir(host);
    const isTop = i === parts.length - 1 && top;
    await fs.lchown(host, owner?.uid ?? 0, owner?.gid ?? 0);
    await fs.chmod(host, isTop ? (top.chmod ?? top.stat.mode & 0o7777) : 0o755);
  }
  return resolveInScope(root, imagePath, true);
}

async function copyEntry(root: string, srcRoot: string, e: SourceEntry, plan: CopyPlan, ignore: IgnoreMatcher | undefined): Promise<void> {
  if (e.isDir) {
    const srcStat = await fs.stat(e.hostPath);
    const destHost = await ensureDir(root, plan.dest, plan.owner, { stat: srcStat, chmod: plan.chmod });
    const dirs: { host: string; stat: Stats }[] = [];
    const links = new Map<number, string>();
    // directories this copy made or checked are real directories: no need to resolve them again
    const dirHost = new Map<string, string>([['.', destHost]]);
    let n = 0;
    for (const item of walkSourceSync(srcRoot, e, ignore)) {
      if (++n % YIELD_EVERY === 0) await yieldToLoop();
      const parentRel = path.posix.dirname(item.rel);
      // resolve the parent in the image root (the final component is never followed)
      const parentHost = dirHost.get(parentRel) ?? (await resolveInScope(root, path.posix.join(plan.dest, parentRel), true));
      const dst = path.join(parentHost, path.posix.basename(item.rel));
      if (copyOne(item.hostPath, dst, item.stat, plan, links) && item.stat.isDirectory()) dirs.push({ host: dst, stat: item.stat });
      if (item.stat.isDirectory()) dirHost.set(item.rel, dst);
    }
    // directory times last, after their contents were written
    for (const d of dirs.reverse()) {
      try {
        utimesSync(d.host, d.stat.atime, d.stat.mtime);
      } catch {
        /* removed meanwhile: nothing to date */
      }
    }
    return;
  }
  const st = await fs.stat(e.hostPath);
  if (plan.isAdd && st.isFile() && (await isArchive(e.hostPath))) {
    const destHost = await ensureDir(root, plan.dest, plan.owner);
    const input = await decompressStream(createReadStream(e.hostPath));
    await extractArchive(input, destHost, { root });
    return;
  }
  const base = path.posix.basename(e.rel.replace(/\/+$/, '')) || path.posix.basename(e.hostPath);
  let targetPath = plan.dest;
  if (plan.destIsDir) targetPath = path.posix.join(plan.dest, base);
  else {
    const existing = await lstatOrNull(await resolveInScope(root, plan.dest, true));
    if (existing?.isDirectory()) targetPath = path.posix.join(plan.dest, base);
  }
  const parentHost = await ensureDir(root, path.posix.dirname(targetPath), plan.owner);
  copyOne(e.hostPath, path.join(parentHost, path.posix.basename(targetPath)), st, plan);
}

/**
 * Copy one file, symlink or directory entry to dst (never following a final symlink at dst). Returns
 * true if dst was created. Synchronous: a copied tree is thousands of small metadata calls, each a
 * few microseconds done directly against several times that through libuv's thread pool; callers
 * yield to the event loop between batches (yieldEvery).
 */
function copyOne(src: string, dst: string, st: Stats, plan: CopyPlan, links?: Map<number, string>): boolean {
  const existing = lstatSync(dst, { throwIfNoEntry: false });
  const uid = plan.owner?.uid ?? 0;
  const gid = plan.owner?.gid ?? 0;
  if (st.isDirectory()) {
    // a directory inside a copied tree takes the source's metadata even when it already exists
    // (fsutil's copyFileInfo); only the top-level destination keeps its own
    if (existing && !existing.isDirectory()) throw new MbuildError('MBUILD_COPY_DEST', `cannot copy to non-directory: ${path.basename(dst)}`);
    if (!existing) mkdirSync(dst);
    lchownSync(dst, uid, gid);
    chmodSync(dst, plan.chmod ?? st.mode & 0o7777);
    return true;
  }
  if (existing?.isDirectory()) throw new MbuildError('MBUILD_COPY_DEST', `cannot replace the directory ${path.basename(dst)} with a file`);
  if (existing) rmSync(dst, { force: true });
  if (st.isFile() && st.nlink > 1 && links) {
    // hard links inside one copied tree stay hard links
    const first = links.get(st.ino);
    if (first) {
      linkSync(first, dst);
      return true;
    }
    links.set(st.ino, dst);
  }
  if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(src), dst);
    lchownSync(dst, uid, gid);
    lutimesSync(dst, st.atime, st.mtime);
    return true;
  }
  if (!st.isFile()) return false; // sockets, fifos and devices in a context are not copied
  copyFileSync(src, dst);
  lchownSync(dst, uid, gid);
  chmodSync(dst, plan.chmod ?? st.mode & 0o7777);
  utimesSync(dst, st.atime, st.mtime);
  return true;
}

/** Let timers, progress output and other stages run between batches of synchronous work. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const YIELD_EVERY = 64;

/** `COPY <<EOF /dest`: each here-document becomes a file (0644) named by its terminator. */
async function heredocFiles(store: StepRun['ctx']['store'], docs: { path: string; data: string }[]): Promise<Downloaded[]> {
  const out: Downloaded[] = [];
  for (const h of docs) {
    const dir = await store.mkTemp('heredoc');
    const file = path.join(dir, 'content');
    await fs.writeFile(file, h.data, { mode: 0o644 });
    await fs.chmod(file, 0o644);
    out.push({ file, name: h.path, mode: 0o644 });
  }
  return out;
}

interface Downloaded { file: string; name: string; mtime?: Date; mode?: number }

async function copyDownload(root: string, d: Downloaded, plan: CopyPlan): Promise<void> {
  let targetPath = plan.destIsDir ? path.posix.join(plan.dest, d.name) : plan.dest;
  if (!plan.destIsDir) {
    const existing = await lstatOrNull(await resolveInScope(root, plan.dest, true));
    if (existing?.isDirectory()) targetPath = path.posix.join(plan.dest, d.name);
  }
  const parentHost = await ensureDir(root, path.posix.dirname(targetPath), plan.owner);
  const st = await fs.stat(d.file);
  const dst = path.join(parentHost, path.posix.basename(targetPath));
  copyOne(d.file, dst, st, { ...plan, chmod: plan.chmod ?? d.mode ?? 0o600 });
  if (d.mtime) await fs.utimes(dst, d.mtime, d.mtime);
}
