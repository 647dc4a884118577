/**
 * Sandboxes whose clean-up (veth, cgroups, state dir) runs in the background after their command
 * ended (builder/sandbox/run.ts, cleanup 'background'), and the build's wait for them at its end.
 * A module of its own so that a build that runs no step (every step cached) does not load the
 * sandbox's code: the CLI bundle is split at imports (scripts/bundle.mjs).
 */
const pending = new Set<Promise<void>>();

/** Tracks a background clean-up until it settles. */
export function trackCleanup(cleanup: Promise<void>): void {
  const tracked = cleanup.finally(() => pending.delete(tracked));
  pending.add(tracked);
}

/** Waits until every sandbox that ended with cleanup 'background' is removed (the end of a build). */
export async function settleSandboxes(): Promise<void> {
  while (pending.size) await Promise.allSettled([...pending]);
}
