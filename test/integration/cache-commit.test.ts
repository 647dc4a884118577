/**
 * The build cache keeps a step's layer by committing its active snapshot under the cache key
 * (Snapshotter.commit(name, key), builder/cache/cache.ts), with either snapshotter: no directory
 * renamed by the cache, and a second build that made the same key keeps its own layer private.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../store/store.js';
import { Layers } from '../../snapshotter/layers.js';
import { BuildCache } from '../../builder/cache/cache.js';
import { cacheSnapshotName } from '../../store/layout.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-cachecommit-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

for (const kind of ['overlay', 'copy']) {
  describe(`build cache with the ${kind} snapshotter`, () => {
    it('commits under the key; the second commit of a key stays private and the entry keeps the first', async () => {
      const prev = process.env.MBUILD_SNAPSHOTTER;
      process.env.MBUILD_SNAPSHOTTER = kind;
      try {
        const store = await Store.open(path.join(tmp, kind));
        const layers = new Layers(store);
        const cache = new BuildCache(layers);
        const key = 'sha256:' + 'ab'.repeat(32);
        const write = (text: string) => layers.change([], (root) => fs.writeFile(path.join(root, 'f'), text));
        const first = await cache.commit(key, await write('first'), '2020-01-01T00:00:00Z');
        expect(first).toMatchObject({ id: cacheSnapshotName(key), cacheKey: key, empty: false });
        expect(await layers.snapshotter.stat(first.id)).toEqual({ name: first.id, kind: 'committed' });
        const second = await cache.commit(key, await write('second'), '2021-01-01T00:00:00Z');
        expect(second.id).toMatch(/^b-\d+-[0-9a-f]{12}$/);
        expect(second.cacheKey).toBeUndefined();
        const hit = await cache.get(key);
        expect(hit).toMatchObject({ created: '2020-01-01T00:00:00Z', layer: { id: first.id } });
        expect(await layers.view([hit!.layer], (root) => fs.readFile(path.join(root, 'f'), 'utf8'))).toBe('first');
        expect(await layers.view([second], (root) => fs.readFile(path.join(root, 'f'), 'utf8'))).toBe('second');
        // nothing active left behind
        const live: string[] = [];
        await layers.snapshotter.walk((i) => void (i.kind !== 'committed' && live.push(i.name)));
        expect(live).toEqual([]);
      } finally {
        if (prev === undefined) delete process.env.MBUILD_SNAPSHOTTER;
        else process.env.MBUILD_SNAPSHOTTER = prev;
      }
    });
  });
}
