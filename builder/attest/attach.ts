/**
 * Attestations attached to an image the way BuildKit's image exporter attaches them
 * (exporter/containerimage/writer.go): per platform image, one more image manifest whose layers
 * are in-toto statements (media type application/vnd.in-toto+json, annotated with their predicate
 * type) and whose config is a placeholder image config for platform unknown/unknown. Its entry in
 * the index has platform unknown/unknown and the annotations vnd.docker.reference.type =
 * attestation-manifest and vnd.docker.reference.digest = the image manifest's digest.
 */
import type { Store } from '../../store/store.js';
import { MediaType, type Descriptor, type Index, type Platform } from '../../store/oci.js';
import { imagePurl } from './sbom/purl.js';

export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE_ANNOTATION = 'in-toto.io/predicate-type';
export const REFERENCE_TYPE_ANNOTATION = 'vnd.docker.reference.type';
export const REFERENCE_DIGEST_ANNOTATION = 'vnd.docker.reference.digest';
export const ATTESTATION_MANIFEST = 'attestation-manifest';
export const UNKNOWN_PLATFORM: Platform = { architecture: 'unknown', os: 'unknown' };

export interface Attestation {
  predicateType: string;
  predicate: unknown;
}

export interface InTotoStatement {
  _type: string;
  predicateType: string;
  subject: { name: string; digest: Record<string, string> }[];
  predicate: unknown;
}

/**
 * The statement about one image: a subject per image name (as a purl with the platform), as
 * BuildKit makes them from the exporter's names; an unnamed image gets no subject (the
 * reference annotation of the attestation manifest is what binds them then, as in BuildKit).
 */
export function inTotoStatement(att: Attestation, image: { digest: string; platform: Platform; names: string[] }): InTotoStatement {
  const [alg, hex] = image.digest.split(':');
  return {
    _type: IN_TOTO_STATEMENT_V1,
    predicateType: att.predicateType,
    subject: image.names.map((n) => ({ name: imagePurl(n, image.platform), digest: { [alg!]: hex! } })),
    predicate: att.predicate,
  };
}

/** File names of the statements a local export writes beside the files (BuildKit's attestation paths). */
export const STATEMENT_FILES: Record<string, string> = {
  'https://spdx.dev/Document': 'sbom.spdx.json',
  'https://slsa.dev/provenance/v1': 'provenance.json',
  'https://slsa.dev/provenance/v0.2': 'provenance.json',
};

/** A statement about files (a local export): each regular file is a subject, by path and sha256. */
export function fileStatement(att: Attestation, files: { path: string; sha256: string }[]): InTotoStatement {
  return { _type: IN_TOTO_STATEMENT_V1, predicateType: att.predicateType, subject: files.map((f) => ({ name: f.path, digest: { sha256: f.sha256 } })), predicate: att.predicate };
}

/** Go's json.MarshalIndent(v, "", "  "): BuildKit writes manifests and indexes this way. */
function indented(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v, null, 2));
}

/** Write the attestation manifest of one image (statements, config, manifest) and return its index entry. */
export async function writeAttestationManifest(store: Store, image: Descriptor, statements: InTotoStatement[]): Promise<Descriptor> {
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const s of statements) {
    const bytes = Buffer.from(JSON.stringify(s));
    const info = await store.content.ingest(bytes);
    layers.push({ mediaType: IN_TOTO_MEDIA_TYPE, digest: info.digest, size: info.size, annotations: { [PREDICATE_TYPE_ANNOTATION]: s.predicateType } });
    diffIds.push(info.digest);
  }
  // field order and the empty "config" object as Go marshals an ocispec.Image
  const config = Buffer.from(JSON.stringify({ architecture: 'unknown', os: 'unknown', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const cfg = await store.content.ingest(config);
  const manifest = indented({
    schemaVersion: 2,
    mediaType: MediaType.manifest,
    config: { mediaType: MediaType.config, digest: cfg.digest, size: cfg.size },
    layers,
  });
  const man = await store.content.ingest(manifest);
  return {
    mediaType: MediaType.manifest,
    digest: man.digest,
    size: man.size,
    annotations: { [REFERENCE_TYPE_ANNOTATION]: ATTESTATION_MANIFEST, [REFERENCE_DIGEST_ANNOTATION]: image.digest },
    platform: UNKNOWN_PLATFORM,
  };
}

export interface PlatformImage {
  /** the image manifest as it leaves mbuild (the form of its output) */
  manifest: Descriptor;
  platform: Platform;
  attestations: Attestation[];
}

/**
 * Per image, the attestation manifest's index entry (images without attestations get none).
 * The entries go after every image's own entry, as BuildKit orders them.
 */
export async function attestationEntries(store: Store, images: PlatformImage[], names: string[]): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  for (const img of images) {
    if (!img.attestations.length) continue;
    const statements = img.attestations.map((a) => inTotoStatement(a, { digest: img.manifest.digest, platform: img.platform, names }));
    out.push(await writeAttestationManifest(store, img.manifest, statements));
  }
  return out;
}

/**
 * The index of a build with attestations: the images (with their platforms), then the
 * attestation manifests. (A single-platform build gets one too, as BuildKit makes it.)
 */
export async function writeAttestedIndex(store: Store, images: PlatformImage[], names: string[], annotations: Record<string, string> = {}): Promise<Descriptor> {
  const entries = await attestationEntries(store, images, names);
  // field order as BuildKit's JSON (the descriptor's annotations before its platform; the index's last)
  const index: Index = {
    schemaVersion: 2,
    mediaType: MediaType.index,
    manifests: [
      ...images.map((i) => ({ mediaType: i.manifest.mediaType, digest: i.manifest.digest, size: i.manifest.size, ...(i.manifest.annotations ? { annotations: i.manifest.annotations } : {}), platform: platformJson(i.platform) })),
      ...entries,
    ],
    ...(Object.keys(annotations).length ? { annotations } : {}),
  };
  const info = await store.content.ingest(indented(index));
  return { mediaType: MediaType.index, digest: info.digest, size: info.size };
}

function platformJson(p: Platform): Platform {
  return { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) };
}
