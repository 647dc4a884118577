/**
 * A COPY written straight to a layer tar, without creating its files.
 *
 * When no later step of the build reads a COPY's layer (it is the last filesystem change of its
 * stage, and no other stage builds on that stage), the files would only be created to be read
 * back into the layer tar. This plans the change instead — against a read-only view of the layers
 * below — and streams the sources into the tar. If something later does want the files (an
 * export of the root filesystem, `mbuild run`), the snapshotter unpacks the blob then.
 *
 * The plan covers the common case only. Anything else — a symlink or non-directory on the way to
 * the destination, a file where a directory goes or the reverse, a replaced hard link — throws
 * CopyNeedsFiles, and the caller copies for real (copy.ts), which gives the same layer or the
 * exact error. The resulting tree is the one copy.ts makes in an overlay upper dir: the same
 * entries, owners, modes and file times; directories this COPY creates or adds to carry the
 * time of the build, as in the overlay.
 */
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import path from 'node:path';
import type { TarEntry } from '../../snapshotter/diff/layer-tar.js';
import type { Chmod } from './chmod.js';
import type { IgnoreMatcher } from '../context/dockerignore.js';
import { walkSourceSync, type SourceEntry } from '../context/sources.js';

/** Signal to fall back to copying files: not an error the user sees. */
export class CopyNeedsFiles extends Error {
  constructor(why: string) {
    super(`COPY needs real files: ${why}`);
  }
}

export interface CopyTarPlan {
  dest: string; // absolute image path
  destIsDir: boolean;
  owner?: { uid: number; gid: number };
  chmod?: Chmod;
  /** COPY --from without --chown: entries keep the source's owner */
  keepOwner?: boolean;
}

interface Planned extends TarEntry {
  /** makes a new name in its directory (not a directory below that only gets new metadata) */
  creates: boolean;
  /** files of one source inode within one copied tree: they stay hard links of each other */
  linkGroup?: string;
}

const byteKey = (p: string) => p.split('/').map((c) => Buffer.from(c, 'utf8'));

/** Tar order: parents before children, siblings bytewise by name (as layer-tar.ts writes a directory). */
function tarOrder(a: string, b: string): number {
  const x = byteKey(a);
  const y = byteKey(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const c = Buffer.compare(x[i]!, y[i]!);
    if (c !== 0) return c;
  }
  return x.length - y.length;
}

function seconds(st: Stats): number {
  return Math.floor(st.mtimeMs / 1000);
}

export class CopyTarPlanner {
  private readonly planned = new Map<string, Planned>();
  private readonly now = Math.floor(Date.now() / 1000);
  private readonly uid: number;
  private readonly gid: number;

  /** `lowerRoot`: the merged layers below, read-only. */
  constructor(
    private readonly lowerRoot: string,
    private readonly plan: CopyTarPlan,
  ) {
    this.uid = plan.owner?.uid ?? 0;
    this.gid = plan.owner?.gid ?? 0;
  }

  private mode(st: Stats): number {
    return this.plan.chmod ? this.plan.chmod.apply(st.mode & 0o7777, st.isDirectory()) : st.mode & 0o7777;
  }

  private lower(rel: string): Stats | undefined {
    return lstatSync(path.join(this.lowerRoot, rel), { throwIfNoEntry: false });
  }

  /** What is at an image path (no leading slash) after what is planned so far: 'dir', 'other' or undefined. */
  private kindAt(rel: string): 'dir' | 'other' | undefined {
    const p = this.planned.get(rel);
    if (p) return p.type === 'directory' ? 'dir' : 'other';
    const st = this.lower(rel);
    if (!st) return undefined;
    return st.isDirectory() ? 'dir' : 'other';
  }

  /**
   * The directories of an image path, made where missing (0755, --chown's owner; the last one with
   * `top`'s mode when given). Every existing component must be a real directory.
   */
  private ensureDir(imagePath: string, top?: { mode: number }): string {
    const parts = imagePath.split('/').filter(Boolean);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      cur = cur ? `${cur}/${parts[i]}` : parts[i]!;
      if (parts[i] === '..' || parts[i] === '.') throw new CopyNeedsFiles(`path ${imagePath}`);
      const kind = this.kindAt(cur);
      if (kind === 'dir') continue;
      if (kind === 'other') throw new CopyNeedsFiles(`${cur} is not a directory`);
      const isTop = i === parts.length - 1 && top;
      this.put(cur, { name: cur, type: 'directory', mode: isTop ? top.mode : (this.plan.chmod?.octal ?? 0o755), uid: this.uid, gid: this.gid, sec: this.now, creates: true });
    }
    return cur;
  }

  private put(rel: string, e: Planned): void {
    this.planned.set(rel, e);
  }

  /** Plan one resolved source (a directory's contents, or one file or link). */
  add(srcRoot: string, e: SourceEntry, srcStat: Stats, ignore: IgnoreMatcher | undefined): void {
    if (e.isDir) {
      const destRel = this.ensureDir(this.plan.dest, { mode: this.mode(srcStat) });
      const group = `${e.hostPath}:`;
      for (const item of walkSourceSync(srcRoot, e, ignore)) {
        this.entry(destRel ? `${destRel}/${item.rel}` : item.rel, item.hostPath, item.stat, group);
      }
      return;
    }
    const base = path.posix.basename(e.rel.replace(/\/+$/, '')) || path.posix.basename(e.hostPath);
    let target = this.plan.dest;
    if (this.plan.destIsDir) target = path.posix.join(target, base);
    else {
      const destRel = target.replace(/^\/+/, '');
      // the destination names a directory already there (a symlink to one is left to copy.ts)
      if (destRel !== '' && this.kindAt(destRel) === 'dir') target = path.posix.join(target, base);
      else if (destRel !== '' && this.lower(destRel)?.isSymbolicLink()) throw new CopyNeedsFiles(`${target} is a symlink`);
    }
    const parent = this.ensureDir(path.posix.dirname(target));
    const name = path.posix.basename(target);
    this.entry(parent ? `${parent}/${name}` : name, e.hostPath, srcStat, undefined);
  }

  /** One entry of a copied tree, checked against what is there (planned, or in the layers below). */
  private entry(rel: string, src: string, st: Stats, group: string | undefined): void {
    const isDir = st.isDirectory();
    const before = this.planned.get(rel);
    const there = this.kindAt(rel);
    if (there === 'dir' && !isDir) throw new CopyNeedsFiles(`${rel} is a directory`);
    if (there === 'other' && isDir) throw new CopyNeedsFiles(`${rel} is not a directory`);
    if (before?.linkGroup) throw new CopyNeedsFiles(`${rel} replaces a hard link`);
    // a directory below that only gets new metadata is copied up without touching its parent
    const owner = this.plan.keepOwner && !this.plan.owner ? { uid: st.uid, gid: st.gid } : { uid: this.uid, gid: this.gid };
    const common = { name: rel, ...owner, sec: seconds(st), creates: !(isDir && there === 'dir' && !before) };
    if (isDir) {
      this.put(rel, { ...common, type: 'directory', mode: this.mode(st) });
    } else if (st.isSymbolicLink()) {
      this.put(rel, { ...common, type: 'symlink', mode: st.mode & 0o7777, linkname: readlinkSync(src) });
    } else if (st.isFile()) {
      const ino = BigInt(st.ino) <= BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(st.ino) : lstatSync(src, { bigint: true }).ino;
      this.put(rel, {
        ...common,
        type: 'file',
        mode: this.mode(st),
        source: { path: src, size: st.size, ino, dev: BigInt(st.dev) },
        linkGroup: group !== undefined && st.nlink > 1 ? `${group}${st.dev}:${st.ino}` : undefined,
      });
    } else if (st.isSocket()) {
      throw new CopyNeedsFiles(`${rel} is a socket`); // copy.ts writes it as an empty file
    } else if (there === 'other') {
      // copy.ts removes what is there and then skips a socket, fifo or device: a deletion
      throw new CopyNeedsFiles(`${rel} would be removed`);
    }
    // sockets, fifos and devices in a context are not copied
  }

  /**
   * The layer's entries in tar order: what this COPY made, and the directories of the layers
   * below that it adds to (their own owner and mode; the build's time where an entry was made).
   */
  entries(): TarEntry[] {
    const made = new Set<string>();
    const ancestors = new Map<string, Planned>();
    for (const [rel, e] of this.planned) {
      const parent = path.posix.dirname(rel);
      if (parent !== '.' && e.creates) made.add(parent);
      for (let p = parent; p !== '.'; p = path.posix.dirname(p)) {
        if (this.planned.has(p) || ancestors.has(p)) continue;
        const st = this.lower(p);
        if (!st?.isDirectory()) throw new CopyNeedsFiles(`${p} changed`);
        ancestors.set(p, { name: p, type: 'directory', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, sec: seconds(st), creates: false });
      }
    }
    // a directory of the layers below where a name was made has the build's time, as in the overlay
    for (const [p, a] of ancestors) if (made.has(p)) a.sec = this.now;
    const all = [...this.planned.values(), ...ancestors.values()].sort((a, b) => tarOrder(a.name, b.name));
    // hard links: the first name in tar order carries the content, the others link to it
    const firsts = new Map<string, string>();
    const out: TarEntry[] = [];
    for (const { creates: _c, linkGroup, ...e } of all) {
      if (linkGroup) {
        const first = firsts.get(linkGroup);
        if (first !== undefined) {
          out.push({ name: e.name, type: 'link', mode: e.mode, uid: e.uid, gid: e.gid, sec: e.sec, linkname: first });
          continue;
        }
        firsts.set(linkGroup, e.name);
      }
      out.push(e);
    }
    return out;
  }
}
