/**
 * overlayfs mounts made by the builder process itself (COPY, WORKDIR, reading /etc/passwd).
 * The CLI runs builds inside a private mount namespace (see builder/cli/namespace.ts), so a
 * mount made here can never outlive the process, even after SIGKILL.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { MbuildError } from '../util/errors.js';

const run = promisify(execFile);

/** Options that keep every change visible as plain files and whiteouts in the upperdir. */
export const OVERLAY_SAFE_OPTIONS = 'redirect_dir=off,index=off,metacopy=off';

export interface OverlaySpec {
  /** top-most first; relative to `cwd` keeps the option string short (4096-byte limit) */
  lowerDirs: string[];
  upperDir?: string;
  workDir?: string;
  cwd: string;
}

export async function mountOverlay(target: string, spec: OverlaySpec): Promise<void> {
  const opts = [`lowerdir=${spec.lowerDirs.join(':')}`];
  if (spec.upperDir) opts.push(`upperdir=${spec.upperDir}`, `workdir=${spec.workDir}`);
  opts.push(OVERLAY_SAFE_OPTIONS);
  const optString = opts.join(',');
  if (optString.length > 4000) {
    throw new MbuildError('MBUILD_TOO_MANY_LAYERS', `too many layers to mount (${spec.lowerDirs.length})`);
  }
  try {
    await run('mount', ['-t', 'overlay', 'overlay', '-o', optString, target], { cwd: spec.cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new MbuildError('MBUILD_MOUNT', `cannot mount the image filesystem: ${(e.stderr || e.message).trim()}`, { cause: err });
  }
}

export async function unmount(target: string): Promise<void> {
  try {
    await run('umount', [target]);
  } catch {
    await run('umount', ['-l', target]).catch(() => undefined);
  }
}

export function relativeTo(cwd: string, dirs: string[]): string[] {
  return dirs.map((d) => path.relative(cwd, d) || '.');
}
