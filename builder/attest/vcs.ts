/**
 * The git facts buildx sends with a build from a local directory (BUILDX_GIT_INFO, on by
 * default): vcs:source (the origin URL, credentials redacted), vcs:revision (HEAD, "-dirty" when
 * the work tree has changes), vcs:localdir:context and vcs:localdir:dockerfile (where the context
 * and the Dockerfile's folder are in the repository). Provenance files them under
 * buildkit_metadata.vcs. Nothing when the directory is not in a git work tree or git is missing.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';

function git(cwd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('git', ['-C', cwd, ...args], { timeout: 30_000, maxBuffer: 16 << 20 }, (err, stdout) => resolve(err ? undefined : stdout.trim()));
  });
}

/** BuildKit's urlutil.RedactCredentials: user and password become xxxxx. */
export function redactCredentials(s: string): string {
  try {
    const u = new URL(s);
    if (!u.username && !u.password) return s;
    if (u.username) u.username = 'xxxxx';
    if (u.password) u.password = 'xxxxx';
    return u.toString();
  } catch {
    return s; // scp-like git@host:path has no credentials to hide
  }
}

export async function gitVcsArgs(contextDir: string, dockerfile: string, env: NodeJS.ProcessEnv = process.env): Promise<Record<string, string>> {
  if (/^(0|false)$/i.test(env.BUILDX_GIT_INFO ?? '')) return {};
  const top = await git(contextDir, ['rev-parse', '--show-toplevel']);
  if (!top) return {};
  const commit = await git(contextDir, ['rev-parse', 'HEAD']);
  if (!commit) return {};
  const dirty = (await git(contextDir, ['status', '--porcelain', '--ignored=no'])) ?? '';
  const origin = await git(contextDir, ['config', '--get', 'remote.origin.url']);
  const rel = (p: string) => path.relative(top, p) || '.';
  return {
    ...(origin ? { 'vcs:source': redactCredentials(origin) } : {}),
    'vcs:revision': commit + (dirty ? '-dirty' : ''),
    'vcs:localdir:context': rel(contextDir),
    'vcs:localdir:dockerfile': rel(path.dirname(dockerfile)),
  };
}
