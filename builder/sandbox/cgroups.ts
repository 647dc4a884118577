/**
 * One cgroup per sandboxed command, cgroup v1 or v2: memory / cpu / pids limits, the devices allow-list
 * (v1), and what the command used (peak memory, CPU time, OOM kills), read when it has ended.
 *
 * As runc does it: the command is in a cgroup of its own in every hierarchy (v1: memory, cpu,
 * cpuacct, cpuset, devices, freezer, blkio, pids, name=systemd, ... and the unified one of a hybrid
 * host), and the helper gives it a cgroup namespace rooted there. The limits are set on a parent,
 * `mbuild-<pid namespace>-<pid>-<rand>`, whose only child `step` holds the command: whatever the
 * command can see or mount of its cgroups starts at `step`, so it cannot raise its own limits,
 * and it reaches no other cgroup (no freezing the host's).
 *
 * v2 (detected by /sys/fs/cgroup/cgroup.controllers): the parents live directly below the root.
 * v1: below the cgroup this process is in, in each hierarchy (its own limits still apply). Dead
 * owners' cgroups are swept on first use. The helper puts the command in (see "cgroup" in
 * native/sandbox.c); nothing else of the builder runs inside.
 */
import { existsSync, promises as fs, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { SandboxError, UsageError } from '../../util/errors.js';
import { pidAlive } from '../../util/process.js';
import { isRootless } from '../../util/rootless.js';

export interface Limits {
  /** bytes */
  memory?: number;
  /** CPUs, e.g. 0.5 */
  cpus?: number;
  /** maximum number of processes */
  pids?: number;
}

export interface UsageStats {
  /** bytes; undefined when the kernel does not report it */
  peakMemory?: number;
  /** user + system, seconds */
  cpuSeconds?: number;
  /** the OOM killer killed a process of the command */
  oomKilled: boolean;
}

export interface CgroupLayout {
  version: 1 | 2;
  /** v2: the mount point; v1: controller → directory of this process's cgroup in that hierarchy */
  root: string;
  v1?: Map<string, string>;
}

/** the leaf below each parent that holds the command */
const LEAF = 'step';
const NAME_RE = /^mbuild-(\d+)-(\d+)-[0-9a-f]+$/;

/** This process's pid namespace: a pid in a cgroup name means nothing in another one. */
function pidNs(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  } catch {
    return '0';
  }
}

/** Docker's default device rules (runc's AllowedDevices): mknod anything, use only the harmless ones. */
const DEVICE_ALLOW = ['c *:* m', 'b *:* m', 'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', 'c 136:* rwm', 'c 10:200 rwm'];

/** The cgroup hierarchies of this process, or undefined when there is no usable cgroupfs. */
export function detectCgroups(mountinfo = '/proc/self/mountinfo', selfCgroup = '/proc/self/cgroup'): CgroupLayout | undefined {
  let info: string;
  let own: string;
  try {
    info = readFileSync(mountinfo, 'utf8');
    own = readFileSync(selfCgroup, 'utf8');
  } catch {
    return undefined;
  }
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return { version: 2, root: '/sys/fs/cgroup' };
  // own path per controller ("4:memory:/a/b", "2:cpu,cpuacct:/")
  const ownPath = new Map<string, string>();
  for (const line of own.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m || !m[1]) continue;
    for (const c of m[1].split(',')) ownPath.set(c, m[2]);
  }
  const dirs = new Map<string, string>();
  for (const line of info.split('\n')) {
    // id parent maj:min root mountpoint opts ... - fstype source superopts
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    if (post[0] !== 'cgroup' || pre.length < 5) continue;
    const mountRoot = unescapeMount(pre[3]);
    const mountPoint = unescapeMount(pre[4]);
    // every hierarchy this process is in: its controllers (or name=...) as /proc/self/cgroup names them
    for (const c of (post[2] ?? '').split(',')) {
      if (!ownPath.has(c) || dirs.has(c)) continue;
      const p = ownPath.get(c) ?? '/';
      // inside a container the hierarchy may be mounted from a subtree (mountRoot)
      const rel = mountRoot !== '/' && (p === mountRoot || p.startsWith(mountRoot + '/')) ? p.slice(mountRoot.length) : p;
      dirs.set(c, path.join(mountPoint, rel).replace(/(.)\/+$/, '$1'));
    }
  }
  if (dirs.size === 0) return undefined;
  // a hybrid host's unified hierarchy (no controllers, but a cgroup of its own all the same)
  const unifiedOwn = /^0::(.*)$/m.exec(own)?.[1];
  if (unifiedOwn !== undefined) {
    for (const line of info.split('\n')) {
      const sep = line.indexOf(' - ');
      const pre = line.slice(0, sep).split(' ');
      if (sep < 0 || !line.slice(sep + 3).startsWith('cgroup2 ') || pre.length < 5) continue;
      const mountRoot = unescapeMount(pre[3]);
      const rel = mountRoot !== '/' && (unifiedOwn === mountRoot || unifiedOwn.startsWith(mountRoot + '/')) ? unifiedOwn.slice(mountRoot.length) : unifiedOwn;
      dirs.set('unified', path.join(unescapeMount(pre[4]), rel).replace(/(.)\/+$/, '$1'));
      break;
    }
  }
  return { version: 1, root: '/sys/fs/cgroup', v1: dirs };
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

let layoutCache: CgroupLayout | null | undefined;
const swept = new Set<string>();

function layout(): CgroupLayout | undefined {
  // rootless: no cgroup is ours to write (limits are refused by the CLI; no usage figures)
  if (layoutCache === undefined) layoutCache = process.getuid?.() === 0 && !isRootless() ? detectCgroups() ?? null : null;
  return layoutCache ?? undefined;
}

export class StepCgroup {
  private constructor(
    readonly layout: CgroupLayout,
    /** controller (v1; 'unified' for a hybrid host's v2) or 'unified' (v2) → the parent cgroup directory */
    readonly dirs: Map<string, string>,
    readonly limits: Limits,
    readonly allDevices: boolean,
  ) {}

  /**
   * A fresh cgroup with the limits applied. Undefined when cgroups are not available and no limit was
   * asked for (the command then runs without usage figures); a SandboxError when a limit cannot be set.
   */
  static async create(limits: Limits, forced?: CgroupLayout, opts: { allDevices?: boolean } = {}): Promise<StepCgroup | undefined> {
    const lay = forced ?? layout();
    const wanted = limits.memory !== undefined || limits.cpus !== undefined || limits.pids !== undefined;
    if (!lay) {
      if (wanted) throw new SandboxError('resource limits need cgroups: run as root on a host with /sys/fs/cgroup mounted');
      return undefined;
    }
    const name = `mbuild-${pidNs()}-${process.pid}-${randomBytes(5).toString('hex')}`;
    const dirs = new Map<string, string>();
    if (lay.version === 2) {
      await sweepParent(lay.root);
      await enableV2Controllers(lay.root, limits);
      dirs.set('unified', path.join(lay.root, name));
    } else {
      for (const [c, parent] of lay.v1!) dirs.set(c, path.join(parent, name));
      await Promise.all([...new Set(lay.v1!.values())].map((parent) => sweepParent(parent)));
      if (limits.memory !== undefined && !dirs.has('memory')) throw new SandboxError('--memory needs the memory cgroup controller, which is not mounted');
      if (limits.cpus !== undefined && !dirs.has('cpu')) throw new SandboxError('--cpus needs the cpu cgroup controller, which is not mounted');
      if (limits.pids !== undefined && !dirs.has('pids')) throw new SandboxError('--pids-limit needs the pids cgroup controller, which is not mounted');
    }
    const cg = new StepCgroup(lay, dirs, limits, opts.allDevices ?? false);
    try {
      // comounted controllers (cpu,cpuacct) share one directory. The hierarchies are independent, so
      // they are set up at the same time (a v1 host has ten: one after the other cost ~10 ms a step)
      const parents = [...new Set(dirs.values())];
      const settled = await Promise.allSettled(
        parents.map(async (d) => {
          await mkdirCgroup(d, cg.isCpuset(d));
          // limits (and the device list, which a child copies when it is made) before the leaf exists
          await cg.apply(d);
          await mkdirCgroup(path.join(d, LEAF), cg.isCpuset(d));
        }),
      );
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (err) {
      await cg.destroy().catch(() => undefined);
      if (err instanceof SandboxError) throw err;
      if (wanted) throw new SandboxError(`cannot set up the cgroup for the resource limits: ${(err as Error).message}`, err);
      return undefined; // usage figures are a nicety: run without them
    }
    return cg;
  }

  /** The files the helper writes the command's pid into (one per hierarchy): the leaves'. */
  procsFiles(): string[] {
    return [...new Set(this.dirs.values())].map((d) => path.join(d, LEAF, 'cgroup.procs'));
  }

  private isCpuset(dir: string): boolean {
    return this.layout.version === 1 && this.dirs.get('cpuset') === dir;
  }

  private file(ctrl: string, name: string): string | undefined {
    const d = this.dirs.get(this.layout.version === 2 ? 'unified' : ctrl);
    return d && path.join(d, name);
  }

  /** Writes the limits that live in the parent cgroup directory `dir` (one hierarchy's), in order. */
  private async apply(dir: string): Promise<void> {
    const { memory, cpus, pids } = this.limits;
    const w = async (ctrl: string, name: string, value: string, optional = false) => {
      const f = this.file(ctrl, name);
      if (!f || path.dirname(f) !== dir) return;
      try {
        await fs.writeFile(f, value);
      } catch (err) {
        if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw new SandboxError(`cannot write ${value} to ${f}: ${(err as Error).message}`, err);
      }
    };
    if (this.layout.version === 2) {
      if (memory !== undefined) {
        await w('memory', 'memory.max', String(memory));
        await w('memory', 'memory.swap.max', '0', true);
      }
      if (cpus !== undefined) await w('cpu', 'cpu.max', `${Math.round(cpus * 100000)} 100000`);
      if (pids !== undefined) await w('pids', 'pids.max', String(pids));
      return;
    }
    if (memory !== undefined) {
      await w('memory', 'memory.limit_in_bytes', String(memory));
      // no swapping past the limit (only present with swap accounting)
      await w('memory', 'memory.memsw.limit_in_bytes', String(memory), true);
    }
    if (cpus !== undefined) {
      await w('cpu', 'cpu.cfs_period_us', '100000');
      await w('cpu', 'cpu.cfs_quota_us', String(Math.max(1000, Math.round(cpus * 100000))));
    }
    if (pids !== undefined) await w('pids', 'pids.max', String(pids));
    if (this.dirs.has('devices') && !this.allDevices) {
      await w('devices', 'devices.deny', 'a');
      for (const rule of DEVICE_ALLOW) await w('devices', 'devices.allow', rule);
    }
  }

  /** What the command used; call after it has ended, before destroy(). */
  async stats(): Promise<UsageStats> {
    const read = async (ctrl: string, name: string) => {
      const f = this.file(ctrl, name);
      return f ? fs.readFile(f, 'utf8').catch(() => undefined) : undefined;
    };
    const field = (text: string | undefined, key: string) => {
      const m = text && new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
      return m ? Number(m[1]) : undefined;
    };
    const num = (text: string | undefined) => (text !== undefined && /^\d+\s*$/.test(text) ? Number(text) : undefined);
    if (this.layout.version === 2) {
      const [peak, cpu, events] = await Promise.all([read('memory', 'memory.peak'), read('cpu', 'cpu.stat'), read('memory', 'memory.events')]);
      const usec = field(cpu, 'usage_usec');
      return { peakMemory: num(peak), cpuSeconds: usec === undefined ? undefined : usec / 1e6, oomKilled: (field(events, 'oom_kill') ?? 0) > 0 };
    }
    // v1 counts an OOM kill in the victim's own cgroup (the leaf), not in the parent whose limit hit
    const [peak, usage, oom] = await Promise.all([read('memory', 'memory.max_usage_in_bytes'), read('cpuacct', 'cpuacct.usage'), read('memory', `${LEAF}/memory.oom_control`)]);
    const ns = num(usage);
    return { peakMemory: num(peak), cpuSeconds: ns === undefined ? undefined : ns / 1e9, oomKilled: (field(oom, 'oom_kill') ?? 0) > 0 };
  }

  /** Kills what is left in the cgroup and removes it. */
  async destroy(): Promise<void> {
    const settled = await Promise.allSettled([...new Set(this.dirs.values())].map((d) => removeCgroup(d)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Synchronous best effort for signal handlers: the processes must already be dying. */
  destroySync(): void {
    for (const d of [...new Set(this.dirs.values())].flatMap((p) => [path.join(p, LEAF), p])) {
      for (let i = 0; i < 50; i++) {
        try {
          killAll(d);
          rmdirSync(d);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
    }
  }
}

function killAll(dir: string): void {
  let procs = '';
  try {
    procs = readFileSync(path.join(dir, 'cgroup.procs'), 'utf8');
  } catch {
    return;
  }
  for (const p of procs.split('\n')) {
    const pid = Number(p);
    if (pid > 0)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
  }
}

/**
 * mkdir, and for a v1 cpuset cgroup the CPUs and memory nodes of its parent (a new cpuset cgroup
 * has none, and no process could join it).
 */
async function mkdirCgroup(dir: string, cpuset: boolean): Promise<void> {
  await fs.mkdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  if (!cpuset) return;
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const v = (await fs.readFile(path.join(path.dirname(dir), f), 'utf8')).trim();
    await fs.writeFile(path.join(dir, f), v);
  }
}

/** Removes a parent cgroup and its leaf (killing what is left in them). */
async function removeCgroup(dir: string): Promise<void> {
  await removeOne(path.join(dir, LEAF));
  await removeOne(dir);
}

async function removeOne(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await fs.rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || i >= 100) throw new SandboxError(`cannot remove cgroup ${dir}: ${(err as Error).message}`, err);
      // processes still exiting: make sure they do (v2 has cgroup.kill, v1 needs a signal each)
      await fs.writeFile(path.join(dir, 'cgroup.kill'), '1').catch(() => killAll(dir));
      await sleep(i < 10 ? 5 : 50);
    }
  }
}

/** Removes the cgroups of mbuild processes that are gone (killed mid-step). */
async function sweepParent(parent: string): Promise<void> {
  if (swept.has(parent)) return;
  swept.add(parent);
  for (const name of await fs.readdir(parent).catch(() => [] as string[])) {
    const m = NAME_RE.exec(name);
    if (m && m[1] === pidNs() && Number(m[2]) !== process.pid && !pidAlive(Number(m[2]))) await removeCgroup(path.join(parent, name)).catch(() => undefined);
  }
}

/** v2: the root must delegate the controllers a limit needs (cpu and memory are usually on already). */
async function enableV2Controllers(root: string, limits: Limits): Promise<void> {
  const available = (await fs.readFile(path.join(root, 'cgroup.controllers'), 'utf8').catch(() => '')).split(/\s+/);
  const enabled = (await fs.readFile(path.join(root, 'cgroup.subtree_control'), 'utf8').catch(() => '')).split(/\s+/);
  const need: string[] = [];
  for (const [c, asked] of [['memory', limits.memory !== undefined], ['cpu', limits.cpus !== undefined], ['pids', limits.pids !== undefined]] as const) {
    if (enabled.includes(c)) continue;
    if (!available.includes(c)) {
      if (asked) throw new SandboxError(`the ${c} cgroup controller is not available (cgroup v2: ${root}/cgroup.controllers)`);
      continue;
    }
    need.push(`+${c}`);
  }
  if (need.length) await fs.writeFile(path.join(root, 'cgroup.subtree_control'), need.join(' ')).catch(() => undefined);
}

/* ----------------------------------------------------------------- flags */

/** Docker's --memory syntax: a number with an optional b/k/m/g/t suffix, 1024-based ("64m"). */
export function parseMemory(value: string, flag = '--memory'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!m) throw new UsageError(`invalid ${flag} value "${value}": use a size such as 512m or 2g`);
  const mult = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'b' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.floor(Number(m[1]) * mult);
  if (bytes < 6 * 1024 * 1024) throw new UsageError(`${flag} ${value} is too small: the minimum is 6m`);
  return bytes;
}

export function parseCpus(value: string): number {
  const n = Number(value);
  const max = availableParallelism();
  if (!/^\d*\.?\d+$/.test(value.trim()) || !(n >= 0.01) || n > max) {
    throw new UsageError(`invalid --cpus value "${value}": the range is 0.01 to ${max} (this machine has ${max} CPUs)`);
  }
  return n;
}

/** --pids-limit: a positive number; 0 or -1 mean unlimited (undefined). */
export function parsePidsLimit(value: string): number | undefined {
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`invalid --pids-limit value "${value}": use a whole number`);
  const n = Number(value);
  if (n === 0 || n === -1) return undefined;
  if (n < 0) throw new UsageError(`invalid --pids-limit value "${value}"`);
  return n;
}

/** 3355443 → "3.2MB" (1024-based, as --memory counts). */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v}B` : `${v >= 100 || Number.isInteger(v) ? Math.round(v) : v.toFixed(1)}${units[u]}`;
}
