/**
 * The shared conformance suite (../shared/conformance) as the tests run it: the cases are copied
 * with the modes a git checkout with umask 022 gives (what the expected results assume), whatever
 * the shared copy's modes are, then run.sh builds each one with the CLI.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, SHARED, run } from './cli.js';

export async function copyAsCheckout(src: string, dst: string): Promise<void> {
  const st = await fs.lstat(src);
  if (st.isSymbolicLink()) {
    await fs.symlink(await fs.readlink(src), dst);
  } else if (st.isDirectory()) {
    await fs.mkdir(dst);
    for (const name of await fs.readdir(src)) await copyAsCheckout(path.join(src, name), path.join(dst, name));
    await fs.chmod(dst, 0o755);
  } else if (await gitSymlinkTarget(src, st.size)) {
    await fs.symlink((await gitSymlinkTarget(src, st.size))!, dst);
  } else {
    await fs.copyFile(src, dst);
    await fs.chmod(dst, st.mode & 0o111 ? 0o755 : 0o644);
  }
}

/**
 * The shared copy of the cases stores a git symlink the way git does without symlink support: a
 * small file holding the link target, no newline (the links case's link-to-a → target.txt). A git
 * checkout makes it a symlink again; so do we, when the text names an entry beside the file.
 */
async function gitSymlinkTarget(file: string, size: number): Promise<string | undefined> {
  if (size === 0 || size > 255) return undefined;
  const text = await fs.readFile(file, 'utf8');
  if (/[\n\0]/.test(text) || path.isAbsolute(text) || text.includes('..')) return undefined;
  const target = path.join(path.dirname(file), text);
  return target !== file && (await fs.lstat(target).then(() => true, () => false)) ? text : undefined;
}

export interface ConformanceRun {
  /** run.sh's output: one line per case, last "N passed, M failed" */
  stdout: string;
  code: number;
  /** the number of cases */
  total: number;
  /** the last line */
  summary: string;
  seconds: number;
}

/** Copies the cases and runs them all with the CLI; `env` reaches every mbuild process. */
export async function runConformance(env: NodeJS.ProcessEnv = {}): Promise<ConformanceRun> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-cases-'));
  try {
    await copyAsCheckout(path.join(SHARED, 'conformance/cases'), path.join(tmp, 'cases'));
    const start = Date.now();
    const r = await run('bash', [path.join(SHARED, 'conformance/run.sh')], {
      cwd: REPO,
      env: { ...env, CASES: path.join(tmp, 'cases'), MBUILD: path.join(REPO, 'bin/mbuild') },
    });
    const seconds = (Date.now() - start) / 1000;
    const total = (await fs.readdir(path.join(tmp, 'cases'))).length;
    return { stdout: r.stdout, code: r.code, total, summary: r.stdout.trim().split('\n').pop() ?? '', seconds };
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
