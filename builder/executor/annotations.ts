/**
 * OCI annotations as BuildKit's image exporters place them (docs/annotations.md): on each image
 * manifest (`manifest`, the default), on the index's descriptor of a manifest
 * (`manifest-descriptor`), on the index (`index`) and on the OCI layout's descriptor of the index
 * (`index-descriptor`); the two manifest kinds may name a platform (`manifest[linux/arm64]`), which
 * then applies to that platform's image only, over the unscoped value.
 *
 * Two spellings reach here: buildx's `--annotation [TYPE[PLATFORM],...:]KEY=VALUE` and BuildKit's
 * exporter keys `-o annotation[-TYPE][\[PLATFORM\]].KEY=VALUE`. What cannot be placed is refused
 * as BuildKit refuses it (a platform the build does not make, index annotations without an index,
 * descriptor or index annotations with Docker media types).
 */
import { UsageError } from '../../util/errors.js';
import { parsePlatform, platformString, type TargetPlatform } from '../../util/platform.js';

export type AnnotationKind = 'manifest' | 'manifest-descriptor' | 'index' | 'index-descriptor';
const KINDS: readonly AnnotationKind[] = ['manifest', 'manifest-descriptor', 'index', 'index-descriptor'];

export interface Annotation {
  kind: AnnotationKind;
  /** normalized os/arch[/variant]; only on the manifest kinds */
  platform?: string;
  key: string;
  value: string;
  /** how the user wrote it, for errors */
  given: string;
}

export type Annotations = readonly Annotation[];

function kindOf(word: string, given: string): AnnotationKind {
  if ((KINDS as readonly string[]).includes(word)) return word as AnnotationKind;
  throw new UsageError(`${given}: unknown annotation type "${word}" (manifest, manifest-descriptor, index, index-descriptor)`);
}

function platformOf(kind: AnnotationKind, p: string | undefined, given: string): string | undefined {
  if (p === undefined) return undefined;
  // BuildKit writes index annotations for every platform alike: a platform there means nothing
  if (kind === 'index' || kind === 'index-descriptor') throw new UsageError(`${given}: ${kind} annotations apply to the whole index and take no platform`);
  try {
    return platformString(parsePlatform(p));
  } catch (err) {
    throw new UsageError(`${given}: ${(err as Error).message}`);
  }
}

/** buildx's `--annotation`: `KEY=VALUE` (a manifest annotation) or `TYPE[PLATFORM],...:KEY=VALUE`. */
export function parseAnnotationFlag(s: string): Annotation[] {
  const given = `--annotation ${s}`;
  const eq = s.indexOf('=');
  if (eq <= 0) throw new UsageError(`${given}: expected [TYPE:]KEY=VALUE`);
  const left = s.slice(0, eq);
  const value = s.slice(eq + 1);
  const colon = left.indexOf(':');
  const key = colon < 0 ? left : left.slice(colon + 1);
  if (!key) throw new UsageError(`${given}: the key is empty`);
  if (colon < 0) return [{ kind: 'manifest', key, value, given }];
  return left
    .slice(0, colon)
    .split(',')
    .map((t) => {
      const m = /^([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?$/.exec(t);
      if (!m) throw new UsageError(`${given}: invalid annotation type "${t}" (a type, optionally with a platform in brackets: manifest[linux/arm64])`);
      const kind = kindOf(m[1]!, given);
      const platform = platformOf(kind, m[2], given);
      return { kind, ...(platform ? { platform } : {}), key, value, given };
    });
}

/**
 * BuildKit's exporter key `annotation[-TYPE][\[PLATFORM\]].KEY` (the key as the user wrote it:
 * annotation keys keep their case). Undefined when the key is not an annotation key.
 */
export function parseAnnotationOutputKey(k: string, value: string): Annotation | undefined {
  if (!/^annotation[-.[]/i.test(k)) return undefined;
  const given = `--output ${k}=${value}`;
  const m = /^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$/.exec(k);
  if (!m) throw new UsageError(`${given}: expected annotation[-TYPE][[PLATFORM]].KEY=VALUE`);
  const kind = kindOf(m[1] ?? 'manifest', given);
  const platform = platformOf(kind, m[2], given);
  return { kind, ...(platform ? { platform } : {}), key: m[3]!, value, given };
}

function collect(list: Annotations, kind: AnnotationKind, platform?: TargetPlatform): Record<string, string> {
  const out: Record<string, string> = {};
  // the unscoped values first, then the platform's own over them (BuildKit's AnnotationsGroup.Platform)
  for (const a of list) if (a.kind === kind && !a.platform) out[a.key] = a.value;
  if (platform) {
    const p = platformString(platform);
    for (const a of list) if (a.kind === kind && a.platform === p) out[a.key] = a.value;
  }
  return out;
}

/** The annotations of one platform's image manifest. */
export const manifestAnnotations = (list: Annotations, platform?: TargetPlatform) => collect(list, 'manifest', platform);
/** The annotations of the index's descriptor of one platform's manifest. */
export const manifestDescriptorAnnotations = (list: Annotations, platform?: TargetPlatform) => collect(list, 'manifest-descriptor', platform);
export const indexAnnotations = (list: Annotations) => collect(list, 'index');
export const indexDescriptorAnnotations = (list: Annotations) => collect(list, 'index-descriptor');

/**
 * Refuse what cannot be placed, as BuildKit's image writer does: a platform this build does not
 * make ("no platform ... found in source"), index annotations where no index is written ("index
 * annotations not supported for single platform export"), and anything but manifest annotations
 * with Docker media types ("cannot export annotations with oci-mediatypes=false").
 */
export function checkAnnotations(list: Annotations, where: { platforms: TargetPlatform[]; index: boolean; ociMediatypes: boolean }): void {
  const made = new Set(where.platforms.map((p) => platformString(p)));
  for (const a of list) {
    if (a.platform && !made.has(a.platform)) throw new UsageError(`${a.given}: this build makes no ${a.platform} image (it makes ${[...made].join(', ')})`);
    if ((a.kind === 'index' || a.kind === 'index-descriptor') && !where.index)
      throw new UsageError(`${a.given}: index annotations need an index, and a single-platform image without attestations has none (as BuildKit: build several --platform values, or add --provenance/--sbom)`);
    if (a.kind !== 'manifest' && !where.ociMediatypes) throw new UsageError(`${a.given}: ${a.kind} annotations need OCI media types (the output has oci-mediatypes=false)`);
  }
}
