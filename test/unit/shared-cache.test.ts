/** The shared build cache without a registry: flag syntax, the container's format, merging, portable keys. */
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCacheFrom, parseCacheTo, remoteCacheSpecs, DEFAULT_MAX_AGE_MS } from '../../builder/cache/remote-spec.js';
import { CACHE_CONFIG_MEDIA_TYPE, decodeCache, decodeExplain, encodeCache, type CachedStep } from '../../builder/cache/remote-format.js';
import { mergeSteps } from '../../builder/cache/remote-export.js';
import { compareRecords } from '../../builder/cache/explain.js';
import { digestSources } from '../../builder/cache/context-hash.js';
import { FileHashCache } from '../../builder/cache/file-hashes.js';
import { loadIgnore } from '../../builder/context/dockerignore.js';
import { resolveSources } from '../../builder/context/sources.js';
import { UsageError } from '../../util/errors.js';

const key = (c: string) => 'sha256:' + c.repeat(64);
const dig = (c: string) => 'sha256:' + c.repeat(64);

describe('--cache-to / --cache-from syntax (buildx)', () => {
  it('parses the registry, local and inline forms and the bare image shorthand', () => {
    expect(parseCacheTo('type=registry,ref=reg/app:cache,mode=max')).toEqual({ type: 'registry', ref: 'reg/app:cache', mode: 'max', ignoreError: false, maxAgeMs: DEFAULT_MAX_AGE_MS });
    expect(parseCacheTo('reg/app:cache')).toMatchObject({ type: 'registry', ref: 'reg/app:cache', mode: 'min' });
    expect(parseCacheTo('type=local,dest=/tmp/c,max-size=2g,max-age=36h')).toMatchObject({ type: 'local', dir: '/tmp/c', maxBytes: 2 * 1024 ** 3, maxAgeMs: 36 * 3600 * 1000 });
    expect(parseCacheTo('type=inline')).toEqual({ type: 'inline' });
    expect(parseCacheTo('type=registry,ref=r,image-manifest=true,oci-mediatypes=true,ignore-error=true')).toMatchObject({ ignoreError: true });
    expect(parseCacheFrom('reg/app:cache')).toEqual({ type: 'registry', ref: 'reg/app:cache' });
    expect(parseCacheFrom('type=local,src=/tmp/c')).toEqual({ type: 'local', dir: '/tmp/c' });
  });

  it('refuses what it does not do, naming the flag', () => {
    const bad: [() => unknown, RegExp][] = [
      [() => parseCacheTo('type=gha'), /^--cache-to type=gha: unknown cache type "gha"/],
      [() => parseCacheTo('type=registry,ref=r,mode=all'), /^--cache-to .*mode=all: use min or max/],
      [() => parseCacheTo('type=registry,ref=r,image-manifest=false'), /^--cache-to .*OCI image-manifest form/],
      [() => parseCacheTo('type=registry,ref=r,compression=zstd'), /^--cache-to .*gzip only/],
      [() => parseCacheTo('type=local,src=/x'), /^--cache-to .*unknown key "src" for type=local/],
      [() => parseCacheTo('type=local'), /^--cache-to type=local: type=local needs dest=/],
      [() => parseCacheTo('type=inline,ref=r'), /^--cache-to .*unknown key "ref" for type=inline/],
      [() => parseCacheFrom('type=registry,ref=r,mode=max'), /^--cache-from .*unknown key "mode"/],
      [() => parseCacheFrom('type=inline'), /^--cache-from type=inline: type=inline is for --cache-to/],
      [() => parseCacheTo('type=local,dest=/x,max-age=soon'), /^--cache-to: max-age=soon/],
    ];
    for (const [fn, want] of bad) {
      expect(fn).toThrow(UsageError);
      expect(fn).toThrow(want);
    }
  });
});

describe('over --host', () => {
  it('takes registry and inline caches, and refuses a local directory (it would be the server\'s)', () => {
    expect(() => remoteCacheSpecs(['reg/app:cache'], ['type=registry,ref=reg/app:cache,mode=max', 'type=inline'])).not.toThrow();
    expect(() => remoteCacheSpecs(['type=local,src=/etc'], [])).toThrow(/^--cache-from type=local,src=\/etc: type=local is not available with --host/);
    expect(() => remoteCacheSpecs([], ['type=local,dest=/root'])).toThrow(/^--cache-to .*not available with --host/);
  });
});

describe('the cache container', () => {
  const steps: CachedStep[] = [
    { key: key('b'), parent: key('a'), created: '2026-01-02T00:00:00Z', used: '2026-01-03T00:00:00Z', layer: { desc: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: dig('1'), size: 10 }, diffId: dig('2'), size: 2048 } },
    { key: key('a'), parent: 'image:' + dig('9'), created: '2026-01-01T00:00:00Z', used: '2026-01-03T00:00:00Z' },
  ];

  it('is an OCI image manifest with the BuildKit cache config; it decodes to the same steps', () => {
    const enc = encodeCache(steps, { scopes: { 'Dockerfile|': { used: '2026-01-03T00:00:00Z', steps: { '0/2/3': { inputs: { parent: 'x', args: 'y' } } } } } });
    const manifest = JSON.parse(enc.manifest.toString());
    expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(manifest.config.mediaType).toBe(CACHE_CONFIG_MEDIA_TYPE);
    expect(manifest.layers[0]).toMatchObject({ digest: dig('1'), annotations: { 'containerd.io/uncompressed': dig('2') } });
    const config = JSON.parse(enc.config.toString());
    // BuildKit's shape: a layer table and one record per step
    expect(config.layers).toEqual([{ blob: dig('1'), parent: -1, annotations: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: dig('2'), size: 10, createdAt: '2026-01-02T00:00:00Z' } }]);
    expect(config.records.map((r: { digest: string }) => r.digest)).toEqual([key('a'), key('b')]);
    const back = decodeCache(manifest, enc.config);
    expect(back.steps.get(key('b'))).toEqual(steps[0]);
    expect(back.steps.get(key('a'))).toEqual({ ...steps[1], layer: undefined });
    expect(decodeExplain(enc.explain!).scopes['Dockerfile|']!.steps['0/2/3']!.inputs.args).toBe('y');
  });

  it('refuses a config that is not mbuild\'s, and a step whose layer is not in the manifest', () => {
    const enc = encodeCache(steps, undefined);
    const manifest = JSON.parse(enc.manifest.toString());
    expect(() => decodeCache(manifest, Buffer.from(JSON.stringify({ layers: [], records: [] })))).toThrow(/not written by mbuild/);
    expect(() => decodeCache({ ...manifest, layers: [] }, enc.config)).toThrow(/layer of cache step/);
  });

  it('merges: ours win, old steps age out, the size limit drops the least recently exported first', () => {
    const at = (d: string) => `2026-01-${d}T00:00:00Z`;
    const layer = (c: string, size: number) => ({ desc: { mediaType: 'x', digest: dig(c), size }, diffId: dig(c), size });
    const theirs: CachedStep[] = [
      { key: key('1'), parent: 'scratch', created: at('01'), used: at('01'), layer: layer('a', 100) },
      { key: key('2'), parent: 'scratch', created: at('05'), used: at('05'), layer: layer('b', 100) },
      { key: key('3'), parent: 'scratch', created: at('06'), used: at('06'), layer: layer('c', 100) },
    ];
    const ours: CachedStep[] = [{ key: key('3'), parent: 'scratch', created: at('06'), used: at('10'), layer: layer('d', 100) }];
    const now = Date.parse(at('10'));
    const day = 86_400_000;
    expect(mergeSteps(theirs, ours, now, 7 * day).map((s) => s.key).sort()).toEqual([key('2'), key('3')]);
    expect(mergeSteps(theirs, ours, now, 7 * day).find((s) => s.key === key('3'))!.layer!.desc.digest).toBe(dig('d'));
    expect(mergeSteps(theirs, ours, now, 30 * day, 250).map((s) => s.key).sort()).toEqual([key('2'), key('3')]);
    expect(mergeSteps(theirs, ours, now, 30 * day, 1).map((s) => s.key)).toEqual([key('3')]);
  });
});

describe('explaining a miss from another runner\'s record', () => {
  it('names changed files, and a mode change as such', () => {
    const prev = { inputs: { parent: 'p', content: 'c1' }, files: { 'src/a.go': 'f:644:aa', 'src/b.go': 'f:644:bb' } };
    expect(compareRecords(prev, { inputs: { parent: 'p', content: 'c2' }, files: { 'src/a.go': 'f:644:zz', 'src/b.go': 'f:644:bb' } })).toBe('files changed: src/a.go');
    expect(compareRecords(prev, { inputs: { parent: 'p', content: 'c2' }, files: { 'src/a.go': 'f:664:aa', 'src/b.go': 'f:644:bb' } })).toBe('files changed: src/a.go (mode 664 vs 644)');
    expect(compareRecords(prev, { inputs: { parent: 'q', content: 'c2' } })).toBe('an earlier step changed');
  });
});

describe('cache keys hold nothing machine-local', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('two checkouts in other places, with other mtimes, give the same COPY content digest', async () => {
    const digests: string[] = [];
    for (const [i, when] of [new Date('2020-01-01'), new Date()].entries()) {
      const dir = await mkdtemp(path.join(tmpdir(), `mbuild-keys-${i}-`));
      dirs.push(dir);
      await mkdir(path.join(dir, 'src'));
      await writeFile(path.join(dir, 'src/a.txt'), 'a\n');
      await writeFile(path.join(dir, 'src/b.txt'), 'b\n');
      for (const f of ['src/a.txt', 'src/b.txt', 'src']) await utimes(path.join(dir, f), when, when);
      const ignore = await loadIgnore(dir);
      const entries = await resolveSources(dir, ['src/'], ignore);
      const hashes = await FileHashCache.load(path.join(dir, 'no-such-hash-cache.json'));
      digests.push((await digestSources(dir, entries, ignore, hashes)).digest);
    }
    expect(digests[0]).toBe(digests[1]);
  });
});
