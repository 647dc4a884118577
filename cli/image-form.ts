/**
 * The form an image leaves mbuild in (`-o` compression, oci-mediatypes, annotations): a twin
 * manifest in the content store with the layers compressed or not and the media types asked for.
 * The stored image itself is not changed, so the build cache and other names are unaffected.
 * gzip is made in-process (store/compress.ts); zstd by the system `zstd` tool (Node 20's zlib has
 * none), the tool mbuild already reads zstd layers with (snapshotter/diff/decompress.ts).
 */
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { Store } from '../store/store.js';
import { MediaType, type Descriptor, type Manifest } from '../store/oci.js';
import { gzipLayer } from '../store/compress.js';
import { openLayerTar } from '../store/layer-blobs.js';
import { decompressStream, haveTool } from '../snapshotter/diff/decompress.js';
import { MbuildError, UsageError } from '../util/errors.js';
import type { Compression } from '../builder/executor/output-spec.js';

export interface ImageForm {
  compression: Compression;
  /** compression-level=: gzip 0-9, zstd 0-22 (undefined: the default, gzip's 6 and zstd's 3) */
  compressionLevel?: number;
  forceCompression: boolean;
  ociMediatypes: boolean;
  annotations: Record<string, string>;
}

const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';
const GZIP = new Set<string>([MediaType.layerGzip, MediaType.dockerLayerGzip]);
const TAR = new Set<string>([MediaType.layerTar, DOCKER_LAYER_TAR]);
const ZSTD = new Set<string>([MediaType.layerZstd]);

function kindOf(mediaType: string): Compression | undefined {
  return GZIP.has(mediaType) ? 'gzip' : TAR.has(mediaType) ? 'uncompressed' : ZSTD.has(mediaType) ? 'zstd' : undefined;
}

/** A compressed layer as its plain tar in the store: the tar's digest is the layer's diff_id (checked). */
async function plainLayer(store: Store, layer: Descriptor, diffId: string): Promise<Descriptor> {
  if (await store.content.has(diffId)) return { mediaType: MediaType.layerTar, digest: diffId, size: await store.content.size(diffId) };
  const info = await store.content.ingest(await decompressStream(store.content.open(layer.digest)), { digest: diffId });
  return { mediaType: MediaType.layerTar, digest: info.digest, size: info.size };
}

/** zstd at level 3 (BuildKit's default; level 0 means it too) or the one asked, on every core. */
async function zstdLayer(store: Store, tar: Descriptor, level = 3): Promise<Descriptor> {
  if (!(await haveTool('zstd'))) throw new UsageError('--output compression=zstd needs the "zstd" command (apt-get install zstd)');
  const n = level === 0 ? 3 : level;
  const child = spawn('zstd', ['-q', '-c', ...(n > 19 ? ['--ultra'] : []), `-${n}`, '-T0'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const src = await openLayerTar(store, tar.digest, tar.size);
  src.on('error', (err) => child.stdin.destroy(err));
  child.stdin.on('error', () => undefined); // zstd ended early: its exit status tells
  src.pipe(child.stdin);
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  const info = await store.content.ingest(child.stdout as Readable);
  if ((await exited) !== 0) throw new MbuildError('MBUILD_EXPORT', `zstd failed: ${stderr.trim() || 'no message'}`);
  return { mediaType: MediaType.layerZstd, digest: info.digest, size: info.size };
}

export async function imageInForm(store: Store, manifestDigest: string, form: ImageForm): Promise<{ manifestDigest: string; manifest: Manifest }> {
  const manifest = await store.content.readJson<Manifest>(manifestDigest);
  if (Object.keys(form.annotations).length && !form.ociMediatypes)
    throw new UsageError('annotations need OCI media types: add oci-mediatypes=true to --output (Docker manifests have no annotations)');
  if (form.compression === 'zstd' && !form.ociMediatypes) throw new UsageError('--output compression=zstd needs OCI media types (Docker has no zstd layer type): drop oci-mediatypes=false');
  const config = await store.content.readJson<{ rootfs?: { diff_ids?: string[] } }>(manifest.config.digest);
  const diffIds = config.rootfs?.diff_ids ?? [];
  const layers: Descriptor[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    const have = kindOf(l.mediaType);
    if (!have) throw new UsageError(`--output: cannot write a ${l.mediaType} layer`);
    let d: Descriptor = l;
    // a layer this build made (uncompressed in the store) always takes the asked compression;
    // one that came compressed (the base image's) keeps it unless force-compression (as BuildKit)
    if (have !== form.compression && (have === 'uncompressed' || form.forceCompression)) {
      if (have !== 'uncompressed' && !diffIds[i]) throw new MbuildError('MBUILD_STORE', `image ${manifestDigest}: layer ${i} has no diff_id`);
      const tar = have === 'uncompressed' ? l : await plainLayer(store, l, diffIds[i]!);
      d = form.compression === 'gzip' ? await gzipLayer(store, tar, form.compressionLevel) : form.compression === 'zstd' ? await zstdLayer(store, tar, form.compressionLevel) : tar;
    }
    const kind = kindOf(d.mediaType)!;
    const mediaType = form.ociMediatypes
      ? { gzip: MediaType.layerGzip, uncompressed: MediaType.layerTar, zstd: MediaType.layerZstd }[kind]
      : { gzip: MediaType.dockerLayerGzip, uncompressed: DOCKER_LAYER_TAR, zstd: MediaType.layerZstd }[kind];
    layers.push({ mediaType, digest: d.digest, size: d.size });
  }
  const out: Manifest = {
    schemaVersion: 2,
    mediaType: form.ociMediatypes ? MediaType.manifest : MediaType.dockerManifest,
    config: { ...manifest.config, mediaType: form.ociMediatypes ? MediaType.config : MediaType.dockerConfig },
    layers,
    ...(manifest.annotations || Object.keys(form.annotations).length ? { annotations: { ...(manifest.annotations ?? {}), ...form.annotations } } : {}),
  };
  const put = await store.content.putJson(out);
  return { manifestDigest: put.digest, manifest: out };
}
