/** RUN: the command in a sandbox over the stage's layers; its overlay upperdir becomes the layer. */
import type { RunInstruction } from '../dockerfile/types.js';
import type { StepRun } from './contract.js';
import { DEFAULT_SHELL, runEnv } from './state.js';
import { readUserDb, resolveUser } from './users.js';
import { runCommand } from '../dockerfile/heredoc.js';
import type { SandboxResult } from '../sandbox/run.js';
import { prepareMounts } from './run-mounts.js';
import { MbuildError, RunFailedError } from '../../util/errors.js';
import { span } from '../../util/trace.js';
import type { NetworkMode } from './contract.js';

const HOSTNAME = 'mbuild';

function networkFor(ins: RunInstruction, dflt: NetworkMode): NetworkMode {
  const n = ins.network;
  if (n === undefined || n === 'default') return dflt;
  if (n === 'host' || n === 'none') return n;
  throw new MbuildError('MBUILD_PARSE', `RUN --network=${n} is not supported (use default, host or none)`, { range: ins.range });
}

/**
 * RUN --security: sandbox (the default: Docker's capabilities and seccomp profile) or insecure (all
 * capabilities, no seccomp filter, /proc and /sys unmasked, every device allowed), which as in
 * BuildKit needs the security.insecure entitlement (mbuild build --allow security.insecure).
 */
function securityFor(ins: RunInstruction, allow: string[]): 'sandbox' | 'insecure' {
  const s = ins.security ?? 'sandbox';
  if (s === 'sandbox') return s;
  if (s !== 'insecure') throw new MbuildError('MBUILD_PARSE', `RUN --security=${s} is not valid (sandbox or insecure)`, { range: ins.range });
  if (!allow.includes('security.insecure')) {
    throw new MbuildError('MBUILD_ENTITLEMENT', 'RUN --security=insecure needs the security.insecure entitlement: build with --allow security.insecure', { range: ins.range });
  }
  return s;
}

export function describeRun(ins: RunInstruction, shell: string[] | undefined): string {
  const { args } = runCommand(ins, shell ?? DEFAULT_SHELL);
  return ins.cmd.shell ? `RUN ${args.join(' ')} # buildkit` : `RUN ${JSON.stringify(ins.cmd.args)} # buildkit`;
}

export async function runStep(run: StepRun, ins: RunInstruction): Promise<void> {
  const { ctx, state, step, cache } = run;
  const { args, files } = runCommand(ins, state.config.Shell ?? DEFAULT_SHELL);
  if (args.length === 0) throw new MbuildError('MBUILD_PARSE', 'RUN needs a command', { range: ins.range });
  const userSpec = state.config.User || '0';
  const network = networkFor(ins, ctx.network);
  const security = securityFor(ins, ctx.allow);
  const env = runEnv(state);
  const cwd = state.config.WorkingDir || '/';
  const mounts = await prepareMounts(run, ins, files);
  // an insecure step's result is its own (the key of a sandboxed step stays as it was)
  const hit = await span('run.cache-lookup', () => cache.lookup({ op: 'run', args, env, user: userSpec, cwd, network, mounts: mounts.key, ...(security === 'insecure' ? { security } : {}) }));
  if (hit) {
    state.layers.push(hit);
    return;
  }
  // the sandbox's code is loaded by the first step that runs: a build whose steps are all cached
  // never loads it (the CLI bundle is split at imports, scripts/bundle.mjs)
  const [{ rootfsOf, runSandboxed, warmNetwork }, { ensureEmulation }, { formatBytes }] = await Promise.all([
    import('../sandbox/run.js'),
    import('../sandbox/emulation.js'),
    import('../sandbox/cgroups.js'),
  ]);
  warmNetwork(network);
  // a foreign stage's binaries run under qemu-user (binfmt_misc); nothing to do for this machine's
  await ensureEmulation(state).catch((err: unknown) => {
    throw err instanceof MbuildError ? new MbuildError(err.code, err.message, { range: ins.range, cause: err }) : err;
  });
  const user = userSpec === '0' || userSpec === 'root' ? { uid: 0, gid: 0, groups: [] } : resolveUser(userSpec, await ctx.snap.view(state.layers, readUserDb), ins.range);
  const tail: string[] = [];
  let partial = '';
  const remember = (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    tail.push(...lines);
    if (tail.length > 20) tail.splice(0, tail.length - 20);
  };
  if (ctx.signal.aborted) throw new MbuildError('MBUILD_CANCELED', 'canceled: another stage failed', { range: ins.range });
  let canceled = false;
  const proxy = ctx.proxyEnv.filter((p) => !env.some((e) => e.startsWith(p.slice(0, p.indexOf('=') + 1))));
  const spec = {
    stateParent: ctx.store.tmpDir,
    args,
    env: [...env, ...proxy],
    onStart: (h: { signal(sig: NodeJS.Signals): void }) => {
      const kill = () => {
        canceled = true;
        h.signal('SIGUSR1'); // the helper kills the step
      };
      if (ctx.signal.aborted) kill();
      else ctx.signal.addEventListener('abort', kill, { once: true });
    },
    cwd,
    uid: user.uid,
    gid: user.gid,
    groups: user.groups,
    hostname: HOSTNAME,
    network,
    security,
    hosts: `127.0.0.1\tlocalhost ${HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n${ctx.extraHosts}`,
    limits: ctx.limits,
    // the build waits for it at its end (settleSandboxes in executor/build.ts)
    cleanup: 'background' as const,
    shmSizeKb: ctx.shmSizeKb,
    ulimits: ctx.ulimits,
    onOutput: (chunk: Buffer) => {
      step.output(chunk);
      remember(chunk);
    },
  };
  const check = (result: SandboxResult): SandboxResult => {
    if (partial) tail.push(partial);
    const u = result.usage;
    if (u) step.note(`peak memory ${u.peakMemory !== undefined ? formatBytes(u.peakMemory) : 'n/a'}, cpu ${u.cpuSeconds !== undefined ? u.cpuSeconds.toFixed(2) + 's' : 'n/a'}`);
    if (canceled) throw new MbuildError('MBUILD_CANCELED', 'canceled: another stage failed', { range: ins.range });
    if (result.exitCode !== 0) {
      const what = ins.cmd.shell ? ins.cmd.command : JSON.stringify(ins.cmd.args);
      const limit = ctx.limits?.memory !== undefined ? ` (memory limit ${formatBytes(ctx.limits.memory)})` : '';
      const oom = u?.oomKilled ? `was killed by the OOM killer${limit}` : undefined;
      const how = oom ?? (result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`);
      throw new RunFailedError(`RUN ${truncate(what)} ${how}`, ins.range, tail.slice(-5));
    }
    return result;
  };
  // whichever snapshotter is in use, the sandbox mounts what prepare describes; the build cache
  // commits the active snapshot under the step's key
  const layer = await ctx.jobs.add(async () => {
    const active = await span('run.snapshot-prepare', () => ctx.snap.prepare(state.layers));
    try {
      const result = check(
        await span('run.sandbox', () => mounts.use((m, extra) => runSandboxed({ ...spec, env: withMountEnv(spec.env, extra), mounts: m, ...rootfsOf(active.mounts) }))),
      );
      return await span('run.snapshot-commit', () => cache.commit(active.key, { opaqueDirs: result.opaqueDirs }));
    } catch (err) {
      await ctx.snap.discard(active.key);
      throw err;
    }
  }, { throwOnTimeout: true });
  state.layers.push(layer);
}

/**
 * The step's environment plus what its mounts add: env= secrets (over the step's own value, as
 * BuildKit does) and SSH_AUTH_SOCK (only when the step does not set it). Never part of the cache key.
 */
function withMountEnv(env: string[], extra: string[]): string[] {
  if (extra.length === 0) return env;
  const name = (e: string) => e.slice(0, e.indexOf('='));
  const out = [...env];
  for (const e of extra) {
    const i = out.findIndex((o) => name(o) === name(e));
    if (name(e) === 'SSH_AUTH_SOCK' && i >= 0) continue;
    if (i >= 0) out[i] = e;
    else out.push(e);
  }
  return out;
}

function truncate(s: string): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > 80 ? one.slice(0, 77) + '...' : one;
}
