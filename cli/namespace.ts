/**
 * Builds run in a private mount namespace: every overlay the builder mounts (for COPY, WORKDIR,
 * reading a stage) lives only there, so nothing can be left mounted on the host, even after
 * SIGKILL. Node cannot unshare itself, so the CLI re-executes itself under util-linux `unshare`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';

const MARK = 'MBUILD_IN_MOUNTNS';
const PARENT = 'MBUILD_NS_PARENT';

export function inPrivateNamespace(): boolean {
  return process.env[MARK] === '1';
}

/** Returns the child's exit code, or undefined when the current process should do the work itself. */
export async function reexecInMountNamespace(argv: string[]): Promise<number | undefined> {
  if (inPrivateNamespace()) {
    dieWithParent();
    return undefined;
  }
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return undefined;
  const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
  if (!unshare) return undefined;
  // The child must not outlive us: a SIGKILLed `mbuild build` would otherwise leave it building
  // on (docs/security.md 25, 28). setpriv sets PR_SET_PDEATHSIG, which survives the exec of
  // unshare and then of node; the sandbox helper and the step below it die with the child.
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
  const cmd = [unshare, '--mount', '--propagation', 'private', process.execPath, ...process.execArgv, process.argv[1]!, ...argv];
  if (setpriv) cmd.unshift(setpriv, '--pdeathsig', 'KILL', '--');
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: 'inherit', env: childEnv() });
  return waitForChild(child);
}

/** The environment of the re-executed CLI: marked as inside its namespace, with its parent's pid. */
export function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, [MARK]: '1', [PARENT]: String(process.pid) };
  // as bin/mbuild does: the child's node need not parse the CA file at start-up
  if (env.NODE_EXTRA_CA_CERTS) {
    env.MBUILD_EXTRA_CA_CERTS = env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_EXTRA_CA_CERTS;
  }
  return env;
}

/** Forwards SIGINT/SIGTERM/SIGHUP to the re-executed CLI and resolves with its exit code. */
export function waitForChild(child: ChildProcess): Promise<number> {
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

/**
 * In the child: end at once if the parent is already gone (it died before the death signal was
 * armed), and, where setpriv was missing, notice its death by polling.
 */
function dieWithParent(): void {
  const parent = Number(process.env[PARENT]);
  if (!Number.isInteger(parent) || parent <= 0) return;
  const check = () => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL');
  };
  check();
  setInterval(check, 500).unref();
}

function osSignal(sig: NodeJS.Signals): number {
  return (constants.signals as Record<string, number>)[sig] ?? 1;
}
