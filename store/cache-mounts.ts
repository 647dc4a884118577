/**
 * Directories of `RUN --mount=type=cache`: ROOT/cache-mounts/<key>/, one per cache id (and initial
 * owner/mode, and `from=` seed, as BuildKit keys its cache refs). They survive builds, never become
 * a layer, are counted by `system df` and removed by `prune --all` / `prune --filter type=exec.cachemount`.
 *
 *   <key>/meta.json       {id, created, lastUsed}
 *   <key>/data/           the shared instance (sharing=shared and locked)
 *   <key>/private-N/      extra instances made when sharing=private found the others in use
 *   <key>/<inst>.users/   one marker per step using an instance (pid-named: a dead user's marker is stale)
 *   <key>/data.lock       held by a sharing=locked step (store/lock.ts: pid file, across processes)
 *
 * A new cache dir is made under a temp name and renamed into place under <key>/create.lock, so two
 * builds creating the same cache at once end with one complete dir that both use.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { sha256 } from './digest.js';
import { withLock } from './lock.js';
import { layout } from './layout.js';
import { pidAlive } from '../util/process.js';
import { treeBytes } from './recovery.js';
import { MbuildError } from '../util/errors.js';

export type Sharing = 'shared' | 'private' | 'locked';

export interface CacheMountRequest {
  id: string;
  sharing: Sharing;
  /** of the cache's root directory when it is created (BuildKit: 0755, 0, 0) */
  mode: number;
  uid: number;
  gid: number;
  /** `from=`: the cache starts as a copy of this directory; `seedKey` names its content */
  seed?: { dir: string; key: string };
}

export interface CacheMountInfo {
  key: string;
  id: string;
  bytes: number;
  lastUsed?: string;
}

const LOCK_WAIT_MS = 24 * 3600 * 1000;

/** The directory name of a cache: what BuildKit's cache ref depends on, hashed. */
export function cacheMountKey(req: Pick<CacheMountRequest, 'id' | 'mode' | 'uid' | 'gid' | 'seed'>): string {
  const owner = `${req.mode.toString(8)}:${req.uid}:${req.gid}`;
  return sha256(`${req.id}\0${owner}\0${req.seed?.key ?? ''}`).slice(7, 39);
}

export class CacheMounts {
  readonly dir: string;
  constructor(storeRoot: string) {
    this.dir = layout.cacheMounts(storeRoot);
  }

  /** Runs fn with the cache's directory, honouring the sharing mode for the whole of fn. */
  async use<T>(req: CacheMountRequest, fn: (dir: string) => Promise<T>): Promise<T> {
    const base = path.join(this.dir, cacheMountKey(req));
    await this.ensureInstance(base, 'data', req);
    await this.touch(base, req.id);
    if (req.sharing === 'locked') return withLock(path.join(base, 'data.lock'), () => this.asUser(base, 'data', fn), LOCK_WAIT_MS);
    if (req.sharing === 'shared') return this.asUser(base, 'data', fn);
    // private: the first instance nobody uses, or a new one
    for (let n = 0; ; n++) {
      const inst = n === 0 ? 'data' : `private-${n}`;
      if (n > 0) await this.ensureInstance(base, inst, req);
      const claim = await this.claim(base, inst);
      if (!claim) continue;
      try {
        return await this.asUser(base, inst, fn, claim);
      } finally {
        await fs.rm(claim, { force: true });
      }
    }
  }

  private async ensureInstance(base: string, inst: string, req: CacheMountRequest): Promise<void> {
    const final = path.join(base, inst);
    try {
      await fs.access(final);
      return;
    } catch {
      // made below
    }
    await fs.mkdir(base, { recursive: true, mode: 0o700 });
    // one creator at a time: rename(2) would replace an empty dir another build already uses
    await withLock(path.join(base, 'create.lock'), async () => {
      if (await fs.access(final).then(() => true, () => false)) return;
      const tmp = path.join(base, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
      try {
        if (req.seed) await copyTree(req.seed.dir, tmp);
        else await fs.mkdir(tmp);
        await fs.chown(tmp, req.uid, req.gid);
        await fs.chmod(tmp, req.mode);
        await fs.rename(tmp, final);
      } finally {
        await fs.rm(tmp, { recursive: true, force: true });
      }
    });
  }

  private async touch(base: string, id: string): Promise<void> {
    const file = path.join(base, 'meta.json');
    const old = await fs.readFile(file, 'utf8').then((t) => JSON.parse(t) as { created?: string }, () => undefined);
    const now = new Date().toISOString();
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    await fs.writeFile(tmp, JSON.stringify({ id, created: old?.created ?? now, lastUsed: now }));
    await fs.rename(tmp, file);
  }

  /** A pid-named marker in <inst>.users while fn runs, so a private step leaves the instance alone. */
  private async asUser<T>(base: string, inst: string, fn: (dir: string) => Promise<T>, claimed?: string): Promise<T> {
    const users = path.join(base, `${inst}.users`);
    await fs.mkdir(users, { recursive: true });
    const marker = path.join(users, `${process.pid}-${randomBytes(6).toString('hex')}`);
    if (!claimed) await fs.writeFile(marker, '');
    try {
      return await fn(path.join(base, inst));
    } finally {
      if (!claimed) await fs.rm(marker, { force: true });
    }
  }

  /** sharing=private: take inst if no live step uses it; returns the claim file or undefined. */
  private async claim(base: string, inst: string): Promise<string | undefined> {
    const users = path.join(base, `${inst}.users`);
    await fs.mkdir(users, { recursive: true });
    const mine = path.join(users, `private-${process.pid}-${randomBytes(6).toString('hex')}`);
    await fs.writeFile(mine, '');
    // after announcing ourselves: anyone else here (alive) means the instance is in use; the one
    // with the smaller name keeps it when two private steps arrive at once
    const others = (await fs.readdir(users)).filter((n) => path.join(users, n) !== mine && pidAlive(Number(n.replace(/^private-/, '').split('-')[0])));
    const lock = path.join(base, `${inst}.lock`);
    const lockOwner = Number.parseInt(await fs.readFile(lock, 'utf8').catch(() => ''), 10);
    const locked = Number.isFinite(lockOwner) && pidAlive(lockOwner);
    if (others.length === 0 && !locked) return mine;
    const rivals = others.filter((n) => n.startsWith('private-'));
    if (!locked && others.length === rivals.length && rivals.every((n) => path.basename(mine) < n)) return mine;
    await fs.rm(mine, { force: true });
    return undefined;
  }

  /** Every cache with its size (for `system df`). */
  async list(): Promise<CacheMountInfo[]> {
    const out: CacheMountInfo[] = [];
    for (const key of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (key.startsWith('.')) continue;
      const base = path.join(this.dir, key);
      const meta = await fs.readFile(path.join(base, 'meta.json'), 'utf8').then((t) => JSON.parse(t) as { id?: string; lastUsed?: string }, () => undefined);
      out.push({ key, id: meta?.id ?? '?', bytes: await treeBytes(base), lastUsed: meta?.lastUsed });
    }
    return out;
  }

  /** Removes every cache nobody is using (prune runs with the store to itself; this is a second guard). */
  async removeAll(): Promise<{ count: number; bytes: number; skipped: string[] }> {
    const report = { count: 0, bytes: 0, skipped: [] as string[] };
    for (const c of await this.list()) {
      const base = path.join(this.dir, c.key);
      if (await inUse(base)) {
        report.skipped.push(base);
        continue;
      }
      const doomed = path.join(this.dir, `.trash-${process.pid}-${randomBytes(6).toString('hex')}`);
      await fs.rename(base, doomed);
      await fs.rm(doomed, { recursive: true, force: true });
      report.count++;
      report.bytes += c.bytes;
    }
    return report;
  }
}

async function inUse(base: string): Promise<boolean> {
  for (const n of await fs.readdir(base).catch(() => [] as string[])) {
    if (n.endsWith('.users')) {
      for (const u of await fs.readdir(path.join(base, n)).catch(() => [] as string[])) if (pidAlive(Number(u.replace(/^private-/, '').split('-')[0]))) return true;
    }
    if (n.endsWith('.lock')) {
      const owner = Number.parseInt(await fs.readFile(path.join(base, n), 'utf8').catch(() => ''), 10);
      if (pidAlive(owner)) return true;
    }
  }
  return false;
}

/** cp -a: owners, modes, links and times kept (Node's fs.cp keeps none of the owners). */
function copyTree(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('cp', ['-a', '--', from, to], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new MbuildError('MBUILD_RUN_MOUNT', `seeding a cache mount from ${from} failed: ${err.trim()}`))));
  });
}
