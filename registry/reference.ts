/** Remote references and platforms, on top of store/reference.ts's Docker-style parsing. */
import { parsePlatform, platformMatches, platformString, targetPlatform } from '../util/platform.js';
import { formatReference, parseReference } from '../store/reference.js';
import type { Platform } from '../store/oci.js';

export interface RemoteRef {
  /** as in the name: docker.io, ghcr.io, 127.0.0.1:5000 */
  registry: string;
  /** library/busybox */
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseRemote(input: string): RemoteRef {
  const r = parseReference(input);
  return { registry: r.domain, repository: r.path, tag: r.tag, digest: r.digest };
}

/** The manifest reference to ask the registry for: the digest when pinned, else the tag. */
export function manifestRef(ref: RemoteRef): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/**
 * The name an image is stored under: `domain/path:tag`, or `domain/path@digest` for a pinned
 * reference (a tag next to a digest is ignored, as Docker does when it resolves).
 */
export function storeName(ref: RemoteRef): string {
  if (ref.digest) return formatReference({ domain: ref.registry, path: ref.repository, digest: ref.digest });
  return formatReference({ domain: ref.registry, path: ref.repository, tag: ref.tag ?? 'latest' });
}

export function displayRef(ref: RemoteRef): string {
  return formatReference({ domain: ref.registry, path: ref.repository, tag: ref.tag, digest: ref.digest });
}

/** The host that serves a registry's API (Docker Hub's name is not its API host). */
export function apiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

/** the machine's platform (util/platform.ts decides it for pulls, ARGs and configs alike) */
export const DEFAULT_PLATFORM: Platform = targetPlatform();

export { parsePlatform, platformMatches };

export function formatPlatform(p: Platform | undefined): string {
  return p ? platformString(p) : 'unknown';
}
