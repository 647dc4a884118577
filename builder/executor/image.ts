/** A stage's final state → an OCI image (config + manifest) in the content store. */
import PQueue from 'p-queue';
import os from 'node:os';
import type { ContainerConfig, HistoryEntry, ImageConfig, Manifest } from '../../store/oci.js';
import { MediaType } from '../../store/oci.js';
import { PassThrough } from 'node:stream';
import type { Layer, LayerBlob } from '../../snapshotter/snapshotter.js';
import type { Layers } from '../../snapshotter/layers.js';
import { compare } from '../../snapshotter/differ.js';
import { parseSnapshotName } from '../../store/layout.js';
import type { StageState } from '../steps/state.js';

export interface WrittenImage {
  manifestDigest: string;
  manifestSize: number;
  manifest: Manifest;
  config: ImageConfig;
}

function cleanConfig(c: ContainerConfig): ContainerConfig {
  const out: ContainerConfig = {};
  for (const [k, v] of Object.entries(c) as [keyof ContainerConfig, unknown][]) {
    if (v === null || v === undefined) continue;
    if (k === 'OnBuild' && Array.isArray(v) && v.length === 0) continue;
    (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

export interface WriteOptions {
  created: string;
  author?: string;
  annotations?: Record<string, string>;
  /**
   * SOURCE_DATE_EPOCH: the layers this build made are written with file times clamped to it, so
   * the same inputs give the same layers on any machine (BuildKit's rewrite-timestamp). Base image
   * layers, and layers another runner's shared cache supplied, are kept as they are.
   */
  clampMtime?: Date;
  /** top-level config fields made from the layers' blobs (the inline build cache) */
  extraConfig?: (blobs: LayerBlob[]) => Record<string, unknown>;
}

export async function writeImage(snap: Layers, state: StageState, opts: WriteOptions): Promise<WrittenImage> {
  const layers = state.layers.filter((l) => !l.empty);
  const queue = new PQueue({ concurrency: Math.max(1, Math.min(4, os.availableParallelism())) });
  // a layer from a shared cache has its descriptor already: the config and manifest are written
  // while its blob downloads, and the image is complete when the downloads are (the end of this)
  const fetches: Promise<void>[] = [];
  const blobOf = (l: Layer): Promise<LayerBlob> => {
    if (l.fetch && l.blob) {
      fetches.push(l.fetch());
      return Promise.resolve(l.blob);
    }
    return opts.clampMtime && !l.fetch && parseSnapshotName(l.id)?.kind !== 'image' ? clampedBlob(snap, l, opts.clampMtime) : snap.ensureBlob(l);
  };
  const blobs = await Promise.all(layers.map((l) => queue.add(() => blobOf(l), { throwOnTimeout: true })));
  const fetched = Promise.all(fetches);
  fetched.catch(() => undefined); // awaited below, after the writes it overlaps
  const history: HistoryEntry[] = [
    ...state.baseHistory,
    ...state.history.map(({ entry, layer }) => (layer && !layer.empty ? { ...entry } : { ...entry, empty_layer: true })),
  ];
  const config: ImageConfig = {
    architecture: state.architecture,
    os: state.os,
    ...(state.variant ? { variant: state.variant } : {}),
    ...(opts.author ? { author: opts.author } : {}),
    created: opts.created,
    config: cleanConfig(state.config),
    rootfs: { type: 'layers', diff_ids: blobs.map((b) => b.diffId) },
    history,
    ...opts.extraConfig?.(blobs),
  };
  const cfg = await snap.store.content.putJson(config);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.manifest,
    config: { mediaType: MediaType.config, digest: cfg.digest, size: cfg.size },
    layers: blobs.map((b) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })),
    ...(opts.annotations && Object.keys(opts.annotations).length ? { annotations: opts.annotations } : {}),
  };
  const man = await snap.store.content.putJson(manifest);
  await fetched;
  return { manifestDigest: man.digest, manifestSize: man.size, manifest, config };
}

/** The layer's tar with every time after `mtime` written as `mtime` (not kept as the layer's own blob). */
async function clampedBlob(snap: Layers, layer: Layer, mtime: Date): Promise<LayerBlob> {
  // a layer made as a tar only (COPY) has no directory yet: unpack it from its blob first
  await snap.ready([layer]);
  const out = new PassThrough();
  const [, info] = await Promise.all([compare(layer, out, { mtime }), snap.store.content.ingest(out)]);
  return { diffId: info.digest, digest: info.digest, size: info.size, mediaType: MediaType.layerTar };
}
