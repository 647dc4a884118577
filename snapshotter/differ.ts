/**
 * The differ, beside the snapshotter (containerd's core/diff: Applier and Comparer). Both
 * snapshotters keep a layer as its own changes in overlay format, so:
 *
 *   apply    a layer tar → a fresh snapshot prepared over no parent: the tar's entries are written
 *            into the snapshot's upperdir (overlay) or directory (copy), whiteouts and opaque dirs
 *            in overlay format (apply.ts), as containerd's overlay applier writes into the upper.
 *   compare  a committed layer → its layer tar (layer-tar.ts): the overlay-format changes become
 *            `.wh.` entries, opaque dirs `.wh..wh..opq`.
 */
import type { Readable, Writable } from 'node:stream';
import { MbuildError } from '../util/errors.js';
import { overlayDirs, single } from './mount.js';
import type { Layer, Mount } from './snapshotter.js';
import { applyLayerTar, type ApplyOptions, type ApplyResult } from './diff/apply.js';
import { writeLayerTar } from './diff/layer-tar.js';

/** Write a layer tar into a snapshot prepared over no parent (its mounts, as prepare returned them). */
export function apply(mounts: Mount[], tar: Readable, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const m = single(mounts);
  let dir: string | undefined;
  if (m.type === 'bind' && m.options.includes('rw')) dir = m.source;
  else if (m.type === 'overlay') dir = overlayDirs(m).upperDir;
  if (!dir) throw new MbuildError('MBUILD_LAYER_APPLY', 'a layer is applied to a writable snapshot only');
  return applyLayerTar(tar, dir, opts);
}

/** The layer tar of a committed layer, written to `out` (ended after). */
export function compare(layer: Layer, out: Writable, opts: { mtime?: Date } = {}): Promise<void> {
  // mtime: times after it are written as it (SOURCE_DATE_EPOCH for the layers of an image)
  return writeLayerTar(layer.dir, out, { end: true, opaqueDirs: layer.opaqueDirs, ...(opts.mtime ? { mtime: opts.mtime } : {}) });
}
