/**
 * The copy snapshotter, for hosts without overlayfs (or MBUILD_SNAPSHOTTER=copy): an active
 * snapshot is a plain directory (key/merged) holding a copy of its parent layers, bound as it is;
 * commit compares it with the record taken at prepare and writes the difference to key/fs in
 * overlay format, as an upperdir would hold it (copy-tree.ts). A view of one layer without
 * whiteouts is that layer's directory; any other view is a copy, removed with the view.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { SNAPSHOT_FILES, SNAPSHOT_MERGED } from '../store/layout.js';
import { SnapshotExistsError } from '../util/errors.js';
import { BaseSnapshotter, type Live } from './base.js';
import { diffTree, hasWhiteouts, materialize, recordTree, type Tree } from './copy-tree.js';
import { bindMount } from './mount.js';
import { findOpaqueDirs } from '../util/native-helper.js';
import type { CommitOptions, Layer, Mount } from './snapshotter.js';

export class CopySnapshotter extends BaseSnapshotter {
  readonly kind = 'copy';
  /** the record of each active snapshot's copy, taken at prepare */
  private readonly before = new Map<string, Tree>();
  private readonly whiteoutFree = new Map<string, Promise<boolean>>();
  /** each committed layer's opaque dirs, read once (a helper call) however many copies are made of it */
  private readonly opaque = new Map<string, Promise<string[]>>();
  private readonly opaqueDirs = (dir: string): Promise<string[]> => {
    let p = this.opaque.get(dir);
    if (!p) {
      this.opaque.set(dir, (p = findOpaqueDirs(dir)));
      p.catch(() => this.opaque.delete(dir));
    }
    return p;
  };

  static async open(dir: string): Promise<CopySnapshotter> {
    const s = new CopySnapshotter(dir);
    await fs.mkdir(s.emptyDir, { recursive: true, mode: 0o755 });
    return s;
  }

  async prepare(key: string, parent: readonly Layer[]): Promise<Mount[]> {
    const base = await this.claim(key);
    try {
      await fs.mkdir(path.join(base, SNAPSHOT_FILES), { mode: 0o755 });
      await fs.chmod(path.join(base, SNAPSHOT_FILES), 0o755);
      const merged = path.join(base, SNAPSHOT_MERGED);
      await materialize(this.layerDirs(parent), merged, this.opaqueDirs);
      this.before.set(key, await recordTree(merged));
      const mounts = [bindMount(merged, false)];
      this.live.set(key, { kind: 'active', chain: parent.map((l) => l.id), mounts });
      return mounts;
    } catch (err) {
      this.before.delete(key);
      await fs.rm(base, { recursive: true, force: true });
      throw err;
    }
  }

  async view(key: string, parent: readonly Layer[]): Promise<Mount[]> {
    if (this.live.has(key)) throw new SnapshotExistsError(key);
    const dirs = this.layerDirs(parent);
    let source: string | undefined;
    if (dirs.length === 0) source = this.emptyDir;
    else if (dirs.length === 1) {
      let clean = this.whiteoutFree.get(dirs[0]!);
      if (!clean) this.whiteoutFree.set(dirs[0]!, (clean = hasWhiteouts(dirs[0]!).then((w) => !w)));
      if (await clean) source = dirs[0];
    }
    if (source === undefined) {
      const base = await this.claim(key);
      source = path.join(base, SNAPSHOT_MERGED);
      try {
        await materialize(dirs, source, this.opaqueDirs);
      } catch (err) {
        await fs.rm(base, { recursive: true, force: true });
        throw err;
      }
    }
    const mounts = [bindMount(source, true)];
    this.live.set(key, { kind: 'view', chain: parent.map((l) => l.id), mounts });
    return mounts;
  }

  protected async finish(key: string, live: Live): Promise<{ opaqueDirs?: string[] }> {
    const base = this.base(key);
    const merged = path.join(base, SNAPSHOT_MERGED);
    const before = this.before.get(key)!;
    if (before.size === 0) {
      // over nothing, everything in the copy is new: the copy is the layer as it stands (and keeps
      // what an unpacked layer tar wrote there in overlay format: whiteouts, opaque xattrs)
      await fs.rm(path.join(base, SNAPSHOT_FILES), { recursive: true, force: true });
      await fs.rename(merged, path.join(base, SNAPSHOT_FILES));
    } else {
      await diffTree(merged, before, path.join(base, SNAPSHOT_FILES));
      await fs.rm(merged, { recursive: true, force: true });
    }
    this.before.delete(key);
    void live;
    return {}; // the sandbox's opaque-dir report is about an upperdir: here xattrs are read later
  }

  /** A name committed again (after a remove) is new content: forget what was read of the old one. */
  override async commit(name: string, key: string, opts?: CommitOptions): Promise<Layer> {
    const layer = await super.commit(name, key, opts);
    this.opaque.delete(path.resolve(layer.dir));
    this.whiteoutFree.delete(path.resolve(layer.dir));
    return layer;
  }

  protected async discard(key: string): Promise<void> {
    this.before.delete(key);
    await fs.rm(this.base(key), { recursive: true, force: true });
  }
}
