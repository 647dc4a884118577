/**
 * The copy snapshotter's trees (copy.ts): the layers, overlay-format dirs, are applied one after
 * another into a plain directory (`materialize`); a step changes that directory; the change is found
 * by comparing it with a record taken before the step (`recordTree` / `diffTree`) and written as an
 * overlay-format layer dir, like an upperdir would be.
 *
 * A change is what continuity's diff (BuildKit without overlay) counts: a non-directory whose inode,
 * type, mode, owner, size, mtime, ctime or link target moved; a directory whose type, mode or owner
 * did (a directory's mtime alone is not a change, so mount stubs made and removed leave no trace).
 * Symlinks are never followed: every call is lstat/lchown/lutimes or acts on the link itself.
 */
import { promises as fs, constants as C, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { findOpaqueDirs, fsOps, type FsOp } from '../util/native-helper.js';
import { devMajor, devMinor, isWhiteoutDevice } from './diff/layer-tar.js';
export type EntryType = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface TreeEntry {
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  /** nanosecond times: a rewrite within the same millisecond is still seen */
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  nlink: number;
  rdev: bigint;
  link?: string;
}

/** Relative path ('a/b', no leading slash; the root itself is not recorded) → entry. */
export type Tree = Map<string, TreeEntry>;

function typeOf(st: BigIntStats): EntryType {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

const lstat = (p: string): Promise<BigIntStats> => fs.lstat(p, { bigint: true });
const lstatMaybe = (p: string): Promise<BigIntStats | undefined> => lstat(p).catch((e: NodeJS.ErrnoException) => {
  if (e.code === 'ENOENT') return undefined;
  throw e;
});

/** Mode, owner and times of `st` onto `dst` (never through a symlink). */
async function setMeta(dst: string, st: BigIntStats | TreeEntryLike): Promise<void> {
  await fs.lchown(dst, Number(st.uid), Number(st.gid));
  const isLink = 'isSymbolicLink' in st ? st.isSymbolicLink() : st.type === 'symlink';
  if (!isLink) await fs.chmod(dst, Number(st.mode) & 0o7777); // after chown, which clears setuid
  const mtime = Number(st.mtimeNs) / 1e9;
  await fs.lutimes(dst, mtime, mtime);
}
type TreeEntryLike = Pick<TreeEntry, 'type' | 'mode' | 'uid' | 'gid' | 'mtimeNs'>;

/** Creates dst as a copy of the non-directory src (file content, symlink, device or FIFO). */
async function copyNode(src: string, dst: string, st: BigIntStats | TreeEntry, nodes: FsOp[]): Promise<boolean> {
  const type = 'isFile' in st ? typeOf(st) : st.type;
  switch (type) {
    case 'file':
      await fs.copyFile(src, dst, C.COPYFILE_FICLONE);
      return true;
    case 'symlink':
      await fs.symlink(await fs.readlink(src), dst);
      return true;
    case 'char':
    case 'block':
    case 'fifo':
      nodes.push({ op: 'mknod', path: dst, type: type === 'char' ? 'c' : type === 'block' ? 'b' : 'p', mode: Number(st.mode) & 0o7777, major: devMajor(st.rdev), minor: devMinor(st.rdev) });
      return false;
    default:
      return false; // sockets: not part of a layer
  }
}

async function removeEntry(p: string, st: BigIntStats | undefined): Promise<void> {
  if (!st) return;
  if (st.isDirectory()) await fs.rm(p, { recursive: true, force: true });
  else await fs.unlink(p);
}

async function emptyDir(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) await fs.rm(path.join(dir, name), { recursive: true, force: true });
}

/** Applies overlay-format layer dirs (bottom-most first) into `target`, a plain directory. */
export async function materialize(layerDirs: string[], target: string, opaqueDirs: (layerDir: string) => Promise<string[]> = findOpaqueDirs): Promise<void> {
  await fs.mkdir(target, { recursive: true, mode: 0o755 });
  for (const dir of layerDirs) await applyLayerDir(path.resolve(dir), target, await opaqueDirs(path.resolve(dir)));
}

async function applyLayerDir(layer: string, target: string, opaqueDirs: string[]): Promise<void> {
  const opaque = new Set(opaqueDirs);
  if (opaque.has('.')) await emptyDir(target);
  const links = new Map<string, string>(); // layer inode → its first path in target
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fs.readdir(path.join(layer, rel))).sort()) {
      const childRel = rel ? `${rel}/${name}` : name;
      const src = path.join(layer, childRel);
      const dst = path.join(target, childRel);
      const st = await lstat(src);
      const cur = await lstatMaybe(dst);
      if (isWhiteoutDevice(st)) {
        await removeEntry(dst, cur);
        continue;
      }
      if (st.isDirectory()) {
        if (cur && !cur.isDirectory()) await removeEntry(dst, cur);
        if (!cur || !cur.isDirectory()) await fs.mkdir(dst);
        else if (opaque.has(childRel)) await emptyDir(dst);
        await walk(childRel);
        await setMeta(dst, st); // after the children: their creation moved the dir's mtime
        continue;
      }
      await removeEntry(dst, cur);
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? links.get(key) : undefined;
      if (first !== undefined) {
        await fs.link(first, dst);
        continue;
      }
      const pending: FsOp[] = [];
      if (await copyNode(src, dst, st, pending)) await setMeta(dst, st);
      else if (pending.length) {
        await fsOps(pending); // device nodes and FIFOs: rare, one helper call each
        await setMeta(dst, st);
      } else continue;
      if (st.nlink > 1n) links.set(key, dst);
    }
  };
  await walk('');
}

/** Every entry below root (lstat only; the root itself is left out). */
export async function recordTree(root: string): Promise<Tree> {
  const tree: Tree = new Map();
  const walk = async (rel: string): Promise<void> => {
    for (const name of await fs.readdir(rel ? path.join(root, rel) : root)) {
      const childRel = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, childRel);
      const st = await lstat(abs);
      const type = typeOf(st);
      tree.set(childRel, {
        type,
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: Number(st.size),
        mtimeMs: Number(st.mtimeMs),
        ctimeMs: Number(st.ctimeMs),
        mtimeNs: st.mtimeNs,
        ctimeNs: st.ctimeNs,
        ino: st.ino,
        nlink: Number(st.nlink),
        rdev: st.rdev,
        link: type === 'symlink' ? await fs.readlink(abs) : undefined,
      });
      if (type === 'dir') await walk(childRel);
    }
  };
  await walk('');
  return tree;
}

function changed(b: TreeEntry, a: TreeEntry): boolean {
  if (b.type !== a.type || b.mode !== a.mode || b.uid !== a.uid || b.gid !== a.gid) return true;
  if (a.type === 'dir') return b.ino !== a.ino;
  return b.ino !== a.ino || b.size !== a.size || b.mtimeNs !== a.mtimeNs || b.ctimeNs !== a.ctimeNs || b.link !== a.link || b.rdev !== a.rdev;
}

const parentOf = (rel: string): string => {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
};

/**
 * Writes what changed in `root` since `before` into `layerDir` (an empty dir) in overlay format:
 * new and changed entries copied with their metadata (and their parent dirs), deleted paths as
 * whiteouts (only the top-most deleted path; a path whose type changed is simply the new entry).
 */
export async function diffTree(root: string, before: Tree, layerDir: string): Promise<void> {
  const after = await recordTree(root);
  const made = new Set<string>(['']);
  const dirs: string[] = [];
  const ensureDir = async (rel: string): Promise<void> => {
    if (made.has(rel)) return;
    await ensureDir(parentOf(rel));
    const e = after.get(rel)!;
    await fs.mkdir(path.join(layerDir, rel));
    await fs.lchown(path.join(layerDir, rel), e.uid, e.gid);
    await fs.chmod(path.join(layerDir, rel), e.mode);
    made.add(rel);
    dirs.push(rel);
  };
  const links = new Map<bigint, string>(); // root inode → its first path in layerDir
  const nodes: FsOp[] = [];
  const nodeMeta: [string, TreeEntry][] = [];
  const paths = [...after.keys()].sort();
  for (const rel of paths) {
    const a = after.get(rel)!;
    const b = before.get(rel);
    if (b && !changed(b, a)) continue;
    if (a.type === 'dir') {
      await ensureDir(rel);
      continue;
    }
    await ensureDir(parentOf(rel));
    const dst = path.join(layerDir, rel);
    const first = a.nlink > 1 ? links.get(a.ino) : undefined;
    if (first !== undefined) {
      await fs.link(first, dst);
      continue;
    }
    const pending: FsOp[] = [];
    if (await copyNode(path.join(root, rel), dst, a, pending)) await setMeta(dst, a);
    else if (pending.length) {
      nodes.push(...pending);
      nodeMeta.push([dst, a]);
    } else continue;
    if (a.nlink > 1) links.set(a.ino, dst);
  }
  const whiteouts: FsOp[] = [];
  for (const [rel] of before) {
    if (after.has(rel)) continue;
    const parent = parentOf(rel);
    // under a deleted dir, or under a dir now a non-dir: the parent's own entry covers it
    if (parent !== '' && after.get(parent)?.type !== 'dir') continue;
    await ensureDir(parent);
    whiteouts.push({ op: 'whiteout', path: path.join(path.resolve(layerDir), rel) });
  }
  await fsOps([...nodes, ...whiteouts]);
  for (const [dst, a] of nodeMeta) await setMeta(dst, a);
  // directory times last, deepest first: writing the children moved them
  for (const rel of dirs.sort().reverse()) {
    const e = after.get(rel)!;
    const t = Number(e.mtimeNs) / 1e9;
    await fs.lutimes(path.join(layerDir, rel), t, t);
  }
}

/** True when a layer dir holds a whiteout (such a layer cannot be read as a plain root). */
export async function hasWhiteouts(layerDir: string): Promise<boolean> {
  const walk = async (dir: string): Promise<boolean> => {
    for (const d of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, d.name);
      if (d.isCharacterDevice() && isWhiteoutDevice(await lstat(p))) return true;
      if (d.isDirectory() && (await walk(p))) return true;
    }
    return false;
  };
  return walk(layerDir);
}
