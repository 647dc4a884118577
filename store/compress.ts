/**
 * Layers leave the store gzip-compressed: an image whose manifest lists uncompressed layers (as
 * mbuild's builds make them) gets a gzip twin manifest for exports and pushes. Each layer is
 * compressed once; ROOT/compressed/<diff_id>.json remembers the result.
 */
import { constants as zc } from 'node:zlib';
import PQueue from 'p-queue';
import type { Store } from './store.js';
import { MediaType, type Descriptor, type Index, type Manifest } from './oci.js';
import { writeFileAtomic } from './fsutil.js';
import { gzipMemoPath, gzipTwin, openLayerTar } from './layer-blobs.js';
import { createParallelGzip } from './pgzip.js';

const UNCOMPRESSED = new Set<string>([MediaType.layerTar, 'application/vnd.docker.image.rootfs.diff.tar']);

function level(): number {
  const v = Number(process.env.MBUILD_GZIP_LEVEL);
  return Number.isInteger(v) && v >= 1 && v <= 9 ? v : zc.Z_DEFAULT_COMPRESSION;
}

/**
 * The gzip form of one layer blob (made and remembered on first use). `gzipLevel` (0-9, an
 * output's compression-level=) makes and remembers a form of its own.
 */
export async function gzipLayer(store: Store, layer: Descriptor, gzipLevel?: number): Promise<Descriptor> {
  if (!UNCOMPRESSED.has(layer.mediaType)) return layer;
  const known = await gzipTwin(store, layer.digest, gzipLevel);
  if (known) return { mediaType: MediaType.layerGzip, digest: known.digest, size: known.size };
  // a lazily kept layer (only its default twin is stored) is decompressed, verified, for another level
  const source = await openLayerTar(store, layer.digest);
  const gz = createParallelGzip({ level: gzipLevel ?? level() });
  source.on('error', (err) => gz.destroy(err));
  const info = await store.content.ingest(source.pipe(gz));
  await rememberGzip(store, layer.digest, info, gzipLevel);
  return { mediaType: MediaType.layerGzip, digest: info.digest, size: info.size };
}

/**
 * Remember that `gz` is the gzip form of the uncompressed blob `diffId` (a layer fetched from a
 * shared build cache keeps the cache's bytes, so a push of it sends the very same blob; without
 * its tar, store/layer-blobs.ts reads the layer from this twin).
 */
export async function rememberGzip(store: Pick<Store, 'root' | 'content'>, diffId: string, gz: { digest: string; size: number }, gzipLevel?: number): Promise<void> {
  await writeFileAtomic(gzipMemoPath(store, diffId, gzipLevel), JSON.stringify({ digest: gz.digest, size: gz.size }));
}

/** A manifest whose layers are all compressed: the same manifest when they are already. */
export async function distributable(store: Store, manifestDigest: string): Promise<{ manifestDigest: string; manifest: Manifest }> {
  const manifest = await store.content.readJson<Manifest>(manifestDigest);
  if (!manifest.layers.some((l) => UNCOMPRESSED.has(l.mediaType))) return { manifestDigest, manifest };
  const queue = new PQueue({ concurrency: 2 });
  const layers = await Promise.all(manifest.layers.map((l) => queue.add(() => gzipLayer(store, l), { throwOnTimeout: true })));
  const converted: Manifest = { ...manifest, layers };
  const put = await store.content.putJson(converted);
  return { manifestDigest: put.digest, manifest: converted };
}

/**
 * A multi-platform index in its distributable form: each platform's manifest with compressed
 * layers (distributable above), under an index of those; entries the store lacks stay as they are.
 */
export async function distributableIndex(store: Store, indexDigest: string): Promise<{ digest: string; index: Index }> {
  const top = await store.content.readJson<Index>(indexDigest);
  const manifests: Descriptor[] = [];
  let changed = false;
  for (const d of top.manifests) {
    if (!(await store.content.has(d.digest)) || !d.platform || d.platform.os === 'unknown') {
      manifests.push(d);
      continue;
    }
    const dist = await distributable(store, d.digest);
    if (dist.manifestDigest !== d.digest) changed = true;
    manifests.push({ ...d, digest: dist.manifestDigest, size: await store.content.size(dist.manifestDigest) });
  }
  if (!changed) return { digest: indexDigest, index: top };
  const index = { ...top, manifests };
  return { digest: (await store.content.putJson(index)).digest, index };
}
