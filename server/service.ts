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
import { ContextStore, syncContext } from './context-store.js';
import { spawnWorker, runCommand, exitCode } from './worker.js';
import type { BuildEvent, BuildRequest, CommandReply, CommandRequest, Frame, InfoReply, MissingReply, MissingRequest, UploadChunk } from './protocol.js';
import type { ManifestEntry } from './manifest.js';

type Call<Req, Res> = grpc.ServerUnaryCall<Frame<Req>, Frame<Res>>;
type Done<Res> = grpc.sendUnaryData<Frame<Res>>;

export interface ServiceOptions {
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

  constructor(private readonly opts: ServiceOptions, private readonly grpcStatus: typeof grpc.status) {
    this.contexts = new ContextStore(opts.root);
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
      Build: (call: grpc.ServerWritableStream<Frame<BuildRequest>, Frame<BuildEvent>>) => {
        this.build(call).catch((err) => {
          this.opts.log(`build failed to run: ${(err as Error).message}`);
          call.emit('error', this.toStatus(err));
        });
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

  private async build(call: grpc.ServerWritableStream<Frame<BuildRequest>, Frame<BuildEvent>>): Promise<void> {
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
    const req = checkBuildRequest(call.request.head);
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
      await this.runBuild(id, req, send, (k) => (kill = k), () => cancelled);
    });
    this.waiting.delete(drop);
    if (!cancelled && !dropped) call.end();
  }

  private async runBuild(
    id: string,
    req: BuildRequest,
    send: (head: BuildEvent, data?: Buffer) => Promise<void>,
    setKill: (k: (sig: NodeJS.Signals) => void) => void,
    cancelled: () => boolean,
  ): Promise<number> {
    const work = path.join(layout.serverBuilds(this.opts.root), id);
    const digests = new Set(req.manifest.filter((e) => e.t === 'f').map((e) => e.h!));
    const entry = { kill: (_: NodeJS.Signals) => undefined as void, digests };
    this.running.set(id, entry);
    const key = req.contextKey !== undefined && /^[0-9a-f]{64}$/.test(req.contextKey) && !this.busyContexts.has(req.contextKey) ? req.contextKey : undefined;
    if (key) this.busyContexts.add(key);
    this.opts.log(`build ${id}: started (${req.manifest.length} context entries)`);
    try {
      const contextDir = key ? path.join(layout.serverContexts(this.opts.root), key) : path.join(work, 'context');
      const outputs = req.outputs.map((o, i) => ({ type: o.type, dest: path.join(work, `output-${i}`) }));
      const secretFiles: { id: string; file: string }[] = [];
      await send({ kind: 'started', context: contextDir, outputs: outputs.map((o) => o.dest) });
      await fs.mkdir(work, { mode: 0o700 });
      if (key) await syncContext(this.contexts, req.manifest, contextDir, `${contextDir}.json`);
      else await this.contexts.materialize(req.manifest, contextDir);
      if (req.contextRoot) {
        await fs.chmod(contextDir, req.contextRoot.m & 0o7777);
        await fs.utimes(contextDir, req.contextRoot.mt / 1000, req.contextRoot.mt / 1000);
      }
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
      // the build's SOURCE_DATE_EPOCH is the client's, never the server's own
      const env = { SOURCE_DATE_EPOCH: req.sourceDateEpoch ?? '' };
      const secretArgs = secretFiles.map((f) => `--secret=id=${f.id},src=${f.file}`);
      const child = spawnWorker(this.opts.root, ['build', ...buildArgs(req, dockerfile, outputs), ...secretArgs, '--', contextDir], env);
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
      await send({ kind: 'exit', code: rc });
      this.opts.log(`build ${id}: finished, exit ${rc}`);
      return rc;
    } catch (err) {
      const msg = err instanceof MbuildError ? err.toString() : (err as Error).message;
      this.opts.log(`build ${id}: ${msg}`);
      await send({ kind: 'stderr' }, Buffer.from(`error: ${msg}\n`));
      await send({ kind: 'exit', code: err instanceof UsageError ? 2 : 1 });
      return 1;
    } finally {
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
  for (const k of ['target', 'network', 'memory', 'cpus', 'pidsLimit', 'platform', 'jobs', 'dockerfileIgnore', 'contextKey', 'sourceDateEpoch'] as const) str(r[k], k);
  if (r.contextRoot !== undefined && (typeof r.contextRoot?.m !== 'number' || typeof r.contextRoot?.mt !== 'number')) throw new UsageError('build request: invalid context root');
  if (r.secrets !== undefined && (!Array.isArray(r.secrets) || !r.secrets.every((x) => typeof x?.id === 'string' && /^[A-Za-z0-9_.\/-]+$/.test(x.id) && typeof x.value === 'string'))) {
    throw new UsageError('build request: invalid secrets');
  }
  if (!Array.isArray(r.tags) || !r.tags.every((t) => typeof t === 'string')) throw new UsageError('build request: tags must be strings');
  if (!r.buildArgs || typeof r.buildArgs !== 'object' || !Object.values(r.buildArgs).every((v) => typeof v === 'string')) throw new UsageError('build request: invalid build args');
  if (!Array.isArray(r.outputs) || !r.outputs.every((o) => ['oci', 'docker', 'tar'].includes(o?.type))) throw new UsageError('build request: invalid outputs');
  for (const e of r.manifest as ManifestEntry[]) if (e.t === 'f' && (typeof e.h !== 'string' || !/^[0-9a-f]{64}$/.test(e.h))) throw new UsageError(`build request: ${e.p} has no valid digest`);
  return r;
}

/** The worker's command line: every value in `--flag=value` form, so no value can read as a flag. */
function buildArgs(r: BuildRequest, dockerfile: string, outputs: { type: string; dest: string }[]): string[] {
  const a = ['--progress=plain', `--file=${dockerfile}`];
  for (const t of r.tags) a.push(`--tag=${t}`);
  for (const [k, v] of Object.entries(r.buildArgs)) a.push(`--build-arg=${k}=${v}`);
  if (r.target !== undefined) a.push(`--target=${r.target}`);
  if (r.network !== undefined) a.push(`--network=${r.network}`);
  if (r.memory !== undefined) a.push(`--memory=${r.memory}`);
  if (r.cpus !== undefined) a.push(`--cpus=${r.cpus}`);
  if (r.pidsLimit !== undefined) a.push(`--pids-limit=${r.pidsLimit}`);
  if (r.platform !== undefined) a.push(`--platform=${r.platform}`);
  if (r.jobs !== undefined) a.push(`--jobs=${r.jobs}`);
  if (r.noCache) a.push('--no-cache');
  if (r.pull) a.push('--pull');
  if (r.push) a.push('--push');
  if (r.quiet) a.push('--quiet');
  for (const o of outputs) a.push(`--output=type=${o.type},dest=${o.dest}`);
  return a;
}
