/**
 * Node dies on SIGINT/SIGTERM/SIGHUP without running `finally` blocks. While sandboxes run, this
 * catches those signals, undoes what each sandbox holds on the host (synchronously: veths, cgroups),
 * then dies of the same signal as it would have. What a SIGKILL leaves is swept on the next start.
 */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const live = new Set<() => void>();
let installed = false;

function onSignal(sig: NodeJS.Signals): void {
  for (const c of [...live]) {
    try {
      c();
    } catch {
      // best effort: keep cleaning the others
    }
  }
  live.clear();
  uninstall();
  // die of the signal unless someone else handles it
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const s of SIGNALS) process.off(s, onSignal);
}

/** Registers a synchronous cleanup for an interruption; call the returned function when done. */
export function onInterrupt(cleanup: () => void): () => void {
  live.add(cleanup);
  install();
  return () => {
    live.delete(cleanup);
    if (live.size === 0) uninstall();
  };
}
