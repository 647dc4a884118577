/**
 * `mbuild run [OPTIONS] IMAGE [COMMAND] [ARG...]`: the image's ENTRYPOINT/CMD in the RUN sandbox over
 * its layers, with a throwaway upper layer, as `docker run` does: bridge network by default, published
 * ports, signals passed on to the command, its exit code returned.
 */
import { isRootless } from '../util/rootless.js';
import { randomBytes } from 'node:crypto';
import { parseArgs, type FlagSpec } from '../util/args.js';
import { Store } from '../store/store.js';
import { Layers } from '../snapshotter/layers.js';
import { readUserDb, resolveUser } from '../builder/steps/users.js';
import { rootfsOf, runSandboxed, type NetworkRequest } from '../builder/sandbox/run.js';
import { ensureEmulation } from '../builder/sandbox/emulation.js';
import { formatBytes, parseCpus, parseMemory, parsePidsLimit, type Limits } from '../builder/sandbox/cgroups.js';
import { ContainerRegistry, checkContainerName, type ContainerRecord } from '../builder/sandbox/containers.js';
import { ensureBridge, warnOnce } from '../builder/sandbox/network/index.js';
import { PublishedPorts, parsePublish } from '../builder/sandbox/network/ports.js';
import { ownerOf } from '../builder/sandbox/network/state.js';
import { UsageError } from '../util/errors.js';

const RUN_FLAGS: FlagSpec[] = [
  { names: ['--rm'], key: 'rm', kind: 'bool' },
  { names: ['-p', '--publish'], key: 'publish', kind: 'list' },
  { names: ['--network', '--net'], key: 'network', kind: 'string' },
  { names: ['-e', '--env'], key: 'env', kind: 'list' },
  { names: ['--name'], key: 'name', kind: 'string' },
  { names: ['-m', '--memory'], key: 'memory', kind: 'string' },
  { names: ['--cpus'], key: 'cpus', kind: 'string' },
  { names: ['--pids-limit'], key: 'pidsLimit', kind: 'string' },
  { names: ['-u', '--user'], key: 'user', kind: 'string' },
  { names: ['-w', '--workdir'], key: 'workdir', kind: 'string' },
  { names: ['--entrypoint'], key: 'entrypoint', kind: 'string' },
  { names: ['-h', '--hostname'], key: 'hostname', kind: 'string' },
  { names: ['--stop-timeout'], key: 'stopTimeout', kind: 'string' },
  { names: ['--debug'], key: 'debug', kind: 'bool' },
  { names: ['--mount'], key: 'mount', kind: 'list' },
  { names: ['--platform'], key: 'platform', kind: 'string' },
];

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/** Options end at the image name: what follows is the command, flags and all. */
function splitAtImage(argv: string[]): { options: string[]; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return { options: argv.slice(0, i), rest: argv.slice(i + 1) };
    if (!a.startsWith('-') || a === '-') return { options: argv.slice(0, i), rest: argv.slice(i) };
    const name = a.startsWith('--') && a.includes('=') ? a.slice(0, a.indexOf('=')) : a;
    const spec = RUN_FLAGS.find((s) => s.names.includes(name));
    if (spec && spec.kind !== 'bool' && !(a.startsWith('--') && a.includes('='))) i++;
  }
  return { options: argv, rest: [] };
}

function envMerge(base: string[], extra: string[]): string[] {
  const env = [...base];
  for (const kv of extra) {
    const eq = kv.indexOf('=');
    const k = eq < 0 ? kv : kv.slice(0, eq);
    if (!k) throw new UsageError(`invalid environment variable "${kv}"`);
    let v: string;
    if (eq < 0) {
      // "-e NAME" passes the caller's value, and nothing when it is unset (Docker's rule)
      if (process.env[k] === undefined) continue;
      v = process.env[k]!;
    } else v = kv.slice(eq + 1);
    const i = env.findIndex((e) => e.startsWith(k + '='));
    if (i >= 0) env[i] = `${k}=${v}`;
    else env.push(`${k}=${v}`);
  }
  return env;
}

export async function runCommand(root: string, argv: string[]): Promise<number> {
  const { options, rest } = splitAtImage(argv);
  const { flags } = parseArgs(options, RUN_FLAGS);
  const [imageRef, ...cmd] = rest;
  if (!imageRef) throw new UsageError('"mbuild run" requires at least 1 argument: mbuild run [OPTIONS] IMAGE [COMMAND] [ARG...]');
  const limits: Limits = {
    memory: flags.memory !== undefined ? parseMemory(flags.memory as string) : undefined,
    cpus: flags.cpus !== undefined ? parseCpus(flags.cpus as string) : undefined,
    pids: flags.pidsLimit !== undefined ? parsePidsLimit(flags.pidsLimit as string) : undefined,
  };
  if (isRootless()) (await import('./rootless.js')).refuseRootlessLimits(limits, 'run');
  const name = flags.name as string | undefined;
  if (name !== undefined) checkContainerName(name);
  const stopTimeout = flags.stopTimeout !== undefined ? Number(flags.stopTimeout) : 10;
  if (!(stopTimeout >= 0)) throw new UsageError(`invalid --stop-timeout "${String(flags.stopTimeout)}": a number of seconds`);
  const publish = (flags.publish as string[]).map(parsePublish);
  const netFlag = (flags.network as string | undefined) ?? 'bridge';
  const workdir = flags.workdir as string | undefined;
  if (workdir !== undefined && !workdir.startsWith('/')) throw new UsageError(`the working directory "${workdir}" is invalid: it needs to be an absolute path`);

  const { parseDockerMount, prepareRunMounts } = await import('./run-mount-flag.js');
  const mountFlags = (flags.mount as string[]).map(parseDockerMount);
  const store = await Store.open(root);
  const registry = new ContainerRegistry(store.root);
  let network: NetworkRequest;
  if (netFlag.startsWith('container:')) {
    const target = netFlag.slice('container:'.length);
    const rec = await registry.find(target);
    if (!rec) throw new UsageError(`no running container "${target}" to share the network of (start one with mbuild run --name ${target} ...)`);
    if (publish.length) throw new UsageError('conflicting options: port publishing and the container type network mode');
    network = { join: rec.netns ?? `/proc/${rec.sandbox!.pid}/ns/net` };
  } else if (netFlag === 'bridge' || netFlag === 'default') network = 'bridge';
  else if (netFlag === 'host' || netFlag === 'none') {
    network = netFlag;
    if (publish.length) warnOnce('publish-ignored', `published ports are discarded when using the ${netFlag} network`);
  } else throw new UsageError(`--network ${netFlag} is not supported (bridge, host, none or container:NAME)`);

  const { parsePlatform } = await import('../util/platform.js');
  const platform = flags.platform !== undefined ? parsePlatform(flags.platform as string) : undefined;
  const img = await (await import('./image-ref.js')).resolveImageArg(store, imageRef, platform);
  // another platform's image runs under qemu-user (binfmt_misc), as docker run --platform does
  await ensureEmulation({ os: img.config.os, architecture: img.config.architecture, variant: img.config.variant });
  const snap = new Layers(store);
  const layers = await snap.fromImage(img);
  const cfg = img.config.config ?? {};
  const entrypoint = flags.entrypoint !== undefined ? ((flags.entrypoint as string) === '' ? [] : [flags.entrypoint as string]) : (cfg.Entrypoint ?? []);
  const command = cmd.length ? cmd : flags.entrypoint !== undefined ? [] : (cfg.Cmd ?? []);
  const args = [...entrypoint, ...command];
  if (args.length === 0) throw new UsageError(`no command specified: the image ${imageRef} has no ENTRYPOINT or CMD; give one after the image name`);

  const db = await snap.view(layers, readUserDb);
  const user = resolveUser((flags.user as string | undefined) ?? (cfg.User || 'root'), db);
  const id = randomBytes(32).toString('hex');
  const hostname = (flags.hostname as string | undefined) ?? id.slice(0, 12);
  let env = envMerge(cfg.Env ?? [], flags.env as string[]);
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH);
  env = envMerge([`HOSTNAME=${hostname}`], env);
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${db.users.find((u) => u.uid === user.uid)?.home || '/'}`);

  let rec: ContainerRecord | undefined;
  let ports: PublishedPorts | undefined;
  const userMounts = await prepareRunMounts(store.root, mountFlags, (fn) => snap.view(layers, fn));
  const active = await snap.prepare(layers);
  let signal: ((sig: NodeJS.Signals) => void) | undefined;
  let received = 0;
  let killTimer: NodeJS.Timeout | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    received++;
    // a terminal's Ctrl-C may arrive twice (from the tty and from the parent): the third one kills
    if (!signal || received >= 3) return signal?.('SIGUSR1');
    signal(sig);
    killTimer ??= setTimeout(() => signal?.('SIGUSR1'), stopTimeout * 1000);
  };
  for (const s of FORWARDED) process.on(s, onSignal);
  try {
    if (name !== undefined) rec = await registry.register({ id, name, image: imageRef, network: netFlag });
    if (publish.length && network === 'bridge') {
      const chosen = publish.map((p) => p.hostPort === 0);
      ports = await PublishedPorts.open(publish);
      ports.describe().forEach((d, i) => chosen[i] && process.stderr.write(`mbuild: publishing ${d}\n`));
    }
    // the container's changes are thrown away with `active`
    const result = await runSandboxed({
      stateParent: store.tmpDir,
      ...rootfsOf(active.mounts),
      args,
      env,
      cwd: workdir ?? (cfg.WorkingDir || '/'),
      uid: user.uid,
      gid: user.gid,
      groups: user.groups,
      hostname,
      network,
      portForwarding: publish.length > 0,
      hosts: '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n',
      limits,
      mounts: userMounts.mounts,
      signals: 'forward',
      onOutput: (chunk, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(chunk),
      onStart: async (info) => {
        signal = info.signal;
        if (received) info.signal('SIGUSR1'); // interrupted while starting
        if (ports && info.forward) await ports.connectForwarded(info.forward);
        else if (ports && info.address) await ports.connect(await ensureBridge(), info.address, ownerOf(info.pid));
        if (rec) {
          // outside the bridge the command runs already: one that ended at once needs no record
          const owner = (() => {
            try {
              return ownerOf(info.pid);
            } catch {
              return undefined;
            }
          })();
          if (!owner) return;
          rec.sandbox = owner;
          rec.netns = info.netns;
          rec.address = info.address;
          await registry.update(rec);
        }
      },
    });
    if (result.usage?.oomKilled) {
      const limit = limits.memory !== undefined ? ` (memory limit ${formatBytes(limits.memory)})` : '';
      process.stderr.write(`mbuild: the container was killed by the OOM killer${limit}\n`);
    }
    return result.exitCode;
  } finally {
    for (const s of FORWARDED) process.off(s, onSignal);
    if (killTimer) clearTimeout(killTimer);
    await ports?.close();
    if (rec) await registry.remove(rec.id);
    await snap.discard(active.key);
    await userMounts.cleanup();
  }
}
