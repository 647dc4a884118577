/** Which files a COPY/ADD copies from a directory tree (the context, a stage): --exclude and --parents. */
import path from 'node:path';
import type { CopyInstruction } from '../dockerfile/types.js';
import { MbuildError } from '../../util/errors.js';
import { IgnoreMatcher } from './dockerignore.js';
import { hasWildcards } from './gomatch.js';
import { bothFilters, excludeFilter, includeFilter, resolveSources, type PathFilter, type SourceEntry } from './sources.js';

/** COPY --exclude's patterns as one matcher (patternmatcher rules, as .dockerignore), or undefined. */
export function excludeMatcher(ins: CopyInstruction): IgnoreMatcher | undefined {
  if (ins.exclude.length === 0) return undefined;
  try {
    return IgnoreMatcher.fromPatterns(ins.exclude, `${ins.kind.toUpperCase()} --exclude`);
  } catch (err) {
    throw new MbuildError('MBUILD_PARSE', (err as Error).message, { range: ins.range });
  }
}

/**
 * The sources of a COPY/ADD as BuildKit's file op copies them. Plain: each source as named
 * (wildcards expanded), a directory's contents filtered by --exclude. With --parents a source
 * `base/./pattern` (no "/./": base is the root) copies base's contents keeping only the paths
 * the pattern matches, with their parent directories — so the path below base is kept in the
 * destination. A pattern without wildcards must exist (BuildKit's RequiredPaths).
 */
export async function resolveCopySources(root: string, sources: string[], ignore: IgnoreMatcher | undefined, exclude: IgnoreMatcher | undefined, parents: boolean): Promise<SourceEntry[]> {
  const withFilter = (e: SourceEntry, f: PathFilter | undefined): SourceEntry => (e.isDir && f ? { ...e, filter: f } : e);
  const excl = exclude ? excludeFilter(exclude) : undefined;
  if (!parents) return (await resolveSources(root, sources, ignore)).map((e) => withFilter(e, excl));
  const out: SourceEntry[] = [];
  for (const src of sources) {
    const pivot = src.indexOf('/./');
    const base = pivot >= 0 ? src.slice(0, pivot) || '/' : '/';
    const pattern = path.posix.normalize('/' + (pivot >= 0 ? src.slice(pivot + 3) : src)).replace(/^\/+/, '');
    if (!hasWildcards(base) && !hasWildcards(pattern)) await resolveSources(root, [path.posix.join(base, pattern)], ignore);
    const include = includeFilter(IgnoreMatcher.fromPatterns([pattern || '.'], 'COPY --parents'));
    for (const e of await resolveSources(root, [base], ignore)) out.push(withFilter(e, excl ? bothFilters(include, excl) : include));
  }
  return out;
}
