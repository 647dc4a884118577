/**
 * Server work runs in child processes of the ordinary CLI (bin/mbuild), one per build: each
 * build gets its own private mount namespace (bin/mbuild unshares as it starts), its own crash
 * domain, and the recovery a killed `mbuild build` has always had (the next command sweeps what
 * it left). setpriv's parent-death signal ends a worker when the server dies, even by SIGKILL;
 * SIGTERM lets it undo its sandboxes' host state first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

/** bin/mbuild beside the launcher this process was started from. */
function mbuildCommand(): string {
  const launcher = process.argv[1] ?? '';
  const sh = path.join(path.dirname(launcher), 'mbuild');
  return existsSync(sh) ? sh : launcher;
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** The environment of a worker: the server's, without what would make it a client or share our namespace. */
function workerEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const k of ['MBUILD_HOST', 'MBUILD_IN_MOUNTNS', 'MBUILD_NS_PARENT', 'MBUILD_CERT_PATH']) delete env[k];
  return env;
}

export function spawnWorker(root: string, args: string[], env?: NodeJS.ProcessEnv, opts: { stdin?: boolean } = {}): ChildProcess {
  const argv = [mbuildCommand(), '--root', root, ...args];
  const cmd = SETPRIV ? [SETPRIV, '--pdeathsig', 'TERM', '--', ...argv] : argv;
  return spawn(cmd[0]!, cmd.slice(1), { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: workerEnv(env) });
}

export function exitCode(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : signal === 'SIGKILL' ? 137 : 1;
}

/** Runs a short CLI command on the server's store and collects what it prints. */
export function runCommand(root: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawnWorker(root, args);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', (err) => resolve({ code: 1, stdout, stderr: stderr + `error: cannot start mbuild on the server: ${err.message}\n` }));
    child.on('close', (code, signal) => resolve({ code: exitCode(code, signal), stdout, stderr }));
  });
}
