/** Runs a plan: stages concurrently (each waits for the stages it reads), steps in order. */
import { settleSandboxes } from '../sandbox/cleanups.js';
import { begin, span } from '../../util/trace.js';
import path from 'node:path';
import { parseDockerfile } from '../dockerfile/parse.js';
import type { Instruction } from '../dockerfile/types.js';
import { planBuild, type Plan, type Stage } from '../plan/plan.js';
import { Layers } from '../../snapshotter/layers.js';
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
import { readDockerfile } from './read-dockerfile.js';
import { formatSummary } from '../checks/report.js';
import { copyStep } from '../steps/copy.js';
import { workdirStep } from '../steps/workdir.js';
import { writeImage, type WrittenImage } from './image.js';
import { dirContextCopy, namedContextOf, replacedStages, stagesNeeded, type NamedContexts } from './named-contexts.js';
import { CacheBlobError, MbuildError, ParseError } from '../../util/errors.js';
import { normalizeName } from '../../store/reference.js';
import os from 'node:os';
import PQueue from 'p-queue';
import { BuildCache } from '../cache/cache.js';
import { FileHashCache } from '../cache/file-hashes.js';
import { MissExplainer, type StepRecord } from '../cache/explain.js';
import { inputDigests, stepKey } from '../cache/keys.js';
import { compareRecords } from '../cache/explain.js';
import { RemoteCaches } from '../cache/remote-import.js';
import { claimStep, type StepClaim } from '../cache/step-claim.js';
import type { BuiltStep } from '../cache/remote-export.js';
import type { CacheExportSpec, CacheImportSpec } from '../cache/remote-spec.js';
import { INLINE_KEY, type InlineCache } from '../cache/remote-format.js';
import { platformString, targetPlatform, type TargetPlatform } from '../plan/platform.js';
import { checkFrontend } from '../dockerfile/syntax.js';
import { platformDescriptor, writeIndex, type WrittenIndex } from './index.js';
import { indexAnnotations, manifestAnnotations, manifestDescriptorAnnotations, type Annotations } from './annotations.js';
import type { CommitOptions, Layer, LayerBlob } from '../../snapshotter/snapshotter.js';
import type { StepHandle } from '../../util/progress.js';
import type { StepCache } from '../steps/contract.js';
import type { BuildRecord, ImageRead } from '../attest/capture.js';

export type { BuildRecord };

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
  /** --annotation: every kind (annotations.ts); the manifest kinds per platform */
  annotations?: Annotations;
  /** --build-context NAME=docker-image://REF (and oci-layout, loaded): FROM/COPY --from NAME use REF */
  namedContexts?: Record<string, string>;
  /** --build-context NAME=DIR (a git or http(s) source fetched into one): see named-contexts.ts */
  contextDirs?: Record<string, string>;
  /** --add-host: lines added to /etc/hosts of every RUN */
  extraHosts?: string;
  /** --shm-size in KiB, --ulimit as NAME:SOFT:HARD: for every RUN */
  shmSizeKb?: number;
  ulimits?: string[];
  /** shared build caches to read (--cache-from) and to write (--cache-to) */
  cacheFrom?: CacheImportSpec[];
  cacheTo?: CacheExportSpec[];
  /** --platform: the target platforms (default: this machine's); several make an image index */
  platforms?: TargetPlatform[];
}

/** How often a build starts again after a cached blob turned out unusable (each time without it). */
const CACHE_RETRIES = 4;

/** The steps a build ran or found, by chain key (the stage's key after the step), for --cache-to. */
type StepLog = Map<string, BuiltStep & { position: string }>;

/** "Dockerfile|target": what the records of a shared cache are filed under (no machine-local path). */
function explainScope(opts: BuildOptions): string {
  const rel = path.relative(opts.contextDir, opts.dockerfile);
  return `${rel.startsWith('..') || path.isAbsolute(rel) ? path.basename(opts.dockerfile) : rel}|${opts.target ?? ''}`;
}

/** One platform's image of a build. */
export interface PlatformImage extends WrittenImage {
  platform: TargetPlatform;
  state: StageState;
  /** what this platform's attestations need to know about its build (its plan, steps and images) */
  record: BuildRecord;
}

/**
 * What a build made. With one platform, the image itself (manifestDigest, manifest, config); with
 * several, `index` is the result (the name holds it) and `images` its platforms' images; the
 * top-level image fields are then the first platform's.
 */
export interface BuildResult extends WrittenImage {
  names: string[];
  state: StageState;
  snap: Layers;
  images: PlatformImage[];
  index?: WrittenIndex;
  /** what an attestation needs to know about the build (the first platform's; `images[k].record` per platform) */
  record: BuildRecord;
}

export async function build(store: Store, progress: ProgressReporter, opts: BuildOptions): Promise<BuildResult> {
  const startedOn = new Date();
  const names = opts.tags.map((t) => normalizeName(t));
  const endPrepare = begin('build.prepare');
  const text = await readDockerfile(opts.dockerfile);
  const display = path.basename(opts.dockerfile);
  const df = parseDockerfile(text, display);
  checkFrontend(df, opts.buildArgs);
  for (const w of df.warnings) progress.info(`WARNING: ${w}`);
  const platforms = opts.platforms?.length ? opts.platforms : [targetPlatform()];
  const multi = platforms.length > 1;
  // one plan per target platform (TARGET* ARGs and each stage's platform differ; BUILD* do not)
  const plans = platforms.map((platform) => planBuild(df, { target: opts.target, buildArgs: opts.buildArgs, platform }));
  const plan = plans[0]!;
  if (multi) for (const p of plans) p.label = platformString(p.platform);
  // SOURCE_DATE_EPOCH is for the build itself (BuildKit does not ask for an ARG)
  for (const a of plan.unusedBuildArgs.filter((n) => n !== 'SOURCE_DATE_EPOCH' && n !== 'BUILDKIT_SYNTAX')) progress.info(`WARNING: build-arg ${a} was not consumed by any ARG`);
  const snap = new Layers(store);
  const cache = new BuildCache(snap);
  if ([...(opts.cacheFrom ?? []), ...(opts.cacheTo ?? [])].some((c) => c.type === 'registry')) registryLoaded = true;
  // the shared caches' manifests are read while the store and the checks get ready (a fresh
  // runner's first round trips to the registry overlap its own start-up)
  const remoteLoad = opts.cacheFrom?.length ? RemoteCaches.load(opts.cacheFrom, snap, cache, progress, platforms) : undefined;
  remoteLoad?.catch(() => undefined);
  const ignore = await loadIgnore(opts.contextDir, opts.dockerfile);
  // build checks (`# check=`): error=true stops here; warnings are shown after the build
  const checks = await checksForBuild(store, text, display, plan, { buildArgs: opts.buildArgs, target: opts.target, ignore });
  const fileHashes = await FileHashCache.load(path.join(cache.dir, 'file-hashes.json'));
  const explainer = await MissExplainer.load(cache.dir, opts.dockerfile, opts.target);
  const remote = await remoteLoad;
  const imageStages = new Set<number>();
  for (let i: number | undefined = plan.target; i !== undefined; ) {
    imageStages.add(i);
    const base: Stage['base'] = plan.stages[i]!.base;
    i = base.kind === 'stage' ? base.index : undefined;
  }
  const shared: SharedCache = { remote, imageStages, log: new Map(), scope: explainScope(opts), made: new Map() };
  endPrepare();
  const named: NamedContexts = { images: opts.namedContexts ?? {}, dirs: opts.contextDirs ?? {} };
  const contextRef = (ref: string) => {
    const c = namedContextOf(named, ref);
    return c && 'image' in c ? c.image : ref;
  };
  // stages a named context replaces never run (nor what only they read); the same in every plan
  const replaced = replacedStages(plan, named);
  const dirStates = new Map<string, Promise<StageState>>();
  const noCacheStages = new Set((opts.noCacheStages ?? []).map((s) => s.toLowerCase()));
  for (const s of noCacheStages) if (!plan.stages.some((st, i) => st.name === s || String(i) === s)) throw new MbuildError('MBUILD_USAGE', `--no-cache-filter ${s}: no stage of that name`);
  const images = new Map<string, Promise<StageState>>();
  // per plan (platform): the images its stages read and the steps it ran, for its provenance
  const imagesRead = plans.map(() => new Map<string, ImageRead>());
  const readOf = new Map<string, ImageRead>();
  let traces: { stage: number; ins: Instruction; layer?: Layer }[][] = [];

  const imageState = (asked: string, platform: TargetPlatform): Promise<StageState> => {
    const ref = contextRef(asked);
    const key = `${ref}|${platformString(platform)}`;
    let p = images.get(key);
    if (!p) {
      p = (async () => {
        // the registry code (and undici) loads only when the store lacks the image or --pull asks
        const local = opts.pull ? undefined : await store.resolveImage(ref, platform).catch(() => undefined);
        const img = local ?? (await (await loadRegistry()).ensureImage(store, ref, { pull: opts.pull, progress, platform, strictPlatform: false }));
        // provenance's resolvedDependencies (each plan records what it read: makeCtx)
        readOf.set(key, { ref, digest: img.manifestDigest, platform: { architecture: img.config.architecture, os: img.config.os, ...(img.config.variant ? { variant: img.config.variant } : {}) } });
        // keyed by the config digest (the image id): the same image pulled as OCI or Docker media types, or loaded from an archive, gives the same keys on every machine
        return baseState(img.config, await snap.fromImage(img), `image:${img.manifest.config.digest}`);
      })();
      images.set(key, p);
    }
    return p;
  };

  // every platform's plan at once, sharing one step queue; the first failure anywhere cancels all
  const attempt = async (): Promise<StageState[]> => {
  let failed: unknown;
  traces = plans.map(() => []);
  const abort = new AbortController();
  // steps often wait (sleep, network, disk) rather than compute: by default allow twice the cores, at least 4
  const jobs = new PQueue({ concurrency: Math.max(1, opts.jobs ?? Math.max(4, 2 * os.availableParallelism())) });
  const onFail = (err: unknown) => {
    if (failed === undefined) {
      failed = err;
      abort.abort(err);
    }
  };
  const makeCtx = (plan: Plan, prog: ProgressReporter, stageResult: (i: number) => Promise<StageState>, platform: TargetPlatform = plan.platform): BuildContext => {
  const c: BuildContext = {
    store,
    snap,
    progress: prog,
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
    jobs,
    stageIndexOf: (from) => {
      if (/^\d+$/.test(from)) return Number(from);
      const i = plan.stages.findIndex((s) => s.name === from.toLowerCase());
      return i >= 0 ? i : undefined;
    },
    stageResult,
    imageState: (asked) => {
      const dir = namedContextOf(named, asked);
      if (dir && 'dir' in dir) return dirContextState(c, asked, dir.dir);
      const read = imagesRead[plans.indexOf(plan)];
      return imageState(asked, platform).then((s) => {
        const r = readOf.get(`${contextRef(asked)}|${platformString(platform)}`);
        if (read && r && !read.has(asked)) read.set(asked, r);
        return s;
      });
    },
  };
  return c;
  };

  /** A directory context: its files (its own .dockerignore applied) copied onto an empty filesystem, cached by content. */
  const dirContextState = (c: BuildContext, name: string, dir: string): Promise<StageState> => {
    let p = dirStates.get(name);
    if (!p) {
      p = (async () => {
        const dc: BuildContext = { ...c, contextDir: dir, ignore: await loadIgnore(dir) };
        const state = baseState(undefined, [], `context:${name}`);
        const step = dc.progress.step(`[context ${name}] load from client`);
        const cache = new StepCacheHandle(dc, state, step, explainer, `context:${name}`, shared, false);
        try {
          await copyStep({ ctx: dc, state, step, label: `context ${name}`, cache }, dirContextCopy(name));
          if (cache.key) state.key = cache.key;
          // the layer's history entry, as BuildKit's exporter adds one for a layer without any
          state.baseHistory = [{ created: cache.created ?? state.created, created_by: `local source for ${name}`, comment: 'buildkit.exporter.image.v0' }];
          step.done();
        } catch (err) {
          step.fail();
          throw err;
        }
        return state;
      })();
      dirStates.set(name, p);
    }
    return p;
  };

  const runPlan = async (plan: Plan): Promise<StageState> => {
  const stageRuns = new Map<number, Promise<StageState>>();
  // with a shared cache, a key-only pass first finds the stages no missing step reads: they never run
  const probe = remote && !replaced.size ? await probeStages(plan, (prog, res, platform) => makeCtx(plan, prog, res, platform), remote).catch(() => undefined) : undefined;
  const ctx = makeCtx(plan, progress, (i) => (!probe || probe.needed.has(i) ? runStage(i) : probe.states.get(i)!));

  const runStage = (i: number): Promise<StageState> => {
    let p = stageRuns.get(i);
    if (!p) {
      const stage = plan.stages[i];
      // a stage's images (FROM, COPY --from, RUN --mount=from) are for its own platform (FROM --platform)
      const stageCtx: BuildContext = { ...makeCtx(plan, progress, ctx.stageResult, stage.platform), ...(noCacheStages.has(stage.name ?? '') || noCacheStages.has(String(i)) ? { noCache: true } : {}) };
      p = replaced.has(i)
        ? ctx.imageState(stage.name!).then(forkState)
        : executeStage(stageCtx, plan, stage, () => failed, runStage, (state, step, position) => new StepCacheHandle(stageCtx, state, step, explainer, position, shared, imageStages.has(i)), (ins, _cache, layer) => {
            // the provenance's steps, per platform
            traces[plans.indexOf(plan)]?.push({ stage: i, ins, layer });
          });
      p.catch(onFail);
      stageRuns.set(i, p);
    }
    return p;
  };

  // start every needed stage at once; each waits for what it reads
  for (const i of stagesNeeded(plan, replaced)) if (!probe || probe.needed.has(i)) void runStage(i).catch(() => undefined);
  const state = await runStage(plan.target).catch(() => undefined);
  await Promise.allSettled([...stageRuns.values()]);
  if (failed || !state) throw failed;
  return state;
  };

  const runs = plans.map((p) => runPlan(p));
  for (const r of runs) r.catch(onFail);
  await Promise.allSettled(runs);
  // the first failure is the one shown (the others were cancelled by it)
  if (failed) throw failed;
  return Promise.all(runs);
  };

  // the check warnings end the output, whether the build worked or not (as buildx shows them)
  const showWarnings = () => {
    const summary = formatSummary(checks.warnings, display);
    if (summary) progress.info(summary.trimEnd());
  };
  const inline = opts.cacheTo?.some((c) => c.type === 'inline');
  for (let n = 0; ; n++) {
  try {
  // every RUN step's sandbox removed (they go in the background: runSandboxed's cleanup option)
  const states = await span('build.steps', () => attempt().finally(() => span('build.save-hashes', () => Promise.all([span('build.save-file-hashes', () => fileHashes.save()), span('build.save-explain', () => explainer.save()), settleSandboxes()])).catch(() => undefined)));
  const step = progress.step('exporting layers');
  const endExport = begin('build.export');
  const written: PlatformImage[] = [];
  for (const [k, state] of states.entries()) {
    const p = plans[k]!;
    if (opts.labels && Object.keys(opts.labels).length) state.config.Labels = { ...(state.config.Labels ?? {}), ...opts.labels };
    const author = p.stages[p.target].instructions.filter((x) => x.kind === 'maintainer').map((x) => (x as { name: string }).name).pop();
    const img = await writeImage(snap, state, {
      created: sourceDateEpoch(opts.buildArgs)?.toISOString() ?? state.created,
      clampMtime: sourceDateEpoch(opts.buildArgs),
      author,
      annotations: manifestAnnotations(opts.annotations ?? [], p.platform),
      extraConfig: inline ? (blobs) => ({ [INLINE_KEY]: inlineCache(state, blobs, shared, explainer) }) : undefined,
    });
    await Promise.all(state.layers.map((l) => cache.saveBlob(l)));
    written.push({ ...img, platform: p.platform, state, record: buildRecord(startedOn, p, text, imagesRead[k]!, traces[k]!, state) });
    if (multi) step.note(`${platformString(p.platform)}: manifest ${img.manifestDigest}`);
  }
  // several platforms: the result is an image index of their manifests
  const ann = opts.annotations ?? [];
  const index = multi ? await writeIndex(store, written.map((w) => platformDescriptor(w, manifestDescriptorAnnotations(ann, w.platform))), { annotations: indexAnnotations(ann) }) : undefined;
  const top = index?.digest ?? written[0]!.manifestDigest;
  endExport();
  step.done(index ? `index ${index.digest}` : `manifest ${top}`);
  showWarnings();
  if (names.length) {
    const created = new Date().toISOString();
    await span('build.name', () => store.images.put(names.map((name) => ({ name, digest: top, created }))));
    progress.info(`naming to ${names.join(', ')}`);
  }
  for (const spec of opts.cacheTo ?? []) {
    if (spec.type === 'inline') continue;
    const { exportCache } = await import('../cache/remote-export.js');
    const steps = spec.mode === 'max' ? [...shared.log.values()] : [...new Map(states.flatMap((st) => chainOf(st.key, shared.log)).map((e) => [e.key, e])).values()];
    await exportCache(spec, { steps, scope: shared.scope, records: explainer.recorded() }, { store, snap, remote, progress });
  }
  const first = written[0]!;
  return { manifestDigest: first.manifestDigest, manifestSize: first.manifestSize, manifest: first.manifest, config: first.config, names, state: first.state, snap, images: written, ...(index ? { index } : {}), record: first.record };
  } catch (err) {
    // a cached blob that cannot be used is a miss: build again, that step runs this time
    if (err instanceof CacheBlobError && remote && n < CACHE_RETRIES) {
      remote.exclude(err.key);
      progress.info(`WARNING: ${err.message}; building again without it`);
      continue;
    }
    showWarnings();
    throw err;
  }
  }
}

async function executeStage(
  ctx: BuildContext,
  plan: Plan,
  stage: Stage,
  failed: () => unknown,
  runStage: (i: number) => Promise<StageState>,
  makeCache: MakeCache,
  onStep?: (ins: Instruction, cache: CacheHandle, layer?: Layer) => void,
): Promise<StageState> {
  let state: StageState;
  // several platforms: each step says which one, as BuildKit's `[linux/arm64 build 2/3]`
  const label = `${plan.label ? plan.label + ' ' : ''}${stage.name ?? `stage-${stage.index}`}`;
  const total = stage.instructions.length + 1;
  const fromStep = ctx.progress.step(`[${label} 1/${total}] ${stage.from.raw}`);
  try {
    if (ctx.signal.aborted) throw canceled();
    if (stage.base.kind === 'scratch') state = baseState(undefined, [], 'scratch', stage.platform);
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
      await (dep !== undefined ? ctx.stageResult(dep) : ctx.imageState(ins.from)).catch((err) => {
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
    const position = `${plan.label ? plan.label + ':' : ''}${stage.index}/${n}`;
    const cache = makeCache(state, step, position);
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
      onStep?.(ins, cache, layer);
      step.done(cache.hit ? 'CACHED' : undefined);
    } catch (err) {
      if (err instanceof MbuildError && err.code === 'MBUILD_CANCELED') step.cancel();
      else step.fail();
      throw withRange(err, ins.range);
    } finally {
      await cache.release?.();
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
export function sourceDateEpoch(buildArgs: Record<string, string>): Date | undefined {
  const v = buildArgs.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new MbuildError('MBUILD_USAGE', `invalid SOURCE_DATE_EPOCH "${v}": expected seconds since 1970`);
  return new Date(Number(v) * 1000);
}

/** The steps under a chain key, newest first (mode=min: the final image's own steps). */
function chainOf(key: string, log: StepLog): BuiltStep[] {
  const out: BuiltStep[] = [];
  for (let e = log.get(key); e; e = log.get(e.parent)) out.push(e);
  return out;
}

/** The inline cache: the final image's steps, their layers by position among the image's layers. */
function inlineCache(state: StageState, blobs: LayerBlob[], shared: SharedCache, explainer: MissExplainer): InlineCache {
  const imageLayers = state.layers.filter((l) => !l.empty);
  const records = explainer.recorded();
  const explain: NonNullable<InlineCache['explain']> = { [shared.scope]: {} };
  const steps: InlineCache['steps'] = [];
  for (let e = shared.log.get(state.key); e; e = shared.log.get(e.parent)) {
    if (records[e.position]) explain[shared.scope]![e.position] = { inputs: records[e.position]!.inputs };
    if (e.layer.empty) {
      steps.push({ key: e.key, parent: e.parent, created: e.created });
      continue;
    }
    let i = imageLayers.indexOf(e.layer);
    if (i < 0) i = imageLayers.findIndex((l) => l.cacheKey === e.key);
    const blob = blobs[i];
    if (i < 0 || !blob || blob.digest !== blob.diffId) continue;
    steps.push({ key: e.key, parent: e.parent, created: e.created, layer: i, size: blob.size });
  }
  steps.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { steps, explain };
}

type CacheHandle = StepCache & { key?: string; created?: string; hit: boolean; release?(): Promise<void> };
type MakeCache = (state: StageState, step: StepHandle, position: string) => CacheHandle;

/** The key-only pass shows nothing. */
const SILENT: ProgressReporter = {
  info: () => undefined,
  step: () => ({ output: () => undefined, note: () => undefined, done: () => undefined, fail: () => undefined, cancel: () => undefined }),
};

/**
 * The key-only pass (BuildKit's solver computes cache keys before it runs anything): every stage
 * is walked with a cache handle that answers each lookup with a placeholder layer, so a step stops
 * right after its key is known. A stage read only by COPY --from steps that all hit is not needed:
 * the real pass gives those steps this pass's state (its key is all a hit uses) and never runs it.
 */
async function probeStages(
  plan: Plan,
  makeCtx: (prog: ProgressReporter, stageResult: (i: number) => Promise<StageState>, platform?: TargetPlatform) => BuildContext,
  remote: RemoteCaches,
): Promise<{ needed: Set<number>; states: Map<number, Promise<StageState>> }> {
  const states = new Map<number, Promise<StageState>>();
  const copyFrom = new Map<number, { dep: number; hit: boolean }[]>();
  const ctx = makeCtx(SILENT, (i) => probe(i));
  // the final image's stages: their hits' layers will be needed, so their downloads start now
  const imageStages = new Set<number>();
  for (let i: number | undefined = plan.target; i !== undefined; ) {
    imageStages.add(i);
    const base: Stage['base'] = plan.stages[i]!.base;
    i = base.kind === 'stage' ? base.index : undefined;
  }
  const probe = (i: number): Promise<StageState> => {
    let p = states.get(i);
    if (!p) {
      const stage = plan.stages[i]!;
      // the stage's images are its platform's (FROM --platform), as in the real pass
      const sctx: BuildContext = makeCtx(SILENT, (j) => probe(j), stage.platform);
      p = executeStage(sctx, plan, stage, () => undefined, probe, (state) => new ProbeCacheHandle(sctx, state, remote, imageStages.has(i)), (ins, cache) => {
        const dep = (ins.kind === 'copy' || ins.kind === 'add') && ins.from !== undefined ? ctx.stageIndexOf(ins.from) : undefined;
        if (dep !== undefined) copyFrom.set(i, [...(copyFrom.get(i) ?? []), { dep, hit: cache.hit }]);
      });
      states.set(i, p);
    }
    return p;
  };
  await probe(plan.target);
  const needed = new Set<number>();
  const visit = (i: number) => {
    if (needed.has(i)) return;
    needed.add(i);
    const stage = plan.stages[i]!;
    if (stage.base.kind === 'stage') visit(stage.base.index);
    for (const c of copyFrom.get(i) ?? []) if (!c.hit) visit(c.dep);
  };
  visit(plan.target);
  return { needed, states };
}

/** A stage that was not built: mounting its layers fails clearly instead of copying nothing. */
const UNBUILT: Layer = { id: 'unbuilt-stage', dir: '/nonexistent/mbuild-unbuilt-stage', empty: false };

/** Keys as StepCacheHandle makes them (COPY --link: stored without the layers below). */
function keysOf(parent: string, inputs: Record<string, unknown>, independent?: boolean): { own: string; key: string } {
  const own = stepKey(independent ? 'independent' : parent, inputs);
  return { own, key: independent ? stepKey(parent, { independent: own }) : own };
}

class ProbeCacheHandle implements CacheHandle {
  key?: string;
  created?: string;
  hit = false;
  constructor(
    private readonly ctx: BuildContext,
    private readonly state: StageState,
    private readonly remote: RemoteCaches,
    private readonly inImage: boolean,
  ) {}

  async lookup(inputs: Record<string, unknown>, _files?: Record<string, string>, opts?: { independent?: boolean }) {
    const { own, key } = keysOf(this.state.key, inputs, opts?.independent);
    this.key = key;
    const found = this.ctx.noCache ? undefined : ((await this.ctx.cache.get(own)) ?? (await this.remote.lookup(own)));
    if (found && this.inImage) this.remote.prefetch(found.layer);
    this.hit = found !== undefined;
    this.created = found?.created;
    return UNBUILT;
  }

  async save(layer: Layer): Promise<Layer> {
    return layer;
  }

  commit(active: string, opts?: CommitOptions): Promise<Layer> {
    return this.ctx.snap.commitPrivate(active, opts);
  }
}

/** The shared caches of a build (--cache-from / --cache-to) and what it ran or found. */
interface SharedCache {
  remote?: RemoteCaches;
  /** the target stage and the stages it is built FROM: every layer of theirs ends up in the image */
  imageStages: Set<number>;
  log: StepLog;
  scope: string;
  /** the layers this build made, by their store key (--no-cache shares these and nothing older) */
  made: Map<string, { layer: Layer; created: string }>;
}

/** One step's view of the build cache: lookup fixes the step's key; save keeps the layer under it. */
class StepCacheHandle implements CacheHandle {
  key?: string;
  private storeKey?: string;
  created?: string;
  hit = false;
  private record?: StepRecord;
  private claim?: StepClaim;
  private readonly parent: string;
  constructor(
    private readonly ctx: BuildContext,
    private readonly state: StageState,
    private readonly step: StepHandle,
    private readonly explainer: MissExplainer,
    private readonly position: string,
    private readonly shared: SharedCache,
    private readonly inImage: boolean,
  ) {
    this.parent = state.key;
  }

  async lookup(inputs: Record<string, unknown>, files?: Record<string, string>, opts?: { independent?: boolean }) {
    // an independent step (COPY --link) is kept under a key without the layers below it; the
    // stage's key still chains through it, so later steps depend on the base and on this layer
    const { own, key } = keysOf(this.state.key, inputs, opts?.independent);
    this.storeKey = own;
    this.key = key;
    this.record = { inputs: { parent: this.state.key.slice(-16), ...inputDigests(inputs) }, ...(files ? { files } : {}) };
    this.explainer.record(this.position, this.record);
    // --no-cache: nothing made before this build started is taken, but a step another platform's
    // plan of this build (or a build alongside) runs at the same time is still run once
    {
      // this store first, then the shared caches (their layers are fetched when first needed)
      let found = this.ctx.noCache ? undefined : ((await this.ctx.cache.get(own)) ?? (await this.shared.remote?.lookup(own)));
      if (!found) {
        // a miss: claim the step, so a build of this store that needs it too waits for our layer
        this.claim = await claimStep(this.ctx.store.root, own, this.ctx.signal).catch((err) => {
          throw this.ctx.signal.aborted ? canceled() : err;
        });
        if (this.claim.waited) {
          found = this.ctx.noCache ? this.shared.made.get(own) : await this.ctx.cache.get(own);
          if (found) {
            await this.release();
            this.step.note('CACHED: built by another build at the same time');
          }
        }
      }
      if (found) {
        this.hit = true;
        this.created = found.created;
        if (this.inImage) this.shared.remote?.prefetch(found.layer);
        this.logStep(found.layer);
        return found.layer;
      }
      if (!this.ctx.noCache) this.step.note(`cache miss: ${await this.whyMissed(this.record)}`);
    }
    return undefined;
  }


  /** Compared with this store's last build, else with the inputs another runner recorded in a shared cache. */
  private async whyMissed(rec: StepRecord): Promise<string> {
    if (this.explainer.knows(this.position) || !this.shared.remote) return this.explainer.explain(this.position, rec);
    const remote = await this.shared.remote.explain(this.shared.scope, this.position).catch(() => undefined);
    return remote ? compareRecords(remote, rec) : 'not built before';
  }

  private logStep(layer: Layer): void {
    if (this.key && this.storeKey && this.created) this.shared.log.set(this.key, { key: this.storeKey, parent: this.parent, created: this.created, layer, position: this.position });
  }

  async save(layer: Layer): Promise<Layer> {
    this.created = new Date().toISOString();
    if (!this.storeKey) return layer;
    const kept = await this.ctx.cache.put(this.storeKey, layer, this.created);
    this.shared.made.set(this.storeKey, { layer: kept, created: this.created });
    await this.release();
    this.logStep(kept);
    return kept;
  }

  async commit(active: string, opts?: CommitOptions): Promise<Layer> {
    this.created = new Date().toISOString();
    if (!this.storeKey) return this.ctx.snap.commitPrivate(active, opts);
    const kept = await this.ctx.cache.commit(this.storeKey, active, this.created, opts);
    this.shared.made.set(this.storeKey, { layer: kept, created: this.created });
    await this.release();
    this.logStep(kept);
    return kept;
  }

  /** Ends the claim on the step (after save or commit, or when the step failed): a waiting build looks again. */
  async release(): Promise<void> {
    const c = this.claim;
    this.claim = undefined;
    await c?.release();
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

/** One platform's build as its provenance tells it: the steps it ran, each with the layer it gave that platform's image. */
function buildRecord(startedOn: Date, plan: Plan, dockerfileText: string, images: Map<string, ImageRead>, trace: { stage: number; ins: Instruction; layer?: Layer }[], state: StageState): BuildRecord {
  const imageLayers = state.layers.filter((l) => !l.empty);
  return {
    startedOn,
    plan,
    dockerfileText,
    images,
    trace: trace.map((t) => {
      const at = t.layer && !t.layer.empty ? imageLayers.indexOf(t.layer) : -1;
      return { stage: t.stage, ins: t.ins, ...(at >= 0 ? { layerIndex: at } : {}) };
    }),
  };
}
