/**
 * A step two builds of one store need at once runs once: a build that misses the cache claims the
 * step's key (a lock file under ROOT/locks/steps, so builds in separate processes — the server's
 * workers, two CLIs — see each other) before running it; a build that finds the key claimed waits
 * for the claim to go, then takes the other build's layer from the cache. A claimant that fails
 * or dies leaves no layer, and the waiter runs the step itself.
 */
import path from 'node:path';
import { holdLock } from '../../store/lock.js';
import { layout } from '../../store/layout.js';

export interface StepClaim {
  /** another build held the claim first: look in the cache again */
  waited: boolean;
  release(): Promise<void>;
}

export function claimStep(root: string, key: string, signal?: AbortSignal): Promise<StepClaim> {
  return holdLock(path.join(layout.locks(root), 'steps', `${key.replace(/^sha256:/, '')}.lock`), signal);
}
