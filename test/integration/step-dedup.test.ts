/**
 * A step that two builds of one store need at the same time runs once (builder/cache/step-claim.ts):
 * the second build waits for the first one's layer instead of running the step again. Two CLIs
 * on one store here; test/integration/serve.test.ts does the same through a server's workers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, mountsUnder, writeContext } from '../helpers/cli.js';

let work: string;
let root: string;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-dedup-'));
  root = path.join(work, 'store');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  expect(await mountsUnder(work)).toEqual([]);
  await fs.rm(work, { recursive: true, force: true });
});

describe('a step two builds share', () => {
  it('runs once: one build runs it, the other takes its layer (random output, one layer digest)', async () => {
    // the step writes random bytes: had it run twice, the two images would differ
    const df = 'FROM busybox\nRUN sleep 2; head -c 32 /dev/urandom | od -x > /random; echo ran-the-shared-step\nRUN echo after > /after\n';
    const a = await writeContext(work, { Dockerfile: df });
    const b = await writeContext(work, { Dockerfile: df });
    const [ra, rb] = await Promise.all([
      mbuild(['--root', root, 'build', '--progress', 'plain', '-t', 'dedup/a', a]),
      mbuild(['--root', root, 'build', '--progress', 'plain', '-t', 'dedup/b', b]),
    ]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    const ran = [ra, rb].filter((r) => /#\d+ [\d.]+ ran-the-shared-step\n/.test(r.stderr));
    expect(ran, ra.stderr + rb.stderr).toHaveLength(1);
    // the other one says where its layer came from: a build at the same time, or the cache after it
    const other = ra === ran[0] ? rb : ra;
    expect(other.stderr).toMatch(/CACHED/);
    const layers = async (name: string) => JSON.parse((await mbuild(['--root', root, 'inspect', name])).stdout)[0].RootFS.Layers;
    expect(await layers('dedup/a')).toEqual(await layers('dedup/b'));
    // no claim is left behind
    expect(await fs.readdir(path.join(root, 'locks', 'steps'))).toEqual([]);
  }, 120_000);

  it('a build whose claimed step fails leaves the step to the other build, which runs it', async () => {
    // one key for both; the cache mount (not in the key) makes the first run fail and a second succeed
    const df = 'FROM busybox\nRUN --mount=type=cache,id=dedup-fail,target=/c sleep 1; if [ ! -e /c/failed ]; then touch /c/failed; echo failing-first; exit 3; fi; echo ran-after-failure\n';
    const a = await writeContext(work, { Dockerfile: df });
    const b = await writeContext(work, { Dockerfile: df });
    const rs = await Promise.all([a, b].map((dir) => mbuild(['--root', root, 'build', '--progress', 'plain', dir])));
    expect(rs.map((r) => r.code).sort()).toEqual([0, 1]);
    const good = rs.find((r) => r.code === 0)!;
    expect(good.stderr).toMatch(/#\d+ [\d.]+ ran-after-failure\n/);
    expect(rs.find((r) => r.code !== 0)!.stderr).toMatch(/failing-first/);
  }, 120_000);
});
