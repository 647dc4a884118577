/**
 * ADD of a git repository, as BuildKit's git source does it, with the git command line:
 *
 * - what is a git source: `git@host:path` and other scp-like addresses, `ssh://`, `git://`, and
 *   `http(s)://` URLs whose path ends in `.git` (dfgitutil.ParseGitRef); `#ref:subdir` picks the
 *   ref and a directory of it; the query form (`?ref=…&subdir=…&checksum=…&keep-git-dir=…&tag=…
 *   &branch=…&submodules=…`) too;
 * - the ref (default: the remote's HEAD) is resolved to a commit with `git ls-remote` and the step
 *   is keyed by that commit, so an unchanged ref keeps the step cached without cloning;
 * - `--checksum` (or `checksum=`/`commit=`) is a commit hash or a prefix of it: another commit
 *   fails the step;
 * - the checkout is copied to the destination without `.git` unless `--keep-git-dir` (or
 *   `keep-git-dir=true`); submodules are checked out unless `submodules=false`.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Store } from '../../store/store.js';
import { MbuildError, type SourceRange } from '../../util/errors.js';
import { resolveInScope } from '../context/scope.js';

export interface GitSource {
  /** as written in the Dockerfile (after expansion) */
  src: string;
  remote: string;
  ref?: string;
  subdir?: string;
  checksum?: string;
  keepGitDir?: boolean;
  submodules: boolean;
}

const SCP_LIKE = /^[A-Za-z0-9_.+-]+@[A-Za-z0-9.-]+:(?!\/\/)/;

/**
 * The git source a COPY/ADD source names, or undefined when it is not one. Throws for a git URL
 * whose options are invalid.
 */
export function parseGitSource(src: string, range?: SourceRange): GitSource | undefined {
  let remote: string;
  let fragment = '';
  let query = '';
  const hash = src.indexOf('#');
  const main = hash >= 0 ? src.slice(0, hash) : src;
  if (hash >= 0) fragment = src.slice(hash + 1);
  if (SCP_LIKE.test(main)) {
    remote = main;
  } else {
    let u: URL;
    try {
      u = new URL(main);
    } catch {
      return undefined;
    }
    const scheme = u.protocol.replace(/:$/, '');
    if (!['http', 'https', 'ssh', 'git'].includes(scheme)) return undefined;
    if ((scheme === 'http' || scheme === 'https') && !u.pathname.endsWith('.git')) return undefined;
    query = u.search.replace(/^\?/, '');
    u.search = '';
    remote = u.toString();
  }
  const bad = (msg: string) => new MbuildError('MBUILD_PARSE', `ADD ${src}: ${msg}`, { range });
  const colon = fragment.indexOf(':');
  const g: GitSource = { src, remote, submodules: true };
  if (fragment !== '') {
    g.ref = (colon >= 0 ? fragment.slice(0, colon) : fragment) || undefined;
    g.subdir = colon >= 0 ? fragment.slice(colon + 1) || undefined : undefined;
  }
  let tag: string | undefined;
  let branch: string | undefined;
  const seen = new Set<string>();
  for (const part of query === '' ? [] : query.split('&')) {
    const eq = part.indexOf('=');
    const k = decodeURIComponent(eq >= 0 ? part.slice(0, eq) : part);
    const v = eq >= 0 ? decodeURIComponent(part.slice(eq + 1)) : '';
    if (seen.has(k)) throw bad(`query "${k}" has multiple values`);
    seen.add(k);
    const flag = (): boolean => {
      if (v === '') return true;
      if (/^(1|t|true|TRUE|True)$/.test(v)) return true;
      if (/^(0|f|false|FALSE|False)$/.test(v)) return false;
      throw bad(`invalid ${k} value: "${v}"`);
    };
    if (v === '' && !['submodules', 'keep-git-dir'].includes(k)) throw bad(`query "${k}" has no value`);
    if (k === 'ref') {
      if (g.ref !== undefined && g.ref !== v) throw bad(`ref conflicts: "${g.ref}" vs "${v}"`);
      g.ref = v;
    } else if (k === 'subdir') {
      if (g.subdir !== undefined && g.subdir !== v) throw bad(`subdir conflicts: "${g.subdir}" vs "${v}"`);
      g.subdir = v;
    } else if (k === 'tag') tag = v;
    else if (k === 'branch') branch = v;
    else if (k === 'checksum' || k === 'commit') g.checksum = v;
    else if (k === 'keep-git-dir') g.keepGitDir = flag();
    else if (k === 'submodules') g.submodules = flag();
    else throw bad(`the git URL option "${k}" is not supported`);
  }
  if (tag !== undefined && branch !== undefined) throw bad('tag and branch cannot both be set');
  if (tag !== undefined || branch !== undefined) {
    const full = tag !== undefined ? `refs/tags/${tag}` : `refs/heads/${branch}`;
    if (g.ref !== undefined && g.ref !== full && g.ref !== (tag ?? branch)) throw bad(`ref conflicts: "${g.ref}" vs "${full}"`);
    g.ref = full;
  }
  if (g.subdir !== undefined) {
    const clean = path.posix.normalize('/' + g.subdir).replace(/^\/+|\/+$/g, '');
    g.subdir = clean === '' ? undefined : clean;
  }
  return g;
}

const isCommit = (ref: string) => /^([0-9a-f]{40}|[0-9a-f]{64})$/.test(ref);

interface GitRun {
  stdout: string;
  stderr: string;
  code: number;
}

function git(args: string[], cwd?: string): Promise<GitRun> {
  return new Promise((resolve, reject) => {
    // files of the checkout get the usual modes whatever mbuild's own umask is
    const child = spawn('sh', ['-c', 'umask 022 && exec git "$@"', 'sh', ...args], {
      cwd,
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code: code ?? 1 }));
  });
}

function fail(g: GitSource, what: string, r?: GitRun, range?: SourceRange): MbuildError {
  const why = r ? r.stderr.trim().split('\n').filter(Boolean).pop() ?? `exit ${r.code}` : '';
  return new MbuildError('MBUILD_ADD_GIT', `ADD ${g.src}: ${what}${why ? `: ${why}` : ''}`, { range });
}

async function mustGit(g: GitSource, what: string, args: string[], cwd: string | undefined, range: SourceRange): Promise<string> {
  let r: GitRun;
  try {
    r = await git(args, cwd);
  } catch (err) {
    throw new MbuildError('MBUILD_ADD_GIT', `ADD ${g.src}: cannot run git (${(err as Error).message})`, { range, cause: err });
  }
  if (r.code !== 0) throw fail(g, what, r, range);
  return r.stdout;
}

/** The commit the source's ref names now, checked against its checksum (git ls-remote unless the ref is a commit). */
export async function resolveGitCommit(g: GitSource, checksum: string | undefined, range: SourceRange): Promise<string> {
  const want = checksum ?? g.checksum;
  if (want !== undefined && !/^[0-9a-fA-F]+$/.test(want)) throw new MbuildError('MBUILD_PARSE', `ADD ${g.src}: invalid checksum ${want} for a git source, expected a hex commit hash`, { range });
  if (checksum !== undefined && g.checksum !== undefined && checksum !== g.checksum) throw new MbuildError('MBUILD_PARSE', `ADD ${g.src}: checksum mismatch "${checksum}" != "${g.checksum}"`, { range });
  let commit: string;
  if (g.ref !== undefined && isCommit(g.ref)) commit = g.ref;
  else {
    const out = await mustGit(g, 'cannot list the remote refs', ['ls-remote', '--', g.remote, ...(g.ref === undefined ? ['HEAD'] : [])], undefined, range);
    const refs = new Map(out.split('\n').filter(Boolean).map((l) => { const [sha, name] = l.split('\t'); return [name!, sha!] as const; }));
    const r = g.ref;
    // git checkout prefers branches when a name is ambiguous; an annotated tag is peeled to its commit
    const candidates = r === undefined ? ['HEAD'] : r.startsWith('refs/') ? [r] : [`refs/heads/${r}`, `refs/tags/${r}`, r];
    const name = candidates.find((c) => refs.has(c));
    if (name === undefined) throw new MbuildError('MBUILD_ADD_GIT', `ADD ${g.src}: the repository has no ref "${r ?? 'HEAD'}"`, { range });
    commit = refs.get(`${name}^{}`) ?? refs.get(name)!;
  }
  if (want !== undefined && !commit.startsWith(want.toLowerCase())) {
    throw new MbuildError('MBUILD_ADD_CHECKSUM', `ADD ${g.src}: checksum mismatch: expected commit ${want}, got ${commit}`, { range });
  }
  return commit;
}

/**
 * Check the commit out in a temp directory of the store. Returns the directory to copy (the
 * checkout, or its subdir) and the temp directory to remove afterwards.
 */
export async function checkoutGit(store: Store, g: GitSource, commit: string, range: SourceRange): Promise<{ dir: string; tmp: string }> {
  const tmp = await store.mkTemp('git');
  try {
    const repo = path.join(tmp, 'checkout');
    await mustGit(g, 'git init failed', ['init', '-q', repo], undefined, range);
    await mustGit(g, 'git remote add failed', ['remote', 'add', 'origin', g.remote], repo, range);
    // a shallow fetch of the ref (or the commit); dumb http servers cannot do shallow: fetch it all then
    const what = g.ref !== undefined && !isCommit(g.ref) ? g.ref : commit;
    let fetched = await git(['fetch', '-q', '--depth', '1', 'origin', what], repo);
    if (fetched.code !== 0) fetched = await git(['fetch', '-q', '--tags', 'origin', '+refs/heads/*:refs/remotes/origin/*'], repo);
    if (fetched.code !== 0) throw fail(g, 'cannot fetch', fetched, range);
    await mustGit(g, `cannot check out ${commit}`, ['-c', 'advice.detachedHead=false', 'checkout', '-q', commit], repo, range);
    if (g.submodules && (await fs.stat(path.join(repo, '.gitmodules')).catch(() => undefined))) {
      await mustGit(g, 'cannot check out the submodules', ['submodule', 'update', '-q', '--init', '--recursive', '--depth', '1'], repo, range);
    }
    if (!g.keepGitDir) await fs.rm(path.join(repo, '.git'), { recursive: true, force: true });
    await fs.chmod(repo, 0o755);
    // the subdir is resolved inside the checkout: a symlink in it cannot lead out
    const dir = g.subdir ? await resolveInScope(repo, g.subdir, true) : repo;
    const st = await fs.lstat(dir).catch(() => undefined);
    if (!st?.isDirectory()) throw new MbuildError('MBUILD_ADD_GIT', `ADD ${g.src}: the commit ${commit} has no directory ${g.subdir}`, { range });
    return { dir, tmp };
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
