/** `mbuild build`: parse flags, build, tag, write outputs. */
import path from 'node:path';
import os from 'node:os';
import { promises as fs } from 'node:fs';
import { parseArgs, parseOutput, type OutputSpec } from './args.js';
import { Progress } from './progress.js';
import { Store } from '../../store/store.js';
import { build, type BuildResult } from '../executor/build.js';
import { UsageError, MbuildError } from '../../util/errors.js';
import type { NetworkMode } from '../steps/contract.js';

const BUILD_FLAGS = [
  { names: ['-t', '--tag'], key: 'tag', kind: 'list' as const },
  { names: ['-f', '--file'], key: 'file', kind: 'string' as const },
  { names: ['--build-arg'], key: 'buildArg', kind: 'list' as const },
  { names: ['--target'], key: 'target', kind: 'string' as const },
  { names: ['--network'], key: 'network', kind: 'string' as const },
  { names: ['--memory', '-m'], key: 'memory', kind: 'string' as const },
  { names: ['--cpus'], key: 'cpus', kind: 'string' as const },
  { names: ['--pids-limit'], key: 'pidsLimit', kind: 'string' as const },
  { names: ['-o', '--output'], key: 'output', kind: 'list' as const },
  { names: ['--no-cache'], key: 'noCache', kind: 'bool' as const },
  { names: ['--progress'], key: 'progress', kind: 'string' as const },
  { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' as const },
  { names: ['--pull'], key: 'pull', kind: 'bool' as const },
  { names: ['--push'], key: 'push', kind: 'bool' as const },
  { names: ['--platform'], key: 'platform', kind: 'string' as const },
  { names: ['--jobs'], key: 'jobs', kind: 'string' as const },
  { names: ['--secret'], key: 'secret', kind: 'list' as const },
  { names: ['--ssh'], key: 'ssh', kind: 'list' as const },
  { names: ['--check'], key: 'check', kind: 'bool' as const },
];

export async function buildCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, BUILD_FLAGS);
  if (positional.length !== 1) throw new UsageError('"mbuild build" requires exactly 1 argument: the build context (e.g. ".")');
  let contextDir = path.resolve(positional[0]);
  const dockerfile = flags.file ? path.resolve(flags.file as string) : path.join(contextDir, 'Dockerfile');
  const st = await fs.stat(contextDir).catch(() => null);
  let emptyContext: string | undefined;
  if (!st && flags.file) {
    // git keeps no empty folders: a Dockerfile given with -f whose context folder is missing builds with an empty context
    process.stderr.write(`WARNING: the build context ${positional[0]} does not exist; building with an empty context\n`);
    emptyContext = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-empty-context-'));
    contextDir = emptyContext;
  } else if (!st?.isDirectory()) throw new UsageError(`the build context ${positional[0]} is not a directory`);
  const buildArgs: Record<string, string> = {};
  for (const kv of flags.buildArg as string[]) {
    const eq = kv.indexOf('=');
    if (eq < 0) {
      if (process.env[kv] !== undefined) buildArgs[kv] = process.env[kv]!;
    } else buildArgs[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (flags.check) return (await import('../executor/checks.js')).checkCommand({ contextDir, dockerfile, buildArgs, target: flags.target as string | undefined });
  const network = (flags.network as string | undefined) ?? 'default';
  if (!['default', 'bridge', 'host', 'none'].includes(network)) throw new UsageError(`--network ${network} is not supported (bridge, host or none)`);
  const { parseMemory, parseCpus, parsePidsLimit } = await import('../sandbox/cgroups.js');
  const limits = {
    memory: flags.memory !== undefined ? parseMemory(flags.memory as string) : undefined,
    cpus: flags.cpus !== undefined ? parseCpus(flags.cpus as string) : undefined,
    pids: flags.pidsLimit !== undefined ? parsePidsLimit(flags.pidsLimit as string) : undefined,
  };
  const progressMode = (flags.progress as string | undefined) ?? 'auto';
  if (!['auto', 'plain', 'tty', 'quiet'].includes(progressMode)) throw new UsageError(`--progress ${progressMode}: use auto, plain or tty`);
  const outputs: OutputSpec[] = (flags.output as string[]).map(parseOutput);
  if (flags.platform !== undefined) {
    const { hostPlatform } = await import('../plan/platform.js');
    const host = hostPlatform();
    const want = String(flags.platform).replace(/^linux\/(amd64|arm64)\/v\d$/, 'linux/$1');
    if (want !== `${host.os}/${host.architecture}`) throw new UsageError(`--platform ${flags.platform}: mbuild builds only for this machine's platform (${host.os}/${host.architecture})`);
  }
  const { parseSecretFlag, parseSshFlag } = await import('../steps/secrets.js');
  const secrets = (flags.secret as string[]).map((s) => parseSecretFlag(s));
  const ssh = (flags.ssh as string[]).map((s) => parseSshFlag(s));
  const quiet = Boolean(flags.quiet) || progressMode === 'quiet';
  const progress = new Progress(process.stderr, quiet);

  if (flags.push && !(flags.tag as string[]).length) throw new UsageError('--push needs a name to push: add -t REGISTRY/NAME:TAG');
  const store = await Store.open(root);
  try {
    const result = await build(store, progress, {
      contextDir,
      dockerfile,
      buildArgs,
      target: flags.target as string | undefined,
      network: network as NetworkMode,
      limits,
      tags: flags.tag as string[],
      noCache: Boolean(flags.noCache),
      jobs: parseJobs(flags.jobs as string | undefined),
      pull: Boolean(flags.pull),
      secrets,
      ssh,
    });
    for (const out of outputs) await writeOutput(store, result, out, progress);
    if (flags.push) {
      const { pushImage } = await import('../../registry/push.js');
      for (const name of result.names) await pushImage(store, name, { progress });
    }
    const id = result.manifest.config.digest;
    if (quiet) process.stdout.write(id + '\n');
    else progress.info(`built ${id}${result.names.length ? ' as ' + result.names.join(', ') : ''} in ${progress.total()}`);
    return 0;
  } finally {
    if (flags.push || (await import('../executor/build.js')).registryLoaded) await (await import('../../registry/transport.js')).closeTransport();
    await new (await import('../../snapshotter/snapshots.js')).Snapshotter(store).removeOwn();
    if (emptyContext) await fs.rm(emptyContext, { recursive: true, force: true });
  }
}

async function writeOutput(store: Store, result: BuildResult, out: OutputSpec, progress: Progress): Promise<void> {
  if (out.type === 'image') return;
  const dest = out.dest!;
  const step = progress.step(`exporting to ${out.type} ${dest}`);
  try {
    if (out.type === 'oci' || out.type === 'docker') {
      const { exportImage } = await import('../../store/archive/export.js');
      const { distributable } = await import('../../store/compress.js');
      const { manifestDigest } = await distributable(store, result.manifestDigest);
      await exportImage(store, { manifestDigest, names: result.names }, { type: out.type, dest });
    } else {
      const { exportFilesystem } = await import('./export-fs.js');
      await exportFilesystem(result.snap, result.state.layers, out.type, dest);
    }
    step.done();
  } catch (err) {
    step.fail();
    if (err instanceof MbuildError) throw err;
    throw new MbuildError('MBUILD_EXPORT', `cannot write ${out.type} output to ${dest}: ${(err as Error).message}`, { cause: err });
  }
}

function parseJobs(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(v)) throw new UsageError(`--jobs ${v}: give a positive whole number`);
  return Number(v);
}
