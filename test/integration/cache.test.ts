/** The build cache: content keys, CACHED steps, explained misses, identical rebuilds. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, mountsUnder } from '../helpers/cli.js';

let tmp: string;
let root: string;
let ctx: string;

const DOCKERFILE = `FROM busybox AS build
COPY src/ /src/
RUN cat /src/* > /all.txt && date +%s%N > /stamp
FROM busybox
COPY --from=build /all.txt /stamp /out/
LABEL version=1
RUN wc -c /out/all.txt > /count.txt
`;

async function build(extra: string[] = []) {
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-t', 'cached', ...extra, ctx]);
  expect(r.code, r.stderr).toBe(0);
  const id = (await mbuild(['--root', root, 'inspect', 'cached'])).stdout;
  return { stderr: r.stderr, digest: JSON.parse(id)[0].Digest as string, cached: (r.stderr.match(/CACHED/g) ?? []).length };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-cache-'));
  root = path.join(tmp, 'root');
  ctx = path.join(tmp, 'ctx');
  await fs.mkdir(path.join(ctx, 'src'), { recursive: true });
  await fs.writeFile(path.join(ctx, 'Dockerfile'), DOCKERFILE);
  await fs.writeFile(path.join(ctx, 'src/a.txt'), 'a\n');
  await fs.writeFile(path.join(ctx, 'src/b.txt'), 'b\n');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('build cache', () => {
  it('reuses every step of an unchanged build and gives the same image digest', async () => {
    const first = await build();
    expect(first.cached).toBe(0);
    expect(first.stderr).toContain('cache miss: not built before');
    const second = await build();
    expect(second.cached).toBe(4); // COPY, RUN, COPY --from, RUN (metadata steps are never layers)
    expect(second.digest).toBe(first.digest);
  });

  it('keys COPY by content, not by mtime', async () => {
    const before = await build();
    const later = new Date(Date.now() + 60_000);
    await fs.utimes(path.join(ctx, 'src/a.txt'), later, later);
    const after = await build();
    expect(after.cached).toBe(4);
    expect(after.digest).toBe(before.digest);
  });

  it('explains a miss by naming the changed file, and reuses the steps before it', async () => {
    await fs.writeFile(path.join(ctx, 'src/b.txt'), 'b changed\n');
    const r = await build();
    expect(r.stderr).toMatch(/cache miss: files changed: src\/b\.txt/);
    expect(r.stderr).toMatch(/cache miss: an earlier step changed/);
    expect(r.cached).toBe(0);
  });

  it('compares a miss with the last build, even one served from the cache; a no-op rebuild writes no record', async () => {
    await fs.writeFile(path.join(ctx, 'src/b.txt'), 'b\n'); // back to a state built before: all cached
    expect((await build()).cached).toBe(4);
    const records = path.join(root, 'cache/last');
    const stamp = async () => Promise.all((await fs.readdir(records)).sort().map(async (f) => `${f} ${(await fs.stat(path.join(records, f))).mtimeMs}`));
    const before = await stamp();
    expect((await build()).cached).toBe(4);
    expect(await stamp()).toEqual(before);
    await fs.writeFile(path.join(ctx, 'src/a.txt'), 'a changed\n');
    const r = await build();
    expect(r.stderr).toMatch(/cache miss: files changed: src\/a\.txt\n/); // not b.txt: it is as the last build had it
    await fs.writeFile(path.join(ctx, 'src/a.txt'), 'a\n');
  });

  it('does not rebuild layers for a metadata-only change', async () => {
    await build();
    await fs.writeFile(path.join(ctx, 'Dockerfile'), DOCKERFILE.replace('version=1', 'version=2'));
    const r = await build();
    expect(r.cached).toBe(4);
  });

  it('runs everything again with --no-cache', async () => {
    const r = await build(['--no-cache']);
    expect(r.cached).toBe(0);
    expect(r.stderr).not.toContain('cache miss');
  });
});
