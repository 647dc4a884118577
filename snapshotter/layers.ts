/**
 * The builder's door to snapshots: one object per build (or `mbuild run`) holding the store's
 * snapshotter, its unpacker and the differ. Image layers are unpacked on first use, a layer's blob
 * is made on demand, and the builder's own reads and writes (COPY, WORKDIR, a read-only look at a
 * stage) go through views and active snapshots mounted by the one mounter (mount.ts). Nothing here
 * or in its callers asks which snapshotter is in use.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { Store, ResolvedImage } from '../store/store.js';
import { MediaType } from '../store/oci.js';
import { SNAPSHOT_FILES, buildSnapshotName, imageSnapshotNames, layout, parseSnapshotName, tempSnapshotName } from '../store/layout.js';
import { DigestMismatchError } from '../util/errors.js';
import { mountsAt } from '../store/recovery.js';
import { deleteDetached, moveToTrash } from '../store/trash.js';
import { compare } from './differ.js';
import { writeTar, type TarEntry } from './diff/layer-tar.js';
import { withMounted } from './mount.js';
import { openSnapshotter, type CommitOptions, type Layer, type LayerBlob, type Mount, type Snapshotter } from './snapshotter.js';
import { Unpacker } from './unpack.js';

export class Layers {
  readonly dir: string;
  readonly snapshotter: Snapshotter;
  private readonly unpacker: Unpacker;

  constructor(readonly store: Store) {
    this.dir = layout.snapshots(store.root);
    this.snapshotter = openSnapshotter(store);
    this.unpacker = new Unpacker(this.snapshotter, store, this.dir);
  }

  /**
   * The layers of an image (each named by its chain id), unpacked when something first mounts them
   * (ready()): a build whose steps all come from a cache never unpacks its base image.
   */
  async fromImage(img: ResolvedImage): Promise<Layer[]> {
    const diffIds = img.config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== img.manifest.layers.length) {
      throw new DigestMismatchError(`image ${img.name ?? img.manifestDigest}: ${img.manifest.layers.length} layers but ${diffIds.length} diff_ids`);
    }
    const names = imageSnapshotNames(diffIds);
    const layers: Layer[] = [];
    for (let i = 0; i < diffIds.length; i++) {
      const desc = img.manifest.layers[i]!;
      layers.push({ id: names[i]!, dir: path.join(this.dir, names[i]!, SNAPSHOT_FILES), blob: { diffId: diffIds[i]!, digest: desc.digest, size: desc.size, mediaType: desc.mediaType } });
    }
    return layers;
  }

  /** Unpack the layers that exist only as blobs (a COPY written as a tar, the build cache). */
  ready(layers: readonly Layer[]): Promise<void> {
    return this.unpacker.ready(layers);
  }

  /**
   * A writable snapshot over the layers for one build step (or `mbuild run`): its key and how to
   * mount it. Commit it (the build cache does: builder/cache) or remove it.
   */
  async prepare(layers: readonly Layer[]): Promise<{ key: string; mounts: Mount[] }> {
    await this.ready(layers);
    const key = buildSnapshotName();
    return { key, mounts: await this.snapshotter.prepare(key, layers) };
  }

  /** Prepare over the layers and let fn change the mounted root; the active snapshot's key is returned for commit. */
  async change(layers: readonly Layer[], fn: (root: string) => Promise<void>): Promise<string> {
    const { key, mounts } = await this.prepare(layers);
    try {
      await withMounted(mounts, this.dir, fn);
      return key;
    } catch (err) {
      await this.discard(key);
      throw err;
    }
  }

  commit(name: string, key: string, opts?: CommitOptions): Promise<Layer> {
    return this.snapshotter.commit(name, key, opts);
  }

  /** Commit under a name private to this build (removed when it ends). */
  commitPrivate(key: string, opts?: CommitOptions): Promise<Layer> {
    return this.snapshotter.commit(buildSnapshotName(), key, opts);
  }

  /** Remove an active snapshot after a failure (a snapshot already gone is no second failure). */
  async discard(key: string): Promise<void> {
    await this.snapshotter.remove(key).catch(() => undefined);
  }

  /**
   * A read-only view of the layers' merged filesystem for the duration of fn. A callback rather
   * than view()'s mounts: the builder's every read ends when fn does, so the view is unmounted and
   * removed in one place, however fn ends.
   */
  async view<T>(layers: readonly Layer[], fn: (root: string) => Promise<T>): Promise<T> {
    await this.ready(layers);
    const key = tempSnapshotName('view');
    const mounts = await this.snapshotter.view(key, layers);
    try {
      return await withMounted(mounts, this.dir, fn);
    } finally {
      await this.snapshotter.remove(key);
    }
  }

  /**
   * A layer made as a tar only (builder/steps/copy-tar.ts): the blob is written, the directory
   * is not. It is unpacked from the blob if a later step or an export mounts it (ready()).
   */
  async commitTar(entries: TarEntry[]): Promise<Layer> {
    const id = buildSnapshotName();
    const dir = path.join(this.dir, id, SNAPSHOT_FILES);
    if (entries.length === 0) return { id, dir, empty: true };
    const blob = await this.ingestTar((out) =>
      writeTar(out, async (w) => {
        for (const e of entries) await w.add(e);
      }),
    );
    return { id, dir, blob, empty: false };
  }

  /**
   * The layer as a blob in the content store, made once, on demand. Like Docker's image store the
   * local store keeps layers uncompressed (digest = diff_id): building pays no gzip; exports and
   * pushes compress on the way out (store/compress.ts), once per layer.
   */
  async ensureBlob(layer: Layer): Promise<LayerBlob> {
    if (layer.blob) {
      if (layer.fetch) await layer.fetch();
      return layer.blob;
    }
    layer.blob = await this.ingestTar((out) => compare(layer, out));
    return layer.blob;
  }

  /** Stream an uncompressed layer tar into the content store (digest = diff_id). */
  private async ingestTar(write: (out: PassThrough) => Promise<void>): Promise<LayerBlob> {
    const tarOut = new PassThrough();
    const [, info] = await Promise.all([write(tarOut), this.store.content.ingest(tarOut)]);
    return { diffId: info.digest, digest: info.digest, size: info.size, mediaType: MediaType.layerTar };
  }

  /**
   * Remove this process's build-step layers: once a build ends their content lives in the
   * image's blobs (an image used as a base later is unpacked by chain id).
   */
  async removeOwn(): Promise<void> {
    const trashed: string[] = [];
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      const n = parseSnapshotName(name);
      if (n?.pid !== process.pid || (n.kind !== 'build' && n.kind !== 'temp')) continue;
      const p = path.join(this.dir, name);
      // a tree with a mount below it (cannot happen once a build is over) stays for the sweep
      if ((await mountsAt(p)).length > 0) continue;
      try {
        const t = await moveToTrash(this.dir, p);
        if (t) trashed.push(t);
      } catch {
        // cannot rename (a read-only or broken store): the build's result stands, and the
        // sweep of a later command removes the layer once this process is gone
      }
    }
    deleteDetached(trashed);
  }
}
