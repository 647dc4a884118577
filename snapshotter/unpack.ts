/**
 * Unpacking (containerd's core/unpack): an image layer's blob becomes a committed snapshot named by
 * its chain id (store/layout.ts), once per store however many builds want it at the same time,
 * and a blob-only layer (a COPY written as a tar, a layer from a shared cache) under its own name;
 * both the first time something mounts them (ready()). Each unpack prepares a snapshot over nothing, lets
 * the differ apply the tar, checks the diff_id and commits.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Store } from '../store/store.js';
import { openLayerBlob } from '../store/layer-blobs.js';
import { SNAPSHOT_FILES, SNAPSHOT_META, tempSnapshotName } from '../store/layout.js';
import { DigestMismatchError, MbuildError, SnapshotExistsError } from '../util/errors.js';
import { apply } from './differ.js';
import { decompressStream } from './diff/decompress.js';
import type { Layer, LayerBlob, Snapshotter } from './snapshotter.js';

/**
 * Per-layer budgets for unpacking (docs/security.md 7): MBUILD_LAYER_MAX_BYTES (a number, or with
 * a k/m/g/t suffix) and MBUILD_LAYER_MAX_ENTRIES; unset means the applier's defaults (64 GiB, 5M).
 */
export function layerBudgets(env: NodeJS.ProcessEnv = process.env): { maxBytes?: number; maxEntries?: number } {
  const parse = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined || v === '') return undefined;
    const m = /^(\d+)([kmgt]?)i?b?$/i.exec(v.trim());
    if (!m) throw new MbuildError('MBUILD_USAGE', `${name}=${v}: expected a number of bytes such as 512m or 10g`);
    return Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
  };
  return { maxBytes: parse(env.MBUILD_LAYER_MAX_BYTES, 'MBUILD_LAYER_MAX_BYTES'), maxEntries: parse(env.MBUILD_LAYER_MAX_ENTRIES, 'MBUILD_LAYER_MAX_ENTRIES') };
}

export class Unpacker {
  private readonly unpacking = new Map<string, Promise<void>>();
  /** layer dirs known to exist */
  private readonly present = new Set<string>();

  constructor(
    private readonly snap: Snapshotter,
    private readonly store: Store,
    /** ROOT/snapshots: where a committed snapshot's files are (store/layout.ts) */
    private readonly dir: string,
  ) {}

  /** Unpack the layers that exist only as blobs, so that they can be mounted. */
  async ready(layers: readonly Layer[]): Promise<void> {
    for (const l of layers) {
      if (l.empty || this.present.has(l.dir)) continue;
      try {
        await fs.access(l.dir);
      } catch {
        if (l.fetch) await l.fetch();
        if (!l.blob) throw new MbuildError('MBUILD_SNAPSHOT', `layer ${l.id} has neither files nor a blob (run "mbuild prune --all" and build again)`);
        if (l.dir !== path.join(this.dir, l.id, SNAPSHOT_FILES)) throw new MbuildError('MBUILD_SNAPSHOT', `layer ${l.id}: unexpected directory ${l.dir}`);
        await this.unpackOnce(l.id, l.blob);
      }
      this.present.add(l.dir);
    }
  }

  private unpackOnce(name: string, blob: LayerBlob): Promise<void> {
    let p = this.unpacking.get(name);
    if (!p) {
      p = this.unpack(name, blob);
      this.unpacking.set(name, p);
      p.catch(() => this.unpacking.delete(name));
    }
    return p;
  }

  private async unpack(name: string, blob: LayerBlob): Promise<void> {
    // committed (its record is written before the rename that names it): done, here or by another build
    if (await fs.access(path.join(this.dir, name, SNAPSHOT_META)).then(() => true, () => false)) return;
    const key = tempSnapshotName('unpack');
    const mounts = await this.snap.prepare(key, []);
    try {
      const hash = createHash('sha256');
      const tap = new Transform({
        transform(chunk, _e, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      // the blob, or the gzip twin a layer from a shared cache is kept as (store/layer-blobs.ts)
      const raw = await decompressStream(await openLayerBlob(this.store, blob.digest));
      const tar = new PassThrough();
      await Promise.all([pipeline(raw, tap, tar), apply(mounts, tar, layerBudgets())]);
      const got = 'sha256:' + hash.digest('hex');
      if (got !== blob.diffId) throw new DigestMismatchError(`layer ${blob.digest}: uncompressed digest ${got} does not match diff_id ${blob.diffId}`);
      await this.snap.commit(name, key, { blob });
    } catch (err) {
      await this.snap.remove(key).catch(() => undefined);
      if (err instanceof SnapshotExistsError) return; // another build unpacked it first
      throw err;
    }
  }
}
