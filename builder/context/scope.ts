/**
 * Resolve a path inside a directory as if that directory were "/" (the semantics of moby's
 * FollowSymlinkInScope / containerd's RootPath): symlinks, absolute or relative, are expanded
 * component by component with lstat, and neither a symlink nor ".." can lead above the root.
 */
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';
import { MbuildError, SymlinkLoopError } from '../../util/errors.js';

/** Most symlinks followed while resolving one path (as in moby). */
export const MAX_SYMLINKS = 255;

export interface ScopedPath {
  /** absolute host path, always root itself or below it */
  hostPath: string;
  /** the same path relative to root, slash-separated, "" for root itself */
  rel: string;
  /**
   * true when a component on the way (not counting an unfollowed final one) does not exist or
   * is a hidden link: then hostPath names nothing and must not be stat'ed (the kernel could
   * follow a hidden link in it).
   */
  missing: boolean;
}

export interface ScopeOptions {
  /**
   * Called for every symlink met on the way (with its path relative to root) before it is
   * followed. Returning true makes the link count as absent: it is not followed and nothing
   * below it is looked at (used to hide .dockerignore'd links).
   */
  isHidden?: (rel: string) => boolean | Promise<boolean>;
}

function components(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * Like {@link resolveInScope}, also returning the root-relative result and accepting options.
 */
export async function resolveInScopeDetailed(
  root: string,
  relPath: string,
  followFinal: boolean,
  opts: ScopeOptions = {},
): Promise<ScopedPath> {
  const absRoot = path.resolve(root);
  // clean as an absolute path: leading ".." clamps at the root
  const clean = path.posix.normalize('/' + relPath.split(path.sep).join('/'));
  const parts = components(clean);
  let last: string | undefined;
  if (!followFinal && parts.length > 0) last = parts.pop();

  const resolved: string[] = [];
  // depth from which `resolved` names things that do not exist (no lstat below it: the kernel
  // would follow whatever sits there)
  let missingFrom = Infinity;
  const pending = parts.reverse(); // a stack: next component at the end
  let links = 0;

  while (pending.length > 0) {
    const c = pending.pop()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      resolved.pop(); // clamps at the root
      if (resolved.length <= missingFrom) missingFrom = Infinity;
      continue;
    }
    if (resolved.length > missingFrom) {
      resolved.push(c);
      continue;
    }
    const here = path.join(absRoot, ...resolved, c);
    let isLink: boolean;
    try {
      isLink = (await lstat(here)).isSymbolicLink();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        missingFrom = resolved.length;
        resolved.push(c);
        continue;
      }
      throw new MbuildError('MBUILD_CONTEXT_READ', `cannot resolve ${JSON.stringify(relPath)}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (!isLink) {
      resolved.push(c);
      continue;
    }
    if (opts.isHidden && (await opts.isHidden([...resolved, c].join('/')))) {
      missingFrom = resolved.length;
      resolved.push(c);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw new SymlinkLoopError(relPath);
    const target = await readlink(here);
    if (target.startsWith('/')) {
      resolved.length = 0;
      missingFrom = Infinity;
    }
    const t = target.split('/');
    for (let i = t.length - 1; i >= 0; i--) pending.push(t[i]);
  }
  const missing = missingFrom !== Infinity;
  if (last !== undefined) resolved.push(last);
  const rel = resolved.join('/');
  return { hostPath: rel === '' ? absRoot : path.join(absRoot, ...resolved), rel, missing };
}

/**
 * Walk `relPath` below `root` with lstat, expanding symlinks as if root were "/": absolute
 * targets restart at root, ".." clamps at root. With followFinal=false a symlink as the last
 * component is left alone. Returns the absolute host path inside root (it need not exist).
 * More than 255 symlinks → SymlinkLoopError.
 */
export async function resolveInScope(root: string, relPath: string, followFinal: boolean): Promise<string> {
  return (await resolveInScopeDetailed(root, relPath, followFinal)).hostPath;
}
