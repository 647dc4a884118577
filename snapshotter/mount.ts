/**
 * The one overlay mounter, and the mount descriptions it reads. Every overlay mbuild makes, the RUN
 * sandbox's root (inside `mbuild-helper run`, for RUN and `mbuild run`) and the builder's own
 * (COPY, WORKDIR, read-only views, through `mbuild-helper mount` here), is mounted by the same code,
 * native/rootfs.c, with one layer limit: none where the kernel has the new mount API's "lowerdir+"
 * (Linux >= 6.8), else as many layers as fit in mount(2)'s page as short links (then the kernel's
 * own limit of 500 lower layers). The CLI runs builds inside a private mount namespace (see
 * cli/namespace.ts), so a mount made here can never outlive the process, even after SIGKILL.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { MbuildError } from '../util/errors.js';
import { isRootless } from '../util/rootless.js';
import { encodeFields, runHelper } from '../util/native-helper.js';
import { tempSnapshotName } from '../store/layout.js';
import type { Mount } from './snapshotter.js';

const run = promisify(execFile);

/** Options that keep every change visible as plain files and whiteouts in the upperdir. */
export const OVERLAY_SAFE_OPTIONS = 'redirect_dir=off,index=off,metacopy=off';
/** The same in a user namespace (rootless): user.overlay.* xattrs; redirects are then never followed. */
export const OVERLAY_USERNS_OPTIONS = 'userxattr,redirect_dir=nofollow,index=off,metacopy=off';

/** An overlay's directories, as a snapshotter knows them. */
export interface OverlayDirs {
  /** absolute paths, top-most first (a read-only overlay needs at least two) */
  lowerDirs: string[];
  upperDir?: string;
  workDir?: string;
}

// overlay's option parser takes '\' as an escape for ',' (every value) and ':' (lowerdir)
const escape = (p: string): string => p.replace(/[\\,:]/g, (c) => '\\' + c);
function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) cur += s[++i];
    else if (s[i] === sep) {
      out.push(cur);
      cur = '';
    } else cur += s[i];
  }
  out.push(cur);
  return out;
}

/** The description of an overlay mount. */
export function overlayMount(d: OverlayDirs): Mount {
  const options = [`lowerdir=${d.lowerDirs.map((l) => escape(path.resolve(l))).join(':')}`];
  if (d.upperDir) options.push(`upperdir=${escape(path.resolve(d.upperDir))}`, `workdir=${escape(path.resolve(d.workDir!))}`);
  options.push(...(isRootless() ? OVERLAY_USERNS_OPTIONS : OVERLAY_SAFE_OPTIONS).split(','));
  return { type: 'overlay', source: 'overlay', options };
}

/** The description of a directory bound as it is. */
export function bindMount(dir: string, readonly: boolean): Mount {
  return { type: 'bind', source: path.resolve(dir), options: ['rbind', readonly ? 'ro' : 'rw'] };
}

/** An overlay description's directories again (the mounter's input). */
export function overlayDirs(m: Mount): OverlayDirs {
  if (m.type !== 'overlay') throw new MbuildError('MBUILD_MOUNT', `not an overlay mount: ${m.type}`);
  const value = (k: string): string | undefined => {
    const o = m.options.find((x) => x.startsWith(k + '='));
    return o === undefined ? undefined : o.slice(k.length + 1);
  };
  const lower = value('lowerdir');
  if (!lower) throw new MbuildError('MBUILD_MOUNT', 'an overlay mount without lowerdir');
  const upper = value('upperdir');
  const work = value('workdir');
  return {
    lowerDirs: splitEscaped(lower, ':'),
    ...(upper !== undefined ? { upperDir: splitEscaped(upper, ',')[0], workDir: work !== undefined ? splitEscaped(work, ',')[0] : undefined } : {}),
  };
}

/** The one mount of a snapshot's description (snapshotters describe every snapshot as one mount). */
export function single(mounts: Mount[]): Mount {
  if (mounts.length !== 1) throw new MbuildError('MBUILD_MOUNT', `expected one mount, got ${mounts.length}`);
  return mounts[0]!;
}

/** Mount an overlay on `target` (scratchParent: a private dir for the long-lowerdir fallback's links). */
export async function mountOverlay(target: string, dirs: OverlayDirs, scratchParent: string): Promise<void> {
  const scratch = path.join(scratchParent, tempSnapshotName('mount'));
  const fields = ['target', path.resolve(target), 'state', scratch];
  for (const d of dirs.lowerDirs) fields.push('lower', path.resolve(d));
  if (dirs.upperDir) fields.push('upper', path.resolve(dirs.upperDir), 'work', path.resolve(dirs.workDir!));
  await fs.mkdir(scratch, { mode: 0o700 });
  try {
    const r = await runHelper(['mount'], encodeFields(fields));
    if (r.code !== 0) {
      const why = r.stderr.toString('utf8').trim() || (r.signal ?? `exit ${r.code}`);
      throw new MbuildError('MBUILD_MOUNT', `cannot mount the image filesystem: ${why}`);
    }
  } finally {
    // overlay resolved the links when it mounted: they are not needed any more
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

export async function unmount(target: string): Promise<void> {
  try {
    await run('umount', [target]);
  } catch {
    await run('umount', ['-l', target]).catch(() => undefined);
  }
}

/**
 * Mount a snapshot's description for the builder itself for the duration of fn. A bind is used as
 * its directory: the builder works as root in its private mount namespace, so binding it elsewhere
 * would change nothing but the cost.
 */
export async function withMounted<T>(mounts: Mount[], scratchParent: string, fn: (root: string) => Promise<T>): Promise<T> {
  const m = single(mounts);
  if (m.type === 'bind') return fn(m.source);
  const target = path.join(scratchParent, tempSnapshotName('mnt'));
  await fs.mkdir(target);
  try {
    await mountOverlay(target, overlayDirs(m), scratchParent);
    try {
      return await fn(target);
    } finally {
      await unmount(target);
    }
  } finally {
    await fs.rmdir(target).catch(() => undefined);
  }
}
