/**
 * `# syntax=IMAGE` (or the BUILDKIT_SYNTAX build argument, which BuildKit lets replace it) names
 * the frontend that reads the file. BuildKit pulls that image and hands it the build. mbuild has no
 * frontend images: its own parser is a port of BuildKit's Dockerfile frontend, so it stands in for
 * docker/dockerfile (and docker/dockerfile-upstream) at any tag. Another frontend may read the
 * file differently, so it is refused. Building it with mbuild's frontend could give another image
 * and still exit 0. The error says how to build with the standard frontend anyway.
 */
import { ParseError, type SourceRange } from '../../util/errors.js';

const BUILTIN = new Set(['docker/dockerfile', 'docker/dockerfile-upstream']);

/** The repository of an image reference, as Docker Hub names it (docker.io/ and index.docker.io/ dropped). */
function repositoryOf(cmdline: string): string {
  // the image is the first word (BuildKit passes the rest of the line to the frontend)
  let r = cmdline.trim().split(/\s+/)[0]!.split('@')[0]!;
  const slash = r.lastIndexOf('/');
  const colon = r.lastIndexOf(':');
  if (colon > slash) r = r.slice(0, colon);
  return r.replace(/^(docker\.io|index\.docker\.io|registry-1\.docker\.io)\//, '').toLowerCase();
}

export function isBuiltinFrontend(ref: string): boolean {
  return BUILTIN.has(repositoryOf(ref));
}

/** Refuses a frontend mbuild cannot stand in for, naming the line (or the build argument). */
export function checkFrontend(df: { syntax?: string; syntaxRange?: SourceRange }, buildArgs: Record<string, string>): void {
  const fromArg = buildArgs.BUILDKIT_SYNTAX;
  const ref = fromArg ?? df.syntax;
  if (ref === undefined || ref.trim() === '' || isBuiltinFrontend(ref)) return;
  const where = fromArg !== undefined ? `--build-arg BUILDKIT_SYNTAX=${fromArg}` : `# syntax=${ref}`;
  throw new ParseError(
    `${where}: mbuild reads Dockerfiles with its own frontend (BuildKit's docker/dockerfile:1) and cannot run the frontend image ${ref.trim()}; to build this file with the standard frontend: --build-arg BUILDKIT_SYNTAX=docker/dockerfile:1`,
    fromArg !== undefined ? undefined : df.syntaxRange,
  );
}
