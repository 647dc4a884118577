/**
 * `mbuild --host ADDR build ...`: describe the context (server/manifest.ts), upload only the
 * content the server lacks, start the build and relay its progress; -o archives come back over the
 * call and are written here, as a local build writes them; -t names live in the server's store.
 * Every build flag is sent to the server or done here (cli/build-flags.ts REMOTE); ssh agents stay
 * here and each connection a RUN makes to one travels over the build's call.
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
import type { Connection } from '../server/connection.js';
import { contextManifest } from '../server/manifest.js';
import { contextKey } from '../server/address.js';
import type { BuildEvent, BuildInput, BuildRequest, Frame, MissingReply, UploadChunk } from '../server/protocol.js';
import { BUILD_FLAGS, REFUSED, REMOTE } from './build-flags.js';
import { createProgress, progressMode } from './progress.js';
import { ProgressReplay } from './remote-progress.js';
import { writeFileAtomic } from '../store/fsutil.js';

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

/** An -o spec's fields as given (quotes kept), split on commas outside double quotes. */
function rawFields(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of spec) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** An archive output: what the server writes (the spec without dest= and tar=) and what the client does with it. */
interface ArchiveOutput {
  spec: OutputSpec;
  type: 'oci' | 'docker' | 'tar';
  serverSpec: string;
  /** unpack the tar into dest (type=local, tar=false) */
  unpack: boolean;
}

export function archiveOutput(raw: string, o: OutputSpec): ArchiveOutput {
  if (o.type === 'local' || o.type === 'tar') return { spec: o, type: 'tar', serverSpec: 'type=tar', unpack: o.type === 'local' };
  const keep = rawFields(raw).filter((f) => !/^\s*"?\s*(dest|tar)\s*=/i.test(f));
  return { spec: o, type: o.type as 'oci' | 'docker', serverSpec: keep.join(','), unpack: !o.tar };
}

export interface RemoteBuildOptions {
  connect: (contextDir: string, opts: { compress: boolean }) => Promise<Connection>;
}

export async function remoteBuild(argv: string[], opts: RemoteBuildOptions): Promise<number> {
  const { flags, positional } = parseArgs(argv, BUILD_FLAGS);
  for (const [key, reason] of Object.entries(REFUSED)) if (flags[key] !== undefined && !(Array.isArray(flags[key]) && !(flags[key] as string[]).length)) throw new UsageError(reason);
  if (positional.length !== 1) throw new UsageError('"mbuild build" requires exactly 1 argument: the build context (e.g. ".")');
  const contextDir = path.resolve(positional[0]!);
  const st = positional[0] === '-' ? null : await fs.stat(contextDir).catch(() => null);
  if (!st?.isDirectory()) throw new UsageError(`the build context ${positional[0]}: with --host / MBUILD_HOST the context is a directory (stdin and URLs are read by a local build only)`);

  // the flags the server applies, by their long names, as given
  const forwarded: [string, string | boolean][] = [];
  for (const f of BUILD_FLAGS) {
    const v = flags[f.key];
    if (v === undefined || (Array.isArray(v) && !v.length) || REMOTE[f.key] !== 'server') continue;
    const long = f.names.find((n) => n.startsWith('--'))!;
    for (const one of Array.isArray(v) ? v : [v]) forwarded.push([long, one]);
  }
  for (const c of flags.buildContext as string[])
    if (!/^[^=]+=docker-image:\/\//.test(c)) throw new UsageError(`--build-context ${c}: with --host / MBUILD_HOST only docker-image://REF (a path or URL would be read on the server)`);
  remoteCacheSpecs(flags.cacheFrom as string[], flags.cacheTo as string[]);

  // -f: read here ("-" is stdin), sent by text with its .dockerignore
  const fromStdin = flags.file === '-';
  const dockerfile = fromStdin ? path.join(contextDir, 'Dockerfile') : flags.file ? path.resolve(flags.file as string) : path.join(contextDir, 'Dockerfile');
  const dockerfileText = fromStdin
    ? await readStdin()
    : await fs.readFile(dockerfile, 'utf8').catch((err) => {
        throw new MbuildError('MBUILD_NO_DOCKERFILE', `cannot read the Dockerfile ${dockerfile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      });
  const dockerfileIgnore = fromStdin ? undefined : await fs.readFile(dockerfile + '.dockerignore', 'utf8').catch(() => undefined);
  const buildArgs = buildArgValues(flags.buildArg as string[]);
  const mode = progressMode(flags.progress as string | undefined, Boolean(flags.quiet));
  const quiet = mode === 'quiet';

  // -o: image/registry travel as flags (they name and push on the server); archives come back here
  const archives: ArchiveOutput[] = [];
  for (const raw of flags.output as string[]) {
    const o = parseOutput(raw);
    if (o.type === 'image' || o.type === 'registry') forwarded.push(['--output', raw]);
    else archives.push(archiveOutput(raw, o));
  }
  if (archives.filter((a) => a.spec.dest === '-').length > 1) throw new UsageError('only one --output can write to stdout (dest=-)');
  for (const a of archives) if (a.unpack && a.spec.dest === '-') throw new UsageError(`--output type=${a.spec.type}: a directory output needs dest=DIR, not -`);

  const secrets = await readSecrets(flags.secret as string[]);
  const { parseSshFlag } = await import('../builder/steps/secrets.js');
  const ssh = (flags.ssh as string[]).map((s) => parseSshFlag(s));
  if (new Set(ssh.map((s) => s.id)).size !== ssh.length) throw new UsageError('--ssh: an id is given twice');

  const conn = await opts.connect(contextDir, { compress: Boolean(flags.compress) });
  const agents = await (await import('./remote-ssh.js')).ClientAgents.start(ssh);
  const err = (s: string) => {
    if (!quiet) process.stderr.write(s);
  };
  try {
    // #1: the context transfer, as BuildKit's "[internal] load build context"; shown once the
    // server's first line says the build started (a refused flag is its one line alone)
    const t0 = Date.now();
    const { entries, root, skipped, sources } = await contextManifest(contextDir, dockerfile);
    const sent = await uploadMissing(conn, sources);
    const took = ((Date.now() - t0) / 1000).toFixed(1);
    const compressed = flags.compress ? ' (gzip)' : '';
    const contextNotes = [...skipped.map((s) => `WARNING: ${s} is not a file, folder or symlink: not sent`), `transferring context: ${buildkitBytes(sent)} done${compressed}`];
    const intro =
      mode === 'rawjson'
        ? rawjsonStep('[internal] load build context', t0, `transferring context: ${buildkitBytes(sent)} done${compressed}`)
        : '#1 [internal] load build context\n' +
          skipped.map((s) => `#1 WARNING: ${s} is not a file, folder or symlink: not sent\n`).join('') +
          `#1 transferring context: ${buildkitBytes(sent)} done${compressed}\n#1 DONE ${took}s\n`;

    const request: BuildRequest = {
      manifest: entries,
      contextRoot: root,
      contextKey: contextKey(contextDir),
      dockerfileName: path.basename(dockerfile),
      dockerfile: dockerfileText,
      ...(dockerfileIgnore !== undefined ? { dockerfileIgnore } : {}),
      buildArgs,
      flags: forwarded,
      quiet,
      // tty: the server sends its events (rawjson) and the display is drawn here
      progress: mode === 'rawjson' || mode === 'tty' ? 'rawjson' : 'plain',
      ...(secrets.length ? { secrets } : {}),
      ...(ssh.length ? { ssh: ssh.map((s) => s.id) } : {}),
      ...(process.env.SOURCE_DATE_EPOCH ? { sourceDateEpoch: process.env.SOURCE_DATE_EPOCH } : {}),
      outputs: archives.map((a) => ({ type: a.type, spec: a.serverSpec })),
    };
    const tty = mode === 'tty' ? { t0, notes: contextNotes } : undefined;
    const r = await runBuild(conn, request, archives, contextDir, err, intro, mode === 'rawjson', agents, tty);
    if (r.code === 0 && r.iid !== undefined && flags.iidfile) await writeFileAtomic(path.resolve(flags.iidfile as string), r.iid);
    if (r.code === 0 && r.metadata !== undefined && flags.metadataFile) await writeFileAtomic(path.resolve(flags.metadataFile as string), r.metadata);
    return r.code;
  } finally {
    await agents.close();
    conn.close();
  }
}

function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError('-f -: stdin is a terminal: pipe the Dockerfile in');
  return new Promise((resolve, reject) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d) => (text += d));
    process.stdin.on('end', () => resolve(text));
    process.stdin.on('error', reject);
  });
}

/** The context transfer as rawjson progress: one vertex, its status, its end. */
function rawjsonStep(name: string, t0: number, status: string): string {
  const digest = 'sha256:' + Buffer.from(name).toString('hex').padEnd(64, '0').slice(0, 64);
  const started = new Date(t0).toISOString();
  const completed = new Date().toISOString();
  return [
    { vertexes: [{ digest, name, started }] },
    { statuses: [{ id: 'transferring context:', vertex: digest, name: status, timestamp: completed }] },
    { vertexes: [{ digest, name, started, completed }] },
  ]
    .map((o) => JSON.stringify(o) + '\n')
    .join('');
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

interface BuildOutcome {
  code: number;
  iid?: string;
  metadata?: string;
}

async function runBuild(
  conn: Connection,
  request: BuildRequest,
  archives: ArchiveOutput[],
  contextDir: string,
  err: (s: string) => void,
  intro: string,
  rawjson: boolean,
  agents: import('./remote-ssh.js').ClientAgents,
  /** --progress tty: the live display, drawn from the server's events; t0 and notes: the context transfer's */
  tty?: { t0: number; notes: string[] },
): Promise<BuildOutcome> {
  const call = conn.bidi<BuildRequest | BuildInput, BuildEvent>('Build');
  call.write({ head: request });
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
  let introShown = false;
  const local = (l: string) => {
    for (const [from, to] of paths) l = l.split(from).join(to);
    return l;
  };
  const replay = tty ? new ProgressReplay(createProgress('tty'), local) : undefined;
  const showIntro = () => {
    introShown = true;
    if (replay) replay.clientStep('[internal] load build context', tty!.t0, tty!.notes);
    else err(intro);
  };
  const relayProgress = (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (replay) {
        if (!introShown && !/^error: /.test(l)) showIntro();
        replay.line(l);
        continue;
      }
      // a flag the worker refuses is its one line, without the context transfer before it
      if (!introShown && !/^error: /.test(l)) {
        err(intro);
        introShown = true;
      }
      err(rawjson ? l + '\n' : local(l.replace(/^#(\d+) /, (_m, n: string) => `#${Number(n) + 1} `)) + '\n');
    }
  };
  agents.attach(call);
  const sinks = new Map<number, { out: Writable; finish: () => Promise<void> }>();
  let exit: BuildOutcome | undefined;
  try {
    for await (const frame of call as AsyncIterable<Frame<BuildEvent>>) {
      const ev = frame.head;
      if (ev.kind === 'started') {
        paths = (ev.outputs ?? []).map((p, i): [string, string] => {
          const a = archives[i];
          if (!a) return [p, p];
          return a.spec.type === 'local' ? [`tar ${p}`, `local ${a.spec.dest}`] : [p, a.spec.dest!];
        });
        if (ev.context) paths.push([ev.context, contextDir]);
      } else if (ev.kind === 'queued') err(`waiting for a build slot on ${conn.address.raw} (${ev.position} ahead)\n`);
      else if (ev.kind === 'stderr') relayProgress(frame.data?.toString() ?? '');
      else if (ev.kind === 'stdout') process.stdout.write(frame.data ?? '');
      else if (ev.kind === 'output') {
        const a = archives[ev.index];
        if (!a) throw new MbuildError('MBUILD_REMOTE', `the server sent an output that was not asked for (${ev.index})`);
        let sink = sinks.get(ev.index);
        if (!sink) sinks.set(ev.index, (sink = await openSink(a)));
        if (frame.data && !sink.out.write(frame.data)) await once(sink.out, 'drain');
        if (ev.end) await sink.finish();
      } else if (ev.kind === 'ssh-open') agents.open(ev.conn, ev.ssh);
      else if (ev.kind === 'ssh-data') agents.data(ev.conn, frame.data);
      else if (ev.kind === 'ssh-close') agents.closeConn(ev.conn);
      else if (ev.kind === 'exit') {
        exit = { code: ev.code, iid: ev.iid, metadata: ev.metadata };
        call.end();
      }
    }
  } catch (e) {
    if (cancelled) {
      replay?.cancel();
      process.stderr.write('canceled\n');
      return { code: 130 };
    }
    replay?.close();
    throw conn.error(e as import('@grpc/grpc-js').ServiceError);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (partial) relayProgress('\n');
    if (!introShown && exit?.code === 0) showIntro();
  }
  if (cancelled) replay?.cancel();
  else replay?.close();
  if (cancelled) {
    process.stderr.write('canceled\n');
    return { code: 130 };
  }
  if (exit === undefined) throw new MbuildError('MBUILD_REMOTE', `the server at ${conn.address.raw} ended the build without an exit code`);
  return exit;
}

/** Where an output archive goes: a file (written under a temp name), stdout, or a folder it is unpacked into. */
async function openSink(a: ArchiveOutput): Promise<{ out: Writable; finish: () => Promise<void> }> {
  const dest = a.spec.dest!;
  if (dest === '-') return { out: process.stdout, finish: async () => undefined };
  if (a.unpack) {
    await fs.mkdir(dest, { recursive: true });
    // GNU tar: names are kept inside dest, symlinks that point out are made last as placeholders;
    // a layout directory (tar=false) is unpacked without the archive's owners, as locally
    const tar = spawn('tar', ['-x', ...(a.spec.type === 'local' ? ['-p'] : ['--no-same-owner']), '-f', '-', '-C', dest], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    tar.stderr!.on('data', (d) => (stderr += d));
    return {
      out: tar.stdin!,
      finish: async () => {
        tar.stdin!.end();
        const [code] = (await once(tar, 'close')) as [number | null];
        if (code !== 0) throw new MbuildError('MBUILD_EXPORT', `cannot write ${a.spec.type} output to ${dest}: ${stderr.trim()}`);
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
