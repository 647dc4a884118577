/** Remote references and platforms, on top of store/reference.ts's Docker-style parsing. */
import { targetPlatform } from '../util/platform.js';
import { formatReference, parseReference } from '../store/reference.js';
import type { Platform } from '../store/oci.js';
import { UsageError } from '../util/errors.js';

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

/** `linux/arm64/v8`, `linux/amd64`, `arm64` (os linux) → Platform; normalized like containerd. */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().toLowerCase().split('/');
  if (parts.length === 1) parts.unshift('linux');
  if (parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) throw new UsageError(`invalid platform "${s}" (expected os/arch[/variant], e.g. linux/arm64)`);
  const [osName, archRaw, variantRaw] = parts;
  let arch = archRaw;
  let variant: string | undefined = variantRaw;
  if (arch === 'x86_64' || arch === 'x86-64') arch = 'amd64';
  if (arch === 'aarch64') arch = 'arm64';
  if (arch === 'armhf') [arch, variant] = ['arm', 'v7'];
  if (arch === 'armel') [arch, variant] = ['arm', 'v6'];
  if (arch === 'arm64' && variant === 'v8') variant = undefined; // arm64 means v8
  const p: Platform = { os: osName, architecture: arch };
  if (variant) p.variant = variant;
  return p;
}

export function formatPlatform(p: Platform | undefined): string {
  if (!p) return 'unknown';
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}

/** Does an index entry's platform serve `want`? arm64 entries with variant v8 count as arm64. */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have || have.os !== want.os || have.architecture !== want.architecture) return false;
  const hv = have.architecture === 'arm64' && have.variant === 'v8' ? undefined : have.variant;
  if (want.variant === undefined) return true;
  return hv === want.variant;
}
