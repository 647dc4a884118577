/**
 * COPY and ADD. The stage's layers are mounted with a fresh upper layer and the sources are copied
 * into that merged root, so parent directories, symlinks and replaced files behave exactly as in
 * the image: destinations are resolved inside the image root, never on the host.
 */
import {
  chmodSync, copyFileSync, createReadStream, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, promises as fs,
  readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, type Stats,
} from 'node:fs';
import path from 'node:path';
import type { CopyInstruction } from '../dockerfile/types.js';
import { commitOrDiscard, type StepRun } from './contract.js';
import { lookupFor, type StageState } from './state.js';
import { expandHeredocContent } from '../dockerfile/heredoc.js';
import { expandWord } from '../expand/shell-word.js';
import { excludeFilter, walkSourceSync, type SourceEntry } from '../context/sources.js';
import { excludeMatcher, resolveCopySources } from '../context/copy-sources.js';
import { resolveInScope } from '../context/scope.js';
import type { IgnoreMatcher } from '../context/dockerignore.js';
import { readUserDb, resolveChown } from './users.js';
import { extractArchive } from '../../snapshotter/diff/apply.js';
import { decompressStream, isArchive } from '../../snapshotter/diff/decompress.js';
import { CopySourceMissingError, MbuildError } from '../../util/errors.js';
import { fetchUrl, resolveUrl, type Downloaded } from './download.js';
import { digestSources } from '../cache/context-hash.js';
import { CopyNeedsFiles, CopyTarPlanner } from './copy-tar.js';
import type { Chmod } from './chmod.js';
import { checkCopySources } from './copy-checks.js';
import { checkoutGit, resolveGitCommit } from './git.js';

interface Owner { uid: number; gid: number }

interface CopyPlan {
  dest: string; // absolute image path
  destIsDir: boolean;
  owner?: Owner; // undefined → 0:0
  chmod?: Chmod;
  isAdd: boolean;
  /** extract a local tar archive (ADD, unless --unpack=false) */
  unpack: boolean;
  /** extract a downloaded tar archive (ADD --unpack=true only) */
  unpackUrls: boolean;
  /** COPY --from: without --chown the copied files keep their owners (BuildKit keeps 100:200) */
  fromImage?: boolean;
}


export async function copyStep({ ctx, state, cache, lastFsChange }: StepRun, ins: CopyInstruction): Promise<void> {
  const lookup = lookupFor(state);
  const x = (w: string) => expandWord(w, lookup, ctx.escape);
  const sources = ins.sources.map(x);
  const rawDest = x(ins.dest);
  const workdir = state.config.WorkingDir || '/';
  const dest = path.posix.isAbsolute(rawDest) ? path.posix.normalize(rawDest) : path.posix.join('/', workdir, rawDest);
  const { gits, urls, local, checksum, chmod, destIsDir } = checkCopySources(ins, sources, rawDest, ins.chmod !== undefined ? x(ins.chmod) : undefined);
  const plan: CopyPlan = { dest, destIsDir, chmod, isAdd: ins.kind === 'add',
    unpack: ins.kind === 'add' && ins.unpack !== false, unpackUrls: ins.kind === 'add' && ins.unpack === true };

  const exclude = excludeMatcher(ins);
  // COPY --link: the files are copied into an empty tree, so the layer does not depend on the
  // layers below (nor its cache key) and stacks onto any base. BuildKit links only without --chmod.
  const link = ins.link && ins.chmod === undefined;
  const below = link ? [] : state.layers;
  const resolve = async (srcRoot: string, ignore: IgnoreMatcher | undefined, fromImage: boolean): Promise<SourceEntry[]> => {
    try {
      return await resolveCopySources(srcRoot, local, ignore, exclude, ins.parents === true);
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
  // a URL is keyed by its content's digest (or --checksum), as BuildKit's http source is
  const remote = await Promise.all(urls.map((u) => resolveUrl(ctx.store, ctx.cache.dir, u, checksum, ins.range)));
  // a git source is keyed by the commit its ref names now
  const commits = await Promise.all(gits.map((g) => resolveGitCommit(g, checksum, ins.range)));
  const inputs = {
    op: ins.kind, sources: local, ...(gits.length ? { git: gits.map((g, i) => [g.remote, commits[i], g.subdir ?? '', g.keepGitDir === true, g.submodules]) } : {}), ...(link ? { link: true } : {}), ...(ins.unpack !== undefined ? { unpack: ins.unpack } : {}), urls: remote.length ? remote.map((r) => [r.url, r.name, r.digest, r.mtime ?? '']) : undefined, dest, destIsDir,
    chown: ins.chown, chmod: ins.chmod !== undefined ? x(ins.chmod) : undefined, heredocs, workdir,
    ...(ins.exclude.length ? { exclude: ins.exclude } : {}), ...(ins.parents ? { parents: true } : {}),
  };

  // the last change of the stage, read by nothing later: write the layer tar from the sources
  const asTar = lastFsChange === true && ins.kind === 'copy' && urls.length === 0 && gits.length === 0 && !ins.sourceContents?.length && process.env.MBUILD_COPY_AS_TAR !== '0';
  const copyAsTar = (srcRoot: string, ignore: IgnoreMatcher | undefined, entries: SourceEntry[], fromImage: boolean) =>
    ctx.snap.view(below, async (lowerRoot) => {
      const owner = ins.chown ? resolveChown(x(ins.chown), await readUserDb(lowerRoot), ins.range) : undefined;
      const planner = new CopyTarPlanner(lowerRoot, { ...plan, owner, keepOwner: fromImage && !ins.chown });
      for (const e of entries) planner.add(srcRoot, e, statSync(e.hostPath), ignore);
      return ctx.snap.commitTar(planner.entries());
    });

  const copyFrom = async (srcRoot: string, ignore: IgnoreMatcher | undefined, fromImage: boolean, entries: SourceEntry[]) => {
    if (asTar) {
      try {
        state.layers.push(await cache.save(await copyAsTar(srcRoot, fromImage ? undefined : ignore, entries, fromImage)));
        return;
      } catch (err) {
        if (!(err instanceof CopyNeedsFiles)) throw err;
        // something on the way is not plain directories: copy for real (same result, or the exact error)
      }
    }
    const downloads = [...(await Promise.all(remote.map((r) => fetchUrl(ctx.store, r, checksum, ins.range)))), ...(await heredocFiles(ctx.store, heredocs ?? []))];
    const checkouts: { dir: string; tmp: string }[] = [];
    try {
      for (const [i, g] of gits.entries()) checkouts.push(await checkoutGit(ctx.store, g, commits[i]!, ins.range));
      const active = await ctx.snap.change(below, async (root) => {
        plan.fromImage = fromImage;
        if (ins.chown) plan.owner = resolveChown(x(ins.chown), await readUserDb(root), ins.range);
        for (const e of entries) await copyEntry(root, srcRoot, e, plan, fromImage ? undefined : ignore);
        for (const [i, d] of downloads.entries()) await copyDownload(root, d, plan, i < remote.length);
        // a checkout's files go into the destination like a directory's (--exclude applies)
        for (const c of checkouts) await copyEntry(root, c.dir, { hostPath: c.dir, rel: '.', isDir: true, ...(exclude ? { filter: excludeFilter(exclude) } : {}) }, plan, undefined);
      });
      state.layers.push(await commitOrDiscard(ctx, cache, active));
    } finally {
      for (const d of downloads) await fs.rm(path.dirname(d.file), { recursive: true, force: true });
      for (const c of checkouts) await fs.rm(c.tmp, { recursive: true, force: true });
    }
  };

  try {
    await copyOrHit();
  } finally {
    // a download made for the key and not used (a cache hit) goes too
    for (const r of remote) if (r.file) await fs.rm(path.dirname(r.file.file), { recursive: true, force: true });
  }

  async function copyOrHit(): Promise<void> {
    if (ins.from === undefined) {
      const entries = await resolve(ctx.contextDir, ctx.ignore, false);
      const content = await digestSources(ctx.contextDir, entries, ctx.ignore, ctx.fileHashes);
      const hit = await cache.lookup({ ...inputs, content: content.digest }, content.files, { independent: link });
      if (hit) {
        state.layers.push(hit);
        return;
      }
      await ctx.jobs.add(() => copyFrom(ctx.contextDir, ctx.ignore, false, entries), { throwOnTimeout: true });
    } else {
      const dep = ctx.stageIndexOf(ins.from);
      const src: StageState = dep !== undefined ? await ctx.stageResult(dep) : await ctx.imageState(ins.from);
      const hit = await cache.lookup({ ...inputs, from: src.key, owners: 'source' }, undefined, { independent: link });
      if (hit) {
        state.layers.push(hit);
        return;
      }
      await ctx.jobs.add(() => ctx.snap.view(src.layers, async (srcRoot) => copyFrom(srcRoot, undefined, true, await resolve(srcRoot, undefined, true))), { throwOnTimeout: true });
    }
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
export async function ensureDir(root: string, imagePath: string, owner: Owner | undefined, top?: { stat: Stats; chmod?: number }, times?: Date, dirMode = 0o755): Promise<string> {
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
    const isTop = i === parts.length - 1 && top;
    await mkdirMissing(root, host, imagePath, owner, isTop ? (top.chmod ?? top.stat.mode & 0o7777) : dirMode, times, dirMode);
  }
  return resolveInScope(root, imagePath, true);
}

/**
 * Make `host` and, when it is the target of a dangling symlink, the directories missing on the
 * way to it (0755, the same owner), as BuildKit's MkdirAll does for `COPY foo /symlink/`.
 */
async function mkdirMissing(root: string, host: string, imagePath: string, owner: Owner | undefined, mode: number, times?: Date, dirMode = 0o755): Promise<void> {
  const missing: string[] = [];
  for (let p = host; p.length > root.length && !(await lstatOrNull(p)); p = path.dirname(p)) missing.unshift(p);
  for (const dir of missing) {
    try {
      await fs.mkdir(dir);
    } catch (err) {
      throw new MbuildError('MBUILD_COPY_DEST', `cannot copy to ${imagePath}: ${(err as NodeJS.ErrnoException).code === 'ENOTDIR' ? `/${path.relative(root, path.dirname(dir))} is not a directory` : (err as Error).message}`);
    }
    await fs.lchown(dir, owner?.uid ?? 0, owner?.gid ?? 0);
    await fs.chmod(dir, dir === host ? mode : dirMode);
    if (times) await fs.utimes(dir, times, times);
  }
}

async function copyEntry(root: string, srcRoot: string, e: SourceEntry, plan: CopyPlan, ignore: IgnoreMatcher | undefined): Promise<void> {
  if (e.isDir) {
    const srcStat = await fs.stat(e.hostPath);
    const destHost = await ensureDir(root, plan.dest, plan.owner, { stat: srcStat, chmod: plan.chmod?.apply(srcStat.mode, true) }, undefined, dirModeOf(plan));
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
  if (plan.unpack && st.isFile() && (await isArchive(e.hostPath))) {
    await unpackInto(root, e.hostPath, plan);
    return;
  }
  const base = path.posix.basename(e.rel.replace(/\/+$/, '')) || path.posix.basename(e.hostPath);
  let targetPath = plan.dest;
  if (plan.destIsDir) targetPath = path.posix.join(plan.dest, base);
  else {
    const existing = await lstatOrNull(await resolveInScope(root, plan.dest, true));
    if (existing?.isDirectory()) targetPath = path.posix.join(plan.dest, base);
  }
  const parentHost = await ensureDir(root, path.posix.dirname(targetPath), plan.owner, undefined, undefined, dirModeOf(plan));
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
  const uid = plan.owner?.uid ?? (plan.fromImage ? st.uid : 0);
  const gid = plan.owner?.gid ?? (plan.fromImage ? st.gid : 0);
  if (st.isDirectory()) {
    // a directory inside a copied tree takes the source's metadata even when it already exists
    // (fsutil's copyFileInfo); only the top-level destination keeps its own
    if (existing && !existing.isDirectory()) throw new MbuildError('MBUILD_COPY_DEST', `cannot copy to non-directory: ${path.basename(dst)}`);
    if (!existing) mkdirSync(dst);
    lchownSync(dst, uid, gid);
    chmodSync(dst, modeOf(plan, st));
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
  if (st.isSocket() && !plan.fromImage) {
    // BuildKit's context transfer sends a socket as an empty regular file (testCopySocket)
    writeFileSync(dst, '');
  } else if (!st.isFile()) return false; // fifos and devices are not copied
  else copyFileSync(src, dst);
  lchownSync(dst, uid, gid);
  chmodSync(dst, modeOf(plan, st));
  utimesSync(dst, st.atime, st.mtime);
  return true;
}

/** Directories a copy creates on the way: 0755, or an octal --chmod (BuildKit's MkdirAll with the mode; testCopyChmod). */
const dirModeOf = (plan: CopyPlan): number => plan.chmod?.octal ?? 0o755;

/** The mode a copied entry gets: its own, or --chmod's. */
const modeOf = (plan: CopyPlan, st: Stats): number => (plan.chmod ? plan.chmod.apply(st.mode & 0o7777, st.isDirectory()) : st.mode & 0o7777);

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


/** ADD of an archive: its entries go below the destination, owned by --chown's owner when given (--chmod does not apply). */
async function unpackInto(root: string, archive: string, plan: CopyPlan): Promise<void> {
  const destHost = await ensureDir(root, plan.dest, plan.owner);
  const input = await decompressStream(createReadStream(archive));
  await extractArchive(input, destHost, { root, owner: plan.owner });
}

async function copyDownload(root: string, d: Downloaded, plan: CopyPlan, fromUrl: boolean): Promise<void> {
  if (fromUrl && plan.unpackUrls && (await isArchive(d.file))) {
    await unpackInto(root, d.file, plan);
    return;
  }
  let targetPath = plan.destIsDir ? path.posix.join(plan.dest, d.name) : plan.dest;
  if (!plan.destIsDir) {
    const existing = await lstatOrNull(await resolveInScope(root, plan.dest, true));
    if (existing?.isDirectory()) targetPath = path.posix.join(plan.dest, d.name);
  }
  const parentHost = await ensureDir(root, path.posix.dirname(targetPath), plan.owner, undefined, undefined, dirModeOf(plan));
  const st = await fs.stat(d.file);
  const dst = path.join(parentHost, path.posix.basename(targetPath));
  copyOne(d.file, dst, st, plan);
  if (d.mtime) await fs.utimes(dst, d.mtime, d.mtime);
}
