/**
 * The form an image leaves mbuild in (`-o` compression, oci-mediatypes, annotations): a twin
 * manifest in the content store with the layers compressed or not and the media types asked for.
 * The stored image itself is not changed, so the build cache and other names are unaffected.
 */
import { createGunzip } from 'node:zlib';
import type { Store } from '../../store/store.js';
import { MediaType, type Descriptor, type Manifest } from '../../store/oci.js';
import { gzipLayer } from '../../store/compress.js';
import { MbuildError, UsageError } from '../../util/errors.js';
import type { Compression } from './output-spec.js';

export interface ImageForm {
  compression: Compression;
  forceCompression: boolean;
  ociMediatypes: boolean;
  annotations: Record<string, string>;
}

const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';
const GZIP = new Set<string>([MediaType.layerGzip, MediaType.dockerLayerGzip]);
const TAR = new Set<string>([MediaType.layerTar, DOCKER_LAYER_TAR]);

/** A gzip layer as its plain tar: the tar's digest is the layer's diff_id (checked). */
async function gunzipLayer(store: Store, layer: Descriptor, diffId: string): Promise<Descriptor> {
  if (await store.content.has(diffId)) return { mediaType: MediaType.layerTar, digest: diffId, size: await store.content.size(diffId) };
  const src = store.content.open(layer.digest);
  const gunzip = createGunzip();
  src.on('error', (err) => gunzip.destroy(err));
  const info = await store.content.ingest(src.pipe(gunzip), { digest: diffId });
  return { mediaType: MediaType.layerTar, digest: info.digest, size: info.size };
}

export async function imageInForm(store: Store, manifestDigest: string, form: ImageForm): Promise<{ manifestDigest: string; manifest: Manifest }> {
  const manifest = await store.content.readJson<Manifest>(manifestDigest);
  if (Object.keys(form.annotations).length && !form.ociMediatypes)
    throw new UsageError('annotations need OCI media types: add oci-mediatypes=true to --output (Docker manifests have no annotations)');
  const config = await store.content.readJson<{ rootfs?: { diff_ids?: string[] } }>(manifest.config.digest);
  const diffIds = config.rootfs?.diff_ids ?? [];
  const layers: Descriptor[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    let d: Descriptor = l;
    if (form.compression === 'gzip' && TAR.has(l.mediaType)) d = await gzipLayer(store, l);
    else if (form.compression === 'uncompressed' && form.forceCompression && GZIP.has(l.mediaType)) {
      if (!diffIds[i]) throw new MbuildError('MBUILD_STORE', `image ${manifestDigest}: layer ${i} has no diff_id`);
      d = await gunzipLayer(store, l, diffIds[i]);
    } else if (!GZIP.has(l.mediaType) && !TAR.has(l.mediaType) && form.forceCompression) {
      throw new UsageError(`--output force-compression: cannot convert a ${l.mediaType} layer`);
    }
    const gz = GZIP.has(d.mediaType);
    const mediaType = form.ociMediatypes ? (gz ? MediaType.layerGzip : TAR.has(d.mediaType) ? MediaType.layerTar : d.mediaType) : gz ? MediaType.dockerLayerGzip : TAR.has(d.mediaType) ? DOCKER_LAYER_TAR : d.mediaType;
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
