/**
 * Snapshots in the manner of containerd's overlay snapshotter: every layer is a directory in
 * overlay format (whiteouts as 0:0 char devices, opaque dirs by xattr) usable as a lowerdir.
 *
 *   ROOT/snapshots/<id>/fs      the layer's files
 *   ROOT/snapshots/<id>/meta.json  { diffId, blob } once known
 *
 * The names (image layers by chain id, build steps' private layers, in-progress work) are
 * store/layout.ts's.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Store, ResolvedImage } from '../store/store.js';
import { MediaType } from '../store/oci.js';
import { EMPTY_SNAPSHOT, SNAPSHOT_FILES, buildSnapshotName, imageSnapshotNames, layout, parseSnapshotName, tempSnapshotName } from '../store/layout.js';
import { mountOverlay, unmount } from './mount.js';
import { applyLayerTar } from './diff/apply.js';
import { writeLayerTar, writeTar, isEmptyLayerDir, type TarEntry } from './diff/layer-tar.js';
import { decompressStream } from './diff/decompress.js';
import { chooseSnapshotter, diffTree, forcedSnapshotter, hasWhiteouts, materialize, recordTree, type SnapshotterKind, type Tree } from './copy-fallback.js';
import { DigestMismatchError, MbuildError } from '../util/errors.js';
import { mountsAt } from '../store/recovery.js';
import { deleteDetached, moveToTrash } from '../store/trash.js';

export interface LayerBlob {
  diffId: string;
  digest: string;
  size: number;
  mediaType: string;
}

export interface Layer {
  id: string;
  /** overlay-format directory of this layer's changes */
  dir: string;
  blob?: LayerBlob;
  /** true once known to hold no change (such layers are left out of images) */
  empty?: boolean;
  /** the build-cache key this layer is kept under (builder/cache) */
  cacheKey?: string;
  /** its opaque directories, when known at commit (the RUN sandbox reports them); else read from xattrs */
  opaqueDirs?: string[];
}

/**
 * How to mount an active snapshot: a description, as containerd's snapshotters return, not a mounted
 * path. overlay: the parent layers under the snapshot's upper dir; bind (the copy snapshotter): a
 * plain directory holding a copy of the parent layers, whose changes commit() finds by comparison.
 */
export type Mount =
  | { type: 'overlay'; lowerDirs: string[]; upperDir: string; workDir: string }
  | { type: 'bind'; source: string };

export interface Active {
  id: string;
  base: string;
  upper: string;
  work: string;
  mount: Mount;
  /** bind: the copy's entries before the step (commit() writes the difference as the layer) */
  before?: Tree;
}

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

export class Snapshotter {
  readonly dir: string;
  readonly emptyDir: string;
  private readonly unpacking = new Map<string, Promise<Layer>>();
  private chosen?: Promise<SnapshotterKind>;
  private readonly whiteoutFree = new Map<string, Promise<boolean>>();
  /** layer dirs known to exist */
  private readonly present = new Set<string>();

  constructor(readonly store: Store) {
    this.dir = layout.snapshots(store.root);
    this.emptyDir = path.join(this.dir, EMPTY_SNAPSHOT);
  }

  async init(): Promise<void> {
    forcedSnapshotter(); // a bad MBUILD_SNAPSHOTTER fails before any work
    // what killed builds left behind was swept when the store was opened (store/recovery.ts)
    await fs.mkdir(this.emptyDir, { recursive: true, mode: 0o755 });
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

  /** The layers of an image, unpacked on first use. */
  async fromImage(img: ResolvedImage): Promise<Layer[]> {
    const diffIds = img.config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== img.manifest.layers.length) {
      throw new DigestMismatchError(`image ${img.name ?? img.manifestDigest}: ${img.manifest.layers.length} layers but ${diffIds.length} diff_ids`);
    }
    const layers: Layer[] = [];
    const names = imageSnapshotNames(diffIds);
    for (let i = 0; i < diffIds.length; i++) {
      const desc = img.manifest.layers[i];
      const blob: LayerBlob = { diffId: diffIds[i], digest: desc.digest, size: desc.size, mediaType: desc.mediaType };
      layers.push(await this.unpackOnce(names[i], blob));
    }
    return layers;
  }

  private unpackOnce(id: string, blob: LayerBlob): Promise<Layer> {
    let p = this.unpacking.get(id);
    if (!p) {
      p = this.unpack(id, blob);
      this.unpacking.set(id, p);
      p.catch(() => this.unpacking.delete(id));
    }
    return p;
  }

  private async unpack(id: string, blob: LayerBlob): Promise<Layer> {
    const final = path.join(this.dir, id);
    const layer: Layer = { id, dir: path.join(final, SNAPSHOT_FILES), blob };
    try {
      await fs.access(path.join(final, 'meta.json'));
      return layer;
    } catch {
      /* not unpacked yet */
    }
    const tmp = path.join(this.dir, tempSnapshotName());
    await fs.mkdir(path.join(tmp, SNAPSHOT_FILES), { recursive: true, mode: 0o755 });
    try {
      const hash = createHash('sha256');
      const tap = new Transform({
        transform(chunk, _e, cb) {
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      const raw = await decompressStream(this.store.content.open(blob.digest));
      const tarStream = new PassThrough();
      const applying = applyLayerTar(tarStream, path.join(tmp, SNAPSHOT_FILES), layerBudgets());
      await Promise.all([pipeline(raw, tap, tarStream), applying]);
      const got = 'sha256:' + hash.digest('hex');
      if (got !== blob.diffId) throw new DigestMismatchError(`layer ${blob.digest}: uncompressed digest ${got} does not match diff_id ${blob.diffId}`);
      await fs.writeFile(path.join(tmp, 'meta.json'), JSON.stringify({ blob }));
      await fs.rename(tmp, final).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
        await fs.rm(tmp, { recursive: true, force: true }); // another build unpacked it first
      });
      return layer;
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * A new writable snapshot over `parent` for one build step (or `mbuild run`), with the description
   * of how to mount it. Whichever snapshotter is in use, the caller mounts what it is given.
   */
  async prepare(parent: Layer[]): Promise<Active> {
    await this.ready(parent);
    const id = buildSnapshotName();
    const base = path.join(this.dir, id);
    const upper = path.join(base, SNAPSHOT_FILES);
    const work = path.join(base, 'work');
    await fs.mkdir(upper, { recursive: true });
    await fs.chmod(upper, 0o755);
    await fs.mkdir(work, { recursive: true });
    try {
      if ((await this.kind()) === 'copy') {
        const root = path.join(base, 'merged');
        await materialize(this.layerDirs(parent), root);
        return { id, base, upper, work, mount: { type: 'bind', source: root }, before: await recordTree(root) };
      }
      return { id, base, upper, work, mount: { type: 'overlay', lowerDirs: this.lowerDirs(parent), upperDir: upper, workDir: work } };
    } catch (err) {
      await this.remove(id);
      throw err;
    }
  }

  /** The active snapshot's changes become a layer (opaqueDirs: what the RUN sandbox found in the upper dir). */
  async commit(active: Active, opaqueDirs?: string[]): Promise<Layer> {
    if (active.mount.type === 'bind') {
      await diffTree(active.mount.source, active.before!, active.upper);
      await fs.rm(active.mount.source, { recursive: true, force: true });
      opaqueDirs = undefined;
    }
    await fs.rm(active.work, { recursive: true, force: true });
    return { id: active.id, dir: active.upper, empty: await isEmptyLayerDir(active.upper), opaqueDirs };
  }

  /** Mount an active snapshot for the builder itself for the duration of fn (a bind is its directory). */
  async withMounted<T>(active: Active, fn: (root: string) => Promise<T>): Promise<T> {
    const m = active.mount;
    if (m.type === 'bind') return fn(m.source);
    const target = path.join(active.base, 'merged');
    await fs.mkdir(target);
    await mountOverlay(target, { lowerDirs: m.lowerDirs, upperDir: m.upperDir, workDir: m.workDir, scratchParent: this.dir });
    let result: T;
    try {
      result = await fn(target);
    } finally {
      await unmount(target);
    }
    await fs.rmdir(target);
    return result;
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

  /** Unpack the layers that exist only as blobs (commitTar, the build cache), so their dirs can be mounted. */
  async ready(layers: Layer[]): Promise<void> {
    for (const l of layers) {
      if (l.empty || this.present.has(l.dir)) continue;
      try {
        await fs.access(l.dir);
      } catch {
        if (!l.blob) throw new MbuildError('MBUILD_SNAPSHOT', `layer ${l.id} has neither files nor a blob (run "mbuild prune --all" and build again)`);
        if (path.dirname(path.dirname(l.dir)) !== this.dir || path.basename(l.dir) !== SNAPSHOT_FILES) throw new MbuildError('MBUILD_SNAPSHOT', `layer ${l.id}: unexpected directory ${l.dir}`);
        await this.unpackOnce(path.basename(path.dirname(l.dir)), l.blob);
      }
      this.present.add(l.dir);
    }
  }

  async remove(id: string): Promise<void> {
    await fs.rm(path.join(this.dir, id), { recursive: true, force: true });
  }

  /** lowerdir list (absolute, top-most first) for a stack of layers. */
  lowerDirs(layers: Layer[]): string[] {
    const dirs = layers.filter((l) => !l.empty).map((l) => path.resolve(l.dir)).reverse();
    return dirs.length ? dirs : [this.emptyDir];
  }

  /** overlay, or copy (copy-fallback.ts) when overlayfs is missing or MBUILD_SNAPSHOTTER=copy; chosen once. */
  kind(): Promise<SnapshotterKind> {
    this.chosen ??= chooseSnapshotter(this.dir).then(({ kind, why }) => {
      if (why) process.stderr.write(`mbuild: ${why}; using the copy snapshotter (slower)\n`);
      return kind;
    });
    return this.chosen;
  }

  /** The layers' dirs that hold changes, bottom-most first. */
  layerDirs(layers: Layer[]): string[] {
    return layers.filter((l) => !l.empty).map((l) => l.dir);
  }

  /** Prepare over the layers, let fn change the mounted root, and commit the change. */
  async mutate(layers: Layer[], fn: (root: string) => Promise<void>): Promise<Layer> {
    const active = await this.prepare(layers);
    try {
      await this.withMounted(active, fn);
      return await this.commit(active);
    } catch (err) {
      await this.remove(active.id);
      throw err;
    }
  }

  /** A read-only view of the layers' merged filesystem for the duration of fn. */
  async view<T>(layers: Layer[], fn: (root: string) => Promise<T>): Promise<T> {
    await this.ready(layers);
    if ((await this.kind()) === 'copy') return this.viewCopy(layers, fn);
    const lowers = this.lowerDirs(layers);
    if (lowers.length === 1) return fn(lowers[0]);
    const target = path.join(this.dir, tempSnapshotName());
    await fs.mkdir(target);
    try {
      await mountOverlay(target, { lowerDirs: lowers, scratchParent: this.dir });
      try {
        return await fn(target);
      } finally {
        await unmount(target);
      }
    } finally {
      await fs.rmdir(target).catch(() => undefined);
    }
  }

  private async viewCopy<T>(layers: Layer[], fn: (root: string) => Promise<T>): Promise<T> {
    const dirs = this.layerDirs(layers);
    if (dirs.length === 0) return fn(this.emptyDir);
    if (dirs.length === 1) {
      let clean = this.whiteoutFree.get(dirs[0]);
      if (!clean) this.whiteoutFree.set(dirs[0], (clean = hasWhiteouts(dirs[0]).then((w) => !w)));
      if (await clean) return fn(dirs[0]);
    }
    const target = path.join(this.dir, tempSnapshotName());
    try {
      await materialize(dirs, target);
      return await fn(target);
    } finally {
      await fs.rm(target, { recursive: true, force: true });
    }
  }

  /**
   * The layer as a blob in the content store, made once, on demand. Like Docker's image store the
   * local store keeps layers uncompressed (digest = diff_id): building pays no gzip; exports and
   * pushes compress on the way out (store/compress.ts), once per layer.
   */
  async ensureBlob(layer: Layer): Promise<LayerBlob> {
    if (layer.blob) return layer.blob;
    layer.blob = await this.ingestTar((out) => writeLayerTar(layer.dir, out, { end: true, opaqueDirs: layer.opaqueDirs }));
    return layer.blob;
  }

  /** Stream an uncompressed layer tar into the content store (digest = diff_id). */
  private async ingestTar(write: (out: PassThrough) => Promise<void>): Promise<LayerBlob> {
    const tarOut = new PassThrough();
    const [, info] = await Promise.all([write(tarOut), this.store.content.ingest(tarOut)]);
    return { diffId: info.digest, digest: info.digest, size: info.size, mediaType: MediaType.layerTar };
  }
}

