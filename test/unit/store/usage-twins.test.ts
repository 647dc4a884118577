import { describe, expect, it } from 'vitest';
import { staleMemos, unusedBlobs, type StoreAnalysis } from '../../../store/usage.js';

const d = (c: string) => 'sha256:' + c.repeat(64);

/** A store with one image layer kept lazily (gzip twin only) and one cache-named lazy layer. */
function analysis(): StoreAnalysis {
  return {
    names: 1,
    blobs: new Map([
      [d('a'), 10], // the image's manifest
      [d('1'), 5], // the image layer's gzip twin (its tar d('2') is not there)
      [d('3'), 5], // a cache-named layer's gzip twin (its tar d('4') is not there)
      [d('5'), 5], // an unused blob
    ]),
    imageBlobs: new Set([d('a'), d('2')]),
    cacheBlobs: new Set([d('4')]),
    cacheSnapshots: new Set(),
    cacheEntries: [],
    imageSnapshots: [],
    cacheSnapshotDirs: [],
    usedSnapshots: new Set(),
    gzipMemos: [
      { file: '/m/2', source: d('2'), gzip: d('1') },
      { file: '/m/4', source: d('4'), gzip: d('3') },
    ],
  };
}

describe('prune and lazily kept layers (a gzip twin without its tar)', () => {
  it('keeps an image\'s lazy layer, with or without --all, and its record', () => {
    const a = analysis();
    expect(unusedBlobs(a, false)).toEqual([d('5')]);
    expect(unusedBlobs(a, true)).toEqual([d('3'), d('5')]);
    expect(staleMemos(a, new Set(unusedBlobs(a, false)))).toEqual([]);
  });

  it('keeps a cache entry\'s lazy layer until --all, which removes its record with it', () => {
    const a = analysis();
    expect(staleMemos(a, new Set(unusedBlobs(a, true)))).toEqual(['/m/4']);
  });
});
