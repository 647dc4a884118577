/** A cross-process lock: a file created with O_EXCL holding the owner's pid; stale locks of dead pids are broken. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MbuildError } from '../util/errors.js';
import { pidAlive } from '../util/process.js';

export async function withLock<T>(lockFile: string, fn: () => Promise<T>, timeoutMs = 120_000): Promise<T> {
  await fs.mkdir(path.dirname(lockFile), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    try {
      const fh = await fs.open(lockFile, 'wx');
      try {
        await fh.writeFile(String(process.pid));
      } catch (err) {
        // e.g. ENOSPC: an empty lock would name no owner and never be broken
        await fh.close();
        await fs.rm(lockFile, { force: true });
        throw err;
      }
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt(await fs.readFile(lockFile, 'utf8').catch(() => ''), 10);
      if (Number.isFinite(owner) && owner > 0 && !pidAlive(owner)) {
        await fs.rm(lockFile, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new MbuildError('MBUILD_LOCKED', `the store is locked by process ${owner} (${lockFile})`);
      await sleep(delay);
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lockFile, { force: true });
  }
}

/**
 * A lock held for as long as the caller wants, with no deadline: a step that two builds share
 * (builder/executor/build.ts) is run by the one that takes it; the other waits, however long the
 * step runs, and finds the result in the cache. A holder that dies (kill -9) leaves a lock of a
 * dead pid, which the waiter breaks. `waited` says whether someone else held it first.
 */
export async function holdLock(lockFile: string, signal?: AbortSignal): Promise<{ waited: boolean; release: () => Promise<void> }> {
  await fs.mkdir(path.dirname(lockFile), { recursive: true });
  let waited = false;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    signal?.throwIfAborted();
    try {
      const fh = await fs.open(lockFile, 'wx');
      try {
        await fh.writeFile(String(process.pid));
      } finally {
        await fh.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt(await fs.readFile(lockFile, 'utf8').catch(() => ''), 10);
      // a dead owner, or a file left empty by one that died between creating and writing it
      const stale = Number.isFinite(owner) && owner > 0 ? !pidAlive(owner) : Date.now() - ((await fs.stat(lockFile).catch(() => undefined))?.mtimeMs ?? 0) > 10_000;
      if (stale) {
        await fs.rm(lockFile, { force: true });
        continue;
      }
      waited = true;
      await sleep(delay);
    }
  }
  let released = false;
  return {
    waited,
    release: async () => {
      if (released) return;
      released = true;
      await fs.rm(lockFile, { force: true });
    },
  };
}
