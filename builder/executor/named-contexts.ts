/**
 * `--build-context NAME=...` as BuildKit's dockerui/namedcontext.go reads it, for the executor:
 * - NAME names an image (docker-image://, oci-layout:// loaded first) or a directory (a local
 *   path, or a git / http(s) URL fetched by the CLI into one);
 * - `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME` read it instead of an image;
 * - a stage named NAME is replaced by it: its instructions never run (nor the stages only it reads).
 *
 * A directory is BuildKit's local source: its files at the root of an empty filesystem, filtered
 * by the directory's own `.dockerignore`, owned by 0:0 (buildx's file sync resets owners) and
 * with no image config (FROM NAME starts like scratch with the files in it).
 */
import type { CopyInstruction } from '../dockerfile/types.js';
import type { Plan } from '../plan/plan.js';

export interface NamedContexts {
  /** NAME → the image reference used instead */
  images: Record<string, string>;
  /** NAME → a local directory */
  dirs: Record<string, string>;
}

/** Lookups are by the name as written, then lower-cased (stage names are compared lower-cased). */
export function namedContextOf(nc: NamedContexts, name: string): { image: string } | { dir: string } | undefined {
  for (const n of [name, name.toLowerCase()]) {
    if (Object.hasOwn(nc.dirs, n)) return { dir: nc.dirs[n]! };
    if (Object.hasOwn(nc.images, n)) return { image: nc.images[n]! };
  }
  return undefined;
}

/** The copy that makes a directory context's filesystem: every file of the directory at `/`. */
export function dirContextCopy(name: string): CopyInstruction {
  const range = { start: 0, end: 0 };
  return { kind: 'copy', raw: `[context ${name}] load from client`, range, sources: ['.'], dest: '/', link: false, exclude: [] };
}

/** The stages a build needs when the stages in `replaced` come from named contexts: theirs are not. */
export function stagesNeeded(plan: Plan, replaced: Set<number>): number[] {
  const needed = new Set<number>();
  const visit = (i: number) => {
    if (needed.has(i)) return;
    needed.add(i);
    if (replaced.has(i)) return;
    for (const d of plan.stages[i]!.deps) visit(d);
  };
  visit(plan.target);
  return plan.order.filter((i) => needed.has(i));
}

/** The stages a named context replaces (a stage named NAME). */
export function replacedStages(plan: Plan, nc: NamedContexts): Set<number> {
  return new Set(plan.stages.filter((s) => s.name !== undefined && namedContextOf(nc, s.name) !== undefined).map((s) => s.index));
}
