/**
 * `-o, --output` as `docker buildx build` reads it: a bare path (local directory, `-` a tar on
 * stdout) or comma-separated key=value options. Every key is either applied or refused: a key
 * this type does not take is one error naming it (BuildKit would ignore some silently; a typo
 * such as `pushh=true` must not build and skip the push).
 */
import { UsageError } from '../../util/errors.js';
import { parseAnnotationOutputKey, type Annotation } from './annotations.js';

export type OutputType = 'oci' | 'docker' | 'tar' | 'local' | 'image' | 'registry';
export type Compression = 'gzip' | 'uncompressed' | 'zstd';

export interface OutputSpec {
  type: OutputType;
  dest?: string;
  /** names for the image (comma-separated in `name=`, quoted as BuildKit's CSV allows) */
  names: string[];
  push: boolean;
  /** oci/docker: false writes the layout as a directory at dest */
  tar: boolean;
  compression: Compression;
  /** recompress layers that are stored in another compression (base image layers) */
  forceCompression: boolean;
  /** compression-level=: gzip 0-9, zstd 0-22, for the layers this output compresses */
  compressionLevel?: number;
  /** push-by-digest=true: push the manifest by its digest only (names without a tag), no tag moves */
  pushByDigest: boolean;
  /** as given; undefined: the exporter's default (ociMediatypesFor) */
  ociMediatypes?: boolean;
  /** annotation[-TYPE][[PLATFORM]].KEY=V: for this output's manifests, index and descriptors (annotations.ts) */
  annotations: Annotation[];
}

const IMAGE_KEYS = ['name', 'push', 'push-by-digest', 'compression', 'compression-level', 'force-compression', 'oci-mediatypes', 'annotation', 'store'];
const KEYS: Record<OutputType, string[]> = {
  image: IMAGE_KEYS,
  registry: IMAGE_KEYS,
  oci: ['dest', 'name', 'tar', 'compression', 'compression-level', 'force-compression', 'oci-mediatypes', 'annotation'],
  docker: ['dest', 'name', 'tar', 'compression', 'compression-level', 'force-compression', 'oci-mediatypes', 'annotation'],
  local: ['dest'],
  tar: ['dest'],
};

/**
 * The other keys BuildKit's exporters take (exporter/containerimage/exptypes/keys.go, the oci and
 * local exporters, exporter/util/epoch), each refused with why: none can be applied as asked.
 */
const REFUSED_KEYS: Record<string, string> = {
  unpack: 'mbuild has no containerd image store to unpack into (an image it builds is already unpacked in its snapshots, ready for mbuild run)',
  'registry.insecure': 'use mbuild --insecure-registry HOST (or insecureRegistries in $MBUILD_CONFIG)',
  insecure: 'use mbuild --insecure-registry HOST (or insecureRegistries in $MBUILD_CONFIG)',
  'dangling-name-prefix': 'mbuild names no dangling images (an unnamed build is listed as <none>)',
  'danging-name-empty-only': 'mbuild names no dangling images (an unnamed build is listed as <none>)',
  'name-canonical': 'mbuild names images by tag only (pull or run by digest instead)',
  'oci-artifact': 'attestation manifests are written as image manifests (BuildKit\'s default form); the OCI artifact form is not supported',
  'attestation-inline': 'attestations go into the index as attestation manifests; other placements are not supported',
  'prefer-nondist-layers': 'mbuild writes only distributable layers',
  'source-date-epoch': 'use --build-arg SOURCE_DATE_EPOCH=N',
  'rewrite-timestamp': 'layer file times are not rewritten (use --build-arg SOURCE_DATE_EPOCH=N for the config and history times)',
  'platform-split': 'several platforms always get a folder each (linux_amd64/, ...) and one platform none, as BuildKit\'s default; other splits are not supported',
  buildinfo: 'BuildKit removed build info; mbuild writes none',
  'buildinfo-attrs': 'BuildKit removed build info; mbuild writes none',
};

/**
 * oci-mediatypes when not given, per exporter, as BuildKit v0.12-v0.31 decides it
 * (exporter/oci/export.go, containerimage/opts.go EnableOCITypes):
 * - `oci`: OCI media types;
 * - `docker`: Docker media types, unless something needs OCI ones: zstd layers (BuildKit turns
 *   OCI types on for them), attestations (so does BuildKit) or manifest annotations (-o annotation.K=V or --annotation; Docker's manifest schema has no field for them);
 * - `image`/`registry`: OCI media types, what mbuild stores and `mbuild push` pushes and what
 *   buildx pushes today (its default provenance attestation turns OCI types on, and BuildKit
 *   v0.32 made them the default); oci-mediatypes=false gives docker 20.10's Docker types.
 */
export function ociMediatypesFor(out: OutputSpec, imageHasAnnotations = false, attested = false): boolean {
  if (out.ociMediatypes !== undefined) return out.ociMediatypes;
  if (out.type === 'docker') return out.compression === 'zstd' || attested || imageHasAnnotations || out.annotations.length > 0;
  return true;
}

/** Split on commas outside double quotes (`name="a,b"` is one field, as in BuildKit's CSV form). */
function fields(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of spec) {
    if (ch === '"') quoted = !quoted;
    else if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (quoted) throw new UsageError(`--output ${spec}: unbalanced quote`);
  out.push(cur);
  return out;
}

function bool(key: string, v: string): boolean {
  if (v === '' || v === 'true') return true;
  if (v === 'false') return false;
  throw new UsageError(`--output ${key}=${v}: use true or false`);
}

export function parseOutput(spec: string): OutputSpec {
  const base: OutputSpec = { type: 'local', names: [], push: false, pushByDigest: false, tar: true, compression: 'gzip', forceCompression: false, annotations: [] };
  if (!spec.includes('=')) return { ...base, type: spec === '-' ? 'tar' : 'local', dest: spec };
  const kv: [string, string][] = [];
  for (const part of fields(spec)) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new UsageError(`--output ${spec}: "${part}" is not key=value`);
    kv.push([part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim()]);
  }
  const type = (kv.find(([k]) => k === 'type')?.[1] ?? 'local') as OutputType;
  if (!(type in KEYS)) throw new UsageError(`--output type=${type} is not supported (image, registry, oci, docker, tar, local)`);
  const out: OutputSpec = { ...base, type, push: type === 'registry' };
  for (const [key, v] of kv) {
    if (key === 'type') continue;
    const root = /^annotation[-.[]/.test(key) ? 'annotation' : key;
    if (Object.hasOwn(REFUSED_KEYS, key)) throw new UsageError(`--output ${key}= is not supported: ${REFUSED_KEYS[key]}`);
    if (!KEYS[type].includes(root)) throw new UsageError(`--output type=${type} does not take ${key}= (it takes ${KEYS[type].join(', ')})`);
    switch (root) {
      case 'dest':
        out.dest = v;
        break;
      case 'name':
        out.names.push(...v.split(',').map((n) => n.trim()).filter(Boolean));
        break;
      case 'push':
        out.push = bool(key, v);
        break;
      case 'tar':
        out.tar = bool(key, v);
        break;
      case 'store':
        // the local store is the only place an image can go before a push: store=false cannot apply
        if (!bool(key, v)) throw new UsageError('--output store=false is not supported: mbuild keeps every image it builds in its store');
        break;
      case 'compression':
        if (v === 'estargz') throw new UsageError('--output compression=estargz is not supported (use gzip, zstd or uncompressed)');
        if (v !== 'gzip' && v !== 'uncompressed' && v !== 'zstd') throw new UsageError(`--output compression=${v}: use gzip, zstd or uncompressed`);
        out.compression = v;
        break;
      case 'push-by-digest':
        out.pushByDigest = bool(key, v);
        break;
      case 'compression-level':
        if (!/^\d+$/.test(v)) throw new UsageError(`--output compression-level=${v}: give a whole number (gzip 0-9, zstd 0-22)`);
        out.compressionLevel = Number(v);
        break;
      case 'force-compression':
        out.forceCompression = bool(key, v);
        break;
      case 'oci-mediatypes':
        out.ociMediatypes = bool(key, v);
        break;
      case 'annotation':
        out.annotations.push(parseAnnotationOutputKey(key, v)!);
        break;
    }
  }
  if (out.compressionLevel !== undefined) {
    const max = { gzip: 9, zstd: 22, uncompressed: -1 }[out.compression];
    if (max < 0) throw new UsageError('--output compression-level= needs compression=gzip or zstd (uncompressed layers have no level)');
    if (out.compressionLevel > max) throw new UsageError(`--output compression-level=${out.compressionLevel}: ${out.compression} takes 0-${max}`);
  }
  if (out.pushByDigest && !out.push) throw new UsageError('--output push-by-digest=true needs push=true (or type=registry)');
  if ((type === 'local' || type === 'tar' || type === 'oci' || type === 'docker') && !out.dest) {
    if (type === 'local' || !out.tar) throw new UsageError(`--output type=${type} needs dest=PATH`);
    throw new UsageError(`--output type=${type} needs dest=FILE (or dest=- for stdout)`);
  }
  // a directory cannot go to stdout (buildx: "dest cannot be stdout for local exporter")
  if ((type === 'local' || ((type === 'oci' || type === 'docker') && !out.tar)) && out.dest === '-') throw new UsageError(`--output type=${type}${type === 'local' ? '' : ',tar=false'},dest=-: a directory cannot be written to stdout (use type=tar, or a tar archive)`);
  return out;
}
