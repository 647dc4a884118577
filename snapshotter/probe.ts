/**
 * Which snapshotter a store uses, decided once per process (snapshotter.ts): MBUILD_SNAPSHOTTER
 * forces one; otherwise a real overlay mount is tried, as containerd's overlay snapshotter checks
 * its support, since /proc/filesystems alone does not say whether this kernel and this filesystem
 * take an upperdir (a nested container, a filesystem overlay cannot use as upper).
 */
import { execFile } from 'node:child_process';
import { promises as fs, existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempSnapshotName } from '../store/layout.js';
import { MbuildError } from '../util/errors.js';
import { OVERLAY_SAFE_OPTIONS, OVERLAY_USERNS_OPTIONS, unmount } from './mount.js';
import { isRootless } from '../util/rootless.js';

const run = promisify(execFile);

export type SnapshotterKind = 'overlay' | 'copy';

/** MBUILD_SNAPSHOTTER: overlay, copy, or unset/empty (undefined: choose); anything else is an error. */
export function forcedSnapshotter(env: NodeJS.ProcessEnv = process.env): SnapshotterKind | undefined {
  const v = env.MBUILD_SNAPSHOTTER;
  if (v === 'overlay' || v === 'copy') return v;
  if (v !== undefined && v !== '') throw new MbuildError('MBUILD_USAGE', `MBUILD_SNAPSHOTTER=${v}: expected overlay or copy`);
  return undefined;
}

/**
 * Which snapshotter to use: MBUILD_SNAPSHOTTER=overlay|copy forces one; otherwise overlay when the
 * kernel lists it in /proc/filesystems and a probe mount (with an upper dir) works, else copy.
 */
export async function chooseSnapshotter(probeParent: string, env: NodeJS.ProcessEnv = process.env, filesystems = '/proc/filesystems'): Promise<{ kind: SnapshotterKind; why?: string }> {
  const forced = forcedSnapshotter(env);
  if (forced) return { kind: forced };
  const list = await fs.readFile(filesystems, 'utf8').catch(() => '');
  if (!/^\S*\toverlay$/m.test(list)) return { kind: 'copy', why: 'overlayfs is not in /proc/filesystems' };
  const probe = path.join(probeParent, tempSnapshotName('probe'));
  try {
    for (const d of ['l', 'u', 'w', 'm']) await fs.mkdir(path.join(probe, d), { recursive: true });
    // in a mount namespace of its own: the probe mount dies with `mount`, whatever happens to us
    const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
    const mountArgs = ['-t', 'overlay', 'overlay', '-o', `lowerdir=l,upperdir=u,workdir=w,${isRootless() ? OVERLAY_USERNS_OPTIONS : OVERLAY_SAFE_OPTIONS}`, 'm'];
    if (unshare) await run(unshare, ['--mount', '--propagation', 'private', 'mount', ...mountArgs], { cwd: probe });
    else {
      await run('mount', mountArgs, { cwd: probe });
      await unmount(path.join(probe, 'm'));
    }
    return { kind: 'overlay' };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { kind: 'copy', why: `an overlay mount failed (${(e.stderr || e.message).trim()})` };
  } finally {
    await fs.rm(probe, { recursive: true, force: true }).catch(() => undefined);
  }
}
