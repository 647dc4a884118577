/**
 * OCI layer tar → overlay-format layer directory (applyLayerTar), and plain, safe untar for ADD
 * (extractArchive). Both share one rule set for hostile archives (docs/security.md 1–9):
 *
 * - Entry names are cleaned lexically: leading "/" and "." are dropped, ".." never climbs above the
 *   extraction directory ("../../etc/passwd" and "/etc/passwd" both become "etc/passwd").
 * - The parent of every entry is resolved component by component with lstat, following symlinks
 *   *inside the scope root* (an absolute link target starts again at the scope root, ".." stops at
 *   it); missing parents are created (0755, root). The final component is never followed: whatever
 *   is there is replaced (a directory over a directory only gets new metadata).
 * - Nothing is cached between entries: every decision is made on a fresh lstat.
 * - Hard links must name an existing non-directory inside the scope (resolved the same way, the
 *   final component not followed, so a link to a symlink links the symlink). A hard link entry
 *   never changes metadata, so no chmod/chown can reach through it.
 * - Device nodes and FIFOs are created through fsOps (one process per batch); until the batch runs
 *   an empty placeholder file holds their place.
 * - No xattrs are applied (in particular no trusted.* or security.capability from PAX records).
 * - Budgets on total entry size and entry count end the extraction with UnsafeArchiveError.
 * - Metadata calls and small files use the synchronous fs API: a few microseconds each, several
 *   times less than a thread-pool round trip; large files are written asynchronously.
 *
 * Layer mode (applyLayerTar) additionally turns `.wh.NAME` into a whiteout device and
 * `.wh..wh..opq` into the opaque xattr. Whiteouts only hide lower layers: an entry of the same
 * layer at the whited-out path wins (a directory then becomes opaque, since the lower one is gone).
 */
import {
  promises as fs,
  constants as C,
  chmodSync,
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  type BigIntStats,
} from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { extract as tarExtract } from 'tar-stream';
import { fsOps, type FsOp } from '../../util/native-helper.js';
import { MbuildError, UnsafeArchiveError } from '../../util/errors.js';

export const DEFAULT_MAX_BYTES = 64 * 1024 ** 3;
export const DEFAULT_MAX_ENTRIES = 5_000_000;
const MAX_SYMLINK_FOLLOWS = 255;
const FSOPS_BATCH = 4096;
/** Files up to this size are collected and written with one synchronous write. */
const SMALL_FILE = 128 * 1024;

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

export interface ApplyOptions {
  /** Budget for the sum of entry sizes (default 64 GiB). */
  maxBytes?: number;
  /** Budget for the number of entries (default 5,000,000). */
  maxEntries?: number;
}

export interface ExtractOptions extends ApplyOptions {
  /**
   * Scope for symlink resolution (e.g. the image root when destDir is a directory inside it):
   * symlinks met while resolving parents may lead anywhere inside `root`, never outside.
   * Default: destDir itself. Entry names can never leave destDir.
   */
  root?: string;
  /** Every entry gets this owner instead of the archive's (ADD --chown of an archive, as moby's ChownOpts). */
  owner?: { uid: number; gid: number };
}

export interface ApplyResult {
  entries: number;
  bytes: number;
}

/** The tar-stream header fields we use. */
interface TarHeader {
  name: string;
  type?: string | null;
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string | null;
  devmajor?: number;
  devminor?: number;
  pax?: unknown;
}

type Comps = string[];

const EMPTY = Buffer.alloc(0);

/**
 * Clean a tar entry name lexically into path components relative to the extraction directory:
 * empty and "." components are dropped, ".." removes the previous component and never climbs above
 * the start (containerd and Go's filepath.Clean on a rooted path behave the same way).
 */
export function cleanEntryPath(name: string): Comps {
  const out: Comps = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      out.pop();
      continue;
    }
    out.push(c);
  }
  return out;
}

/** What a whiteout-looking base name means (layer mode). */
export type WhiteoutKind = { kind: 'none' } | { kind: 'opaque' } | { kind: 'meta' } | { kind: 'whiteout'; victim: string };

/** Classify an entry's base name; throws UnsafeArchiveError for `.wh.`, `.wh..`, `.wh...`. */
export function classifyWhiteout(base: string, entryName = base): WhiteoutKind {
  if (base === OPAQUE_MARKER) return { kind: 'opaque' };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' }; // AUFS metadata (.wh..wh.plnk ...), ignored
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'none' };
  const victim = base.slice(WHITEOUT_PREFIX.length);
  if (victim === '' || victim === '.' || victim === '..' || victim.includes('/')) {
    throw new UnsafeArchiveError(`invalid whiteout ${JSON.stringify(entryName)} in layer tar`);
  }
  return { kind: 'whiteout', victim };
}

function lstatMaybe(p: string): BigIntStats | null {
  return lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null;
}

/** Read and discard an entry's data. */
async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    /* discard */
  }
}

function isPrefix(prefix: Comps, comps: Comps): boolean {
  if (prefix.length > comps.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== comps[i]) return false;
  return true;
}

function keyOf(comps: Comps): string {
  return comps.join('/');
}

function fmtBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

interface PendingNode {
  comps: Comps;
  type: 'c' | 'b' | 'p';
  perm: number;
  major: number;
  minor: number;
  uid: number;
  gid: number;
  atime: Date;
  mtime: Date;
}

interface DirRecord {
  comps: Comps;
  ino: bigint;
  atime: Date;
  mtime: Date;
}

interface Meta {
  mode: number;
  uid: number;
  gid: number;
  atime: Date;
  mtime: Date;
}

function paxRecord(h: TarHeader): Record<string, string> {
  return h.pax && typeof h.pax === 'object' ? (h.pax as Record<string, string>) : {};
}

function paxNumber(v: string | undefined): number | undefined {
  if (v === undefined || !/^-?\d+(\.\d+)?$/.test(v.trim())) return undefined;
  return Number(v);
}

function headerMeta(h: TarHeader): Meta {
  const pax = paxRecord(h);
  const uid = paxNumber(pax.uid) ?? h.uid ?? 0;
  const gid = paxNumber(pax.gid) ?? h.gid ?? 0;
  const paxMtime = paxNumber(pax.mtime);
  const mtime = paxMtime !== undefined ? new Date(paxMtime * 1000) : h.mtime && !isNaN(h.mtime.getTime()) ? h.mtime : new Date(0);
  const paxAtime = paxNumber(pax.atime);
  const atime = paxAtime !== undefined ? new Date(paxAtime * 1000) : mtime;
  if (!Number.isInteger(uid) || uid < 0 || uid > 0xfffffffe || !Number.isInteger(gid) || gid < 0 || gid > 0xfffffffe) {
    throw new UnsafeArchiveError(`entry ${JSON.stringify(h.name)} has an invalid owner ${uid}:${gid}`);
  }
  return { mode: (h.mode ?? 0) & 0o7777, uid, gid, atime, mtime };
}

class Unpacker {
  entries = 0;
  bytes = 0;
  private readonly pending = new Map<bigint, PendingNode>();
  private readonly whiteouts = new Map<string, Comps>();
  private readonly opaques = new Map<string, Comps>();
  private readonly dirs = new Map<string, DirRecord>();
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly what: string;
  private readonly owner?: { uid: number; gid: number };

  constructor(
    /** real path of the scope root */
    private readonly root: string,
    /** the extraction directory, as components below root ([] = root itself) */
    private readonly baseComps: Comps,
    private readonly layerMode: boolean,
    opts: ExtractOptions,
  ) {
    this.owner = opts.owner;
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.what = layerMode ? 'layer tar' : 'archive';
  }

  private abs(comps: Comps): string {
    return comps.length ? path.join(this.root, ...comps) : this.root;
  }

  private show(comps: Comps): string {
    return JSON.stringify('/' + comps.join('/'));
  }

  private join(dir: string, name: string): string {
    return dir === '/' ? `/${name}` : `${dir}/${name}`;
  }

  /**
   * Resolve directory components below the extraction directory, following symlinks inside the
   * scope root (an absolute target restarts at the scope root, ".." stops there). Missing
   * directories are created when `create`, else null is returned. Every step is a fresh lstat.
   */
  private resolveDir(todo: Comps, create: boolean, entryName: string): Comps | null {
    const cur: Comps = [];
    const paths: string[] = [this.root]; // paths[k]: absolute path of cur[0..k)
    const stack: Comps = [...todo].reverse();
    for (let k = this.baseComps.length - 1; k >= 0; k--) stack.push(this.baseComps[k]!);
    let follows = 0;
    while (stack.length) {
      const c = stack.pop()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (cur.length) {
          cur.pop(); // never above the scope root
          paths.pop();
        }
        continue;
      }
      const p = this.join(paths[paths.length - 1]!, c);
      const st = lstatMaybe(p);
      if (!st) {
        if (!create) return null;
        mkdirSync(p, { mode: 0o755 });
        chmodSync(p, 0o755); // whatever the umask
      } else if (st.isSymbolicLink()) {
        if (++follows > MAX_SYMLINK_FOLLOWS) {
          throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(entryName)}: too many levels of symbolic links`);
        }
        const target = readlinkSync(p);
        if (target.startsWith('/')) {
          cur.length = 0;
          paths.length = 1;
        }
        const parts = target.split('/');
        for (let k = parts.length - 1; k >= 0; k--) stack.push(parts[k]!);
        continue;
      } else if (!st.isDirectory()) {
        throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(entryName)}: ${this.show([...cur, c])} is not a directory`);
      }
      cur.push(c);
      paths.push(p);
    }
    return cur;
  }

  /** Every component of `comps` (below root) is a real directory, no symlink. */
  private isRealDir(comps: Comps): boolean {
    let p = this.root;
    for (const c of comps) {
      p = this.join(p, c);
      const st = lstatMaybe(p);
      if (!st || !st.isDirectory()) return false;
    }
    return true;
  }

  /**
   * Remove what a later entry replaces. Device placeholders removed with it are forgotten, so a
   * reused inode number can never be mistaken for one. (Directory time records need no care:
   * finish() checks the inode, and a stale time on a reused inode would only be a time.)
   */
  private async remove(comps: Comps, st: BigIntStats): Promise<void> {
    const p = this.abs(comps);
    if (st.isDirectory()) {
      if (this.pending.size > 1024) await this.flushNodes(); // keeps the scan below cheap
      for (const [ino, n] of this.pending) if (isPrefix(comps, n.comps)) this.pending.delete(ino);
      rmSync(p, { recursive: true, force: true });
    } else {
      if (this.pending.get(st.ino) && keyOf(this.pending.get(st.ino)!.comps) === keyOf(comps)) this.pending.delete(st.ino);
      unlinkSync(p);
    }
  }

  /** Count the entry against the budgets; returns the size of its data in the tar. */
  private checkBudget(h: TarHeader): number {
    this.entries++;
    if (this.entries > this.maxEntries) {
      throw new UnsafeArchiveError(`${this.what} has more than ${this.maxEntries} entries (the inode budget); refusing to extract it`);
    }
    // A directory's size field carries no data (tar-stream and Go's archive/tar both ignore it).
    const size = h.type === 'directory' ? 0 : (h.size ?? 0);
    if (!Number.isSafeInteger(size) || size < 0) throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(h.name)} has an invalid size`);
    this.bytes += size;
    if (this.bytes > this.maxBytes) {
      throw new UnsafeArchiveError(
        `${this.what} is larger than the size budget of ${fmtBytes(this.maxBytes)} (entry ${JSON.stringify(h.name)} of ${fmtBytes(size)} brings it to ${fmtBytes(this.bytes)}); refusing to extract it`,
      );
    }
    return size;
  }

  async entry(h: TarHeader, data: Readable): Promise<void> {
    const size = this.checkBudget(h);
    const name = h.name ?? '';
    if (name.includes('\0') || (h.linkname ?? '').includes('\0')) throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(name)}: NUL byte in a name`);
    const comps = cleanEntryPath(name);
    const type = h.type ?? 'unknown'; // tar-stream gives null for types it does not know (GNU sparse 'S', 'V', ...)
    const isFile = type === 'file' || type === 'contiguous-file';
    if (!isFile && size > 0) await drain(data); // only regular files have content we keep

    if (comps.length === 0) {
      // The root itself ("./", "/"): never changes the extraction directory's metadata.
      if (isFile && size > 0) await drain(data);
      return;
    }
    const base = comps[comps.length - 1]!;
    const parentComps = comps.slice(0, -1);

    if (this.layerMode) {
      for (const c of parentComps) {
        if (c.startsWith(WHITEOUT_PREFIX)) throw new UnsafeArchiveError(`invalid whiteout ${JSON.stringify(name)} in layer tar: a whiteout name used as a directory`);
      }
      const wh = classifyWhiteout(base, name);
      if (wh.kind !== 'none') {
        if (isFile && size > 0) await drain(data);
        if (wh.kind === 'meta') return;
        const parent = (this.resolveDir(parentComps, true, name))!;
        if (wh.kind === 'opaque') this.opaques.set(keyOf(parent), parent);
        else {
          const victim = [...parent, wh.victim];
          this.whiteouts.set(keyOf(victim), victim);
        }
        return;
      }
    }

    const parent = (this.resolveDir(parentComps, true, name))!;
    const target = [...parent, base];
    const p = this.abs(target);

    if (type === 'link') return this.hardlink(h, target);

    const meta = headerMeta(h);
    if (this.owner) Object.assign(meta, this.owner);
    const existing = lstatMaybe(p);
    switch (type) {
      case 'directory': {
        if (!existing || !existing.isDirectory()) {
          if (existing) await this.remove(target, existing);
          mkdirSync(p, { mode: 0o700 });
        }
        lchownSync(p, meta.uid, meta.gid);
        chmodSync(p, meta.mode); // a directory (checked above), not a symlink
        const st = lstatSync(p, { bigint: true });
        this.dirs.set(keyOf(target), { comps: target, ino: st.ino, atime: meta.atime, mtime: meta.mtime });
        return;
      }
      case 'file':
      case 'contiguous-file': {
        if (existing) await this.remove(target, existing);
        await this.writeFile(p, data, meta, size);
        return;
      }
      case 'symlink': {
        const linkname = h.linkname ?? '';
        if (linkname === '') throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(name)}: symlink with an empty target`);
        if (existing) await this.remove(target, existing);
        symlinkSync(linkname, p);
        lchownSync(p, meta.uid, meta.gid);
        lutimesSync(p, meta.atime, meta.mtime); // never chmod a symlink
        return;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        if (existing) await this.remove(target, existing);
        const fd = openSync(p, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
        let ino: bigint;
        try {
          ino = fstatSync(fd, { bigint: true }).ino;
        } finally {
          closeSync(fd);
        }
        this.pending.set(ino, {
          comps: target,
          type: type === 'fifo' ? 'p' : type === 'character-device' ? 'c' : 'b',
          perm: meta.mode,
          major: h.devmajor ?? 0,
          minor: h.devminor ?? 0,
          uid: meta.uid,
          gid: meta.gid,
          atime: meta.atime,
          mtime: meta.mtime,
        });
        return;
      }
      default:
        throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(name)}: unsupported tar entry type ${JSON.stringify(type)}`);
    }
  }

  private async writeFile(p: string, data: Readable, meta: Meta, size: number): Promise<void> {
    if (size <= SMALL_FILE) {
      // Collected (at most SMALL_FILE bytes: tar-stream delivers exactly the declared size).
      let buf: Buffer = EMPTY;
      if (size > 0) {
        const chunks: Buffer[] = [];
        for await (const chunk of data) chunks.push(chunk as Buffer);
        buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      }
      const fd = openSync(p, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
      try {
        let off = 0;
        while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
        fchownSync(fd, meta.uid, meta.gid);
        fchmodSync(fd, meta.mode); // after chown, which clears setuid/setgid
        futimesSync(fd, meta.atime, meta.mtime);
      } finally {
        closeSync(fd);
      }
      return;
    }
    const fh = await fs.open(p, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of data) {
        const buf = chunk as Buffer;
        let off = 0;
        while (off < buf.length) {
          const { bytesWritten } = await fh.write(buf, off, buf.length - off);
          off += bytesWritten;
        }
      }
      await fh.chown(meta.uid, meta.gid);
      await fh.chmod(meta.mode); // after chown, which clears setuid/setgid
      await fh.utimes(meta.atime, meta.mtime);
    } finally {
      await fh.close();
    }
  }

  private async hardlink(h: TarHeader, target: Comps): Promise<void> {
    const name = h.name;
    const linkname = h.linkname ?? '';
    const notFound = () =>
      new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(name)}: hard link target ${JSON.stringify(linkname)} does not exist in the ${this.layerMode ? 'layer' : 'archive'}`);
    const lcomps = cleanEntryPath(linkname);
    if (lcomps.length === 0) throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(name)}: hard link to the root directory`);
    const lparent = this.resolveDir(lcomps.slice(0, -1), false, name);
    if (!lparent) throw notFound();
    const ltarget = [...lparent, lcomps[lcomps.length - 1]!];
    let lst = lstatMaybe(this.abs(ltarget));
    if (!lst) throw notFound();
    if (lst.isDirectory()) throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(name)}: hard link to a directory ${JSON.stringify(linkname)}`);
    if (keyOf(ltarget) === keyOf(target)) return; // a link to itself: already there
    if (isPrefix(target, ltarget)) throw new UnsafeArchiveError(`${this.what} entry ${JSON.stringify(name)}: hard link would replace its own target ${JSON.stringify(linkname)}`);
    if (this.pending.has(lst.ino)) {
      await this.flushNodes(); // the device node must exist before it can be linked
      lst = lstatMaybe(this.abs(ltarget));
      if (!lst) throw notFound();
    }
    const existing = lstatMaybe(this.abs(target));
    if (existing) await this.remove(target, existing);
    // link(2) does not follow a symlink target: a link to a symlink links the symlink itself.
    // No metadata is applied: the inode keeps that of the entry it was made from.
    linkSync(this.abs(ltarget), this.abs(target));
  }

  private async runOps(ops: FsOp[]): Promise<void> {
    for (let i = 0; i < ops.length; i += FSOPS_BATCH) await fsOps(ops.slice(i, i + FSOPS_BATCH));
  }

  /** Device/FIFO placeholders → real nodes (unlinked here, created by the returned ops). */
  private async prepareNodes(): Promise<{ ops: FsOp[]; made: PendingNode[] }> {
    const ops: FsOp[] = [];
    const made: PendingNode[] = [];
    for (const [ino, n] of this.pending) {
      if (!(this.isRealDir(n.comps.slice(0, -1)))) continue;
      const p = this.abs(n.comps);
      const st = lstatMaybe(p);
      if (!st || st.ino !== ino || !st.isFile()) continue; // replaced by a later entry
      unlinkSync(p);
      ops.push({ op: 'mknod', path: p, type: n.type, mode: n.perm, major: n.major, minor: n.minor });
      made.push(n);
    }
    this.pending.clear();
    return { ops, made };
  }

  private async finishNodes(made: PendingNode[]): Promise<void> {
    for (const n of made) {
      const p = this.abs(n.comps);
      const st = lstatMaybe(p);
      if (!st || st.isSymbolicLink() || st.isDirectory()) continue;
      lchownSync(p, n.uid, n.gid);
      chmodSync(p, n.perm); // a device node or FIFO just made, not a symlink
      lutimesSync(p, n.atime, n.mtime);
    }
  }

  async flushNodes(): Promise<void> {
    const { ops, made } = await this.prepareNodes();
    await this.runOps(ops);
    await this.finishNodes(made);
  }

  /** After the last entry: whiteouts, opaque dirs, device nodes, then directory times. */
  async finish(): Promise<void> {
    const ops: FsOp[] = [];
    const opaque = new Map(this.opaques);
    for (const victim of this.whiteouts.values()) {
      if (!(this.isRealDir(victim.slice(0, -1)))) continue; // parent replaced by a non-directory
      const st = lstatMaybe(this.abs(victim));
      if (!st) ops.push({ op: 'whiteout', path: this.abs(victim) });
      else if (st.isDirectory()) opaque.set(keyOf(victim), victim); // this layer's dir replaces the lower one
      // otherwise this layer has its own entry there, which hides the lower one already
    }
    for (const dir of opaque.values()) {
      if (this.isRealDir(dir)) ops.push({ op: 'opaque', path: this.abs(dir) });
    }
    const nodes = await this.prepareNodes();
    await this.runOps([...nodes.ops, ...ops]);
    await this.finishNodes(nodes.made);
    for (const d of this.dirs.values()) {
      if (!(this.isRealDir(d.comps))) continue;
      const p = this.abs(d.comps);
      const st = lstatSync(p, { bigint: true });
      if (st.ino !== d.ino) continue;
      lutimesSync(p, d.atime, d.mtime);
    }
  }
}

/** Feed a Node readable into tar-stream's extractor with backpressure. */
async function feed(input: Readable, ex: ReturnType<typeof tarExtract>): Promise<void> {
  try {
    for await (const chunk of input) {
      if (!ex.write(chunk as Buffer)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            ex.off('drain', done);
            ex.off('close', done);
            resolve();
          };
          ex.on('drain', done);
          ex.on('close', done);
        });
        if (ex.destroyed) return;
      }
    }
    ex.end(undefined);
  } catch (err) {
    ex.destroy(err as Error);
  }
}

async function runUnpack(input: Readable, u: Unpacker, code: 'MBUILD_LAYER_APPLY' | 'MBUILD_EXTRACT', what: string): Promise<ApplyResult> {
  // allowUnknownFormat: old v7 headers (no ustar magic) are valid tar, as in Go's archive/tar.
  // tar-stream is loaded by the first tar read (layer-tar.ts says why)
  const { extract } = await import('./tar-stream.js');
  const ex = extract({ allowUnknownFormat: true } as Parameters<typeof tarExtract>[0]);
  const feeding = feed(input, ex);
  let current = '';
  try {
    for await (const entry of ex) {
      current = entry.header.name;
      await u.entry(entry.header as TarHeader, entry as unknown as Readable);
    }
    await feeding;
    current = '';
    await u.finish();
  } catch (err) {
    const e =
      err instanceof MbuildError
        ? err
        : new MbuildError(code, `${what}${current ? ` (entry ${JSON.stringify(current)})` : ''}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    ex.destroy();
    input.destroy(e);
    await feeding.catch(() => undefined);
    throw e;
  }
  return { entries: u.entries, bytes: u.bytes };
}

/**
 * Unpack an (already decompressed) OCI layer tar into an empty overlay-format layer directory.
 * The directory is created when missing and must be empty.
 */
export async function applyLayerTar(input: Readable, layerDir: string, opts: ApplyOptions = {}): Promise<ApplyResult> {
  await fs.mkdir(layerDir, { recursive: true, mode: 0o755 });
  const root = await fs.realpath(layerDir);
  if ((await fs.readdir(root)).length !== 0) {
    input.destroy();
    throw new MbuildError('MBUILD_LAYER_APPLY', `cannot apply layer: ${layerDir} is not empty`);
  }
  return runUnpack(input, new Unpacker(root, [], true, opts), 'MBUILD_LAYER_APPLY', 'cannot apply layer tar');
}

/**
 * Extract a (decompressed) tar archive into an existing directory, for ADD of a local archive:
 * like Docker's untar, whiteout names are ordinary files, owners and modes come from the archive,
 * the archive's root entry does not change destDir, and nothing is written outside destDir
 * (or outside opts.root, when symlinks are resolved in a wider scope).
 */
export async function extractArchive(input: Readable, destDir: string, opts: ExtractOptions = {}): Promise<ApplyResult> {
  const dest = await fs.realpath(destDir);
  const root = opts.root !== undefined ? await fs.realpath(opts.root) : dest;
  const rel = path.relative(root, dest);
  if (rel === '..' || rel.startsWith('..' + path.sep) || path.isAbsolute(rel)) {
    input.destroy();
    throw new MbuildError('MBUILD_EXTRACT', `cannot extract archive: ${destDir} is not inside ${opts.root}`);
  }
  const st = await fs.lstat(dest);
  if (!st.isDirectory()) {
    input.destroy();
    throw new MbuildError('MBUILD_EXTRACT', `cannot extract archive: ${destDir} is not a directory`);
  }
  const baseComps = rel === '' ? [] : rel.split(path.sep);
  return runUnpack(input, new Unpacker(root, baseComps, false, opts), 'MBUILD_EXTRACT', 'cannot extract archive');
}
