/** What every step can reach while a build runs. */
import type { Store } from '../../store/store.js';
import type { Layers } from '../../snapshotter/layers.js';
import type { ProgressReporter, StepHandle } from '../../util/progress.js';
import type { IgnoreMatcher } from '../context/dockerignore.js';
import type { StageState } from './state.js';
import type { BuildCache } from '../cache/cache.js';
import type { FileHashCache } from '../cache/file-hashes.js';
import type { CommitOptions, Layer } from '../../snapshotter/snapshotter.js';
import type PQueue from 'p-queue';
import type { Limits } from '../sandbox/cgroups.js';
import type { SecretSource, SshSource } from './secrets.js';

/** default: bridge (a build fails when the bridge cannot be set up); see builder/sandbox/network */
export type NetworkMode = 'default' | 'bridge' | 'host' | 'none';

export interface BuildContext {
  store: Store;
  snap: Layers;
  progress: ProgressReporter;
  contextDir: string;
  ignore: IgnoreMatcher;
  escape: '\\' | '`';
  network: NetworkMode;
  /** --memory / --cpus / --pids-limit, for every RUN */
  limits?: Limits;
  /** granted entitlements (--allow) */
  allow: string[];
  cache: BuildCache;
  /** --secret and --ssh sources by id (RUN --mount=type=secret / type=ssh) */
  secrets?: Map<string, SecretSource>;
  ssh?: Map<string, SshSource>;
  fileHashes: FileHashCache;
  noCache: boolean;
  /** SOURCE_DATE_EPOCH (--build-arg or environment) */
  sourceDateEpoch?: Date;
  /** proxy variables from --build-arg: set in RUN's environment, kept out of the cache key and the image */
  proxyEnv: string[];
  /** --shm-size (KiB) and --ulimit (NAME:SOFT:HARD) for every RUN */
  shmSizeKb?: number;
  ulimits: string[];
  /** --add-host lines for /etc/hosts of every RUN */
  extraHosts: string;
  /** aborted when any stage fails: running RUNs are killed, waiting steps do not start */
  signal: AbortSignal;
  /** limits how many RUN/COPY steps work at once (--jobs) */
  jobs: PQueue;
  /** a stage's index from a COPY --from value (name or number), undefined for an image */
  stageIndexOf(from: string): number | undefined;
  /** the final state of an earlier stage (COPY --from=<stage>) */
  stageResult(index: number): Promise<StageState>;
  /** an image's root as a state (COPY --from=<image>) */
  imageState(ref: string): Promise<StageState>;
}

export interface StepRun {
  ctx: BuildContext;
  state: StageState;
  step: StepHandle;
  /** "stage 2/5" label for messages */
  label: string;
  cache: StepCache;
  /**
   * No later step of this build reads this step's files (it is the last filesystem change of its
   * stage, and no other stage builds on the stage): its layer may be written as a tar only.
   */
  lastFsChange?: boolean;
}

/** A layer step asks the cache first, and keeps what it made under the same key. */
export interface StepCache {
  /** The cached layer for these inputs (fixing the step's key), or undefined on a miss. */
  lookup(inputs: Record<string, unknown>, files?: Record<string, string>, opts?: { independent?: boolean }): Promise<Layer | undefined>;
  /** Keep a blob-only layer the step made (Layers.commitTar) under the key of the last lookup; returns the kept layer. */
  save(layer: Layer): Promise<Layer>;
  /**
   * Commit the step's active snapshot (Layers.prepare / change) as its layer, kept under the key of
   * the last lookup; returns the committed layer. On failure the active snapshot is left to the caller.
   */
  commit(active: string, opts?: CommitOptions): Promise<Layer>;
}

/** The step's active snapshot committed through the cache, or removed if that fails. */
export async function commitOrDiscard(ctx: BuildContext, cache: StepCache, active: string, opts?: CommitOptions): Promise<Layer> {
  try {
    return await cache.commit(active, opts);
  } catch (err) {
    await ctx.snap.discard(active);
    throw err;
  }
}
