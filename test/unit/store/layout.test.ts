import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildSnapshotName, cacheEntryName, cacheSnapshotName, chainIds, imageSnapshotNames, isCacheSnapshotName, isTrashName,
  parseSnapshotName, snapshotNamesIn, tempSnapshotName, trashName,
} from '../../../store/layout.js';

const sha = (s: string) => 'sha256:' + createHash('sha256').update(s).digest('hex');

describe('store layout', () => {
  it('chain ids follow the OCI rule: the first diff_id, then sha256 of "<parent chain id> <diff_id>"', () => {
    const [a, b, c] = [sha('a'), sha('b'), sha('c')];
    const ab = sha(`${a} ${b}`);
    expect(chainIds([a, b, c])).toEqual([a, ab, sha(`${ab} ${c}`)]);
    expect(chainIds([])).toEqual([]);
  });

  it('an image layer snapshot is named by its chain id, so two images sharing a base share its snapshots', () => {
    const [a, b, c] = [sha('a'), sha('b'), sha('c')];
    const one = imageSnapshotNames([a, b]);
    const two = imageSnapshotNames([a, b, c]);
    expect(two.slice(0, 2)).toEqual(one);
    expect(one[0]).toBe('c-' + a.slice(7, 39));
    // the same layer on another base is another snapshot
    expect(imageSnapshotNames([c, b])[1]).not.toBe(one[1]);
  });

  it('names carry their kind and, for per-process work, the pid that made them', () => {
    const key = sha('step');
    expect(cacheSnapshotName(key)).toBe('k-' + key.slice(7, 39));
    expect(isCacheSnapshotName(cacheSnapshotName(key))).toBe(true);
    expect(isCacheSnapshotName('k-../../etc')).toBe(false);
    expect(cacheEntryName(key)).toBe(key.slice(7) + '.json');
    expect(parseSnapshotName(buildSnapshotName())).toEqual({ kind: 'build', pid: process.pid });
    expect(parseSnapshotName(tempSnapshotName('prune'))).toEqual({ kind: 'temp', pid: process.pid });
    expect(tempSnapshotName('probe')).toMatch(new RegExp(`^tmp-${process.pid}-probe-[0-9a-f]{12}$`));
    expect(parseSnapshotName(trashName())).toEqual({ kind: 'trash', pid: process.pid });
    expect(isTrashName(trashName())).toBe(true);
    expect(parseSnapshotName(imageSnapshotNames([sha('a')])[0]!)).toEqual({ kind: 'image' });
    expect(parseSnapshotName(cacheSnapshotName(key))).toEqual({ kind: 'cache' });
    expect(parseSnapshotName('empty')).toEqual({ kind: 'empty' });
    expect(parseSnapshotName('lost+found')).toBeUndefined();
    expect(buildSnapshotName()).not.toBe(buildSnapshotName());
  });

  it('finds the snapshot names a cache entry refers to', () => {
    const entry = JSON.stringify({ key: sha('k'), snapshot: cacheSnapshotName(sha('k')), empty: false });
    expect(snapshotNamesIn(entry)).toEqual([cacheSnapshotName(sha('k'))]);
  });
});
