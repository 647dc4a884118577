/**
 * Dockerfile → stage DAG (pure: no I/O). Resolves FROM <stage>, COPY --from=<stage|index|image>,
 * the --target, and which stages the target needs; global ARGs are expanded in FROM lines.
 */
import type { ArgInstruction, FromInstruction, Instruction, ParsedDockerfile } from '../dockerfile/types.js';
import { expandWord } from '../expand/shell-word.js';
import { PlanError } from '../../util/errors.js';
import { platformArgs, platformOf, targetPlatform, type TargetPlatform } from './platform.js';
import { mountFrom } from '../dockerfile/run-mount.js';

export type StageBase = { kind: 'scratch' } | { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

export interface Stage {
  index: number;
  name?: string;
  from: FromInstruction;
  base: StageBase;
  instructions: Instruction[];
  /** stages whose results this stage reads (base stage and COPY --from) */
  deps: number[];
  /** COPY --from values naming images (resolved by the executor) */
  imageDeps: string[];
  /** the platform this stage is built for: FROM --platform, else its base stage's, else the plan's target */
  platform: TargetPlatform;
}

export interface Plan {
  stages: Stage[];
  target: number;
  /** stages the target needs, in an order where dependencies come first */
  order: number[];
  /** global ARG values (after --build-arg), for stages that redeclare them */
  globalArgs: Map<string, string | undefined>;
  buildArgs: Record<string, string>;
  escape: '\\' | '`';
  /** --build-arg names no ARG declared (Docker warns about them) */
  unusedBuildArgs: string[];
  /** the target platform of this plan (one plan per --platform entry) */
  platform: TargetPlatform;
  /** set by the executor when a build has several plans: the platform, shown before each step */
  label?: string;
}

export interface PlanOptions {
  target?: string;
  buildArgs?: Record<string, string>;
  /** the target platform (default: this machine's); TARGET* ARGs name it, BUILD* name this machine */
  platform?: TargetPlatform;
}

export function planBuild(df: ParsedDockerfile, opts: PlanOptions = {}): Plan {
  const buildArgs = opts.buildArgs ?? {};
  const target = opts.platform ?? targetPlatform();
  const globalArgs = new Map<string, string | undefined>(Object.entries(platformArgs(target)));
  const declared = new Set<string>();
  const stages: Stage[] = [];
  const byName = new Map<string, number>();
  let current: Stage | undefined;

  const globalLookup = (name: string) => globalArgs.get(name);
  // every stage name, so that COPY --from a stage defined later is refused rather than pulled as an image
  const allNames = new Set(df.instructions.flatMap((i) => (i.kind === 'from' && i.stageName ? [i.stageName] : [])));
  for (const ins of df.instructions) {
    if (ins.kind === 'from') {
      const image = expandWord(ins.image, globalLookup, df.escape);
      if (!image) throw new PlanError('MBUILD_PLAN', 'base name (FROM) cannot be empty', ins.range);
      let platform: TargetPlatform | undefined;
      if (ins.platform !== undefined) {
        // FROM --platform=$BUILDPLATFORM (the cross-compile pattern), a constant, or any ARG
        const spec = expandWord(ins.platform, globalLookup, df.escape);
        if (spec !== '') {
          platform = platformOf(spec);
          if (!platform) throw new PlanError('MBUILD_PARSE', `FROM --platform=${spec}: not a platform (expected os/arch[/variant], e.g. linux/arm64)`, ins.range);
        }
      }
      const lower = image.toLowerCase();
      let base: StageBase;
      if (lower === 'scratch') base = { kind: 'scratch' };
      else if (byName.has(lower)) base = { kind: 'stage', index: byName.get(lower)! };
      else base = { kind: 'image', ref: image };
      platform ??= base.kind === 'stage' ? stages[base.index]!.platform : target;
      current = { index: stages.length, name: ins.stageName, from: ins, base, instructions: [], deps: [], imageDeps: [], platform };
      if (base.kind === 'stage') current.deps.push(base.index);
      if (ins.stageName) {
        if (byName.has(ins.stageName)) throw new PlanError('MBUILD_PLAN', `duplicate stage name "${ins.stageName}"`, ins.range);
        byName.set(ins.stageName, current.index);
      }
      stages.push(current);
      continue;
    }
    if (!current) {
      if (ins.kind !== 'arg') throw new PlanError('MBUILD_PLAN', `${ins.kind.toUpperCase()} before the first FROM`, ins.range);
      for (const a of (ins as ArgInstruction).args) {
        declared.add(a.name);
        const value = a.name in buildArgs ? buildArgs[a.name] : a.default !== undefined ? expandWord(a.default, globalLookup, df.escape) : undefined;
        globalArgs.set(a.name, value);
      }
      continue;
    }
    if (ins.kind === 'arg') for (const a of ins.args) declared.add(a.name);
    const froms = (ins.kind === 'copy' || ins.kind === 'add') && ins.from !== undefined ? [ins.from] : ins.kind === 'run' ? ins.mounts.map((m) => mountFrom(m, ins.range)).filter((f): f is string => !!f) : [];
    for (const from of froms) {
      const what = ins.kind === 'run' ? `RUN --mount=from=${from}` : `COPY --from=${from}`;
      if (from.includes('$')) throw new PlanError('MBUILD_PLAN', `--from does not take variables: "${from}"`, ins.range);
      const lower = from.toLowerCase();
      let dep: number | undefined;
      if (/^\d+$/.test(from)) {
        dep = Number(from);
        if (dep >= current.index) throw new PlanError('MBUILD_UNKNOWN_STAGE', `${what}: stage ${from} is not an earlier stage`, ins.range);
      } else if (current.name === lower) {
        throw new PlanError('MBUILD_UNKNOWN_STAGE', `${what}: a stage cannot ${ins.kind === 'run' ? 'mount' : 'copy from'} itself`, ins.range);
      } else if (byName.has(lower)) {
        dep = byName.get(lower)!;
      } else if (allNames.has(lower)) {
        throw new PlanError('MBUILD_UNKNOWN_STAGE', `cannot copy from stage "${from}", it needs to be defined before current stage "${current.name ?? current.index}"`, ins.range);
      }
      if (dep !== undefined) {
        if (!current.deps.includes(dep)) current.deps.push(dep);
      } else if (!current.imageDeps.includes(from)) {
        current.imageDeps.push(from);
      }
    }
    current.instructions.push(ins);
  }
  if (stages.length === 0) throw new PlanError('MBUILD_PLAN', 'the Dockerfile has no FROM instruction');

  let targetStage = stages.length - 1;
  if (opts.target !== undefined) {
    const t = byName.get(opts.target.toLowerCase());
    if (t === undefined) {
      throw new PlanError('MBUILD_UNKNOWN_STAGE', `target stage "${opts.target}" could not be found (stages: ${[...byName.keys()].join(', ') || 'none named'})`);
    }
    targetStage = t;
  }

  // dependencies first; stages the target does not need are left out
  const order: number[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (i: number) => {
    const s = state.get(i);
    if (s === 'done') return;
    if (s === 'visiting') throw new PlanError('MBUILD_PLAN', `circular dependency between stages at stage ${stages[i].name ?? i}`, stages[i].from.range);
    state.set(i, 'visiting');
    for (const d of stages[i].deps) visit(d);
    state.set(i, 'done');
    order.push(i);
  };
  visit(targetStage);

  const unusedBuildArgs = Object.keys(buildArgs).filter((k) => !declared.has(k) && !PREDEFINED_ARGS.has(k));
  return { stages, target: targetStage, order, globalArgs, buildArgs, escape: df.escape, unusedBuildArgs, platform: target };
}

/** ARGs Docker passes without a declaration (proxy settings); never recorded in the image. */
export const PREDEFINED_ARGS = new Set([
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
]);
