/**
 * Store faults (docs/security.md 25–27):
 *
 * - Half-finished work of killed runs is swept on every Store.open: temp files (`.tmp-NAME-PID-HEX`,
 *   see fsutil.tempSibling) next to blobs, images.json and cache entries; temp dirs under ROOT/tmp
 *   (`PREFIX-PID-XXXXXX`, Store.mkTemp); snapshots of builds and work in progress, and trash
 *   (store/layout.ts names them all); locks and use markers
 *   of dead pids. Only entries of processes that are gone are touched, and never a path with a
 *   mount on or below it (rm -r would reach into the mounted filesystem).
 * - Every process that opens the store leaves a use marker ROOT/run/PID (removed when it exits).
 *   `mbuild prune` holds ROOT/locks/gc.lock and refuses to run while another marker is live; a
 *   process that opens the store writes its marker first and then waits while a prune holds the
 *   lock. Both sides write before they look, so a prune and a build never overlap.
 * - ENOSPC/EDQUOT become one clear NoSpaceError.
 */
import { promises as fs, readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MbuildError, NoSpaceError } from '../util/errors.js';
import { pidAlive } from '../util/process.js';
import { deleteDetached } from './trash.js';
import { isTrashName, layout, parseSnapshotName } from './layout.js';

function errnoCause(err: unknown): NodeJS.ErrnoException | undefined {
  for (let e = err, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return e as NodeJS.ErrnoException;
  }
  return undefined;
}

/** `err` as a NoSpaceError when a full disk is underneath, else unchanged. */
export function asNoSpace(err: unknown, root: string, what?: string): unknown {
  if (err instanceof NoSpaceError) return err;
  const e = errnoCause(err);
  if (!e) return err;
  const where = e.path ? path.resolve(e.path) : undefined;
  if (where && where !== root && !where.startsWith(root + '/')) return new NoSpaceError(`no space left on device while writing ${where}`, err);
  return NoSpaceError.forStore(root, what, err);
}

/** `.tmp-<name>-<pid>-<8 hex>` (fsutil.tempSibling) */
const TEMP_FILE_RE = /^\.tmp-.*-(\d+)-[0-9a-f]{8}$/;
/** `<prefix>-<pid>-<6 chars>` (Store.mkTemp → mkdtemp) */
const TEMP_DIR_RE = /^[A-Za-z0-9._]+(?:-[A-Za-z0-9._]+)*?-(\d+)-[A-Za-z0-9]{6}$/;
/** A trash tree is swept only when its detached deleter had time to finish (it may outlive the pid in the name). */
const TRASH_GRACE_MS = 60_000;

export interface StaleEntry {
  path: string;
  /** the pid that made it (undefined: unknown owner) */
  pid?: number;
}

// synchronous: every command sweeps a handful of small directories on open, and a thread-pool
// round trip each costs more than the call itself
async function names(dir: string): Promise<string[]> {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Temp work of processes that are gone. With `all` (prune, when no other process uses the store),
 * every temp entry counts, whoever made it.
 */
export async function findStaleTemp(root: string, all = false, now = Date.now()): Promise<StaleEntry[]> {
  const out: StaleEntry[] = [];
  const consider = (p: string, pid: number | undefined) => {
    if (pid === process.pid) return;
    if (all || (pid !== undefined && !pidAlive(pid))) out.push({ path: p, pid });
  };
  for (const dir of [root, layout.blobs(root), layout.cache(root), layout.compressed(root)]) {
    for (const n of await names(dir)) {
      if (!n.startsWith('.tmp-')) continue;
      const m = TEMP_FILE_RE.exec(n);
      consider(path.join(dir, n), m ? Number(m[1]) : undefined);
    }
  }
  for (const n of await names(layout.tmp(root))) {
    const m = TEMP_DIR_RE.exec(n);
    consider(path.join(layout.tmp(root), n), m ? Number(m[1]) : undefined);
  }
  // build-step and in-progress snapshots, and trees waiting for deletion (store/trash.ts)
  for (const n of await names(layout.snapshots(root))) {
    const pid = parseSnapshotName(n)?.pid;
    if (pid === undefined) continue;
    const p = path.join(layout.snapshots(root), n);
    if (!all && isTrashName(n) && !(await olderThan(p, TRASH_GRACE_MS, 'ctimeMs', now))) continue;
    consider(p, pid);
  }
  for (const n of await names(layout.run(root))) {
    if (/^\d+$/.test(n) && !pidAlive(Number(n))) out.push({ path: path.join(layout.run(root), n), pid: Number(n) });
  }
  for (const n of await names(layout.locks(root))) {
    const p = path.join(layout.locks(root), n);
    const owner = await lockOwner(p);
    if (owner !== undefined ? !pidAlive(owner) : await olderThan(p, 60_000)) out.push({ path: p, pid: owner });
  }
  return out;
}

/** Last modified (or, with 'ctimeMs', last renamed) more than `ms` before `now`. */
async function olderThan(p: string, ms: number, time: 'mtimeMs' | 'ctimeMs' = 'mtimeMs', now = Date.now()): Promise<boolean> {
  const st = await fs.lstat(p).catch(() => null);
  return st !== null && now - st[time] > ms;
}

/** The pid in a lock: store/lock.ts writes it as the file's content, gc.lock as a symlink target. */
async function lockOwner(p: string): Promise<number | undefined> {
  const text = await fs.readlink(p).catch(() => fs.readFile(p, 'utf8').catch(() => ''));
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** Mount points (this process's view) at or below `p`: such a path must not be removed recursively. */
export async function mountsAt(p: string): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const dec = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (dec === p || dec.startsWith(p + '/')) out.push(dec);
  }
  return out;
}

/** Remove a file or directory tree, unless something is mounted on or below it. Returns false if skipped. */
export async function removeUnmounted(p: string): Promise<boolean> {
  const st = await fs.lstat(p).catch(() => null);
  if (!st) return true;
  if (st.isDirectory() && (await mountsAt(p)).length > 0) return false;
  await fs.rm(p, { recursive: true, force: true });
  return true;
}

export interface RecoveryReport {
  removed: string[];
  /** bytes of what was removed */
  bytes: number;
  /** left alone: something is mounted there */
  skipped: string[];
}

/**
 * Bytes of a file or tree: the sum of regular files' sizes (each hard-linked inode once), as
 * `docker system df` counts. Never follows symlinks.
 */
export async function treeBytes(p: string, seen = new Set<string>()): Promise<number> {
  const st = await fs.lstat(p).catch(() => null);
  if (!st) return 0;
  if (st.isFile()) {
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return 0;
    seen.add(key);
    return st.size;
  }
  if (!st.isDirectory()) return 0;
  let total = 0;
  for (const n of await names(p)) total += await treeBytes(path.join(p, n), seen);
  return total;
}


/** Sweep what killed runs left behind (see the file comment). */
export async function recoverStore(root: string, all = false, now = Date.now()): Promise<RecoveryReport> {
  const report: RecoveryReport = { removed: [], bytes: 0, skipped: [] };
  const trash: string[] = [];
  for (const e of await findStaleTemp(root, all, now)) {
    if (isTrashName(path.basename(e.path))) {
      trash.push(e.path); // already unmounted and renamed: a new deleter takes it, off the build's time
      continue;
    }
    try {
      const bytes = await treeBytes(e.path);
      if (await removeUnmounted(e.path)) {
        report.removed.push(e.path);
        report.bytes += bytes;
      } else report.skipped.push(e.path);
    } catch {
      report.skipped.push(e.path);
    }
  }
  deleteDetached(trash);
  report.removed.push(...trash);
  return report;
}

// ---------------------------------------------------------------- use markers and the gc lock

const registered = new Set<string>();

function gcLockPath(root: string): string {
  return path.join(layout.locks(root), 'gc.lock');
}

/** Leave ROOT/run/PID for as long as this process lives (best effort: a read-only or full store still opens). */
export async function registerUse(root: string): Promise<void> {
  const marker = path.join(layout.run(root), String(process.pid));
  if (registered.has(marker)) return;
  try {
    await fs.mkdir(path.dirname(marker), { recursive: true });
    await (await fs.open(marker, 'a')).close();
    registered.add(marker);
    if (registered.size === 1) {
      process.on('exit', () => {
        for (const m of registered) {
          try {
            unlinkSync(m);
          } catch {
            /* already gone */
          }
        }
      });
    }
  } catch {
    /* EROFS, ENOSPC...: the store is still usable for reading */
  }
}

/** Wait while a live prune holds the gc lock (called after registerUse). */
export async function waitForPrune(root: string, timeoutMs = 30 * 60_000): Promise<void> {
  const lock = gcLockPath(root);
  const deadline = Date.now() + timeoutMs;
  for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
    const owner = await lockOwner(lock);
    if (owner === undefined || owner === process.pid || !pidAlive(owner)) return;
    if (Date.now() > deadline) throw new MbuildError('MBUILD_LOCKED', `the store ${root} is being pruned by process ${owner}`);
    await sleep(delay);
  }
}

/** Other live processes that have the store open. */
export async function otherUsers(root: string): Promise<number[]> {
  const out: number[] = [];
  for (const n of await names(layout.run(root))) {
    const pid = Number(n);
    if (/^\d+$/.test(n) && pid !== process.pid && pidAlive(pid)) out.push(pid);
  }
  return out.sort((a, b) => a - b);
}

/**
 * Run fn as the only user of the store: take the gc lock (a symlink naming our pid: made
 * atomically, and needing no data block on a full disk), then make sure nobody else has it open.
 */
export async function withExclusiveStore<T>(root: string, fn: () => Promise<T>): Promise<T> {
  const lock = gcLockPath(root);
  await fs.mkdir(path.dirname(lock), { recursive: true });
  for (let tries = 0; ; tries++) {
    try {
      await fs.symlink(String(process.pid), lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = await lockOwner(lock);
      if (owner !== undefined && pidAlive(owner)) throw new MbuildError('MBUILD_STORE_BUSY', `the store ${root} is being pruned by process ${owner}`);
      if (owner === undefined && !(await olderThan(lock, 10_000)) && tries < 100) {
        await sleep(100);
        continue;
      }
      await fs.rm(lock, { force: true }); // its owner is gone
      if (tries > 100) throw err;
    }
  }
  try {
    const others = await otherUsers(root);
    if (others.length) {
      throw new MbuildError('MBUILD_STORE_BUSY', `the store ${root} is in use by process${others.length > 1 ? 'es' : ''} ${others.join(', ')}; run prune again when ${others.length > 1 ? 'they have' : 'it has'} finished`);
    }
    return await fn();
  } finally {
    await fs.rm(lock, { force: true });
  }
}
