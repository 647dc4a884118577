/**
 * Server addresses as docker writes them: `unix:///run/mbuild/mbuild.sock`, `tcp://HOST:PORT`.
 * MBUILD_HOST (or --host) may list several, comma-separated: a client then picks one by
 * rendezvous hashing of the repository it builds, so a repository lands on the same server (and
 * its warm store) every time, and only the repositories of a removed server move.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../util/errors.js';

export const DEFAULT_SOCKET = '/run/mbuild/mbuild.sock';

export type Address = { kind: 'unix'; path: string; raw: string } | { kind: 'tcp'; host: string; port: number; raw: string };

export function parseAddress(raw: string, flag = '--host'): Address {
  const s = raw.trim();
  if (s.startsWith('unix://')) {
    const p = s.slice('unix://'.length);
    if (!p.startsWith('/')) throw new UsageError(`${flag} ${raw}: a unix socket address needs an absolute path (unix:///run/mbuild/mbuild.sock)`);
    return { kind: 'unix', path: p, raw: s };
  }
  if (s.startsWith('tcp://')) {
    const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(s);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) throw new UsageError(`${flag} ${raw}: expected tcp://HOST:PORT`);
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port, raw: s };
  }
  throw new UsageError(`${flag} ${raw}: expected unix:///PATH or tcp://HOST:PORT`);
}

/** The target string grpc-js takes for an address. */
export function grpcTarget(a: Address): string {
  if (a.kind === 'unix') return `unix://${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function parseHostList(raw: string, flag = '--host'): Address[] {
  const list = raw.split(',').map((s) => s.trim()).filter(Boolean).map((s) => parseAddress(s, flag));
  if (!list.length) throw new UsageError(`${flag}: no address given`);
  return list;
}

/** Rendezvous (highest random weight) hashing: each address scores sha256(key, address); the highest wins. */
export function pickAddress(list: Address[], key: string): Address {
  let best = list[0]!;
  let bestScore = -1n;
  for (const a of list) {
    const score = createHash('sha256').update(key).update('\0').update(a.raw).digest().readBigUInt64BE(0);
    if (score > bestScore) {
      best = a;
      bestScore = score;
    }
  }
  return best;
}

/**
 * What names a repository on every runner: the git remote `origin` of the repository holding dir
 * (a fresh clone elsewhere has the same one), else the repository's top folder, else dir itself.
 */
export function repositoryKey(dir: string): string {
  return repositoryOf(dir).key;
}

/**
 * Names a build context across runners: its repository and its folder inside it. The server keeps
 * one context folder per name, so the next build of it sends and copies only what changed.
 */
export function contextKey(dir: string): string {
  const { key, top, real } = repositoryOf(dir);
  return createHash('sha256').update(key).update('\0').update(path.relative(top, real)).digest('hex');
}

function repositoryOf(dir: string): { key: string; top: string; real: string } {
  let d = path.resolve(dir);
  try {
    d = realpathSync(d);
  } catch {
    /* a missing folder keys by its name */
  }
  for (let cur = d; ; cur = path.dirname(cur)) {
    const git = path.join(cur, '.git');
    if (existsSync(git)) {
      const url = originUrl(git);
      return { key: url ? `git:${url}` : `dir:${cur}`, top: cur, real: d };
    }
    if (path.dirname(cur) === cur) return { key: `dir:${d}`, top: d, real: d };
  }
}

function originUrl(git: string): string | undefined {
  try {
    let dir = git;
    if (statSync(git).isFile()) {
      // a worktree or submodule: "gitdir: PATH"; its config lives in the common dir
      const m = /^gitdir:\s*(.+)$/m.exec(readFileSync(git, 'utf8'));
      if (!m) return undefined;
      dir = path.resolve(path.dirname(git), m[1]!.trim());
      const common = path.join(dir, 'commondir');
      if (existsSync(common)) dir = path.resolve(dir, readFileSync(common, 'utf8').trim());
    }
    const config = readFileSync(path.join(dir, 'config'), 'utf8');
    const section = /\[remote "origin"\]([^[]*)/.exec(config);
    const url = section && /^\s*url\s*=\s*(.+)$/m.exec(section[1]!);
    return url ? url[1]!.trim().replace(/\.git$/, '').replace(/\/$/, '') : undefined;
  } catch {
    return undefined;
  }
}
