/** Runs a plan: stages concurrently (each waits for the stages it reads), steps in order. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseDockerfile } from '../dockerfile/parse.js';
import type { Instruction } from '../dockerfile/types.js';
import { planBuild, type Plan, type Stage } from '../plan/plan.js';
import { Snapshotter } from '../../snapshotter/snapshots.js';
import type { Store } from '../../store/store.js';
import { loadIgnore } from '../context/dockerignore.js';
import type { Progress } from '../cli/progress.js';
import { baseState, forkState, type StageState } from './state.js';
import type { BuildContext, NetworkMode } from './context.js';
import { applyMeta } from '../steps/meta.js';
import { runStep, describeRun } from '../steps/run.js';
import { copyStep } from '../steps/copy.js';
import { workdirStep } from '../steps/workdir.js';
import { writeImage, type WrittenImage } from './image.js';
import { MbuildError, ParseError } from '../../util/errors.js';
import { normalizeName } from '../../store/reference.js';

export interface BuildOptions {
  contextDir: string;
  dockerfile: string; // path
  buildArgs: Record<string, string>;
  target?: string;
  network: NetworkMode;
  tags: string[];
  noCache: boolean;
}

export interface BuildResult extends WrittenImage {
  names: string[];
  state: StageState;
  snap: Snapshotter;
}

export async function readDockerfile(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new MbuildError('MBUILD_NO_DOCKERFILE', `cannot read the Dockerfile ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export async function build(store: Store, progress: Progress, opts: BuildOptions): Promise<BuildResult> {
  const names = opts.tags.map((t) => normalizeName(t));
  const text = await readDockerfile(opts.dockerfile);
  const display = path.basename(opts.dockerfile);
  const df = parseDockerfile(text, display);
  for (const w of df.warnings) progress.info(`WARNING: ${w}`);
  const plan = planBuild(df, { target: opts.target, buildArgs: opts.buildArgs });
  for (const a of plan.unusedBuildArgs) progress.info(`WARNING: build-arg ${a} was not consumed by any ARG`);
  const snap = new Snapshotter(store);
  await snap.init();
  const ignore = await loadIgnore(opts.contextDir, opts.dockerfile);

  let failed: unknown;
  const stageRuns = new Map<number, Promise<StageState>>();
  const images = new Map<string, Promise<StageState>>();
  const ctx: BuildContext = {
    store,
    snap,
    progress,
    contextDir: opts.contextDir,
    ignore,
    escape: df.escape,
    network: opts.network,
    stageIndexOf: (from) => {
      if (/^\d+$/.test(from)) return Number(from);
      const i = plan.stages.findIndex((s) => s.name === from.toLowerCase());
      return i >= 0 ? i : undefined;
    },
    stageResult: (i) => runStage(i),
    imageState: (ref) => {
      let p = images.get(ref);
      if (!p) {
        p = (async () => {
          const img = await store.requireImage(ref);
          return baseState(img.config, await snap.fromImage(img));
        })();
        images.set(ref, p);
      }
      return p;
    },
  };

  const runStage = (i: number): Promise<StageState> => {
    let p = stageRuns.get(i);
    if (!p) {
      p = executeStage(ctx, plan, plan.stages[i], () => failed, runStage);
      p.catch((err) => {
        failed ??= err;
      });
      stageRuns.set(i, p);
    }
    return p;
  };

  // start every needed stage at once; each waits for what it reads
  for (const i of plan.order) void runStage(i).catch(() => undefined);
  const state = await runStage(plan.target);
  await Promise.allSettled([...stageRuns.values()]);
  if (failed) throw failed;

  const author = plan.stages[plan.target].instructions.filter((x) => x.kind === 'maintainer').map((x) => (x as { name: string }).name).pop();
  const step = progress.step('exporting layers');
  const written = await writeImage(snap, state, { created: new Date().toISOString(), author });
  step.done(`manifest ${written.manifestDigest}`);
  if (names.length) {
    const created = new Date().toISOString();
    await store.images.put(names.map((name) => ({ name, digest: written.manifestDigest, created })));
    progress.info(`naming to ${names.join(', ')}`);
  }
  return { ...written, names, state, snap };
}

async function executeStage(
  ctx: BuildContext,
  plan: Plan,
  stage: Stage,
  failed: () => unknown,
  runStage: (i: number) => Promise<StageState>,
): Promise<StageState> {
  let state: StageState;
  const label = stage.name ?? `stage-${stage.index}`;
  const total = stage.instructions.length + 1;
  const fromStep = ctx.progress.step(`[${label} 1/${total}] ${stage.from.raw}`);
  try {
    if (stage.base.kind === 'scratch') state = baseState(undefined, []);
    else if (stage.base.kind === 'stage') state = forkState(await runStage(stage.base.index));
    else state = forkState(await ctx.imageState(stage.base.ref));
    fromStep.done();
  } catch (err) {
    fromStep.fail();
    throw withRange(err, stage.from.range);
  }

  const triggers = state.config.OnBuild ?? [];
  state.config.OnBuild = null;
  const onbuild = triggers.map((t) => parseTrigger(t, stage));

  const all: { ins: Instruction; n: string }[] = [
    ...onbuild.map((ins) => ({ ins, n: 'ONBUILD' })),
    ...stage.instructions.map((ins, j) => ({ ins, n: `${j + 2}/${total}` })),
  ];
  for (const { ins, n } of all) {
    if (failed()) throw new MbuildError('MBUILD_CANCELED', 'canceled: another stage failed');
    if ((ins.kind === 'copy' || ins.kind === 'add') && ins.from !== undefined) {
      // wait for the stage or image it reads before the step shows as started
      const dep = ctx.stageIndexOf(ins.from);
      await (dep !== undefined ? runStage(dep) : ctx.imageState(ins.from)).catch((err) => {
        throw withRange(err, ins.range);
      });
    }
    const step = ctx.progress.step(`[${label} ${n}] ${ins.raw}`);
    const before = state.layers.length;
    try {
      const createdBy = ins.kind === 'run' ? describeRun(ins, state.config.Shell) : `${ins.raw} # buildkit`;
      if (applyMeta(state, ins, plan)) {
        // config only
      } else if (ins.kind === 'run') await runStep({ ctx, state, step, label }, ins);
      else if (ins.kind === 'copy' || ins.kind === 'add') await copyStep({ ctx, state, step, label }, ins);
      else if (ins.kind === 'workdir') await workdirStep({ ctx, state, step, label }, ins);
      else throw new MbuildError('MBUILD_UNSUPPORTED', `${(ins as Instruction).kind.toUpperCase()} is not supported`, { range: (ins as Instruction).range });
      const layer = state.layers.length > before ? state.layers[state.layers.length - 1] : undefined;
      state.history.push({ entry: { created: new Date().toISOString(), created_by: createdBy, comment: 'buildkit.dockerfile.v0' }, layer });
      step.done();
    } catch (err) {
      step.fail();
      throw withRange(err, ins.range);
    }
  }
  return state;
}

function parseTrigger(trigger: string, stage: Stage): Instruction {
  try {
    const parsed = parseDockerfile(`FROM scratch\n${trigger}\n`, 'ONBUILD');
    const ins = parsed.instructions[1];
    if (!ins) throw new Error('empty trigger');
    return { ...ins, range: stage.from.range, raw: trigger };
  } catch (err) {
    throw new ParseError(`invalid ONBUILD trigger in the base image: ${trigger}`, stage.from.range, err);
  }
}

function withRange(err: unknown, range: Instruction['range']): unknown {
  if (err instanceof MbuildError && !err.range) {
    (err as { range?: Instruction['range'] }).range = range;
  }
  return err;
}
