/**
 * The host-wide record of one bridge, shared by every mbuild process: /run/mbuild/net/<bridge>.json
 * (MBUILD_NET_STATE_DIR overrides the directory), changed only under <bridge>.lock. It holds the
 * addresses handed out (IPAM) and the ports published, each owned by a live process (pid + start
 * time, so a reused pid does not keep a dead owner's address).
 */
import { readFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { withLock } from '../../../store/lock.js';
import { randomBytes } from 'node:crypto';

export interface Owner {
  pid: number;
  /** /proc/<pid>/stat start time */
  start: string;
}

export interface Allocation extends Owner {
  /** host end of the veth pair */
  veth: string;
}

export interface NetState {
  subnet: string;
  gateway: string;
  /** the value of net.ipv4.ip_forward before mbuild turned it on ("0"), restored by teardown */
  ipForwardWas?: string;
  /** iptables tables (nf_tables backend) that did not exist before the bridge's rules made them */
  tablesCreated?: string[];
  /** next address index to try (addresses are handed out round-robin, so one is not reused at once) */
  next?: number;
  /** the anti-spoofing entries (isolation.ts) exist for address indexes 2..portsUpTo of this subnet */
  portsUpTo?: number;
  /** address → owner */
  allocs: Record<string, Allocation>;
}

export function stateDir(): string {
  return process.env.MBUILD_NET_STATE_DIR || '/run/mbuild/net';
}

function statePath(bridge: string): string {
  return path.join(stateDir(), `${bridge}.json`);
}

export async function readState(bridge: string): Promise<NetState | undefined> {
  try {
    const st = JSON.parse(await fs.readFile(statePath(bridge), 'utf8')) as NetState;
    st.allocs ??= {};
    return st;
  } catch {
    return undefined;
  }
}

/**
 * Replaced whole (write + rename: a reader never sees half a record) but not fsynced: the record
 * describes what lives until the next boot (veths, addresses of live processes), and every RUN step
 * writes it twice, where an fsync costs 5-100 ms when /run is not a tmpfs. After a crash an empty
 * or old record reads as "no live owners", which is what it is then.
 */
export async function writeState(bridge: string, st: NetState): Promise<void> {
  await fs.mkdir(stateDir(), { recursive: true, mode: 0o755 });
  const dest = statePath(bridge);
  const tmp = `${dest}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fs.writeFile(tmp, JSON.stringify(st, null, 1) + '\n', { mode: 0o644 });
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

export async function removeState(bridge: string): Promise<void> {
  await fs.rm(statePath(bridge), { force: true });
}

/** Runs fn holding the bridge's cross-process lock. */
export async function withNetLock<T>(bridge: string, fn: () => Promise<T>): Promise<T> {
  await fs.mkdir(stateDir(), { recursive: true, mode: 0o755 });
  return withLock(path.join(stateDir(), `${bridge}.lock`), fn, 60_000);
}

/** The start time of a process (field 22 of /proc/PID/stat), or undefined when it is gone. */
export function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may contain spaces and parentheses: count from the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function ownerOf(pid: number): Owner {
  const start = procStart(pid);
  if (start === undefined) throw new Error(`process ${pid} is gone`);
  return { pid, start };
}

export function ownerAlive(o: Owner): boolean {
  return procStart(o.pid) === o.start;
}
