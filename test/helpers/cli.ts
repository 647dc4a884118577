/** Run the real CLI (bin/mbuild, the package's command; compiled dist/) the way a user does. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED = path.resolve(REPO, '../shared');
export const BUSYBOX_TAR = path.join(SHARED, 'conformance/bases/busybox.oci.tar');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function mbuild(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliResult> {
  return run(path.join(REPO, 'bin/mbuild'), args, { cwd: opts.cwd ?? REPO, env: opts.env, input: opts.input });
}

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const input = opts.input !== undefined;
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // the command may exit before reading its input
      child.stdin.end(opts.input);
    }
  });
}

/** The canonical tree/config of an image archive, via the conformance suite's own reader. */
export async function imageTree(tarPath: string): Promise<{ config: Record<string, unknown>; layers: number; tree: Record<string, Record<string, unknown>> }> {
  const r = await run('python3', [path.join(SHARED, 'conformance/imagetree.py'), 'show', tarPath]);
  if (r.code !== 0) throw new Error(`imagetree failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export async function mountsUnder(dir: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  return (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => l.includes(` ${dir}`));
}

/** A fresh build context under `parent` holding `files` (name -> content; folders are made). */
export async function writeContext(parent: string, files: Record<string, string>): Promise<string> {
  const { promises: fs } = await import('node:fs');
  const dir = await fs.mkdtemp(path.join(parent, 'ctx-'));
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
  return dir;
}
