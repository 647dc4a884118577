/**
 * The overlay mounter. Every overlay mbuild makes, the RUN sandbox's root (inside `mbuild-helper run`)
 * and the builder's own (COPY, WORKDIR, read-only views, through `mbuild-helper mount` here), is
 * mounted by the same code, native/rootfs.c, with one layer limit: none where the kernel has the new
 * mount API's "lowerdir+" (Linux >= 6.8), else as many layers as fit in mount(2)'s page as short
 * links. The CLI runs builds inside a private mount namespace (see cli/namespace.ts), so a
 * mount made here can never outlive the process, even after SIGKILL.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { MbuildError } from '../util/errors.js';
import { encodeFields, runHelper } from '../util/native-helper.js';
import { tempSnapshotName } from '../store/layout.js';

const run = promisify(execFile);

/** Options that keep every change visible as plain files and whiteouts in the upperdir. */
export const OVERLAY_SAFE_OPTIONS = 'redirect_dir=off,index=off,metacopy=off';
/** The same in a user namespace (rootless): user.overlay.* xattrs; redirects are then never followed. */
export const OVERLAY_USERNS_OPTIONS = 'userxattr,redirect_dir=nofollow,index=off,metacopy=off';

export interface OverlaySpec {
  /** absolute paths, top-most first (a read-only view needs at least two) */
  lowerDirs: string[];
  upperDir?: string;
  workDir?: string;
  /** a private directory the mounter may use for the long-lowerdir fallback's links (made and removed here) */
  scratchParent: string;
}

export async function mountOverlay(target: string, spec: OverlaySpec): Promise<void> {
  const scratch = path.join(spec.scratchParent, tempSnapshotName('mount'));
  const fields = ['target', path.resolve(target), 'state', scratch];
  for (const d of spec.lowerDirs) fields.push('lower', path.resolve(d));
  if (spec.upperDir) fields.push('upper', path.resolve(spec.upperDir), 'work', path.resolve(spec.workDir!));
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
