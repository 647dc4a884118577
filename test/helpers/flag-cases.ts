/**
 * The small vocabulary the flag-walking tests share (cli-flags.test.ts locally, serve-remote.test.ts
 * through a server): build a context, inspect an image, expect a one-line refusal, point at the
 * test file that pins a flag. `cli` runs the CLI the way the file means (its --root, or --host);
 * `workDir` is read at call time (the file makes it in beforeAll).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { REPO, writeContext, type CliResult } from './cli.js';

export function flagCases(cli: (args: string[], input?: string) => Promise<CliResult>, workDir: () => string) {
  const ctxWith = (dockerfile: string, files: Record<string, string> = {}): Promise<string> => writeContext(workDir(), { Dockerfile: dockerfile, ...files });

  async function build(dockerfile: string, args: string[] = [], files: Record<string, string> = {}): Promise<CliResult & { dir: string }> {
    const dir = await ctxWith(dockerfile, files);
    const r = await cli(['build', '--progress', 'plain', ...args, dir]);
    return { ...r, dir };
  }

  async function inspect(name: string): Promise<Record<string, any>> {
    const r = await cli(['inspect', name]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout)[0];
  }

  /** a refusal: non-zero exit, one line on stderr matching re */
  async function refused(args: string[], re: RegExp): Promise<void> {
    const r = await build('FROM busybox\n', args);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(re);
  }

  /** a flag whose effect another test file pins: that file must use it */
  function coveredBy(file: string, needle: string): () => void {
    return () => expect(readFileSync(path.join(REPO, file), 'utf8')).toContain(needle);
  }

  return { ctxWith, build, inspect, refused, coveredBy };
}
