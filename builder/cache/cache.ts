/**
 * The build cache: ROOT/cache/<key>.json → the layer a step produced, kept as a snapshot named by
 * the key (store/layout.ts) so a later build with the same key reuses it without running anything.
 */
import { accessSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Layers } from '../../snapshotter/layers.js';
import type { CommitOptions, Layer, LayerBlob } from '../../snapshotter/snapshotter.js';
import { SnapshotExistsError } from '../../util/errors.js';
import { exists, writeFileAtomic } from '../../store/fsutil.js';
import { hasLayerBlob } from '../../store/layer-blobs.js';
import { SNAPSHOT_FILES, cacheEntryName, cacheSnapshotName, isCacheSnapshotName, layout } from '../../store/layout.js';

export interface CacheEntry {
  key: string;
  snapshot: string; // snapshot id (dir name under ROOT/snapshots)
  empty: boolean;
  blob?: LayerBlob;
  created: string; // when the layer was made: history times come from here, so rebuilds are identical
}

export interface CachedLayer {
  layer: Layer;
  created: string;
}

export class BuildCache {
  readonly dir: string;
  constructor(private readonly snap: Layers) {
    this.dir = layout.cache(snap.store.root);
  }

  private entryPath(key: string): string {
    return path.join(this.dir, cacheEntryName(key));
  }

  async get(key: string): Promise<CachedLayer | undefined> {
    let entry: CacheEntry;
    // synchronous: a small file and a stat, done for every step of every build; through the thread
    // pool each is several round trips, which a rebuild of many cached steps waits for in turn
    try {
      entry = JSON.parse(readFileSync(this.entryPath(key), 'utf8')) as CacheEntry;
    } catch {
      return undefined;
    }
    if (entry.key !== key || !isCacheSnapshotName(entry.snapshot)) return undefined;
    const dir = path.join(this.snap.dir, entry.snapshot, SNAPSHOT_FILES);
    try {
      accessSync(dir);
    } catch {
      // a layer kept as a blob only (a COPY written as a tar) is unpacked when something mounts it
      const blobOnly = entry.empty || (entry.blob !== undefined && (await hasLayerBlob(this.snap.store, entry.blob.digest)));
      if (!blobOnly) return undefined; // pruned or half-written: a miss
    }
    return { layer: { id: entry.snapshot, dir, empty: entry.empty, blob: entry.blob, cacheKey: key }, created: entry.created };
  }

  /**
   * Commit a step's active snapshot as the layer kept under its key (Snapshotter.commit(name, key)).
   * If another build committed the same key first, this build commits its own private layer and
   * leaves the cache as it is.
   */
  async commit(key: string, active: string, created: string, opts?: CommitOptions): Promise<Layer> {
    let layer: Layer;
    try {
      layer = await this.snap.commit(cacheSnapshotName(key), active, opts);
    } catch (err) {
      if (err instanceof SnapshotExistsError) return this.snap.commitPrivate(active, opts);
      throw err;
    }
    await this.write({ key, snapshot: layer.id, empty: Boolean(layer.empty), blob: layer.blob, created });
    return { ...layer, cacheKey: key };
  }

  /**
   * Keep a blob-only layer (Layers.commitTar) under its key: the entry names the snapshot it is
   * unpacked as when something mounts it. If that snapshot is there already (another build's),
   * this build's layer stays private.
   */
  async put(key: string, layer: Layer, created: string): Promise<Layer> {
    if (!layer.empty && !layer.blob) throw new Error(`layer ${layer.id} has neither files nor a blob`);
    const id = cacheSnapshotName(key);
    if (await exists(path.join(this.snap.dir, id))) return layer;
    await this.write({ key, snapshot: id, empty: Boolean(layer.empty), blob: layer.blob, created });
    return { ...layer, id, dir: path.join(this.snap.dir, id, SNAPSHOT_FILES), cacheKey: key };
  }

  /** The snapshot id a key's layer is kept under. */
  static snapshotId(key: string): string {
    return cacheSnapshotName(key);
  }

  /**
   * Keep a layer that came from a shared cache (builder/cache/remote-import.ts) as a blob-only
   * entry: its blob is in the content store, its files are unpacked when something mounts it.
   */
  async adopt(key: string, blob: LayerBlob | undefined, created: string): Promise<void> {
    await this.write({ key, snapshot: BuildCache.snapshotId(key), empty: blob === undefined, blob, created });
  }

  /** Remember a layer's blob once it has been made, so the next export does not tar it again. */
  async saveBlob(layer: Layer): Promise<void> {
    if (!layer.cacheKey || !layer.blob) return;
    try {
      // synchronous, as in get(): called for every layer of the image, and it rarely writes
      const entry = JSON.parse(readFileSync(this.entryPath(layer.cacheKey), 'utf8')) as CacheEntry;
      if (entry.snapshot !== layer.id || entry.blob?.digest === layer.blob.digest) return;
      entry.blob = layer.blob;
      await this.write(entry);
    } catch {
      /* the entry is gone (pruned): nothing to remember */
    }
  }

  private async write(entry: CacheEntry): Promise<void> {
    await writeFileAtomic(this.entryPath(entry.key), JSON.stringify(entry));
  }
}
