/**
 * Where `mbuild build` reads its context and Dockerfile from, as `docker build` does:
 * a directory; `-` (stdin: a tar, plain or compressed, or a Dockerfile alone with an empty
 * context); an http(s) URL of a tarball (or of a plain Dockerfile); a git URL
 * (`https://host/repo.git#ref:subdir`, `git@host:repo`, `git://…`, `github.com/…`) cloned with git.
 * `-f -` reads the Dockerfile from stdin. Remote and stdin inputs land in a temp dir removed after the build.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MbuildError, UsageError } from '../util/errors.js';

const exec = promisify(execFile);

export interface ContextInput {
  contextDir: string;
  dockerfile: string;
  /** temp dirs to remove after the build */
  cleanup: string[];
  warnings: string[];
}

/** docker's rule (builder/remotecontext/urlutil): git when it looks like a repository. */
export function isGitUrl(s: string): boolean {
  if (/^git@[^:]+:/.test(s) || s.startsWith('git://') || s.startsWith('github.com/')) return true;
  return /^https?:\/\//.test(s) && /\.git(?:#.+)?$/.test(s);
}

export function isUrl(s: string): boolean {
  return /^https?:\/\//.test(s);
}

async function readStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) throw new UsageError('"-" reads from stdin, but stdin is a terminal: pipe a tar or a Dockerfile in');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A tar (plain, gzip, bzip2, xz): GNU tar recognises them; anything else is a Dockerfile. */
function looksLikeArchive(b: Buffer): boolean {
  if (b.length >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar') return true;
  return (b[0] === 0x1f && b[1] === 0x8b) || b.subarray(0, 3).toString('latin1') === 'BZh' || (b[0] === 0xfd && b.subarray(1, 6).toString('latin1') === '7zXZ\0');
}

async function extract(bytes: Buffer, dir: string, what: string): Promise<void> {
  const file = `${dir}.tar`;
  await fs.writeFile(file, bytes);
  try {
    // GNU tar refuses member names with "..", and never writes outside dir
    await exec('tar', ['-x', '--no-same-owner', '-f', file, '-C', dir]);
  } catch (err) {
    throw new MbuildError('MBUILD_CONTEXT', `cannot unpack the context from ${what}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim().split('\n')[0]}`);
  } finally {
    await fs.rm(file, { force: true });
  }
}

export async function fetchUrl(url: string): Promise<Buffer> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow' });
  } catch (err) {
    throw new MbuildError('MBUILD_CONTEXT', `cannot download the context ${url}: ${(err as Error).message}`);
  }
  if (!res.ok) throw new MbuildError('MBUILD_CONTEXT', `cannot download the context ${url}: HTTP ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

export async function cloneGit(spec: string, dir: string): Promise<string> {
  const hash = spec.indexOf('#');
  const url = hash >= 0 ? spec.slice(0, hash) : spec;
  const [ref, subdir] = hash >= 0 ? spec.slice(hash + 1).split(':') : ['', ''];
  const repo = url.startsWith('github.com/') ? `https://${url}` : url;
  try {
    await exec('git', ['init', '-q', dir]);
    await exec('git', ['-C', dir, 'remote', 'add', 'origin', repo]);
    const env = { ...process.env, GIT_TERMINAL_PROMPT: '0' };
    // shallow first; a server that cannot (git's "dumb" http) gets a full fetch
    await exec('git', ['-C', dir, 'fetch', '-q', '--depth', '1', 'origin', ref || 'HEAD'], { env }).catch(() => exec('git', ['-C', dir, 'fetch', '-q', 'origin', ref || 'HEAD'], { env }));
    await exec('git', ['-C', dir, 'checkout', '-q', 'FETCH_HEAD']);
    await exec('git', ['-C', dir, 'submodule', 'update', '-q', '--init', '--recursive', '--depth', '1']).catch(() => undefined);
  } catch (err) {
    throw new MbuildError('MBUILD_CONTEXT', `cannot clone the context ${spec}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim().split('\n').pop()}`);
  }
  await fs.rm(path.join(dir, '.git'), { recursive: true, force: true });
  if (!subdir) return dir;
  const sub = path.resolve(dir, subdir);
  if (!sub.startsWith(dir + path.sep)) throw new UsageError(`context ${spec}: the subdirectory leaves the repository`);
  if (!(await fs.stat(sub).catch(() => null))?.isDirectory()) throw new UsageError(`context ${spec}: ${subdir} is not a directory of the repository`);
  return sub;
}

export async function resolveContext(arg: string, file: string | undefined): Promise<ContextInput> {
  const cleanup: string[] = [];
  const warnings: string[] = [];
  const temp = async (prefix: string) => {
    const d = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
    cleanup.push(d);
    return d;
  };
  if (arg === '-' && file === '-') throw new UsageError('"-f -" and the context "-" both read stdin: give only one');
  let contextDir: string;
  let dockerfile: string | undefined;
  let remote = false;
  if (arg === '-' || isUrl(arg) || isGitUrl(arg)) {
    remote = true;
    const dir = await temp('mbuild-context-');
    if (isGitUrl(arg)) contextDir = await cloneGit(arg, dir);
    else {
      const bytes = arg === '-' ? await readStdin() : await fetchUrl(arg);
      contextDir = dir;
      if (looksLikeArchive(bytes)) await extract(bytes, dir, arg === '-' ? 'stdin' : arg);
      else {
        // a Dockerfile alone: the context is empty
        const dfDir = await temp('mbuild-dockerfile-');
        dockerfile = path.join(dfDir, 'Dockerfile');
        await fs.writeFile(dockerfile, bytes);
      }
    }
  } else {
    contextDir = path.resolve(arg);
    const st = await fs.stat(contextDir).catch(() => null);
    if (!st && file && file !== '-') {
      // git keeps no empty folders: a Dockerfile given with -f whose context folder is missing builds with an empty context
      warnings.push(`WARNING: the build context ${arg} does not exist; building with an empty context`);
      contextDir = await temp('mbuild-empty-context-');
    } else if (!st?.isDirectory()) throw new UsageError(`the build context ${arg} is not a directory`);
  }
  if (file === '-') {
    const dfDir = await temp('mbuild-dockerfile-');
    dockerfile = path.join(dfDir, 'Dockerfile');
    await fs.writeFile(dockerfile, await readStdin());
  } else if (file !== undefined && !dockerfile) {
    // in a remote context, -f names a file inside it (as docker does)
    dockerfile = remote ? path.resolve(contextDir, file) : path.resolve(file);
    if (remote && !dockerfile.startsWith(contextDir + path.sep)) throw new UsageError(`-f ${file}: the Dockerfile must be inside the context`);
  }
  return { contextDir, dockerfile: dockerfile ?? path.join(contextDir, 'Dockerfile'), cleanup, warnings };
}
