// Running commands: timed runs with their output in a log file, and small helpers.
import { spawn, spawnSync } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * Runs CMD ARGS with stdout+stderr appended to LOG (or discarded), and resolves to
 * { code, ms } where ms is the wall time from spawn to exit.
 */
export function timed(cmd, args, { env, log, cwd, timeoutMs = 30 * 60_000 } = {}) {
  return new Promise((resolve) => {
    const fd = log ? openSync(log, 'a') : 'ignore';
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: env ?? process.env, cwd, stdio: ['ignore', fd, fd] });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const done = (code) => {
      clearTimeout(timer);
      if (typeof fd === 'number') closeSync(fd);
      resolve({ code, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    };
    child.on('error', () => done(127));
    child.on('exit', (code, sig) => done(code ?? (sig ? 128 : 1)));
  });
}

/** Runs a command to completion; returns { code, out } (stdout+stderr as text). Never throws. */
export function sh(cmd, args, { env, cwd, input } = {}) {
  const r = spawnSync(cmd, args, { env: env ?? process.env, cwd, input, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status ?? 1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim(), stdout: (r.stdout ?? '').trim() };
}

/** Like sh, but throws with the command's output when it fails. */
export function must(cmd, args, opts) {
  const r = sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.out.slice(-2000)}`);
  return r.stdout;
}

export function which(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

export function tail(file, lines = 15) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function median(xs) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
