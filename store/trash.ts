/**
 * Deferred deletion of snapshot trees. Unlinking a layer of thousands of files takes a good part
 * of a second on a busy disk; a build that has finished should not make its user wait for it.
 * The tree is renamed to a trash name (store/layout.ts) in the snapshots dir (atomic, instant) and a detached
 * `rm -rf` deletes it after the CLI has exited. A deleter that was killed leaves the trash to the
 * next store open (store/recovery.ts), which hands it to a new deleter.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { trashName } from './layout.js';

/** Rename `dir` (inside `snapDir`) to a trash name; returns the new path, or undefined if it was gone. */
export async function moveToTrash(snapDir: string, dir: string): Promise<string | undefined> {
  const dest = path.join(snapDir, trashName());
  try {
    await fs.rename(dir, dest);
    return dest;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Delete trees in a detached process that may outlive this one. Never throws. */
export function deleteDetached(paths: string[]): void {
  if (paths.length === 0) return;
  try {
    const child = spawn('rm', ['-rf', '--', ...paths], { detached: true, stdio: 'ignore', env: { PATH: '/usr/bin:/bin' } });
    child.on('error', () => undefined); // no rm: the next store open sweeps the trash
    child.unref();
  } catch {
    /* same: left to the next sweep */
  }
}
