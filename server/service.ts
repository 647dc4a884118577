/**
 * The handlers of the Builder service. A build is queued under the server-wide limit, gets a
 * context folder made from the uploaded content, runs as one worker process (server/worker.ts),
 * and streams that worker's progress, then its output archives, then its exit code. A cancelled
 * call (the client's Ctrl-C, a lost connection) interrupts its worker.
 */
import { createReadStream, promises as fs } from 'node:fs';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import PQueue from 'p-queue';
import { MbuildError, UsageError } from '../util/errors.js';
import { layout } from '../store/layout.js';
import { parseOutput } from '../builder/executor/output-spec.js';
import { ContextStore, syncContext } from './context-store.js';
import { forwardedArgs, type ServerPolicy } from './remote-flags.js';
import { ServerAgents } from './ssh-forward.js';
import { spawnWorker, runCommand, exitCode } from './worker.js';
import { WorkerFacts } from './worker-facts.js';
import type { BuildEvent, BuildInput, BuildRequest, CommandReply, CommandRequest, ExecEvent, ExecInput, ExecRequest, Frame, InfoReply, MissingReply, MissingRequest, UploadChunk } from './protocol.js';
import type { ManifestEntry } from './manifest.js';

type Call<Req, Res> = grpc.ServerUnaryCall<Frame<Req>, Frame<Res>>;
type Done<Res> = grpc.sendUnaryData<Frame<Res>>;

export interface ServiceOptions extends ServerPolicy {
  root: string;
  maxBuilds: number;
  version: string;
  log: (line: string) => void;
}

const CHUNK = 1024 * 1024;

export class BuilderService {
  readonly contexts: ContextStore;
  private readonly queue: PQueue;
  private readonly running = new Map<string, { kill: (sig: NodeJS.Signals) => void; digests: Set<string> }>();
  private readonly waiting = new Set<() => void>();
  /** context folders a running build reads (a second build of the same one gets a folder of its own) */
  private readonly busyContexts = new Set<string>();
  draining = false;
  private readonly facts: WorkerFacts;

  constructor(private readonly opts: ServiceOptions, private readonly grpcStatus: typeof grpc.status) {
    this.contexts = new ContextStore(opts.root);
    this.facts = new WorkerFacts(opts.root, opts.log);
    this.queue = new PQueue({ concurrency: opts.maxBuilds });
  }

  async init(): Promise<void> {
    await this.contexts.init();
    // build folders of a server that was killed: nothing runs in them any more
    await fs.rm(layout.serverBuilds(this.opts.root), { recursive: true, force: true });
    await fs.mkdir(layout.serverBuilds(this.opts.root), { recursive: true, mode: 0o700 });
    await fs.mkdir(layout.serverContexts(this.opts.root), { recursive: true, mode: 0o700 });
  }

  get active(): number {
    return this.running.size;
  }

  /** SIGTERM: refuse new builds, drop the queued ones, let the running ones finish. */
  drain(): void {
    this.draining = true;
    for (const cancel of [...this.waiting]) cancel();
  }

  /** A second signal: interrupt every running build. */
  interruptAll(): void {
    for (const r of this.running.values()) r.kill('SIGTERM');
  }

  idle(): Promise<void> {
    return this.queue.onIdle();
  }

  handlers(): grpc.UntypedServiceImplementation {
    const unary = <Req, Res>(fn: (req: Frame<Req>) => Promise<Res>) => (call: Call<Req, Res>, done: Done<Res>) => {
      fn(call.request).then(
        (head) => done(null, { head }),
        (err) => done(this.toStatus(err)),
      );
    };
    return {
      Missing: unary<MissingRequest, MissingReply>(async ({ head }) => {
        if (!Array.isArray(head.digests)) throw new UsageError('Missing: digests must be a list');
        return { missing: await this.contexts.missing(head.digests) };
      }),
      Upload: (call: grpc.ServerReadableStream<Frame<UploadChunk>, Frame<object>>, done: Done<object>) => {
        this.upload(call).then(
          () => done(null, { head: {} }),
          (err) => done(this.toStatus(err)),
        );
      },
      Build: (call: BuildCall) => {
        this.build(call).catch((err) => {
          this.opts.log(`build failed to run: ${(err as Error).message}`);
          call.emit('error', this.toStatus(err));
        });
      },
      Exec: (call: grpc.ServerDuplexStream<Frame<ExecRequest | ExecInput>, Frame<ExecEvent>>) => {
        this.exec(call).catch((err) => call.emit('error', this.toStatus(err)));
      },
      Images: unary<CommandRequest, CommandReply>(({ head }) => this.command('images', head)),
      Inspect: unary<CommandRequest, CommandReply>(({ head }) => this.command('inspect', head)),
      DiskUsage: unary<CommandRequest, CommandReply>(({ head }) => this.command('system df', head)),
      Prune: unary<CommandRequest, CommandReply>(({ head }) => this.prune(head)),
      Info: unary<object, InfoReply>(async () => ({
        version: this.opts.version,
        root: this.opts.root,
        pid: process.pid,
        maxBuilds: this.opts.maxBuilds,
        running: this.running.size,
        queued: this.queue.size,
        draining: this.draining,
      })),
    };
  }

  private toStatus(err: unknown): Partial<grpc.StatusObject> {
    const s = this.grpcStatus;
    if (err instanceof UsageError) return { code: s.INVALID_ARGUMENT, details: err.message };
    if (err instanceof MbuildError) return { code: s.FAILED_PRECONDITION, details: err.message };
    return { code: s.INTERNAL, details: (err as Error)?.message ?? String(err) };
  }

  private async command(name: 'images' | 'inspect' | 'system df', req: CommandRequest): Promise<CommandReply> {
    const args = checkArgs(req.args);
    return runCommand(this.opts.root, [...name.split(' '), ...args]);
  }

  /** The CLI's prune; with --all also the context content no running build reads. */
  private async prune(req: CommandRequest): Promise<CommandReply> {
    const args = checkArgs(req.args);
    const r = await runCommand(this.opts.root, ['prune', ...args]);
    if (r.code === 0 && args.some((a) => a === '--all' || a === '-a') && !args.includes('--format=json') && !args.includes('json')) {
      const inUse = new Set<string>();
      for (const b of this.running.values()) for (const d of b.digests) inUse.add(d);
      let [count, bytes] = await this.contexts.prune(inUse);
      // the kept context folders no running build reads
      const dir = layout.serverContexts(this.opts.root);
      const { treeBytes } = await import('../store/usage.js');
      for (const n of await fs.readdir(dir).catch(() => [] as string[])) {
        const key = n.replace(/\.json$/, '');
        if (this.busyContexts.has(key)) continue;
        const p = path.join(dir, n);
        if (!n.endsWith('.json')) {
          bytes += await treeBytes(p).catch(() => 0);
          count++;
        }
        await fs.rm(p, { recursive: true, force: true });
      }
      const { humanBytes } = await import('../store/usage.js');
      r.stdout += `Deleted context files: ${count} (${humanBytes(bytes)})\n`;
    }
    return r;
  }

  private async upload(call: grpc.ServerReadableStream<Frame<UploadChunk>, Frame<object>>): Promise<void> {
    let current: { sha: string; writer: ReturnType<ContextStore['writer']> } | undefined;
    try {
      for await (const frame of call as AsyncIterable<Frame<UploadChunk>>) {
        const sha = frame.head.sha256;
        if (!current || current.sha !== sha) {
          if (current) throw new UsageError(`upload: ${current.sha} was not finished before ${sha}`);
          current = { sha, writer: this.contexts.writer(sha) };
        }
        if (frame.data) await current.writer.write(frame.data);
        if (frame.head.end) {
          await current.writer.commit();
          current = undefined;
        }
      }
      if (current) throw new UsageError(`upload: ${current.sha} ended early`);
    } catch (err) {
      current?.writer.abort();
      throw err;
    }
  }

  /**
   * The worker's COPY steps key context files by their sha256, remembered by stat in the store's
   * file-hash cache: the server wrote every file from content verified by the digest the manifest
   * names, so it records those digests for the files as they are now, and a fresh runner's copy
   * (new mtimes) is never read again on the server.
   */
  private async rememberHashes(contextDir: string, manifest: ManifestEntry[]): Promise<void> {
    const { FileHashCache } = await import('../builder/cache/file-hashes.js');
    const cache = await FileHashCache.load(path.join(layout.cache(this.opts.root), 'file-hashes.json'));
    for (const e of manifest) {
      if (e.t !== 'f' || !e.h) continue;
      const file = path.join(contextDir, e.p);
      const st = await fs.lstat(file).catch(() => undefined);
      if (st?.isFile()) cache.remember(file, st, e.h);
    }
    await cache.save();
  }

  /** The first message of a Build call is the request; what follows is the client's side of ssh connections. */
  private async build(call: BuildCall): Promise<void> {
    let agents: ServerAgents | undefined;
    const first = new Promise<Frame<BuildRequest>>((resolve, reject) => {
      call.once('data', (f: Frame<BuildRequest | BuildInput>) => {
        resolve(f as Frame<BuildRequest>);
        call.on('data', (g: Frame<BuildRequest | BuildInput>) => agents?.input(g.head as BuildInput, g.data));
      });
      call.once('end', () => reject(new UsageError('build request: the call ended before the request')));
      call.once('error', reject);
    });
    const send = async (head: BuildEvent, data?: Buffer) => {
      if (cancelled) return;
      if (!call.write({ head, data })) await Promise.race([once(call, 'drain'), once(call, 'cancelled')]);
    };
    let cancelled = false;
    let kill: ((sig: NodeJS.Signals) => void) | undefined;
    call.on('cancelled', () => {
      cancelled = true;
      kill?.('SIGINT');
    });
    if (this.draining) {
      call.emit('error', { code: this.grpcStatus.UNAVAILABLE, details: 'the server is shutting down' });
      return;
    }
    const req = checkBuildRequest((await first).head);
    const workerArgs = forwardedArgs(req.flags, this.opts);
    const id = randomBytes(6).toString('hex');
    const queuedAt = this.queue.size + this.queue.pending;
    if (queuedAt >= this.opts.maxBuilds) await send({ kind: 'queued', position: queuedAt - this.opts.maxBuilds + 1 });
    // a queued build that SIGTERM drops before it starts is told so (running ones finish)
    let dropped = false;
    const drop = () => {
      dropped = true;
      call.emit('error', { code: this.grpcStatus.UNAVAILABLE, details: 'the server is shutting down' });
    };
    this.waiting.add(drop);
    await this.queue.add(async () => {
      this.waiting.delete(drop);
      if (cancelled || dropped) return;
      await this.runBuild(id, req, workerArgs, send, (k) => (kill = k), () => cancelled, (a) => (agents = a));
    });
    this.waiting.delete(drop);
    if (!cancelled && !dropped) call.end();
  }

  /** load, save, push, pull, rmi, tag, history: the CLI's command on the server's store, stdin and stdout streamed. */
  private async exec(call: grpc.ServerDuplexStream<Frame<ExecRequest | ExecInput>, Frame<ExecEvent>>): Promise<void> {
    let child: ReturnType<typeof spawnWorker> | undefined;
    const pending: Frame<ExecInput>[] = [];
    let stdinDone = false;
    const feed = (f: Frame<ExecInput>) => {
      if (!child) return void pending.push(f);
      if (f.data?.length && !stdinDone) child.stdin!.write(f.data);
      if (f.head?.end && !stdinDone) {
        stdinDone = true;
        child.stdin!.end();
      }
    };
    const first = await new Promise<Frame<ExecRequest>>((resolve, reject) => {
      call.once('data', (f: Frame<ExecRequest | ExecInput>) => {
        resolve(f as Frame<ExecRequest>);
        call.on('data', (g: Frame<ExecRequest | ExecInput>) => feed(g as Frame<ExecInput>));
      });
      call.once('end', () => reject(new UsageError('exec: the call ended before the request')));
    });
    const { command, args } = checkExec(first.head);
    let cancelled = false;
    call.on('cancelled', () => {
      cancelled = true;
      child?.kill('SIGINT');
    });
    child = spawnWorker(this.opts.root, [command, ...args], undefined, { stdin: true });
    child.stdin!.on('error', () => undefined); // a command that does not read its stdin
    for (const f of pending.splice(0)) feed(f);
    const send = async (head: ExecEvent, data?: Buffer) => {
      if (cancelled) return;
      if (!call.write({ head, data })) await Promise.race([once(call, 'drain'), once(call, 'cancelled')]);
    };
    const writes: Promise<void>[] = [];
    for (const kind of ['stdout', 'stderr'] as const) {
      const stream = child[kind]!;
      stream.on('data', (d: Buffer) => {
        stream.pause();
        writes.push(send({ kind }, d).finally(() => stream.resume()));
      });
    }
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    await Promise.all(writes);
    await send({ kind: 'exit', code: exitCode(code, signal) });
    if (!cancelled) call.end();
  }

  private async runBuild(
    id: string,
    req: BuildRequest,
    workerArgs: string[],
    send: (head: BuildEvent, data?: Buffer) => Promise<void>,
    setKill: (k: (sig: NodeJS.Signals) => void) => void,
    cancelled: () => boolean,
    setAgents: (a: ServerAgents) => void,
  ): Promise<number> {
    let agents: ServerAgents | undefined;
    const work = path.join(layout.serverBuilds(this.opts.root), id);
    const digests = new Set(req.manifest.filter((e) => e.t === 'f').map((e) => e.h!));
    const entry = { kill: (_: NodeJS.Signals) => undefined as void, digests };
    this.running.set(id, entry);
    const key = req.contextKey !== undefined && /^[0-9a-f]{64}$/.test(req.contextKey) && !this.busyContexts.has(req.contextKey) ? req.contextKey : undefined;
    if (key) this.busyContexts.add(key);
    this.opts.log(`build ${id}: started (${req.manifest.length} context entries)`);
    // checked while the context arrives (a failure hands nothing down: never rejects)
    const facts = this.facts.env();
    try {
      const contextDir = key ? path.join(layout.serverContexts(this.opts.root), key) : path.join(work, 'context');
      const outputs = req.outputs.map((o, i) => ({ spec: o.spec, dest: path.join(work, `output-${i}`) }));
      const secretFiles: { id: string; file: string }[] = [];
      await send({ kind: 'started', context: contextDir, outputs: outputs.map((o) => o.dest) });
      await fs.mkdir(work, { mode: 0o700 });
      if (key) await syncContext(this.contexts, req.manifest, contextDir, `${contextDir}.json`);
      else await this.contexts.materialize(req.manifest, contextDir);
      if (req.contextRoot) {
        await fs.chmod(contextDir, req.contextRoot.m & 0o7777);
        await fs.utimes(contextDir, req.contextRoot.mt / 1000, req.contextRoot.mt / 1000);
      }
      await this.rememberHashes(contextDir, req.manifest);
      // secrets live in the build's own folder (0700, removed when it ends), read-only to the worker
      for (const [i, sec] of (req.secrets ?? []).entries()) {
        if (i === 0) await fs.mkdir(path.join(work, 'secrets'), { mode: 0o700 });
        const file = path.join(work, 'secrets', String(i));
        await fs.writeFile(file, Buffer.from(sec.value, 'base64'), { mode: 0o400 });
        secretFiles.push({ id: sec.id, file });
      }
      const dfDir = path.join(work, 'dockerfile');
      await fs.mkdir(dfDir);
      const dockerfile = path.join(dfDir, req.dockerfileName);
      await fs.writeFile(dockerfile, req.dockerfile);
      if (req.dockerfileIgnore !== undefined) await fs.writeFile(dockerfile + '.dockerignore', req.dockerfileIgnore);
      // --ssh: a socket per id in the build's folder; each connection is relayed to the client's agent
      if (req.ssh?.length) {
        agents = await ServerAgents.listen(path.join(work, 'ssh'), req.ssh, send);
        setAgents(agents);
      }
      // the build's SOURCE_DATE_EPOCH is the client's, never the server's own
      const env = { ...(await facts), SOURCE_DATE_EPOCH: req.sourceDateEpoch ?? '' };
      const secretArgs = secretFiles.map((f) => `--secret=id=${f.id},src=${f.file}`);
      const sshArgs = (agents?.sockets ?? []).map(([sshId, sock]) => `--ssh=${sshId}=${sock}`);
      const iidFile = path.join(work, 'iid');
      const metadataFile = path.join(work, 'metadata.json');
      const args = [
        `--progress=${req.progress === 'rawjson' ? 'rawjson' : 'plain'}`,
        `--file=${dockerfile}`,
        ...Object.entries(req.buildArgs).map(([k, v]) => `--build-arg=${k}=${v}`),
        ...workerArgs,
        ...(req.quiet ? ['--quiet'] : []),
        ...outputs.map((o) => `--output=${o.spec},dest=${o.dest}`),
        ...secretArgs,
        ...sshArgs,
        `--iidfile=${iidFile}`,
        `--metadata-file=${metadataFile}`,
      ];
      const child = spawnWorker(this.opts.root, ['build', ...args, '--', contextDir], env);
      const kill = (sig: NodeJS.Signals) => {
        if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      };
      entry.kill = kill;
      setKill(kill);
      if (cancelled()) kill('SIGINT');
      const pending: Promise<void>[] = [];
      // progress and the image id flow on as the worker writes them (a slow client slows the pipe)
      const relay = (stream: NodeJS.ReadableStream, kind: 'stderr' | 'stdout') =>
        stream.on('data', (d: Buffer) => {
          stream.pause();
          const p = send({ kind }, d).finally(() => stream.resume());
          pending.push(p);
        });
      relay(child.stdout!, 'stdout');
      relay(child.stderr!, 'stderr');
      const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
      await Promise.all(pending);
      let rc = exitCode(code, signal);
      if (cancelled()) {
        this.opts.log(`build ${id}: cancelled by the client (worker exit ${rc})`);
        return rc;
      }
      if (rc === 0) {
        for (const [i, o] of outputs.entries()) {
          for await (const chunk of createReadStream(o.dest, { highWaterMark: CHUNK })) await send({ kind: 'output', index: i }, chunk as Buffer);
          await send({ kind: 'output', index: i, end: true });
        }
      }
      const iid = await fs.readFile(iidFile, 'utf8').catch(() => undefined);
      const metadata = await fs.readFile(metadataFile, 'utf8').catch(() => undefined);
      await send({ kind: 'exit', code: rc, ...(iid !== undefined ? { iid } : {}), ...(metadata !== undefined ? { metadata } : {}) });
      this.opts.log(`build ${id}: finished, exit ${rc}`);
      return rc;
    } catch (err) {
      const msg = err instanceof MbuildError ? err.toString() : (err as Error).message;
      this.opts.log(`build ${id}: ${msg}`);
      await send({ kind: 'stderr' }, Buffer.from(`error: ${msg}\n`));
      await send({ kind: 'exit', code: err instanceof UsageError ? 2 : 1 });
      return 1;
    } finally {
      await agents?.close();
      if (key) this.busyContexts.delete(key);
      this.running.delete(id);
      await fs.rm(work, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

function checkArgs(args: unknown): string[] {
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw new UsageError('args must be a list of strings');
  // options for the command itself only: nothing that reaches for the server's files
  if (args.some((a) => a === '--root' || a.startsWith('--root='))) throw new UsageError('--root cannot be given to a server');
  return args;
}

const str = (v: unknown, what: string): string | undefined => {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new UsageError(`build request: ${what} must be a string`);
  return v;
};

function checkBuildRequest(r: BuildRequest): BuildRequest {
  if (!r || !Array.isArray(r.manifest)) throw new UsageError('build request: no context manifest');
  if (typeof r.dockerfile !== 'string' || typeof r.dockerfileName !== 'string' || !/^[^/\0]+$/.test(r.dockerfileName) || r.dockerfileName.startsWith('.')) {
    throw new UsageError('build request: invalid Dockerfile');
  }
  for (const k of ['dockerfileIgnore', 'contextKey', 'sourceDateEpoch'] as const) str(r[k], k);
  if (r.contextRoot !== undefined && (typeof r.contextRoot?.m !== 'number' || typeof r.contextRoot?.mt !== 'number')) throw new UsageError('build request: invalid context root');
  if (r.secrets !== undefined && (!Array.isArray(r.secrets) || !r.secrets.every((x) => typeof x?.id === 'string' && /^[A-Za-z0-9_.\/-]+$/.test(x.id) && typeof x.value === 'string'))) {
    throw new UsageError('build request: invalid secrets');
  }
  if (r.ssh !== undefined && (!Array.isArray(r.ssh) || !r.ssh.every((x) => typeof x === 'string' && /^[A-Za-z0-9_.-]+$/.test(x)) || new Set(r.ssh).size !== r.ssh.length)) {
    throw new UsageError('build request: invalid ssh ids');
  }
  if (!r.buildArgs || typeof r.buildArgs !== 'object' || !Object.values(r.buildArgs).every((v) => typeof v === 'string')) throw new UsageError('build request: invalid build args');
  if (!Array.isArray(r.outputs)) throw new UsageError('build request: invalid outputs');
  for (const o of r.outputs) {
    // archives only, and never a dest or tar= of the client's choosing: the server picks the file
    if (!['oci', 'docker', 'tar'].includes(o?.type) || typeof o.spec !== 'string' || /(^|,)\s*"?\s*(dest|tar)\s*=/i.test(o.spec)) throw new UsageError('build request: invalid outputs');
    const parsed = parseOutput(`${o.spec},dest=/x`);
    if (parsed.type !== o.type) throw new UsageError('build request: invalid outputs');
  }
  for (const e of r.manifest as ManifestEntry[]) if (e.t === 'f' && (typeof e.h !== 'string' || !/^[0-9a-f]{64}$/.test(e.h))) throw new UsageError(`build request: ${e.p} has no valid digest`);
  return r;
}

/** Exec: the commands a client may run on the server's store, with none of their options that name a server file. */
function checkExec(r: ExecRequest): { command: string; args: string[] } {
  const allowed = ['load', 'save', 'push', 'pull', 'rmi', 'tag', 'history'];
  if (!r || typeof r.command !== 'string' || !allowed.includes(r.command)) throw new UsageError(`exec: only ${allowed.join(', ')}`);
  const args = checkArgs(r.args);
  const fileFlag = r.command === 'load' ? /^(-i|--input)(=|$)/ : r.command === 'save' ? /^(-o|--output)(=|$)/ : undefined;
  if (fileFlag) {
    const end = args.indexOf('--');
    if (args.slice(0, end < 0 ? args.length : end).some((a) => fileFlag.test(a))) throw new UsageError(`exec: ${r.command} reads and writes through the call, not a server file`);
  }
  return { command: r.command, args };
}

type BuildCall = grpc.ServerDuplexStream<Frame<BuildRequest | BuildInput>, Frame<BuildEvent>>;
