/**
 * The RUN executor: runs one command in a fresh set of namespaces over an overlay of the image layers,
 * via `mbuild-helper run` (native/run.c), with its network (network/), its cgroup
 * (cgroups.ts) and, for `mbuild run`, signal forwarding. See docs/security.md items 19-24 and 28.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { isAbsolute, join, posix, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { SandboxError } from '../../util/errors.js';
import { StepCgroup, type Limits, type UsageStats } from './cgroups.js';
import { onInterrupt } from './interrupt.js';
import { encodeFields, helperPath, spawnError } from '../../util/native-helper.js';
import { attachSlirp, attachToBridge, planNetwork, resolvConfFor, warnOnce, type Attachment, type NetworkPlan, type NetworkRequest, type SlirpAttachment } from './network/index.js';
import { StatusFilter } from './status.js';
import { trackCleanup } from './cleanups.js';
import { begin, mark, span } from '../../util/trace.js';
import type { Mount } from '../../snapshotter/snapshotter.js';
import { overlayDirs, single } from '../../snapshotter/mount.js';

export type { Limits, UsageStats } from './cgroups.js';
export type { NetworkRequest } from './network/index.js';
export { warmNetwork } from './network/index.js';

export interface SandboxSpec {
  /** overlay lowerdirs, top-most first; empty = scratch (an empty dir is used as the single lower) */
  lowerDirs: string[];
  /** empty dir; becomes the layer (overlay mode: required unless rootfsDir is given) */
  upperDir?: string;
  /** empty overlay workdir on the same filesystem as upperDir */
  workDir?: string;
  /**
   * copy snapshotter: a plain directory bind-mounted (rw, nodev) as the root instead of an overlay;
   * lowerDirs/upperDir/workDir are then unused. Mount stubs the helper makes in it are removed after.
   */
  rootfsDir?: string;
  /** argv[0] is looked up in PATH from `env` (inside the rootfs) when it has no '/' */
  args: string[];
  /** ["K=V", ...] */
  env: string[];
  /** inside the container; created (mode 0755, owned by root) if missing */
  cwd: string;
  uid: number;
  gid: number;
  groups: number[];
  hostname: string;
  /**
   * bridge: own namespace with eth0 on the mbuild0 bridge; none: own namespace with only `lo` (up);
   * host: the host's; {join}: a running container's (its /proc/PID/ns/net); default: bridge, or host
   * (with a warning) when the bridge is not usable.
   */
  network: NetworkRequest;
  /** size of /dev/shm in KiB (--shm-size; default 64 MiB) */
  shmSizeKb?: number;
  /** rlimits as NAME:SOFT:HARD (-1 unlimited), docker's --ulimit names */
  ulimits?: string[];
  /** content of /etc/hosts (on the bridge, "<address> <hostname>" is added) */
  hosts: string;
  /** content of /etc/resolv.conf; default: derived from the host's for the network mode */
  resolvConf?: string;
  /**
   * sandbox (default): Docker's default capabilities for root and its seccomp profile. insecure
   * (RUN --security=insecure, granted by --allow security.insecure): every capability, no seccomp
   * filter, /proc and /sys not masked or read-only, every device allowed by the cgroup.
   */
  security?: 'sandbox' | 'insecure';
  /** cgroup limits; usage is measured whenever cgroups are available */
  limits?: Limits;
  /** kill (default): SIGINT/SIGTERM kill the command; forward: they are passed on to it (mbuild run) */
  signals?: 'kill' | 'forward';
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
  /**
   * where the sandbox keeps its own files (hosts, resolv.conf, mountpoints) while it runs; the
   * store's tmp dir lets the next start sweep what a killed run left (default: the OS temp dir)
   */
  stateParent?: string;
  /** RUN --mount: made in order, so a mount inside another one's target goes after it */
  mounts?: SandboxMount[];
  /** called once the sandbox's network is ready, just before the command starts */
  onStart?: (info: StartInfo) => void | Promise<void>;
  /** rootless (slirp network): open slirp4netns's API so that onStart can use StartInfo.forward */
  portForwarding?: boolean;
  /**
   * wait (default): runSandboxed returns once the veth, cgroups and state dir are gone. background
   * (signals 'kill' only): it returns when the command has ended; they go meanwhile, and
   * settleSandboxes() (cleanups.ts) waits for them
   */
  cleanup?: 'wait' | 'background';
}

/**
 * A mount of RUN --mount / run --mount, made inside the sandbox before the command starts. A missing
 * target is created: a directory (kept in the layer, as docker 20.10's BuildKit keeps it) or, for a
 * non-directory source, an empty file (removed after the step).
 */
export type SandboxMount =
  /** source: a host directory, file or socket; scratch: writable, the writes thrown away after the step */
  | { kind: 'bind'; source: string; target: string; readonly: boolean; scratch?: boolean }
  /** size in bytes (0 or undefined: the kernel's default); mode of its root (default 1777) */
  | { kind: 'tmpfs'; target: string; size?: number; mode?: number };

export interface StartInfo {
  /** the helper, which holds the sandbox's namespaces */
  pid: number;
  /** its network namespace, e.g. for `--network container:NAME` */
  netns: string;
  network: NetworkPlan['mode'];
  address?: string;
  /** sends a signal to the helper: forwarded to the command in forward mode; SIGUSR1 kills it */
  signal(sig: NodeJS.Signals): void;
  /** slirp network with portForwarding: forwards a host TCP port to the sandbox's port */
  forward?: (hostIp: string, hostPort: number, containerPort: number) => Promise<void>;
}

export interface SandboxResult {
  /** the command's exit code; 128+n when killed by signal n */
  exitCode: number;
  /** e.g. 'SIGKILL' when the command was killed by a signal */
  signal?: string;
  /** the network mode used (default resolves to bridge or host) */
  network: NetworkPlan['mode'];
  /** the sandbox's address on the bridge */
  address?: string;
  /** what the command used, when cgroups are available */
  usage?: UsageStats;
  /**
   * overlay mode: the upper dir's opaque directories (relative, '.' for the root), as the helper
   * found them after the command ended; undefined if it could not say
   */
  opaqueDirs?: string[];
}

/**
 * The sandbox's root from a snapshot's mount description (Snapshotter.prepare): the helper mounts
 * it with the one overlay mounter (native/rootfs.c), or binds the directory.
 */
export function rootfsOf(mounts: Mount[]): Pick<SandboxSpec, 'lowerDirs' | 'upperDir' | 'workDir' | 'rootfsDir'> {
  const m = single(mounts);
  if (m.type === 'bind') return { lowerDirs: [], rootfsDir: m.source };
  const d = overlayDirs(m);
  if (!d.upperDir) throw new SandboxError('the sandbox needs a writable snapshot');
  return { lowerDirs: d.lowerDirs, upperDir: d.upperDir, workDir: d.workDir };
}

function signalName(n: number): string | undefined {
  for (const [name, v] of Object.entries(osConstants.signals)) if (v === n) return name;
  return undefined;
}

function checkId(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xfffffffe) throw new SandboxError(`invalid ${what} ${v}`);
}

function validate(spec: SandboxSpec): void {
  if (spec.args.length === 0) throw new SandboxError('RUN has no command');
  const dirs: (readonly [string, string | undefined])[] = spec.rootfsDir !== undefined
    ? [['rootfsDir', spec.rootfsDir]]
    : [['upperDir', spec.upperDir], ['workDir', spec.workDir], ...spec.lowerDirs.map((d) => ['lowerDir', d] as const)];
  for (const [what, p] of dirs) {
    if (p === undefined || !isAbsolute(p)) throw new SandboxError(`${what} must be an absolute path: ${p}`);
  }
  if (!spec.cwd.startsWith('/')) throw new SandboxError(`working directory must be absolute: ${spec.cwd}`);
  checkId(spec.uid, 'uid');
  checkId(spec.gid, 'gid');
  for (const g of spec.groups) checkId(g, 'group id');
  if (Buffer.byteLength(spec.hostname) > 64 || /[\0\n]/.test(spec.hostname)) {
    throw new SandboxError(`invalid hostname ${JSON.stringify(spec.hostname)}`);
  }
  const n = spec.network;
  if (typeof n === 'object' ? !n || typeof n.join !== 'string' || !isAbsolute(n.join) : !['default', 'bridge', 'host', 'none'].includes(n)) {
    throw new SandboxError(`unsupported network mode ${JSON.stringify(n)}`);
  }
  if (spec.security !== undefined && spec.security !== 'sandbox' && spec.security !== 'insecure') throw new SandboxError(`bad security mode ${String(spec.security)}`);
  if (spec.signals !== undefined && spec.signals !== 'kill' && spec.signals !== 'forward') throw new SandboxError(`bad signals mode ${String(spec.signals)}`);
  for (const e of spec.env) if (!e.includes('=')) throw new SandboxError(`environment entry without '=': ${e}`);
  for (const m of spec.mounts ?? []) {
    const t = posix.normalize(m.target);
    if (!posix.isAbsolute(m.target) || t === '/' || t !== m.target.replace(/\/+$/, '')) throw new SandboxError(`mount target must be a clean absolute path other than /: ${m.target}`);
    if (m.kind === 'bind' && !isAbsolute(m.source)) throw new SandboxError(`mount source must be absolute: ${m.source}`);
    if (m.kind === 'bind' && m.scratch && /[,:\\]/.test(m.source)) throw new SandboxError(`a writable bind mount's source cannot contain ',', ':' or '\\': ${m.source}`);
    if (m.kind === 'tmpfs' && m.size !== undefined && (!Number.isSafeInteger(m.size) || m.size < 0)) throw new SandboxError(`bad tmpfs size ${m.size}`);
    if (m.kind === 'tmpfs' && m.mode !== undefined && (!Number.isInteger(m.mode) || m.mode < 0 || m.mode > 0o7777)) throw new SandboxError(`bad tmpfs mode ${m.mode}`);
  }
}

/** Runs spec.args in the sandbox; resolves with its exit code. Throws SandboxError when the sandbox itself fails. */
export async function runSandboxed(spec: SandboxSpec): Promise<SandboxResult> {
  validate(spec);
  const bin = helperPath();
  // independent: made at the same time (the network's first use in a process checks the bridge)
  const [planned, made] = await Promise.allSettled([
    span('sandbox.network-plan', () => planNetwork(spec.network)),
    span('sandbox.cgroup-create', () => StepCgroup.create(spec.limits ?? {}, undefined, { allDevices: spec.security === 'insecure' })),
  ]);
  if (planned.status === 'rejected') {
    if (made.status === 'fulfilled') await made.value?.destroy().catch(() => undefined);
    throw planned.reason;
  }
  if (made.status === 'rejected') throw made.reason;
  const plan = planned.value;
  const cgroup = made.value;
  let state: string | undefined;
  let helper: Helper | undefined;
  let attachment: Attachment | undefined;
  let slirp: SlirpAttachment | undefined;
  let starting: Promise<void> | undefined;
  let setupError: unknown;
  let stopTracking: (() => void) | undefined;
  let apiDir: string | undefined;
  try {
    const endState = begin('sandbox.state-dir');
    state = await mkdtemp(spec.stateParent ? join(spec.stateParent, `run-${process.pid}-`) : join(tmpdir(), 'mbuild-run-'));
    const stateDir = state;
    await Promise.all([
      writeFile(join(state, 'hosts'), spec.hosts, { mode: 0o644 }),
      writeFile(join(state, 'resolv.conf'), spec.resolvConf ?? (await resolvConfFor(plan.mode)), { mode: 0o644 }),
      writeFile(join(state, 'hostname'), `${spec.hostname}\n`, { mode: 0o644 }),
      mkdir(join(state, 'rootfs')),
      mkdir(join(state, 'empty')),
    ]);
    endState();
    const nonce = randomBytes(16).toString('hex');
    const fields: string[] = [
      'nonce', nonce,
      'ppid', String(process.pid),
      'state', state,
      'cwd', spec.cwd,
      'uid', String(spec.uid),
      'gid', String(spec.gid),
      'hostname', spec.hostname,
      // slirp: to the helper the same as bridge (a namespace of its own, whose interface the caller
      // plugs in and whose address comes on fd 3)
      'network', plan.mode === 'slirp' ? 'bridge' : plan.mode,
      'signals', spec.signals ?? 'kill',
      'security', spec.security ?? 'sandbox',
    ];
    if (plan.netns) fields.push('netns', plan.netns);
    if (spec.shmSizeKb) fields.push('shmsize', String(spec.shmSizeKb));
    for (const u of spec.ulimits ?? []) fields.push('rlimit', u);
    for (const f of cgroup?.procsFiles() ?? []) fields.push('cgroup', f);
    if (spec.rootfsDir !== undefined) fields.push('rootfsdir', resolve(spec.rootfsDir));
    else {
      fields.push('upper', resolve(spec.upperDir!), 'work', resolve(spec.workDir!), 'opaque', '1');
      for (const d of spec.lowerDirs) fields.push('lower', resolve(d));
    }
    for (const [i, m] of (spec.mounts ?? []).entries()) {
      fields.push('mount', m.target.replace(/^\/+/, ''));
      if (m.kind === 'tmpfs') {
        fields.push('mount.tmpfs', String(m.size ?? 0));
        if (m.mode !== undefined) fields.push('mount.mode', m.mode.toString(8));
      }
      else if (m.scratch) {
        // an overlay over the source; its upper dir goes with the state dir
        const dir = join(state, `mount-${i}`);
        await mkdir(join(dir, 'upper'), { recursive: true });
        await mkdir(join(dir, 'work'));
        // the overlay's root takes its owner and mode from the upper dir: the source's
        const st = await stat(m.source);
        await chown(join(dir, 'upper'), st.uid, st.gid);
        await chmod(join(dir, 'upper'), st.mode & 0o7777);
        fields.push('mount.overlay', resolve(m.source), 'mount.upper', join(dir, 'upper'), 'mount.work', join(dir, 'work'));
      } else fields.push('mount.bind', resolve(m.source), 'mount.ro', m.readonly ? '1' : '0');
    }
    for (const g of spec.groups) fields.push('group', String(g));
    for (const e of spec.env) fields.push('env', e);
    for (const a of spec.args) fields.push('arg', a);

    // the helper announces its network namespace; on the bridge it waits for eth0 and its address
    const onNetns = (payload: string): void => {
      const pid = Number(payload);
      const h = helper!;
      mark('sandbox.helper-netns');
      starting = (async () => {
        let release: string[] | undefined;
        if (plan.mode === 'bridge' || plan.mode === 'slirp') {
          try {
            let a: { address: string; prefix: number; gateway: string };
            let ifname = 'eth0';
            if (plan.mode === 'slirp') {
              // the API socket's path must stay under 108 bytes: a short private dir of its own
              if (spec.portForwarding) apiDir = await mkdtemp(join(tmpdir(), 'mbuild-slirp-'));
              a = slirp = await span('sandbox.slirp-attach', () => attachSlirp(pid, apiDir ? join(apiDir, 'api.sock') : undefined));
              ifname = slirp.ifname;
            } else a = attachment = await span('sandbox.bridge-attach', () => attachToBridge(plan.bridge!, pid));
            await writeFile(join(stateDir, 'hosts'), `${spec.hosts}${spec.hosts && !spec.hosts.endsWith('\n') ? '\n' : ''}${a.address}\t${spec.hostname}\n`);
            release = ['addr', a.address, 'prefix', String(a.prefix), 'gw', a.gateway, 'ifname', ifname];
          } catch (err) {
            setupError ??= err;
            h.control!.end(encodeFields(['abort', `network setup failed: ${(err as Error).message}`]));
            return;
          }
        }
        try {
          // before the command starts (on the bridge it waits for its address): published ports and
          // a container's record exist even for a command that ends at once (`mbuild run -p … true`)
          const sl = slirp;
          await spec.onStart?.({
            pid,
            netns: `/proc/${pid}/ns/net`,
            network: plan.mode,
            address: attachment?.address ?? sl?.address,
            signal: (sig) => h.kill(sig),
            forward: sl && apiDir ? (ip, hostPort, port) => sl.forward(ip, hostPort, port) : undefined,
          });
        } catch (err) {
          setupError ??= err;
          if (release) h.control!.end(encodeFields(['abort', `start failed: ${(err as Error).message}`]));
          else h.kill('SIGUSR1');
          return;
        }
        if (release) h.control!.end(encodeFields(release));
      })();
    };
    let opaqueDirs: string[] | undefined;
    const onOpaque = (hex: string): void => {
      opaqueDirs = Buffer.from(hex, 'hex').toString('utf8').split('\0').filter((p) => p !== '');
    };
    const endHelper = begin('sandbox.helper');
    helper = startHelper(bin, encodeFields(fields), nonce, {
      onOutput: spec.onOutput,
      onNetns,
      onOpaque,
      control: plan.mode === 'bridge' || plan.mode === 'slirp',
      // mbuild run forwards the terminal's signals itself
      detached: spec.signals === 'forward',
    });
    if (spec.signals !== 'forward') {
      const h = helper;
      stopTracking = onInterrupt(() => {
        h.kill('SIGKILL');
        attachment?.releaseSync();
        slirp?.releaseSync();
        cgroup?.destroySync();
      });
    }
    let outcome: { exitCode: number; signal?: string };
    try {
      outcome = await helper.done;
      endHelper();
    } catch (err) {
      await starting?.catch(() => undefined);
      throw setupError ?? err;
    }
    await starting;
    if (setupError) throw setupError;
    const usage = cgroup ? await span('sandbox.cgroup-stats', () => cgroup.stats()) : undefined;
    return { ...outcome, network: plan.mode, address: attachment?.address ?? slirp?.address, usage, opaqueDirs };
  } finally {
    await starting?.catch(() => undefined);
    const slirpGone = slirp || apiDir
      ? async (): Promise<void> => {
          await slirp?.release().catch(() => undefined);
          if (apiDir) await rm(apiDir, { recursive: true, force: true });
        }
      : undefined;
    const cleanup = cleanUp(attachment, cgroup, state, slirpGone);
    if (spec.cleanup === 'background' && stopTracking) {
      // the command has ended and what it used is read: the next step need not wait for the veth,
      // the cgroups and the state dir to go. Until they are gone an interruption still undoes them,
      // and settleSandboxes() (the end of the build) waits for them.
      const stop = stopTracking;
      trackCleanup(cleanup.catch((err: unknown) => warnOnce('sandbox-cleanup', `a RUN step's sandbox was not removed completely: ${(err as Error).message}`)).finally(stop));
    } else {
      stopTracking?.();
      await cleanup;
    }
  }
}


/** Undoes what a sandbox held on the host; the three are independent, so at the same time. */
async function cleanUp(
  attachment: Attachment | undefined,
  cgroup: StepCgroup | undefined,
  state: string | undefined,
  slirpGone?: () => Promise<void>,
): Promise<void> {
  const [, , destroyed, removed] = await Promise.allSettled([
    span('sandbox.bridge-release', async () => attachment?.release().catch(() => undefined)),
    slirpGone?.(),
    span('sandbox.cgroup-destroy', async () => cgroup?.destroy()),
    state ? span('sandbox.state-rm', () => rm(state, { recursive: true, force: true })) : undefined,
  ]);
  if (destroyed.status === 'rejected') throw destroyed.reason;
  if (removed.status === 'rejected') throw removed.reason;
}

interface Helper {
  done: Promise<{ exitCode: number; signal?: string }>;
  /** fd 3 of the helper (bridge mode): the network configuration */
  control?: Writable;
  kill(sig: NodeJS.Signals): void;
}

function startHelper(
  bin: string,
  input: Buffer,
  nonce: string,
  opts: {
    onOutput: SandboxSpec['onOutput'];
    onNetns: (payload: string) => void;
    onOpaque: (hex: string) => void;
    control: boolean;
    detached: boolean;
  },
): Helper {
  let child: ChildProcess;
  const done = new Promise<{ exitCode: number; signal?: string }>((resolvePromise, reject) => {
    let callbackError: unknown;
    const deliver = (chunk: Buffer, stream: 'stdout' | 'stderr'): void => {
      if (!opts.onOutput || callbackError !== undefined || chunk.length === 0) return;
      try {
        opts.onOutput(chunk, stream);
      } catch (e) {
        callbackError = e;
      }
    };
    // last stderr lines, for the error message when the helper dies without a status
    let stderrTail = '';
    const filter = new StatusFilter(
      nonce,
      (b) => {
        stderrTail = (stderrTail + b.toString('utf8')).slice(-2000);
        deliver(b, 'stderr');
      },
      (kind, payload) => {
        if (kind === 'netns') opts.onNetns(payload);
        else if (kind === 'opaque') opts.onOpaque(payload);
      },
    );
    child = spawn(bin, ['run'], { stdio: opts.control ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'], env: {}, detached: opts.detached });
    child.stdout!.on('data', (c: Buffer) => deliver(c, 'stdout'));
    child.stderr!.on('data', (c: Buffer) => filter.push(c));
    child.stdin!.on('error', () => {
      // EPIPE if the helper exits before reading the spec: reported through its status
    });
    (child.stdio[3] as Writable | null)?.on('error', () => undefined);
    child.on('error', (e: NodeJS.ErrnoException) => reject(spawnError(bin, e)));
    child.on('close', (code, signal) => {
      filter.end();
      if (callbackError !== undefined) return reject(callbackError);
      const st = filter.status;
      if (!st) {
        const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
        const tail = stderrTail.trim();
        return reject(new SandboxError(`mbuild-helper ${how} without reporting a status${tail ? `: ${tail}` : ''}`));
      }
      if (st.kind === 'error') return reject(new SandboxError(`sandbox: ${st.payload}`));
      const n = Number(st.payload);
      if (st.kind === 'signal') return resolvePromise({ exitCode: 128 + n, signal: signalName(n) ?? `signal ${n}` });
      resolvePromise({ exitCode: n });
    });
    child.stdin!.end(input);
  });
  return {
    done,
    control: opts.control ? (child!.stdio[3] as Writable) : undefined,
    kill: (sig) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    },
  };
}
