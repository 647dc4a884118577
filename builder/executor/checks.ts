/**
 * Build checks around a build, and `mbuild build --check` (only the checks: no store, no base
 * image, no network). The rules themselves are in builder/checks.
 */
import path from 'node:path';
import { checkDockerfile, type CheckOptions, type CheckResult } from '../checks/lint.js';
import { formatCheckReport, formatSummary, sourceSnippet, violationMessage } from '../checks/report.js';
import type { Plan } from '../plan/plan.js';
import type { Store } from '../../store/store.js';
import { loadIgnore, type IgnoreMatcher } from '../context/dockerignore.js';
import { MbuildError } from '../../util/errors.js';
import { readDockerfile } from './read-dockerfile.js';

const ignoreFor = (m: IgnoreMatcher): CheckOptions['ignore'] => ({ excludes: (p) => m.excludes(p), patterns: m.patternList });

/**
 * The checks of a build: base images' environments from the local store (what is not there yet is
 * not judged). Throws the `error=true` violation before anything runs, as BuildKit does.
 */
export async function checksForBuild(
  store: Store,
  text: string,
  file: string,
  plan: Plan,
  opts: { buildArgs: Record<string, string>; target?: string; ignore: IgnoreMatcher },
): Promise<CheckResult> {
  const envs = new Map<string, string[]>();
  for (const s of plan.stages) {
    if (s.base.kind !== 'image' || envs.has(s.base.ref)) continue;
    const img = await store.resolveImage(s.base.ref).catch(() => undefined);
    if (img) envs.set(s.base.ref, img.config.config?.Env ?? []);
  }
  const result = checkDockerfile(text, file, {
    buildArgs: opts.buildArgs,
    target: opts.target,
    imageEnv: (ref) => envs.get(ref),
    ignore: ignoreFor(opts.ignore),
  });
  const violation = violationMessage(result);
  if (violation) {
    const first = result.warnings[0]!;
    const details = formatSummary(result.warnings, file).trimEnd().split('\n');
    throw new MbuildError('MBUILD_CHECK', violation, { range: { file, start: first.start, end: first.end }, details });
  }
  return result;
}

/**
 * `mbuild build --check`: prints buildx's report on stdout, the error (what the build would refuse)
 * on stderr; exit 1 when anything was found, as BuildKit's check result status. Base images are
 * looked up in the local store (`store`, when there is one: never pulled): UndefinedVar judges the
 * stages on the images found, and a note on stderr names the images it could not judge.
 */
export async function checkCommand(opts: { contextDir: string; dockerfile: string; buildArgs: Record<string, string>; target?: string; allow?: string[]; store?: Store }): Promise<number> {
  const text = await readDockerfile(opts.dockerfile);
  const file = path.basename(opts.dockerfile);
  const ignore = await loadIgnore(opts.contextDir, opts.dockerfile);
  const envs = new Map<string, string[] | undefined>();
  const asked: string[] = [];
  // the stages' base images, as the check names them (with the ARGs expanded)
  checkDockerfile(text, file, { buildArgs: opts.buildArgs, target: opts.target, allStages: opts.target === undefined, imageEnv: (ref) => (asked.push(ref), undefined) });
  for (const ref of new Set(asked)) {
    const img = opts.store ? await opts.store.resolveImage(ref).catch(() => undefined) : undefined;
    envs.set(ref, img ? (img.config.config?.Env ?? []) : undefined);
  }
  const result = checkDockerfile(text, file, {
    buildArgs: opts.buildArgs,
    target: opts.target,
    allStages: opts.target === undefined,
    ignore: ignoreFor(ignore),
    imageEnv: (ref) => envs.get(ref),
    ...(opts.allow ? { allow: opts.allow } : {}),
  });
  const unknown = [...envs].filter(([, env]) => env === undefined).map(([ref]) => ref);
  if (unknown.length) process.stderr.write(`NOTE: UndefinedVar was not checked in the stages built on ${unknown.join(', ')}: not in the local store (mbuild pull, then --check again)\n`);
  const report = formatCheckReport({ ...result, error: undefined }, file, text);
  process.stdout.write(result.error && result.warnings.length === 0 ? '' : report);
  if (result.error) {
    const where = result.error.start !== undefined ? `${file}:${result.error.start}: ` : '';
    process.stderr.write(`error: ${where}${result.error.message}\n`);
    if (result.error.start !== undefined) process.stderr.write(sourceSnippet(file, text, result.error.start, result.error.end ?? result.error.start));
    return 1;
  }
  const violation = violationMessage(result);
  if (violation) process.stderr.write(`error: ${violation}\n`);
  return result.warnings.length > 0 ? 1 : 0;
}
