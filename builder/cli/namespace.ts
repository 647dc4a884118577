/**
 * Builds run in a private mount namespace: every overlay the builder mounts (for COPY, WORKDIR,
 * reading a stage) lives only there, so nothing can be left mounted on the host, even after
 * SIGKILL. Node cannot unshare itself, so the CLI re-executes itself under util-linux `unshare`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';

const MARK = 'MBUILD_IN_MOUNTNS';

export function inPrivateNamespace(): boolean {
  return process.env[MARK] === '1';
}

/** Returns the child's exit code, or undefined when the current process should do the work itself. */
export async function reexecInMountNamespace(argv: string[]): Promise<number | undefined> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0 || inPrivateNamespace()) return undefined;
  const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
  if (!unshare) return undefined;
  const child = spawn(unshare, ['--mount', '--propagation', 'private', process.execPath, ...process.execArgv, process.argv[1], ...argv], {
    stdio: 'inherit',
    env: { ...process.env, [MARK]: '1' },
  });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code ?? 128 + (signal ? osSignal(signal) : 1));
    });
    child.on('error', () => resolve(undefined as unknown as number));
  });
}

function osSignal(sig: NodeJS.Signals): number {
  return (constants.signals as Record<string, number>)[sig] ?? 1;
}
