/**
 * Resolve the sources of a COPY/ADD inside a local directory (the build context, or a stage's
 * root filesystem) and walk them.
 *
 * With an ignore matcher the directory is seen the way BuildKit's filtered context transfer
 * sees it: an excluded file does not exist; an excluded directory exists only if something below
 * it is re-included (and then contains just that). This view applies to every path we touch —
 * named sources, wildcard matches, symlinks followed on the way and their targets — so
 * .dockerignore cannot be bypassed with "..", absolute paths or symlinks.
 */
import type { Stats } from 'node:fs';
import { lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { CopySourceMissingError, MbuildError } from '../../util/errors.js';
import type { IgnoreMatcher } from './dockerignore.js';
import { goMatch, hasWildcards, isValidGoPattern } from './gomatch.js';
import { resolveInScopeDetailed, type ScopeOptions } from './scope.js';

export interface SourceEntry {
  /** absolute host path of the matched source (symlinks followed in scope for the source itself) */
  hostPath: string;
  /** the source as named, e.g. "dir/sub" ("." for the root itself) */
  rel: string;
  isDir: boolean;
  /**
   * Which paths below a directory source are copied (COPY --exclude, the include pattern of
   * COPY --parents), matched against paths relative to this source, as fsutil's copier does.
   */
  filter?: PathFilter;
}

/** Paths relative to a copied directory that a copy leaves out, with patternmatcher's rules. */
export interface PathFilter {
  hides(rel: string): boolean;
  /** for a hidden directory: could something below it be shown (so the walk must descend)? */
  mayShowUnder(rel: string): boolean;
}

/** COPY --exclude: the patterns' matches are left out (an excluded directory with all below it, unless a '!' pattern re-includes). */
export function excludeFilter(m: IgnoreMatcher): PathFilter {
  return { hides: (rel) => m.excludes(rel), mayShowUnder: (rel) => m.mayReincludeUnder(rel) };
}

/** COPY --parents: only matches of the pattern (and everything below a matched directory); the directories on the way come along. */
export function includeFilter(m: IgnoreMatcher): PathFilter {
  return { hides: (rel) => !m.excludes(rel), mayShowUnder: () => true };
}

/** Both filters: hidden by either; descended into when neither rules out what is below. */
export function bothFilters(a: PathFilter, b: PathFilter): PathFilter {
  return {
    hides: (rel) => a.hides(rel) || b.hides(rel),
    mayShowUnder: (rel) => (!a.hides(rel) || a.mayShowUnder(rel)) && (!b.hides(rel) || b.mayShowUnder(rel)),
  };
}

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

// Metadata calls are synchronous: a few microseconds each, several times less than a round trip
// through libuv's thread pool, and a context walk makes thousands of them.
function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw new MbuildError('MBUILD_CONTEXT_READ', `cannot stat ${p}: ${(e as Error).message}`, { cause: e });
  }
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    if (isMissing(e)) return [];
    throw new MbuildError('MBUILD_CONTEXT_READ', `cannot read directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

const ASCII = /^[\x00-\x7f]*$/;

/** Names in byte order (Go's sort order), for deterministic output. */
function sortNames(names: string[]): string[] {
  // for ASCII names UTF-16 order is byte order, and the plain sort is several times faster
  if (names.every((n) => ASCII.test(n))) return names.sort();
  const keyed = names.map((n) => ({ n, b: Buffer.from(n) }));
  keyed.sort((x, y) => Buffer.compare(x.b, y.b));
  return keyed.map((k) => k.n);
}
const joinRel = (a: string, b: string): string => (a === '' ? b : `${a}/${b}`);

/** The filtered view of a directory tree under an ignore matcher. */
class FilteredView {
  private readonly below = new Map<string, Promise<boolean>>();

  constructor(
    private readonly root: string,
    private readonly ignore: IgnoreMatcher,
  ) {}

  /** Would the BuildKit walker reach `rel` (i.e. descend into every excluded ancestor)? */
  private reachable(rel: string): boolean {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const anc = parts.slice(0, i).join('/');
      if (this.ignore.excludes(anc) && !this.ignore.mayReincludeUnder(anc)) return false;
    }
    return true;
  }

  /** Does `rel` (a real path below root, no symlinks in it) exist in the filtered view? */
  async visible(rel: string, isDir: boolean): Promise<boolean> {
    if (rel === '') return true;
    if (!this.reachable(rel)) return false;
    if (!this.ignore.excludes(rel)) return true;
    if (!isDir || !this.ignore.mayReincludeUnder(rel)) return false;
    return this.hasVisibleDescendant(rel);
  }

  /** For an excluded, descended-into directory: is anything below it re-included? */
  private hasVisibleDescendant(rel: string): Promise<boolean> {
    let p = this.below.get(rel);
    if (!p) {
      p = (async () => {
        const dir = path.join(this.root, rel);
        for (const name of readdirOrEmpty(dir)) {
          const child = joinRel(rel, name);
          if (!this.ignore.excludes(child)) return true;
          const st = lstatOrUndefined(path.join(dir, name));
          if (st?.isDirectory() && this.ignore.mayReincludeUnder(child) && (await this.hasVisibleDescendant(child))) {
            return true;
          }
        }
        return false;
      })();
      this.below.set(rel, p);
    }
    return p;
  }

  /** Scope options hiding symlinks that are not part of the filtered view. */
  scopeOptions(): ScopeOptions {
    return { isHidden: async (rel) => !(await this.visible(rel, false)) };
  }
}

/** Segments of a source, cleaned as an absolute path (so ".." clamps at the root). */
function sourceSegments(src: string): string[] {
  return path.posix
    .normalize('/' + src)
    .split('/')
    .filter((s) => s !== '' && s !== '.');
}

interface Match {
  /** root-relative real path of the matched entry (before following it) */
  real: string;
  /** as named */
  named: string[];
}

/** Expand wildcard segments below a real directory, depth-first in byte order. */
async function expand(root: string, dirReal: string, named: string[], segs: string[], out: Match[]): Promise<void> {
  const [seg, ...rest] = segs;
  const dirHost = dirReal === '' ? root : path.join(root, dirReal);
  for (const name of sortNames(readdirOrEmpty(dirHost))) {
    if (!goMatch(seg, name)) continue;
    const real = joinRel(dirReal, name);
    if (rest.length === 0) {
      out.push({ real, named: [...named, name] });
    } else {
      // like filepath.Walk, intermediate matches must be real directories (links are not followed)
      const st = lstatOrUndefined(path.join(dirHost, name));
      if (st?.isDirectory()) await expand(root, real, [...named, name], rest, out);
    }
  }
}

/**
 * sources: already-expanded source strings. Wildcards (`*?[`) match per path segment (Go
 * filepath.Match); a wildcard that matches nothing is allowed (returns no entries for it); a plain
 * name that does not exist (or is excluded by the ignore matcher) throws
 * CopySourceMissingError(`"${src}": not found`) (the caller adds the Dockerfile range). Sources
 * with ".." or absolute paths are resolved inside root.
 */
export async function resolveSources(root: string, sources: string[], ignore?: IgnoreMatcher): Promise<SourceEntry[]> {
  const absRoot = path.resolve(root);
  const view = ignore && !ignore.isEmpty ? new FilteredView(absRoot, ignore) : undefined;
  const scopeOpts = view?.scopeOptions() ?? {};
  const out: SourceEntry[] = [];

  /** Follow a named source in scope; undefined if it does not exist in the (filtered) view. */
  const follow = async (rel: string): Promise<{ hostPath: string; isDir: boolean } | undefined> => {
    const r = await resolveInScopeDetailed(absRoot, rel, true, scopeOpts);
    if (r.missing) return undefined;
    const st = lstatOrUndefined(r.hostPath);
    if (!st || st.isSymbolicLink()) return undefined; // a link left unresolved is a hidden one
    if (view && !(await view.visible(r.rel, st.isDirectory()))) return undefined;
    return { hostPath: r.hostPath, isDir: st.isDirectory() };
  };

  for (const src of sources) {
    const segs = sourceSegments(src);
    const wild = segs.findIndex((s) => hasWildcards(s));
    if (wild < 0) {
      const rel = segs.join('/');
      const found = await follow(rel);
      if (!found) throw new CopySourceMissingError(`"${src}": not found`);
      out.push({ hostPath: found.hostPath, rel: rel === '' ? '.' : rel, isDir: found.isDir });
      continue;
    }

    const pattern = segs.slice(wild);
    // BuildKit ignores a malformed pattern's error: it just matches nothing
    if (!pattern.every((s) => isValidGoPattern(s))) continue;
    const base = await resolveInScopeDetailed(absRoot, segs.slice(0, wild).join('/'), true, scopeOpts);
    if (base.missing) continue;
    const baseSt = lstatOrUndefined(base.hostPath);
    if (!baseSt?.isDirectory()) continue;
    const matches: Match[] = [];
    await expand(absRoot, base.rel, segs.slice(0, wild), pattern, matches);
    for (const m of matches) {
      const name = m.named.join('/');
      if (view) {
        // the matched entry itself must be part of the filtered context
        const st = lstatOrUndefined(path.join(absRoot, m.real));
        if (!st || !(await view.visible(m.real, st.isDirectory()))) continue;
      }
      const found = await follow(m.real);
      // a match that is a dangling (or hidden-target) symlink: BuildKit fails on it too
      if (!found) throw new CopySourceMissingError(`"${name}": not found`);
      out.push({ hostPath: found.hostPath, rel: name, isDir: found.isDir });
    }
  }
  return out;
}

interface Pending {
  rel: string;
  hostPath: string;
  stat: Stats;
  emitted: boolean;
}

/**
 * Walk a source directory recursively, yielding entries (relative to that directory) that the
 * ignore matcher does not exclude (paths for the matcher are relative to the context root).
 * Symlinks inside are yielded as symlinks (not followed). Sorted by name for determinism.
 *
 * Order is depth-first, names in byte order, a directory always before its contents. The source
 * directory itself is not yielded; a non-directory entry yields nothing. An excluded directory
 * is yielded (just before its first surviving descendant) only when something below it is
 * re-included by a '!' pattern, as BuildKit does. Synchronous, like every call it makes.
 */
export function* walkSourceSync(
  root: string,
  entry: SourceEntry,
  ignore?: IgnoreMatcher,
): Generator<{ rel: string; hostPath: string; stat: import('node:fs').Stats }> {
  const st = lstatOrUndefined(entry.hostPath);
  if (!st?.isDirectory()) return;
  const filter = ignore && !ignore.isEmpty ? ignore : undefined;
  const baseRel = path.relative(path.resolve(root), entry.hostPath).split(path.sep).join('/');
  if (baseRel === '..' || baseRel.startsWith('../') || path.isAbsolute(baseRel)) {
    throw new MbuildError('MBUILD_CONTEXT_READ', `source ${entry.hostPath} is outside ${root}`);
  }
  yield* walkDir(entry.hostPath, '', baseRel, [], filter, entry.filter);
}

function* walkDir(
  dirHost: string,
  rel: string,
  ctxRel: string,
  pending: Pending[],
  ignore: IgnoreMatcher | undefined,
  own: PathFilter | undefined,
): Generator<{ rel: string; hostPath: string; stat: Stats }> {
  const prefix = dirHost.endsWith('/') ? dirHost : dirHost + '/';
  for (const name of sortNames(readdirOrEmpty(dirHost))) {
    const hostPath = prefix + name;
    const stat = lstatOrUndefined(hostPath);
    if (!stat) continue; // vanished meanwhile
    const childRel = joinRel(rel, name);
    const childCtx = joinRel(ctxRel, name);
    const ignored = ignore !== undefined && ignore.excludes(childCtx);
    const hidden = own !== undefined && own.hides(childRel);
    if (!ignored && !hidden) {
      for (const p of pending) {
        if (!p.emitted) {
          p.emitted = true;
          yield { rel: p.rel, hostPath: p.hostPath, stat: p.stat };
        }
      }
      yield { rel: childRel, hostPath, stat };
      if (stat.isDirectory()) yield* walkDir(hostPath, childRel, childCtx, [], ignore, own);
    } else if (stat.isDirectory() && (!ignored || ignore!.mayReincludeUnder(childCtx)) && (!hidden || own!.mayShowUnder(childRel))) {
      yield* walkDir(hostPath, childRel, childCtx, [...pending, { rel: childRel, hostPath, stat, emitted: false }], ignore, own);
    }
  }
}
