/**
 * The overlay snapshotter: an active snapshot is an upperdir (key/fs) and a workdir over the parent
 * layers as lowerdirs; commit keeps the upperdir as the layer. A view is an overlay of the layers
 * without an upperdir (one layer: that layer's directory, bound read-only).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { SNAPSHOT_FILES, SNAPSHOT_WORK } from '../store/layout.js';
import { MbuildError, SnapshotExistsError } from '../util/errors.js';
import { BaseSnapshotter, type Live } from './base.js';
import { bindMount, overlayMount } from './mount.js';
import type { Layer, Mount } from './snapshotter.js';

/** Linux's OVL_MAX_STACK: the most lower layers one overlay mount takes. */
export const OVERLAY_MAX_LAYERS = 500;

export class OverlaySnapshotter extends BaseSnapshotter {
  readonly kind = 'overlay';

  static async open(dir: string): Promise<OverlaySnapshotter> {
    const s = new OverlaySnapshotter(dir);
    await fs.mkdir(s.emptyDir, { recursive: true, mode: 0o755 });
    return s;
  }

  /** lowerdir list (absolute, top-most first) for a stack of layers. */
  private lowerDirs(layers: readonly Layer[]): string[] {
    const dirs = this.layerDirs(layers).reverse();
    // the mounter takes any number (lowerdir+, else short links); the kernel stacks 500 at most and
    // would say only "Invalid argument"
    if (dirs.length > OVERLAY_MAX_LAYERS) {
      throw new MbuildError('MBUILD_MOUNT', `${dirs.length} layers are more than overlayfs can stack (${OVERLAY_MAX_LAYERS}, the kernel's limit): combine some RUN, COPY or WORKDIR steps`);
    }
    return dirs.length ? dirs : [this.emptyDir];
  }

  async prepare(key: string, parent: readonly Layer[]): Promise<Mount[]> {
    const base = await this.claim(key);
    try {
      const upperDir = path.join(base, SNAPSHOT_FILES);
      const workDir = path.join(base, SNAPSHOT_WORK);
      await fs.mkdir(upperDir, { mode: 0o755 });
      await fs.chmod(upperDir, 0o755); // whatever the umask
      await fs.mkdir(workDir);
      const mounts = [overlayMount({ lowerDirs: this.lowerDirs(parent), upperDir, workDir })];
      this.live.set(key, { kind: 'active', chain: parent.map((l) => l.id), mounts });
      return mounts;
    } catch (err) {
      await fs.rm(base, { recursive: true, force: true });
      throw err;
    }
  }

  async view(key: string, parent: readonly Layer[]): Promise<Mount[]> {
    if (this.live.has(key)) throw new SnapshotExistsError(key);
    const lowers = this.lowerDirs(parent);
    const mounts = [lowers.length === 1 ? bindMount(lowers[0]!, true) : overlayMount({ lowerDirs: lowers })];
    this.live.set(key, { kind: 'view', chain: parent.map((l) => l.id), mounts });
    return mounts;
  }

  protected async finish(key: string, _live: Live, opts: { opaqueDirs?: string[] }): Promise<{ opaqueDirs?: string[] }> {
    await fs.rm(path.join(this.base(key), SNAPSHOT_WORK), { recursive: true, force: true });
    return { opaqueDirs: opts.opaqueDirs };
  }

  protected async discard(key: string, live: Live): Promise<void> {
    if (live.kind === 'active') await fs.rm(this.base(key), { recursive: true, force: true });
  }
}
