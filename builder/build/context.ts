/** What every step can reach while a build runs. */
import type { Store } from '../../store/store.js';
import type { Snapshotter } from '../../snapshotter/snapshots.js';
import type { Progress, StepHandle } from '../cli/progress.js';
import type { IgnoreMatcher } from '../context/dockerignore.js';
import type { StageState } from './state.js';

export type NetworkMode = 'host' | 'none';

export interface BuildContext {
  store: Store;
  snap: Snapshotter;
  progress: Progress;
  contextDir: string;
  ignore: IgnoreMatcher;
  escape: '\\' | '`';
  network: NetworkMode;
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
}
