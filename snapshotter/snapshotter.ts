/**
 * The Snapshotter, in containerd's vocabulary (core/snapshots/snapshotter.go): a snapshot is
 * *active* (prepare: writable, over a parent), a *view* (read-only, over a parent) or *committed*
 * (commit: an active snapshot's changes kept under a name, usable as a parent). prepare, view and
 * mounts describe how to mount a snapshot; they never mount it and never hand out a path to write to.
 * Two implementations stand behind this one interface, chosen once per store (openSnapshotter):
 *
 *   overlay (overlay.ts)  the parent layers are overlay lowerdirs, the changes the upperdir
 *   copy (copy.ts)        for hosts without overlayfs: the parent is copied into a plain directory,
 *                         commit finds the changes by comparing it with a record taken at prepare
 *
 * Both keep a committed snapshot the same way: ROOT/snapshots/<name>/fs, a directory in overlay
 * format (whiteouts as 0:0 char devices, opaque dirs by xattr) holding that layer's own changes, and
 * meta.json beside it. The differ (differ.ts) reads and writes that format; the names are
 * store/layout.ts's.
 *
 * One difference from containerd: `parent` is the whole stack of layers, not one name. A layer here
 * is shared by content (an image layer by chain id, a cached one by its cache key) while the build
 * step that made it is private and gone when its build ends, so the stack lives with the caller (the
 * build's state, an image's config); each snapshot records its stack's names (stat's parent, and
 * remove refusing a snapshot that another one is over).
 */
import type { Store } from '../store/store.js';
import { layout } from '../store/layout.js';
import { chooseSnapshotter, forcedSnapshotter } from './probe.js';

export interface LayerBlob {
  diffId: string;
  digest: string;
  size: number;
  mediaType: string;
}

/** A committed snapshot as the builder holds it: the layer's name and what is known of its content. */
export interface Layer {
  /** the committed snapshot's name (store/layout.ts) */
  id: string;
  /** its overlay-format directory of this layer's changes (the differ's input; may not exist yet, see blob) */
  dir: string;
  blob?: LayerBlob;
  /** true once known to hold no change (such layers are left out of images and mounts) */
  empty?: boolean;
  /** the build-cache key this layer is kept under (builder/cache) */
  cacheKey?: string;
  /** its opaque directories, when known at commit (the RUN sandbox reports them); else read from xattrs */
  opaqueDirs?: string[];
  /**
   * A layer known only from a shared build cache: brings its blob into the content store. Called
   * the first time something needs the layer's bytes (a mount, an export), never before.
   */
  fetch?: () => Promise<void>;
}

/**
 * How to mount a snapshot, as containerd's mount.Mount: a type, a source and mount(8)-style options.
 *   overlay: source "overlay", options lowerdir=A:B (top-most first, ':' ',' '\' escaped with '\'),
 *            and for a writable snapshot upperdir=U and workdir=W
 *   bind:    source a directory, options rbind and ro or rw
 * The one mounter (mount.ts) and the RUN sandbox (native/rootfs.c) turn these into mounts.
 */
export interface Mount {
  type: 'overlay' | 'bind';
  source: string;
  options: string[];
}

export type SnapshotKind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  name: string;
  kind: SnapshotKind;
  /** the name of the top-most layer of the stack it is over, if it is over any */
  parent?: string;
}

export interface CommitOptions {
  /** the upper dir's opaque directories, when the RUN sandbox found them (saves reading xattrs later) */
  opaqueDirs?: string[];
  /** the layer's blob when it is already known (an unpacked image layer) */
  blob?: LayerBlob;
}

export interface Snapshotter {
  /** A writable snapshot `key` over the layers `parent` (bottom-most first; [] for none). */
  prepare(key: string, parent: readonly Layer[]): Promise<Mount[]>;
  /**
   * A read-only snapshot `key` of the layers' merged filesystem. remove(key) when done; what is
   * written through a view's mount is undefined (a single layer may be bound as it is).
   */
  view(key: string, parent: readonly Layer[]): Promise<Mount[]>;
  /** The mounts of an active snapshot or a view, again. */
  mounts(key: string): Promise<Mount[]>;
  /**
   * The active snapshot `key`'s changes kept as the committed snapshot `name`; `key` is gone after.
   * SnapshotExistsError if `name` is already committed (another build was first): `key` stays
   * active, and the caller commits it under another name or removes it.
   */
  commit(name: string, key: string, opts?: CommitOptions): Promise<Layer>;
  /** Remove an active snapshot, a view, or a committed snapshot that no other snapshot is over. */
  remove(key: string): Promise<void>;
  stat(key: string): Promise<SnapshotInfo>;
  /** Every snapshot of the store: committed ones, and the active snapshots and views of this process. */
  walk(fn: (info: SnapshotInfo) => void | Promise<void>): Promise<void>;
}

/**
 * The snapshotter for a store: overlay when the kernel can, else copy (probe.ts). The probe (a real
 * overlay mount) runs once per process, and only when a snapshot is first needed: a build that finds
 * every step in its cache never pays for it.
 */
export function openSnapshotter(store: Store): Snapshotter {
  forcedSnapshotter(); // a bad MBUILD_SNAPSHOTTER fails before any work
  const dir = layout.snapshots(store.root);
  const use = async (): Promise<Snapshotter> => {
    let impl = opened.get(dir);
    if (!impl) {
      impl = chooseSnapshotter(dir).then(async ({ kind, why }) => {
        if (why) process.stderr.write(`mbuild: ${why}; using the copy snapshotter (slower)\n`);
        return kind === 'copy' ? (await import('./copy.js')).CopySnapshotter.open(dir) : (await import('./overlay.js')).OverlaySnapshotter.open(dir);
      });
      impl.catch(() => opened.delete(dir));
      opened.set(dir, impl);
    }
    return impl;
  };
  return {
    prepare: async (key, parent) => (await use()).prepare(key, parent),
    view: async (key, parent) => (await use()).view(key, parent),
    mounts: async (key) => (await use()).mounts(key),
    commit: async (name, key, opts) => (await use()).commit(name, key, opts),
    remove: async (key) => (await use()).remove(key),
    stat: async (key) => (await use()).stat(key),
    walk: async (fn) => (await use()).walk(fn),
  };
}
const opened = new Map<string, Promise<Snapshotter>>();
