/**
 * The image index of a multi-platform build: one manifest descriptor per platform (with the
 * platform its config names), then any extra manifests (attestation manifests attach here, with
 * platform unknown/unknown and their reference annotations), written to the content store.
 */
import { MediaType, type Descriptor, type ImageConfig, type Index } from '../../store/oci.js';
import type { Store } from '../../store/store.js';

export interface WrittenIndex {
  digest: string;
  size: number;
  index: Index;
}

/** A platform image's manifest as an index entry: its platform is what its config says. */
export function platformDescriptor(image: { manifestDigest: string; manifestSize: number; config: ImageConfig; mediaType?: string }, annotations: Record<string, string> = {}): Descriptor {
  const c = image.config;
  return {
    mediaType: image.mediaType ?? MediaType.manifest,
    digest: image.manifestDigest,
    size: image.manifestSize,
    // --annotation manifest-descriptor: (the OCI descriptor's field order: annotations before platform)
    ...(Object.keys(annotations).length ? { annotations } : {}),
    platform: { architecture: c.architecture, os: c.os, ...(c.variant ? { variant: c.variant } : {}) },
  };
}

/** Writes the index (platform manifests in the order given, then `extra`), returns its digest. */
export async function writeIndex(store: Store, manifests: Descriptor[], opts: { extra?: Descriptor[]; annotations?: Record<string, string>; mediaType?: string } = {}): Promise<WrittenIndex> {
  const index: Index = {
    schemaVersion: 2,
    mediaType: opts.mediaType ?? MediaType.index,
    manifests: [...manifests, ...(opts.extra ?? [])],
    ...(opts.annotations && Object.keys(opts.annotations).length ? { annotations: opts.annotations } : {}),
  };
  const { digest, size } = await store.content.putJson(index);
  return { digest, size, index };
}
