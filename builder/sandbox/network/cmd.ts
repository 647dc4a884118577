/** Running ip(8), iptables(8) and nft(8): found in the sbin directories even when PATH lacks them. */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { NetworkError } from '../../../util/errors.js';

const found = new Map<string, string | null>();

/** Absolute path of a system tool, or undefined when it is not installed. */
export function findTool(name: string): string | undefined {
  if (!found.has(name)) {
    const dirs = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', ...(process.env.PATH ?? '').split(':').filter(Boolean)];
    let hit: string | null = null;
    for (const d of dirs) {
      try {
        accessSync(path.join(d, name), constants.X_OK);
        hit = path.join(d, name);
        break;
      } catch {
        // not here
      }
    }
    found.set(name, hit);
  }
  return found.get(name) ?? undefined;
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool; resolves with its exit code (never rejects for a non-zero exit). */
export function runTool(name: string, args: string[], input?: string): Promise<ToolResult> {
  const bin = findTool(name);
  if (!bin) return Promise.reject(new NetworkError(`${name} is not installed (it is needed for container networking)`));
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => reject(new NetworkError(`cannot run ${bin}: ${e.message}`, e)));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

export function runToolSync(name: string, args: string[]): ToolResult {
  const bin = findTool(name);
  if (!bin) return { code: 127, stdout: '', stderr: `${name} is not installed` };
  const r = spawnSync(bin, args, { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Several `ip` commands in one process (`ip -batch -`); throws with ip's message on the first failure. */
export async function ip(lines: string[], what: string): Promise<void> {
  const r = await runTool('ip', ['-batch', '-'], lines.join('\n') + '\n');
  if (r.code !== 0) throw new NetworkError(`${what}: ${r.stderr.trim().replace(/\s+/g, ' ') || `ip exited with ${r.code}`}`);
}

/** `ip -j ...` parsed; undefined when the command fails (e.g. no such device). */
export async function ipJson<T>(args: string[]): Promise<T | undefined> {
  const r = await runTool('ip', ['-j', ...args]);
  if (r.code !== 0) return undefined;
  try {
    return JSON.parse(r.stdout || '[]') as T;
  } catch {
    return undefined;
  }
}

/** iptables with the xtables lock wait; resolves with the result (callers decide what a failure means). */
export function iptables(args: string[]): Promise<ToolResult> {
  return runTool('iptables', ['-w', '5', ...args]);
}
