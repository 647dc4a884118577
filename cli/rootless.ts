/**
 * Rootless mbuild, the rootlesskit/podman way: a normal user's command re-executes itself in a new
 * user namespace (and mount namespace) whose maps newuidmap/newgidmap (Debian's `uidmap`) write from
 * the user's /etc/subuid and /etc/subgid ranges: uid 0 inside is the user, uids 1..N are the
 * range. Inside, the builder runs unchanged as "root" of that namespace: overlay mounts (userxattr),
 * chown to the image's ids, the same layer tars as a root build. What needs the initial namespace
 * is replaced or refused: the bridge (slirp4netns, builder/sandbox/network/slirp.ts), cgroup limits
 * (refused here), device nodes (mknod fails, as under rootless BuildKit).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { MbuildError } from '../util/errors.js';
import { ROOTLESS_ENV } from '../util/rootless.js';
import { childEnv, waitForChild } from './namespace.js';

export interface SubIdRange {
  start: number;
  count: number;
}

/**
 * The first range of `name` (or of its numeric id) in an /etc/subuid-style file: "owner:start:count"
 * per line, as shadow's newuidmap reads it.
 */
export function subIdRange(text: string, name: string, id: number): SubIdRange | undefined {
  for (const line of text.split('\n')) {
    const m = /^([^:#\s]+):(\d+):(\d+)\s*$/.exec(line.trim());
    if (!m || (m[1] !== name && m[1] !== String(id))) continue;
    const start = Number(m[2]);
    const count = Number(m[3]);
    if (count > 0 && Number.isSafeInteger(start)) return { start, count };
  }
  return undefined;
}

function findTool(name: string): string | undefined {
  return ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'].map((d) => `${d}/${name}`).find((p) => existsSync(p));
}

function rootlessError(message: string, cause?: unknown): MbuildError {
  return new MbuildError('MBUILD_ROOTLESS', message, { cause });
}

/** The uid/gid map arguments (newuidmap PID ...): 0 → the user, 1..count → the range. */
export function mapArgs(ownId: number, range: SubIdRange): string[] {
  return ['0', String(ownId), '1', '1', String(range.start), String(range.count)];
}

/**
 * Runs this command again in a user namespace of its own (see above) and returns its exit code. Throws
 * a one-line MBUILD_ROOTLESS error when the namespace cannot be made, naming what to fix.
 */
export async function reexecRootless(argv: string[], storeRoot: string): Promise<number> {
  const me = userInfo();
  const ranges = (['/etc/subuid', '/etc/subgid'] as const).map((file) => {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // missing file: no range
    }
    return subIdRange(text, me.username, file === '/etc/subuid' ? me.uid : me.gid);
  });
  const hint = `as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${me.username}`;
  if (!ranges[0]) throw rootlessError(`mbuild without root needs a range of ${me.username} in /etc/subuid (${hint})`);
  if (!ranges[1]) throw rootlessError(`mbuild without root needs a range of ${me.username} in /etc/subgid (${hint})`);
  const newuidmap = findTool('newuidmap');
  const newgidmap = findTool('newgidmap');
  if (!newuidmap || !newgidmap) throw rootlessError('mbuild without root needs newuidmap and newgidmap (Debian: apt-get install uidmap)');
  const unshare = findTool('unshare');
  if (!unshare) throw rootlessError('mbuild without root needs unshare (util-linux)');

  // The child says (on fd 3) when it is in its user namespace, then waits until the maps are written:
  // only a process outside the namespace can run newuidmap on it.
  const script = 'printf u >&3 && read -r _ <&3 && exec 3>&- && exec "$@"';
  const cmd = [unshare, '--user', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, 'mbuild', process.execPath, ...process.execArgv, process.argv[1]!, ...argv];
  const setpriv = findTool('setpriv');
  if (setpriv) cmd.unshift(setpriv, '--pdeathsig', 'KILL', '--');
  // the store this process chose (inside, uid 0's passwd entry would name root's home)
  const env = { ...childEnv(), [ROOTLESS_ENV]: '1', MBUILD_ROOT: process.env.MBUILD_ROOT || storeRoot };
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['inherit', 'inherit', 'inherit', 'pipe'], env });
  const control = child.stdio[3] as unknown as Readable & Writable;
  const exited = waitForChild(child);
  try {
    await new Promise<void>((resolve, reject) => {
      control.once('data', () => resolve());
      control.once('error', reject);
      control.once('end', () => reject(new Error('it ended before its user namespace was made')));
    });
    const pid = String(child.pid);
    await mapIds(newuidmap, [pid, ...mapArgs(me.uid, ranges[0])]);
    await mapIds(newgidmap, [pid, ...mapArgs(me.gid, ranges[1])]);
    control.end('\n');
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    const why = (err as Error).message;
    throw rootlessError(`cannot start mbuild in a user namespace: ${why}${/Operation not permitted|EPERM/.test(why) ? ' (are user namespaces allowed? sysctl user.max_user_namespaces)' : ''}`, err);
  }
  return await exited;
}

function mapIds(tool: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(tool, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${tool} ${args.join(' ')}: ${err.trim() || `exit ${code}`}`))));
  });
}

/** -m/--cpus/--pids-limit rootless: refused, since nothing could enforce them (see cgroups.ts). */
export function refuseRootlessLimits(limits: { memory?: number; cpus?: number; pids?: number }, command: string): void {
  const given = (
    [
      ['memory', '--memory'],
      ['cpus', '--cpus'],
      ['pids', '--pids-limit'],
    ] as const
  ).filter(([k]) => limits[k] !== undefined);
  if (given.length === 0) return;
  throw rootlessError(
    `${given.map(([, f]) => f).join(', ')}: resource limits cannot be enforced without root (cgroup v1, or no cgroup delegated to this user); run mbuild ${command} as root for limits, or leave the flag out`,
  );
}
