/**
 * RUN --mount: from the parsed options (dockerfile/run-mount.ts) to what the step's cache key covers
 * and to the sandbox's mounts, with BuildKit's defaults (dockerfile2llb/convert_runmount.go,
 * convert_secrets.go, convert_ssh.go):
 *
 *   bind    the context (read-only, .dockerignore applied) or `from=` a stage or an image; `source` a
 *           path inside it; `rw` writes go to a scratch overlay thrown away after the step
 *   cache   a store directory keyed by id (default: the target), sharing shared|private|locked
 *   tmpfs   a fresh tmpfs (size=)
 *   secret  a --secret value as a file (default /run/secrets/<id>, mode 0400) and/or env=
 *   ssh     a socket forwarding a --ssh agent (default /run/buildkit/ssh_agent.N, mode 0600);
 *           SSH_AUTH_SOCK is set to the first one
 *
 * The key covers each mount's options and, for binds, the content they show (the context files'
 * digest or the source stage's key). Never a secret's value, never a cache's content.
 */
import { promises as fs, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { RunInstruction } from '../dockerfile/types.js';
import { parseRunMount, type RunMount } from '../dockerfile/run-mount.js';
import { HEREDOC_PIPES_DIR, type InlineFile } from '../dockerfile/heredoc.js';
import type { StepRun } from './contract.js';
import { lookupFor, type StageState } from './state.js';
import { expandWord } from '../expand/shell-word.js';
import { resolveSources, walkSourceSync, type SourceEntry } from '../context/sources.js';
import { resolveInScope } from '../context/scope.js';
import { digestSources } from '../cache/context-hash.js';
import { CacheMounts } from '../../store/cache-mounts.js';
import { MbuildError } from '../../util/errors.js';
import type { SandboxMount } from '../sandbox/run.js';

export interface PreparedMounts {
  /** what the cache key takes from the mounts (undefined: no mounts, the key is as before) */
  key?: unknown[];
  /** sets the mounts up for fn and takes them down after; env holds env= secrets and SSH_AUTH_SOCK */
  use<T>(fn: (mounts: SandboxMount[], env: string[]) => Promise<T>): Promise<T>;
}

interface Resolved {
  m: RunMount;
  target: string;
  /** secret / ssh / cache id after defaults */
  id?: string;
  /** bind/cache from a stage or image */
  src?: StageState;
  /** bind from the context: the entries it shows */
  ctxEntry?: SourceEntry;
}

type Acquire = (mounts: SandboxMount[], env: string[], next: () => Promise<unknown>) => Promise<unknown>;

const mountErr = (ins: RunInstruction, msg: string) => new MbuildError('MBUILD_RUN_MOUNT', msg, { range: ins.range });

export async function prepareMounts(run: StepRun, ins: RunInstruction, files: InlineFile[] = []): Promise<PreparedMounts> {
  if (ins.mounts.length === 0 && files.length === 0) return { use: (fn) => fn([], []) };
  const { ctx, state } = run;
  const lookup = lookupFor(state);
  const workdir = state.config.WorkingDir || '/';
  const resolved: Resolved[] = [];
  let sshIndex = 0;
  for (const raw of ins.mounts) {
    const m = parseRunMount(raw, (w) => expandWord(w, lookup, ctx.escape), ins.range);
    const r: Resolved = { m, target: '' };
    if (m.type === 'secret') {
      r.id = m.source || m.id || path.posix.basename(m.target!);
      if (m.target) r.target = m.target;
      else if (m.env === undefined) r.target = `/run/secrets/${path.posix.basename(r.id)}`;
    } else if (m.type === 'ssh') {
      r.id = m.id || 'default';
      r.target = m.target || `/run/buildkit/ssh_agent.${sshIndex}`;
      sshIndex++;
    } else {
      r.target = m.target ?? '';
      if (m.type === 'cache') r.id = m.id || path.posix.normalize(m.target || '.');
    }
    if (r.target) {
      r.target = path.posix.isAbsolute(r.target) ? path.posix.normalize(r.target) : path.posix.join('/', workdir, r.target);
      if (r.target.length > 1 && r.target.endsWith('/')) r.target = r.target.slice(0, -1);
    }
    if ((m.type !== 'secret' || m.env === undefined || m.target) && r.target === '/') throw mountErr(ins, `invalid mount target "/"`);
    if (m.from && (m.type === 'bind' || m.type === 'cache')) {
      const dep = ctx.stageIndexOf(m.from);
      r.src = dep !== undefined ? await ctx.stageResult(dep) : await ctx.imageState(m.from);
    } else if (m.type === 'bind') {
      const entries = await resolveSources(ctx.contextDir, [m.source || '.'], ctx.ignore).catch((err: Error) => {
        throw mountErr(ins, `RUN --mount: source ${m.source || '.'} in the build context: ${err.message}`);
      });
      r.ctxEntry = entries[0];
    } else if (m.from && m.type !== 'tmpfs') {
      throw mountErr(ins, `from= is not valid for ${m.type} mounts`);
    }
    resolved.push(r);
  }

  // the key: options as written (after defaults), bind content; secrets by id only
  const key: unknown[] = [];
  for (const r of resolved) {
    const { m } = r;
    const base = { type: m.type, target: r.target, readonly: m.readonly };
    if (m.type === 'bind') {
      const content = r.ctxEntry ? (await digestSources(ctx.contextDir, [r.ctxEntry], ctx.ignore, ctx.fileHashes)).digest : undefined;
      key.push({ ...base, source: m.source, from: r.src?.key, content });
    } else if (m.type === 'cache') key.push({ ...base, id: r.id, sharing: m.sharing ?? 'shared', from: r.src?.key, source: m.source, mode: m.mode, uid: m.uid, gid: m.gid });
    else if (m.type === 'tmpfs') key.push({ ...base, size: m.size });
    else key.push({ ...base, id: r.id, env: m.env, required: m.required, mode: m.mode, uid: m.uid, gid: m.gid });
  }

  const acquirers: Acquire[] = resolved.map((r) => acquirer(run, ins, r));
  if (files.length) {
    // a `#!` here-document: its script, read-only under /dev/pipes (BuildKit's mount for it)
    key.push({ type: 'heredoc', target: HEREDOC_PIPES_DIR, files: files.map((f) => ({ name: f.name, data: f.data, mode: f.mode })) });
    acquirers.push(async (mounts, _env, next) => {
      const dir = await run.ctx.store.mkTemp('heredoc');
      try {
        for (const f of files) {
          await fs.writeFile(path.join(dir, f.name), f.data);
          await fs.chmod(path.join(dir, f.name), f.mode);
        }
        await fs.chmod(dir, 0o755);
        mounts.push({ kind: 'bind', source: dir, target: HEREDOC_PIPES_DIR, readonly: true });
        return await next();
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    });
  }
  return {
    key,
    async use(fn) {
      const mounts: SandboxMount[] = [];
      const env: string[] = [];
      let result: unknown;
      const step = async (i: number): Promise<unknown> => {
        // parents before what is mounted inside them (a stable sort keeps the Dockerfile's order otherwise)
        const depth = (t: string) => t.split('/').length;
        if (i === acquirers.length) return (result = await fn([...mounts].sort((a, b) => depth(a.target) - depth(b.target)), env));
        return acquirers[i]!(mounts, env, () => step(i + 1));
      };
      await step(0);
      return result as Awaited<ReturnType<typeof fn>>;
    },
  };
}

function acquirer(run: StepRun, ins: RunInstruction, r: Resolved): Acquire {
  const { ctx } = run;
  const { m } = r;
  switch (m.type) {
    case 'tmpfs':
      return (mounts, _env, next) => {
        mounts.push({ kind: 'tmpfs', target: r.target, size: m.size });
        return next();
      };
    case 'bind':
      return async (mounts, _env, next) => {
        if (r.src) {
          return ctx.snap.view(r.src.layers, async (root) => {
            mounts.push({ kind: 'bind', source: await inScope(ins, root, m.source, `--from=${m.from}`), target: r.target, readonly: m.readonly, scratch: !m.readonly });
            return next();
          });
        }
        if (ctx.ignore.isEmpty) {
          mounts.push({ kind: 'bind', source: r.ctxEntry!.hostPath, target: r.target, readonly: m.readonly, scratch: !m.readonly });
          return next();
        }
        // .dockerignore applies: the step sees the filtered context, as BuildKit's transferred one
        const copy = await ctx.store.mkTemp('mount-context');
        try {
          await copyFiltered(ctx.contextDir, r.ctxEntry!, ctx.ignore, copy);
          mounts.push({ kind: 'bind', source: copy, target: r.target, readonly: m.readonly, scratch: !m.readonly });
          return await next();
        } finally {
          await fs.rm(copy, { recursive: true, force: true });
        }
      };
    case 'cache':
      return async (mounts, _env, next) => {
        const caches = new CacheMounts(ctx.store.root);
        const go = (seed?: { dir: string; key: string }) =>
          caches.use({ id: r.id!, sharing: m.sharing ?? 'shared', mode: m.mode ?? 0o755, uid: m.uid ?? 0, gid: m.gid ?? 0, seed }, async (dir) => {
            let source = dir;
            if (m.source && !seed) {
              source = await inScope(ins, dir, m.source, `cache ${r.id}`, true);
              await fs.mkdir(source, { recursive: true });
            }
            mounts.push({ kind: 'bind', source, target: r.target, readonly: m.readonly });
            return next();
          });
        if (!r.src) return go();
        return ctx.snap.view(r.src.layers, async (root) => go({ dir: await inScope(ins, root, m.source, `--from=${m.from}`), key: `${r.src!.key}:${m.source ?? '/'}` }));
      };
    case 'secret':
      return async (mounts, env, next) => {
        const value = await readSecret(run, ins, r.id!);
        if (value === undefined) {
          if (m.required) throw mountErr(ins, `secret ${r.id} is required but was not given (mbuild build --secret id=${r.id},src=FILE)`);
          return next();
        }
        if (m.env !== undefined) {
          if (value.includes(0)) throw mountErr(ins, `secret ${r.id} contains a NUL byte and cannot be an environment variable`);
          env.push(`${m.env}=${value.toString('utf8')}`);
        }
        if (!r.target) return next();
        const dir = await privateTemp(ctx.store.tmpDir, 'secret');
        try {
          const file = path.join(dir, 'secret');
          await fs.writeFile(file, value, { mode: 0o600 });
          await fs.chown(file, m.uid ?? 0, m.gid ?? 0);
          await fs.chmod(file, m.mode ?? 0o400);
          mounts.push({ kind: 'bind', source: file, target: r.target, readonly: true });
          return await next();
        } finally {
          await fs.rm(dir, { recursive: true, force: true });
        }
      };
    case 'ssh':
      return async (mounts, env, next) => {
        // BuildKit sets it when it writes the step, whether or not the agent is given
        if (!env.some((e) => e.startsWith('SSH_AUTH_SOCK='))) env.push(`SSH_AUTH_SOCK=${r.target}`);
        const src = run.ctx.ssh?.get(r.id!);
        if (!src) {
          if (m.required) throw mountErr(ins, `ssh agent ${r.id} is required but was not given (mbuild build --ssh ${r.id === 'default' ? 'default' : `${r.id}=SOCKET`})`);
          return next();
        }
        const dir = await privateTemp(ctx.store.tmpDir, 'ssh');
        const agent = await AgentForward.start(src.paths, dir, ins);
        try {
          const sock = path.join(dir, 'agent.sock');
          await agent.listen(sock);
          await fs.chown(sock, m.uid ?? 0, m.gid ?? 0);
          await fs.chmod(sock, m.mode ?? 0o600);
          mounts.push({ kind: 'bind', source: sock, target: r.target, readonly: false });
          return await next();
        } finally {
          await agent.close();
          await fs.rm(dir, { recursive: true, force: true });
        }
      };
  }
}

/** source inside root (symlinks followed in scope); must exist unless `create`. */
async function inScope(ins: RunInstruction, root: string, source: string | undefined, where: string, create = false): Promise<string> {
  if (!source || path.posix.normalize('/' + source) === '/') return root;
  const p = await resolveInScope(root, source, true);
  if (!create) {
    try {
      statSync(p);
    } catch {
      throw mountErr(ins, `RUN --mount: source ${source} not found in ${where}`);
    }
  }
  return p;
}

async function readSecret(run: StepRun, ins: RunInstruction, id: string): Promise<Buffer | undefined> {
  const src = run.ctx.secrets?.get(id);
  if (!src) return undefined;
  if (src.env !== undefined) {
    const v = process.env[src.env];
    return v === undefined ? undefined : Buffer.from(v);
  }
  try {
    return await fs.readFile(src.file!);
  } catch (err) {
    // the path and the errno only: never the content
    throw mountErr(ins, `cannot read secret ${id} from ${src.file}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
  }
}

/** A 0700 dir for a secret or a socket: in RAM (/dev/shm) when there is one, so no secret touches the disk. */
async function privateTemp(fallback: string, prefix: string): Promise<string> {
  const shm = '/dev/shm';
  const parent = statSync(shm, { throwIfNoEntry: false })?.isDirectory() ? shm : fallback;
  const dir = await fs.mkdtemp(path.join(parent === shm ? parent : fallback, `mbuild-${prefix}-${process.pid}-`));
  await fs.chmod(dir, 0o700);
  return dir;
}

async function copyFiltered(contextDir: string, entry: SourceEntry, ignore: StepRun['ctx']['ignore'], dest: string): Promise<void> {
  const st = statSync(entry.hostPath);
  if (!entry.isDir) {
    await fs.rmdir(dest);
    await fs.copyFile(entry.hostPath, dest);
    await fs.chmod(dest, st.mode & 0o7777);
    return;
  }
  await fs.chmod(dest, st.mode & 0o7777);
  for (const item of walkSourceSync(contextDir, entry, ignore)) {
    const to = path.join(dest, item.rel);
    if (item.stat.isDirectory()) await fs.mkdir(to, { mode: item.stat.mode & 0o7777 }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    else if (item.stat.isSymbolicLink()) await fs.symlink(await fs.readlink(item.hostPath), to);
    else if (item.stat.isFile()) {
      await fs.copyFile(item.hostPath, to);
      await fs.chmod(to, item.stat.mode & 0o7777);
    }
    await fs.lchown(to, item.stat.uid, item.stat.gid).catch(() => undefined);
  }
}

/**
 * The step's agent socket: each connection is piped to the user's agent (the first --ssh socket),
 * or to an ssh-agent started here holding the --ssh key files.
 */
class AgentForward {
  private server?: net.Server;
  private readonly open = new Set<net.Socket>();
  private constructor(
    private readonly upstream: string,
    private readonly agentPid?: number,
  ) {}

  static async start(paths: string[], dir: string, ins: RunInstruction): Promise<AgentForward> {
    const sockets = paths.filter((p) => statSync(p).isSocket());
    if (sockets.length) return new AgentForward(sockets[0]!);
    const sock = path.join(dir, 'keys.sock');
    const pid = await startKeyAgent(sock, paths, (msg) => mountErr(ins, msg));
    const f = new AgentForward(sock, pid);
    return f;
  }

  listen(sock: string): Promise<void> {
    this.server = net.createServer((conn) => {
      const up = net.connect(this.upstream);
      this.open.add(conn).add(up);
      conn.on('close', () => this.open.delete(conn));
      up.on('close', () => this.open.delete(up));
      conn.pipe(up).pipe(conn);
      const drop = () => {
        conn.destroy();
        up.destroy();
      };
      conn.on('error', drop);
      up.on('error', drop);
    });
    // the server must not keep mbuild alive on its own
    this.server.unref();
    return new Promise((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(sock, () => resolve());
    });
  }

  async close(): Promise<void> {
    // the step is over: whatever it left connected goes too
    for (const c of this.open) c.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    if (this.agentPid) {
      try {
        process.kill(this.agentPid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, fail: (msg: string) => Error): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', (e: NodeJS.ErrnoException) => reject(fail(e.code === 'ENOENT' ? `--ssh with a key file needs ${cmd} (apt-get install openssh-client)` : `${cmd}: ${e.message}`)));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(fail(`${cmd} failed: ${err.trim().split('\n')[0] ?? code}`))));
  });
}

/**
 * An ssh-agent of mbuild's own on `sock` holding the --ssh key files (a build's RUN, or the
 * client of a remote build: cli/remote-ssh.ts); returns its pid. The keys never leave this machine.
 */
export async function startKeyAgent(sock: string, keys: string[], fail: (msg: string) => Error): Promise<number> {
  const PATH = process.env.PATH ?? '/usr/bin:/bin';
  const out = await run('ssh-agent', ['-s', '-a', sock], { PATH }, fail);
  const m = /SSH_AGENT_PID=(\d+)/.exec(out);
  if (!m) throw fail('ssh-agent did not report its pid');
  const pid = Number(m[1]);
  try {
    for (const key of keys) await run('ssh-add', ['-q', key], { PATH, SSH_AUTH_SOCK: sock, SSH_ASKPASS_REQUIRE: 'never', DISPLAY: '' }, fail);
  } catch (err) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    throw err;
  }
  return pid;
}
