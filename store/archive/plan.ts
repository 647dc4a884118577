/** What an archive import will commit, decided (and fully verified) before anything is committed. */
import { DigestMismatchError, MbuildError } from '../../util/errors.js';
import { assertDigest } from '../digest.js';
import { MediaType, type Descriptor, type Manifest, type Platform } from '../oci.js';
import { MAX_JSON_BYTES, type SpooledArchive, type SpooledFile } from './spool.js';

/** A verified file in the spool dir whose bytes have `digest`. */
export interface BlobFile {
  digest: string;
  size: number;
  file: string;
}

export interface PlannedImage {
  /** canonical names (docker.io/library/busybox:latest) */
  names: string[];
  /** config and layers, committed before the manifest */
  blobs: BlobFile[];
  /** the manifest: a verified spooled blob (OCI layouts), or one made here (docker save) */
  manifest: ({ kind: 'file' } & BlobFile) | { kind: 'json'; value: Manifest };
}

export interface PlanOptions {
  platform: Platform;
  onProgress: (msg: string) => void;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function badArchive(message: string): MbuildError {
  return new MbuildError('MBUILD_BAD_ARCHIVE', message);
}

/** Check a descriptor's fields; the digest is validated before it is ever used in a path. */
export function checkDescriptor(d: unknown, what: string): Descriptor {
  if (!isObject(d)) throw badArchive(`${what} is not a descriptor`);
  const digest = assertDigest(d.digest as string, `digest of ${what}`);
  const size = d.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw badArchive(`${what} has an invalid size ${JSON.stringify(size)}`);
  if (d.mediaType !== undefined && typeof d.mediaType !== 'string') throw badArchive(`${what} has an invalid mediaType`);
  const out: Descriptor = { mediaType: (d.mediaType as string | undefined) ?? '', digest, size };
  if (isObject(d.annotations)) {
    const ann: Record<string, string> = {};
    for (const [k, v] of Object.entries(d.annotations)) if (typeof v === 'string') ann[k] = v;
    out.annotations = ann;
  }
  if (isObject(d.platform) && typeof d.platform.os === 'string' && typeof d.platform.architecture === 'string') {
    out.platform = { os: d.platform.os, architecture: d.platform.architecture };
    if (typeof d.platform.variant === 'string') out.platform.variant = d.platform.variant;
  }
  return out;
}

/** The spooled blob a descriptor points at, present and of the declared size. */
export function blobFor(sp: SpooledArchive, d: Descriptor, what: string): SpooledFile {
  const f = sp.blob(d.digest);
  if (!f) throw badArchive(`${what} ${d.digest} is missing from the archive`);
  if (f.size !== d.size) throw new DigestMismatchError(`${what} ${d.digest} is ${f.size} bytes, but its descriptor says ${d.size}`);
  return f;
}

/** Read the JSON blob a descriptor points at (present, right size, at most 4 MiB). */
export async function readBlobJson(sp: SpooledArchive, d: Descriptor, what: string): Promise<unknown> {
  if (d.size > MAX_JSON_BYTES) throw new MbuildError('MBUILD_UNSAFE_ARCHIVE', `${what} ${d.digest} is ${d.size} bytes, more than the ${MAX_JSON_BYTES} bytes allowed`);
  return sp.readJson(blobFor(sp, d, what), `${what} ${d.digest}`);
}

/** A parsed and checked image manifest. */
export function checkManifest(json: unknown, what: string): Manifest {
  if (!isObject(json)) throw badArchive(`${what} is not a JSON object`);
  if (json.schemaVersion !== 2) throw badArchive(`${what} has schemaVersion ${JSON.stringify(json.schemaVersion)}, expected 2`);
  if ('manifests' in json) throw badArchive(`${what} is an index, not an image manifest`);
  if (!Array.isArray(json.layers)) throw badArchive(`${what} has no layers list`);
  const config = checkDescriptor(json.config, `config of ${what}`);
  const layers = json.layers.map((l, i) => checkDescriptor(l, `layer ${i + 1} of ${what}`));
  return { ...(json as unknown as Manifest), config, layers };
}

/** Check an image config's rootfs against the manifest's layers (docker load does the same). */
export function checkDiffIds(config: unknown, layerCount: number, what: string): string[] {
  if (!isObject(config)) throw badArchive(`${what} is not a JSON object`);
  const rootfs = config.rootfs;
  if (!isObject(rootfs) || !Array.isArray(rootfs.diff_ids)) throw badArchive(`${what} has no rootfs.diff_ids`);
  const ids = rootfs.diff_ids.map((d, i) => assertDigest(d as string, `diff_id ${i + 1} of ${what}`));
  if (ids.length !== layerCount) throw badArchive(`${what} lists ${ids.length} diff_ids for ${layerCount} layers`);
  return ids;
}

export const isIndexType = (mt: string): boolean => mt === MediaType.index || mt === MediaType.dockerManifestList;
export const isManifestType = (mt: string): boolean => mt === MediaType.manifest || mt === MediaType.dockerManifest;
export const isImageConfigType = (mt: string): boolean => mt === MediaType.config || mt === MediaType.dockerConfig;
