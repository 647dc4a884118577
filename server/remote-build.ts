/**
 * `mbuild --host ADDR build ...`: describe the context (server/manifest.ts), upload only the
 * content the server lacks, start the build and relay its progress; -o archives come back over the
 * call and are written here, as a local build writes them; -t names live in the server's store.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { buildArgValues, parseArgs } from '../util/args.js';
import { parseOutput, type OutputSpec } from '../builder/executor/output-spec.js';
import { MbuildError, UsageError } from '../util/errors.js';
import { remoteCacheSpecs } from '../builder/cache/remote-spec.js';
import type { Connection } from './connection.js';
import { contextManifest } from './manifest.js';
import { contextKey } from './address.js';
import type { BuildEvent, BuildRequest, Frame, MissingReply, UploadChunk } from './protocol.js';

const FLAGS = [
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
  { names: ['--cache-from'], key: 'cacheFrom', kind: 'list' as const },
  { names: ['--cache-to'], key: 'cacheTo', kind: 'list' as const },
];

/** BuildKit's limit on one secret (session/secrets: MaxSecretSize). */
const MAX_SECRET = 500 * 1024;

/** --secret values as the server gets them: read here, from the client's files and environment. */
async function readSecrets(specs: string[]): Promise<{ id: string; value: string }[]> {
  const { parseSecretFlag } = await import('../builder/steps/secrets.js');
  const out: { id: string; value: string }[] = [];
  for (const spec of specs) {
    const s = parseSecretFlag(spec);
    if (!/^[A-Za-z0-9_.\/-]+$/.test(s.id)) throw new UsageError(`--secret id=${s.id}: with --host an id is letters, digits and _ . / - only`);
    let value: Buffer;
    if (s.file !== undefined) value = await fs.readFile(s.file);
    else {
      const v = process.env[s.env!];
      if (v === undefined) continue; // as locally: a RUN that requires it fails, naming it
      value = Buffer.from(v);
    }
    if (value.length > MAX_SECRET) throw new UsageError(`--secret id=${s.id}: ${value.length} bytes is over the 500 KiB a secret may have`);
    out.push({ id: s.id, value: value.toString('base64') });
  }
  return out;
}

const CHUNK = 1024 * 1024;

/** BuildKit's byte counts (go-units HumanSize: 4 significant digits, powers of 1000): 0B, 2.34kB. */
export function buildkitBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Number(n.toPrecision(4))}${units[i]}`;
}

export async function remoteBuild(argv: string[], connect: (contextDir: string) => Promise<Connection>): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv, FLAGS);
  } catch (err) {
    if (err instanceof UsageError && err.message.startsWith('unknown flag')) throw new UsageError(`${err.message} (not available with --host / MBUILD_HOST)`);
    throw err;
  }
  const { flags, positional } = parsed;
  if (positional.length !== 1) throw new UsageError('"mbuild build" requires exactly 1 argument: the build context (e.g. ".")');
  const contextDir = path.resolve(positional[0]!);
  const st = await fs.stat(contextDir).catch(() => null);
  if (!st?.isDirectory()) throw new UsageError(`the build context ${positional[0]} is not a directory`);
  const dockerfile = flags.file ? path.resolve(flags.file as string) : path.join(contextDir, 'Dockerfile');
  const dockerfileText = await fs.readFile(dockerfile, 'utf8').catch((err) => {
    throw new MbuildError('MBUILD_NO_DOCKERFILE', `cannot read the Dockerfile ${dockerfile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  });
  const dockerfileIgnore = await fs.readFile(dockerfile + '.dockerignore', 'utf8').catch(() => undefined);
  const buildArgs = buildArgValues(flags.buildArg as string[]);
  const progressMode = (flags.progress as string | undefined) ?? 'auto';
  if (!['auto', 'plain', 'tty', 'quiet'].includes(progressMode)) throw new UsageError(`--progress ${progressMode}: use auto, plain, tty or quiet (rawjson is not available with --host)`);
  const quiet = Boolean(flags.quiet) || progressMode === 'quiet';
  const specs = (flags.output as string[]).map((raw) => ({ raw, o: parseOutput(raw) }));
  // the server writes archives in its default form and pushes only with --push: any other -o option is refused, not dropped
  for (const { raw, o } of specs)
    if (o.type === 'registry' || o.push || o.names.length || !o.tar || o.compression !== 'gzip' || o.compressionLevel !== undefined || o.pushByDigest || o.forceCompression || o.ociMediatypes !== undefined || Object.keys(o.annotations).length)
      throw new UsageError(`--output ${raw}: with --host / MBUILD_HOST only type=oci|docker|tar|local,dest=... (and --push) are available`);
  const outputs: OutputSpec[] = specs.map(({ o }) => o).filter((o) => o.type !== 'image');
  if ((flags.ssh as string[]).length) throw new UsageError('--ssh does not work with --host / MBUILD_HOST yet: the ssh agent is not forwarded to the server');
  const secrets = await readSecrets(flags.secret as string[]);
  if (flags.push && !(flags.tag as string[]).length) throw new UsageError('--push needs a name to push: add -t REGISTRY/NAME:TAG');

  const cacheFrom = flags.cacheFrom as string[];
  const cacheTo = flags.cacheTo as string[];
  remoteCacheSpecs(cacheFrom, cacheTo);

  const conn = await connect(contextDir);
  const err = (s: string) => {
    if (!quiet) process.stderr.write(s);
  };
  try {
    // #1: the context transfer, as BuildKit's "[internal] load build context"
    const t0 = Date.now();
    err('#1 [internal] load build context\n');
    const { entries, root, skipped, sources } = await contextManifest(contextDir, dockerfile);
    for (const s of skipped) err(`#1 WARNING: ${s} is not a file, folder or symlink: not sent\n`);
    const sent = await uploadMissing(conn, sources);
    err(`#1 transferring context: ${buildkitBytes(sent)} done\n#1 DONE ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);

    const request: BuildRequest = {
      manifest: entries,
      contextRoot: root,
      contextKey: contextKey(contextDir),
      dockerfileName: path.basename(dockerfile),
      dockerfile: dockerfileText,
      ...(dockerfileIgnore !== undefined ? { dockerfileIgnore } : {}),
      tags: flags.tag as string[],
      buildArgs,
      target: flags.target as string | undefined,
      network: flags.network as string | undefined,
      memory: flags.memory as string | undefined,
      cpus: flags.cpus as string | undefined,
      pidsLimit: flags.pidsLimit as string | undefined,
      noCache: Boolean(flags.noCache),
      pull: Boolean(flags.pull),
      push: Boolean(flags.push),
      platform: flags.platform as string | undefined,
      jobs: flags.jobs as string | undefined,
      ...(cacheFrom.length ? { cacheFrom } : {}),
      ...(cacheTo.length ? { cacheTo } : {}),
      quiet,
      ...(secrets.length ? { secrets } : {}),
      ...(process.env.SOURCE_DATE_EPOCH ? { sourceDateEpoch: process.env.SOURCE_DATE_EPOCH } : {}),
      outputs: outputs.map((o) => ({ type: o.type === 'local' ? 'tar' : (o.type as 'oci' | 'docker' | 'tar') })),
    };
    return await runBuild(conn, request, outputs, contextDir, err);
  } finally {
    conn.close();
  }
}

/** Asks which contents the server lacks and sends those; returns the bytes of file content sent. */
async function uploadMissing(conn: Connection, sources: Map<string, string>): Promise<number> {
  if (!sources.size) return 0;
  const { head } = await conn.unary<{ digests: string[] }, MissingReply>('Missing', { digests: [...sources.keys()] });
  if (!head.missing.length) return 0;
  let sent = 0;
  const { call, done } = conn.clientStream<UploadChunk, object>('Upload');
  const write = async (f: Frame<UploadChunk>) => {
    if (!call.write(f)) await once(call, 'drain');
  };
  try {
    for (const sha of head.missing) {
      const file = sources.get(sha);
      if (!file) throw new MbuildError('MBUILD_REMOTE', `the server asked for content it was not offered (${sha})`);
      for await (const chunk of createReadStream(file, { highWaterMark: CHUNK })) {
        sent += (chunk as Buffer).length;
        await write({ head: { sha256: sha }, data: chunk as Buffer });
      }
      await write({ head: { sha256: sha, end: true } });
    }
    call.end();
  } catch (err) {
    call.cancel();
    throw err;
  }
  await done;
  return sent;
}

async function runBuild(conn: Connection, request: BuildRequest, outputs: OutputSpec[], contextDir: string, err: (s: string) => void): Promise<number> {
  const call = conn.serverStream<BuildRequest, BuildEvent>('Build', request);
  let cancelled = false;
  const onSignal = () => {
    cancelled = true;
    call.cancel();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // the server's step numbers follow ours (#1 is the context transfer)
  // and the server's folders read as the client's: its context copy, its output files
  let partial = '';
  let paths: [string, string][] = [];
  const local = (l: string) => {
    for (const [from, to] of paths) l = l.split(from).join(to);
    return l;
  };
  const relayProgress = (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) err(local(l.replace(/^#(\d+) /, (_m, n: string) => `#${Number(n) + 1} `)) + '\n');
  };
  const sinks = new Map<number, { out: Writable; finish: () => Promise<void> }>();
  let exit: number | undefined;
  try {
    for await (const frame of call as AsyncIterable<Frame<BuildEvent>>) {
      const ev = frame.head;
      if (ev.kind === 'started') {
        paths = (ev.outputs ?? []).map((p, i): [string, string] => [outputs[i]?.type === 'local' ? `tar ${p}` : p, outputs[i]?.type === 'local' ? `local ${outputs[i]!.dest}` : outputs[i]?.dest ?? p]);
        if (ev.context) paths.push([ev.context, contextDir]);
      } else if (ev.kind === 'queued') err(`waiting for a build slot on ${conn.address.raw} (${ev.position} ahead)\n`);
      else if (ev.kind === 'stderr') relayProgress(frame.data?.toString() ?? '');
      else if (ev.kind === 'stdout') process.stdout.write(frame.data ?? '');
      else if (ev.kind === 'output') {
        const spec = outputs[ev.index];
        if (!spec) throw new MbuildError('MBUILD_REMOTE', `the server sent an output that was not asked for (${ev.index})`);
        let sink = sinks.get(ev.index);
        if (!sink) sinks.set(ev.index, (sink = await openSink(spec)));
        if (frame.data && !sink.out.write(frame.data)) await once(sink.out, 'drain');
        if (ev.end) await sink.finish();
      } else if (ev.kind === 'exit') exit = ev.code;
    }
  } catch (e) {
    if (cancelled) {
      process.stderr.write('canceled\n');
      return 130;
    }
    throw conn.error(e as import('@grpc/grpc-js').ServiceError);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (partial) relayProgress('\n');
  }
  if (cancelled) {
    process.stderr.write('canceled\n');
    return 130;
  }
  if (exit === undefined) throw new MbuildError('MBUILD_REMOTE', `the server at ${conn.address.raw} ended the build without an exit code`);
  return exit;
}

/** Where an output archive goes: a file (written under a temp name), stdout, or a folder it is unpacked into. */
async function openSink(spec: OutputSpec): Promise<{ out: Writable; finish: () => Promise<void> }> {
  const dest = spec.dest!;
  if (spec.type === 'tar' && dest === '-') return { out: process.stdout, finish: async () => undefined };
  if (spec.type === 'local') {
    await fs.mkdir(dest, { recursive: true });
    // GNU tar: names are kept inside dest, symlinks that point out are made last as placeholders
    const tar = spawn('tar', ['-x', '-p', '-f', '-', '-C', dest], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    tar.stderr!.on('data', (d) => (stderr += d));
    return {
      out: tar.stdin!,
      finish: async () => {
        tar.stdin!.end();
        const [code] = (await once(tar, 'close')) as [number | null];
        if (code !== 0) throw new MbuildError('MBUILD_EXPORT', `cannot write local output to ${dest}: ${stderr.trim()}`);
      },
    };
  }
  const abs = path.resolve(dest);
  const tmp = path.join(path.dirname(abs), `.tmp-${path.basename(abs)}-${process.pid}`);
  const out = createWriteStream(tmp);
  return {
    out,
    finish: async () => {
      await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
      await fs.rename(tmp, abs);
    },
  };
}
