/**
 * Where a command's time goes, for finding slow phases: with MBUILD_TRACE=1 in the environment, every
 * span prints one line to stderr when it ends, "mbuild-trace <at> ms <name> <took> ms", `at` counted
 * from the process's start (so node's own start-up shows as the first span's `at`). Without it
 * a span costs one boolean test. Not a user-facing output format: nothing parses it but people.
 */
import { performance } from 'node:perf_hooks';

export const tracing = process.env.MBUILD_TRACE === '1';

function line(name: string, start: number): void {
  const end = performance.now();
  process.stderr.write(`mbuild-trace ${end.toFixed(1)} ms ${name} ${(end - start).toFixed(1)} ms\n`);
}

/** Times `fn` (sync or async) under `name`. */
export function span<T>(name: string, fn: () => T): T {
  if (!tracing) return fn();
  const start = performance.now();
  let result: T;
  try {
    result = fn();
  } catch (err) {
    line(`${name} (threw)`, start);
    throw err;
  }
  if (result instanceof Promise) {
    return result.then(
      (v) => {
        line(name, start);
        return v;
      },
      (err) => {
        line(`${name} (threw)`, start);
        throw err;
      },
    ) as T;
  }
  line(name, start);
  return result;
}

/** A mark: "mbuild-trace <at> ms <name> 0.0 ms". */
export function mark(name: string): void {
  if (tracing) line(name, performance.now());
}

/** A span ended by hand (when the work is not one function): `const end = begin('x'); ...; end()`. */
export function begin(name: string): () => void {
  if (!tracing) return () => undefined;
  const start = performance.now();
  return () => line(name, start);
}
