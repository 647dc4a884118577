/** Runs a plan: stages concurrently (each waits for the stages it reads), steps in order. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseDockerfile } from '../dockerfile/parse.js';
import type { Instruction } from '../dockerfile/types.js';
import { planBuild, type Plan, type Stage } from '../plan/plan.js';
import { Snapshotter } from '../../snapshotter/snapshots.js';
import type { Store } from '../../store/store.js';
import { loadIgnore } from '../context/dockerignore.js';
import type { ProgressReporter } from '../../util/progress.js';
import { baseState, forkState, type StageState } from '../steps/state.js';
import type { BuildContext, NetworkMode } from '../steps/contract.js';
import type { SecretSource, SshSource } from '../steps/secrets.js';
import { mountFrom } from '../dockerfile/run-mount.js';
import type { Limits } from '../sandbox/cgroups.js';
import { applyMeta } from '../steps/meta.js';
import { runStep, describeRun } from '../steps/run.js';
import { stepName } from '../dockerfile/heredoc.js';
import { checksForBuild } from './checks.js';
import { formatSummary } from '../dockerfile/checks/report.js';
import { copyStep } from '../steps/copy.js';
import { workdirStep } from '../steps/workdir.js';
import { writeImage, type WrittenImage } from './image.js';
import { MbuildError, ParseError } from '../../util/errors.js';
import { normalizeName } from '../../store/reference.js';
import os from 'node:os';
import PQueue from 'p-queue';
import { BuildCache } from '../cache/cache.js';
import { FileHashCache } from '../cache/file-hashes.js';
import { MissExplainer, type StepRecord } from '../cache/explain.js';
import { inputDigests, stepKey } from '../cache/keys.js';
import type { Layer } from '../../snapshotter/snapshots.js';
import type { StepHandle } from '../../util/progress.js';
import type { StepCache } from '../steps/contract.js';

export interface BuildOptions {
  contextDir: string;
  dockerfile: string; // path
  buildArgs: Record<string, string>;
  target?: string;
  network: NetworkMode;
  /** cgroup limits for every RUN */
  limits?: Limits;
  /** granted entitlements (--allow), e.g. security.insecure */
  allow?: string[];
  tags: string[];
  noCache: boolean;
  /** how many RUN/COPY steps may work at once (default: the number of cores) */
  jobs?: number;
  /** check the registry for FROM / COPY --from images even when the store has them */
  pull?: boolean;
  /** --secret / --ssh (RUN --mount=type=secret / type=ssh) */
  secrets?: SecretSource[];
  ssh?: SshSource[];
  /** predefined proxy ARGs given with --build-arg (K=V): RUN's environment only, never the image */
  proxyEnv?: string[];
  /** --no-cache-filter: stages (by name or index) that do not use the build cache */
  noCacheStages?: string[];
  /** --label: added to the final image's config */
  labels?: Record<string, string>;
  /** --annotation: on the image manifest */
  annotations?: Record<string, string>;
  /** --build-context NAME=docker-image://REF (and oci-layout, loaded): FROM/COPY --from NAME use REF */
  namedContexts?: Record<string, string>;
  /** --add-host: lines added to /etc/hosts of every RUN */
  extraHosts?: string;
  /** --shm-size in KiB, --ulimit as NAME:SOFT:HARD: for every RUN */
  shmSizeKb?: number;
  ulimits?: string[];
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

export async function build(store: Store, progress: ProgressReporter, opts: BuildOptions): Promise<BuildResult> {
  const names = opts.tags.map((t) => normalizeName(t));
  const text = await readDockerfile(opts.dockerfile);
  const display = path.basename(opts.dockerfile);
  const df = parseDockerfile(text, display);
  for (const w of df.warnings) progress.info(`WARNING: ${w}`);
  const plan = planBuild(df, { target: opts.target, buildArgs: opts.buildArgs });
  // SOURCE_DATE_EPOCH is for the build itself (BuildKit does not ask for an ARG)
  for (const a of plan.unusedBuildArgs.filter((n) => n !== 'SOURCE_DATE_EPOCH')) progress.info(`WARNING: build-arg ${a} was not consumed by any ARG`);
  const snap = new Snapshotter(store);
  await snap.init();
  const ignore = await loadIgnore(opts.contextDir, opts.dockerfile);
  // build checks (`# check=`): error=true stops here; warnings are shown after the build
  const checks = await checksForBuild(store, text, display, plan, { buildArgs: opts.buildArgs, target: opts.target, ignore });
  const cache = new BuildCache(snap);
  const fileHashes = await FileHashCache.load(path.join(cache.dir, 'file-hashes.json'));
  const explainer = await MissExplainer.load(cache.dir, opts.dockerfile, opts.target);

  let failed: unknown;
  // the first failure cancels every other stage at once (their running RUNs are killed)
  const abort = new AbortController();
  const named = opts.namedContexts ?? {};
  const contextRef = (ref: string) => named[ref] ?? named[ref.toLowerCase()] ?? ref;
  const noCacheStages = new Set((opts.noCacheStages ?? []).map((s) => s.toLowerCase()));
  for (const s of noCacheStages) if (!plan.stages.some((st, i) => st.name === s || String(i) === s)) throw new MbuildError('MBUILD_USAGE', `--no-cache-filter ${s}: no stage of that name`);
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
    limits: opts.limits,
    allow: opts.allow ?? [],
    secrets: new Map((opts.secrets ?? []).map((x) => [x.id, x])),
    ssh: new Map((opts.ssh ?? []).map((x) => [x.id, x])),
    cache,
    fileHashes,
    noCache: opts.noCache,
    sourceDateEpoch: sourceDateEpoch(opts.buildArgs),
    proxyEnv: opts.proxyEnv ?? [],
    extraHosts: opts.extraHosts ?? '',
    shmSizeKb: opts.shmSizeKb,
    ulimits: opts.ulimits ?? [],
    signal: abort.signal,
    // steps often wait (sleep, network, disk) rather than compute: by default allow twice the cores, at least 4
    jobs: new PQueue({ concurrency: Math.max(1, opts.jobs ?? Math.max(4, 2 * os.availableParallelism())) }),
    stageIndexOf: (from) => {
      if (/^\d+$/.test(from)) return Number(from);
      const i = plan.stages.findIndex((s) => s.name === from.toLowerCase());
      return i >= 0 ? i : undefined;
    },
    stageResult: (i) => runStage(i),
    imageState: (asked) => {
      const ref = contextRef(asked);
      let p = images.get(ref);
      if (!p) {
        p = (async () => {
          // the registry code (and undici) loads only when the store lacks the image or --pull asks
          const local = opts.pull ? undefined : await store.resolveImage(ref).catch(() => undefined);
          const img = local ?? (await (await loadRegistry()).ensureImage(store, ref, { pull: opts.pull, progress }));
          return baseState(img.config, await snap.fromImage(img), `image:${img.manifestDigest}`);
        })();
        images.set(ref, p);
      }
      return p;
    },
  };

  const runStage = (i: number): Promise<StageState> => {
    let p = stageRuns.get(i);
    if (!p) {
      const stage = plan.stages[i];
      const stageCtx = noCacheStages.has(stage.name ?? '') || noCacheStages.has(String(i)) ? { ...ctx, noCache: true } : ctx;
      p = executeStage(stageCtx, plan, stage, () => failed, runStage, explainer);
      p.catch((err) => {
        if (failed === undefined) {
          failed = err;
          abort.abort(err);
        }
      });
      stageRuns.set(i, p);
    }
    return p;
  };

  // the check warnings end the output, whether the build worked or not (as buildx shows them)
  const showWarnings = () => {
    const summary = formatSummary(checks.warnings, display);
    if (summary) progress.info(summary.trimEnd());
  };
  // start every needed stage at once; each waits for what it reads
  for (const i of plan.order) void runStage(i).catch(() => undefined);
  // the first failure is the one shown (the others were cancelled by it)
  const state = await runStage(plan.target).catch(() => undefined);
  await Promise.allSettled([...stageRuns.values()]);
  await Promise.all([fileHashes.save(), explainer.save()]).catch(() => undefined);
  if (failed || !state) {
    showWarnings();
    throw failed;
  }
  if (opts.labels && Object.keys(opts.labels).length) state.config.Labels = { ...(state.config.Labels ?? {}), ...opts.labels };

  const author = plan.stages[plan.target].instructions.filter((x) => x.kind === 'maintainer').map((x) => (x as { name: string }).name).pop();
  const step = progress.step('exporting layers');
  const written = await writeImage(snap, state, { created: ctx.sourceDateEpoch?.toISOString() ?? state.created, author, annotations: opts.annotations });
  await Promise.all(state.layers.map((l) => cache.saveBlob(l)));
  step.done(`manifest ${written.manifestDigest}`);
  showWarnings();
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
  explainer: MissExplainer,
): Promise<StageState> {
  let state: StageState;
  const label = stage.name ?? `stage-${stage.index}`;
  const total = stage.instructions.length + 1;
  const fromStep = ctx.progress.step(`[${label} 1/${total}] ${stage.from.raw}`);
  try {
    if (ctx.signal.aborted) throw canceled();
    if (stage.base.kind === 'scratch') state = baseState(undefined, [], 'scratch');
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
  // the last step that changes files, when no other stage of this build reads this one
  const readByOthers = plan.order.some((t) => t !== stage.index && plan.stages[t]!.deps.includes(stage.index));
  const changesFiles = (ins: Instruction) => ins.kind === 'run' || ins.kind === 'copy' || ins.kind === 'add' || ins.kind === 'workdir';
  const lastFs = readByOthers ? -1 : all.map((a) => changesFiles(a.ins)).lastIndexOf(true);
  for (const [k, { ins, n }] of all.entries()) {
    if (failed()) throw canceled();
    if ((ins.kind === 'copy' || ins.kind === 'add') && ins.from !== undefined) {
      // wait for the stage or image it reads before the step shows as started
      const dep = ctx.stageIndexOf(ins.from);
      await (dep !== undefined ? runStage(dep) : ctx.imageState(ins.from)).catch((err) => {
        throw withRange(err, ins.range);
      });
    }
    if (ins.kind === 'run') {
      // RUN --mount=from=<stage|image>: that first, too
      for (const raw of ins.mounts) {
        const from = mountFrom(raw, ins.range);
        if (!from) continue;
        const dep = ctx.stageIndexOf(from);
        await (dep !== undefined ? runStage(dep) : ctx.imageState(from)).catch((err) => {
          throw withRange(err, ins.range);
        });
      }
    }
    const step = ctx.progress.step(`[${label} ${n}] ${stepName(ins)}`);
    const before = state.layers.length;
    const position = `${stage.index}/${n}`;
    const cache = new StepCacheHandle(ctx, state, step, explainer, position);
    try {
      const createdBy = ins.kind === 'run' ? describeRun(ins, state.config.Shell) : `${ins.raw} # buildkit`;
      if (applyMeta(state, ins, plan)) {
        // config only
      } else if (ins.kind === 'run') await runStep({ ctx, state, step, label, cache }, ins);
      else if (ins.kind === 'copy' || ins.kind === 'add') await copyStep({ ctx, state, step, label, cache, lastFsChange: k === lastFs }, ins);
      else if (ins.kind === 'workdir') await workdirStep({ ctx, state, step, label, cache }, ins);
      else throw new MbuildError('MBUILD_UNSUPPORTED', `${(ins as Instruction).kind.toUpperCase()} is not supported`, { range: (ins as Instruction).range });
      const layer = state.layers.length > before ? state.layers[state.layers.length - 1] : undefined;
      if (cache.key) state.key = cache.key;
      if (cache.created) state.created = cache.created;
      state.history.push({ entry: { created: ctx.sourceDateEpoch?.toISOString() ?? state.created, created_by: createdBy, comment: 'buildkit.dockerfile.v0' }, layer });
      step.done(cache.hit ? 'CACHED' : undefined);
    } catch (err) {
      if (err instanceof MbuildError && err.code === 'MBUILD_CANCELED') step.cancel();
      else step.fail();
      throw withRange(err, ins.range);
    }
  }
  return state;
}

function canceled(): MbuildError {
  return new MbuildError('MBUILD_CANCELED', 'canceled: another stage failed');
}

/** True once this process loaded the registry client (its connections need closing at exit). */
export let registryLoaded = false;
async function loadRegistry() {
  registryLoaded = true;
  return import('../../registry/ensure.js');
}

/**
 * SOURCE_DATE_EPOCH (reproducible builds), from --build-arg as BuildKit takes it, else from the
 * environment: every time in the image config becomes this one, and WORKDIR dates what it creates.
 */
function sourceDateEpoch(buildArgs: Record<string, string>): Date | undefined {
  const v = buildArgs.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new MbuildError('MBUILD_USAGE', `invalid SOURCE_DATE_EPOCH "${v}": expected seconds since 1970`);
  return new Date(Number(v) * 1000);
}

/** One step's view of the build cache: lookup fixes the step's key; save keeps the layer under it. */
class StepCacheHandle implements StepCache {
  key?: string;
  private storeKey?: string;
  created?: string;
  hit = false;
  private record?: StepRecord;
  constructor(
    private readonly ctx: BuildContext,
    private readonly state: StageState,
    private readonly step: StepHandle,
    private readonly explainer: MissExplainer,
    private readonly position: string,
  ) {}

  async lookup(inputs: Record<string, unknown>, files?: Record<string, string>, opts?: { independent?: boolean }) {
    // an independent step (COPY --link) is kept under a key without the layers below it; the
    // stage's key still chains through it, so later steps depend on the base and on this layer
    const own = stepKey(opts?.independent ? 'independent' : this.state.key, inputs);
    this.storeKey = own;
    this.key = opts?.independent ? stepKey(this.state.key, { independent: own }) : own;
    this.record = { inputs: { parent: this.state.key.slice(-16), ...inputDigests(inputs) }, ...(files ? { files } : {}) };
    this.explainer.record(this.position, this.record);
    if (!this.ctx.noCache) {
      const found = await this.ctx.cache.get(own);
      if (found) {
        this.hit = true;
        this.created = found.created;
        return found.layer;
      }
      this.step.note(`cache miss: ${this.explainer.explain(this.position, this.record)}`);
    }
    return undefined;
  }

  async save(layer: Layer): Promise<Layer> {
    this.created = new Date().toISOString();
    if (!this.storeKey) return layer;
    return this.ctx.cache.put(this.storeKey, layer, this.created);
  }
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
