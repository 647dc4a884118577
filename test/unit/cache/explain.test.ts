import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MissExplainer } from '../../../builder/cache/explain.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mbuild-explain-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** One build: records every step, then saves, as the executor does. */
async function build(steps: Record<string, { inputs: Record<string, string>; files?: Record<string, string> }>, target?: string): Promise<MissExplainer> {
  const e = await MissExplainer.load(dir, '/ctx/Dockerfile', target);
  for (const [pos, rec] of Object.entries(steps)) e.record(pos, rec);
  await e.save();
  return e;
}

describe('cache miss explanations', () => {
  it('a step never built before says so', async () => {
    const e = await MissExplainer.load(dir, '/ctx/Dockerfile', undefined);
    expect(e.explain('0/2', { inputs: { args: 'a' } })).toBe('not built before');
  });

  it('names what changed since the last build, and only the parent when an earlier step changed', async () => {
    await build({ '0/2': { inputs: { parent: 'p', args: 'a', env: 'e' } } });
    const e = await MissExplainer.load(dir, '/ctx/Dockerfile', undefined);
    expect(e.explain('0/2', { inputs: { parent: 'p', args: 'b', env: 'f' } })).toBe('the command changed; the environment (ENV/ARG) changed');
    expect(e.explain('0/2', { inputs: { parent: 'q', args: 'b', env: 'e' } })).toBe('an earlier step changed');
    expect(e.explain('0/2', { inputs: { parent: 'p', args: 'a', env: 'e' } })).toBe('the cached layer was removed (pruned?) or --no-cache');
  });

  it('names the files of a context COPY that changed (five, then a count)', async () => {
    const files = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`f${i}`, 'old']));
    await build({ '0/3': { inputs: { content: 'c1' }, files } });
    const e = await MissExplainer.load(dir, '/ctx/Dockerfile', undefined);
    const now = { ...files, f0: 'new', f7: 'new' };
    expect(e.explain('0/3', { inputs: { content: 'c2' }, files: now })).toBe('files changed: f0, f7');
    const all = Object.fromEntries(Object.keys(files).map((f) => [f, 'new']));
    expect(e.explain('0/3', { inputs: { content: 'c2' }, files: all })).toBe('files changed: f0, f1, f2, f3, f4 and 3 more');
  });

  it('keeps one record per Dockerfile and target, and rewrites nothing when nothing changed', async () => {
    await build({ '0/2': { inputs: { args: 'a' } } }, 'one');
    await build({ '0/2': { inputs: { args: 'b' } } }, 'two');
    expect((await MissExplainer.load(dir, '/ctx/Dockerfile', 'one')).explain('0/2', { inputs: { args: 'b' } })).toBe('the command changed');
    const names = (await readdir(path.join(dir, 'last'))).sort();
    expect(names).toHaveLength(4); // .inputs.json and .files.json per target
    await build({ '0/2': { inputs: { args: 'a' } } }, 'one');
    expect((await readdir(path.join(dir, 'last'))).sort()).toEqual(names);
  });
});
