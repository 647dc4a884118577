/**
 * The shared cache's container, BuildKit's: an OCI image manifest whose config has media type
 * `application/vnd.buildkit.cacheconfig.v0` and whose layers are the cached layer blobs (gzip).
 * The config keeps BuildKit's shape (`layers`: the blobs, `records`: one per step with the layer
 * it made) so tools that read BuildKit caches parse it; the record digests are mbuild's step keys
 * (builder/cache/keys.ts), which BuildKit's never equal. What mbuild needs besides lives under
 * `mbuild`: each step's parent key, creation time (image history times come from it, so a hit
 * on another runner gives the same image digest), last export time (eviction) and the layer's
 * uncompressed size. The inputs of each step, to explain a miss on another runner, are in one
 * more blob (gzip JSON), read only when a miss needs explaining.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { MediaType, type Descriptor, type Manifest } from '../../store/oci.js';
import { isDigest, sha256 } from '../../store/digest.js';
import type { StepRecord } from './explain.js';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildkit.cacheconfig.v0';
export const EXPLAIN_MEDIA_TYPE = 'application/vnd.mbuild.cache.explain.v1+json+gzip';
/** the image config key of an inline cache (BuildKit's own key holds records mbuild cannot make) */
export const INLINE_KEY = 'mbuild.cache.v0';

export interface CachedLayer {
  /** the compressed blob in the cache */
  desc: Descriptor;
  diffId: string;
  /** uncompressed size: the size of the layer in the local store (digest = diffId) */
  size: number;
}

export interface CachedStep {
  key: string;
  /** the key below this step (a step's key, `image:<config digest>` or `scratch`) */
  parent: string;
  created: string;
  /** last export that carried it */
  used: string;
  /** undefined: the step changed no files */
  layer?: CachedLayer;
}

/** Per Dockerfile and target ("scope"), the inputs of each step position, as MissExplainer records them. */
export interface ExplainData {
  scopes: Record<string, { used: string; steps: Record<string, StepRecord> }>;
}

interface ConfigV0 {
  layers: { blob: string; parent: number; annotations: { mediaType: string; diffID: string; size: number; createdAt: string } }[];
  records: { digest: string; layers?: { layer: number; createdAt: string }[] }[];
  mbuild: { version: 1; steps: { key: string; parent: string; created: string; used: string; layer?: number; size?: number }[] };
}

export interface ParsedCache {
  steps: Map<string, CachedStep>;
  explain?: Descriptor;
}

export class CacheFormatError extends Error {}

const isStr = (v: unknown): v is string => typeof v === 'string';

/** The config, the manifest and the explain blob for a set of steps. */
export function encodeCache(steps: CachedStep[], explain: ExplainData | undefined): { config: Buffer; manifest: Buffer; explain?: Buffer; layers: Descriptor[] } {
  const sorted = [...steps].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const layers: Descriptor[] = [];
  const index = new Map<string, number>();
  const cfg: ConfigV0 = { layers: [], records: [], mbuild: { version: 1, steps: [] } };
  for (const s of sorted) {
    let li: number | undefined;
    if (s.layer) {
      li = index.get(s.layer.desc.digest);
      if (li === undefined) {
        li = layers.length;
        index.set(s.layer.desc.digest, li);
        layers.push({
          mediaType: s.layer.desc.mediaType,
          digest: s.layer.desc.digest,
          size: s.layer.desc.size,
          annotations: { 'containerd.io/uncompressed': s.layer.diffId, 'buildkit/createdat': s.created },
        });
        cfg.layers.push({ blob: s.layer.desc.digest, parent: -1, annotations: { mediaType: s.layer.desc.mediaType, diffID: s.layer.diffId, size: s.layer.desc.size, createdAt: s.created } });
      }
    }
    cfg.records.push({ digest: s.key, ...(li !== undefined ? { layers: [{ layer: li, createdAt: s.created }] } : {}) });
    cfg.mbuild.steps.push({ key: s.key, parent: s.parent, created: s.created, used: s.used, ...(li !== undefined ? { layer: li, size: s.layer!.size } : {}) });
  }
  const config = Buffer.from(JSON.stringify(cfg));
  const explainBytes = explain && Object.keys(explain.scopes).length ? gzipSync(JSON.stringify(explain)) : undefined;
  const manifestLayers = [...layers];
  if (explainBytes) manifestLayers.push({ mediaType: EXPLAIN_MEDIA_TYPE, digest: sha256(explainBytes), size: explainBytes.length });
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.manifest,
    config: { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: sha256(config), size: config.length },
    layers: manifestLayers,
  };
  return { config, manifest: Buffer.from(JSON.stringify(manifest)), explain: explainBytes, layers };
}

/** Parse a cache manifest and its config; anything malformed is a CacheFormatError (the cache is then not used). */
export function decodeCache(manifest: Manifest, config: Buffer): ParsedCache {
  let cfg: ConfigV0;
  try {
    cfg = JSON.parse(config.toString('utf8')) as ConfigV0;
  } catch {
    throw new CacheFormatError('the cache config is not JSON');
  }
  if (!cfg || typeof cfg !== 'object' || !Array.isArray(cfg.layers) || cfg.mbuild?.version !== 1 || !Array.isArray(cfg.mbuild.steps)) {
    throw new CacheFormatError('the cache config was not written by mbuild (no mbuild section)');
  }
  const byDigest = new Map(manifest.layers.map((l) => [l.digest, l]));
  const steps = new Map<string, CachedStep>();
  for (const s of cfg.mbuild.steps) {
    if (!s || !isStr(s.key) || !isDigest(s.key) || !isStr(s.parent) || !isStr(s.created) || !isStr(s.used)) throw new CacheFormatError('a cache step is malformed');
    let layer: CachedLayer | undefined;
    if (s.layer !== undefined) {
      const l = cfg.layers[s.layer];
      const desc = l && byDigest.get(l.blob);
      if (!l || !desc || !isDigest(desc.digest) || !isDigest(l.annotations?.diffID) || typeof s.size !== 'number') throw new CacheFormatError(`the layer of cache step ${s.key} is malformed`);
      layer = { desc: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size }, diffId: l.annotations.diffID, size: s.size };
    }
    steps.set(s.key, { key: s.key, parent: s.parent, created: s.created, used: s.used, layer });
  }
  const explain = manifest.layers.find((l) => l.mediaType === EXPLAIN_MEDIA_TYPE);
  return { steps, explain };
}

/** the explain records of one cache, uncompressed, at most (a cache is untrusted input) */
const MAX_EXPLAIN_BYTES = 64 << 20;

export function decodeExplain(bytes: Buffer): ExplainData {
  const data = JSON.parse(gunzipSync(bytes, { maxOutputLength: MAX_EXPLAIN_BYTES }).toString('utf8')) as ExplainData;
  if (!data || typeof data.scopes !== 'object') throw new CacheFormatError('the explain blob is malformed');
  return data;
}

/** The inline form: the final image's steps, their layers named by position in the image. */
export interface InlineCache {
  steps: { key: string; parent: string; created: string; layer?: number; size?: number }[];
  explain?: Record<string, Record<string, { inputs: Record<string, string> }>>;
}

/** Read an inline cache out of an image config and its manifest (layers by index). */
export function decodeInline(manifest: Manifest, config: Record<string, unknown>): ParsedCache | undefined {
  const inline = config[INLINE_KEY] as InlineCache | undefined;
  if (inline === undefined) return undefined;
  const diffIds = (config.rootfs as { diff_ids?: string[] } | undefined)?.diff_ids ?? [];
  if (!inline || !Array.isArray(inline.steps) || diffIds.length !== manifest.layers.length) throw new CacheFormatError('the inline cache is malformed');
  const steps = new Map<string, CachedStep>();
  for (const s of inline.steps) {
    if (!s || !isStr(s.key) || !isDigest(s.key) || !isStr(s.parent) || !isStr(s.created)) throw new CacheFormatError('an inline cache step is malformed');
    let layer: CachedLayer | undefined;
    if (s.layer !== undefined) {
      const desc = manifest.layers[s.layer];
      if (!desc || typeof s.size !== 'number' || !isDigest(diffIds[s.layer])) throw new CacheFormatError(`the layer of inline cache step ${s.key} is malformed`);
      layer = { desc: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size }, diffId: diffIds[s.layer]!, size: s.size };
    }
    steps.set(s.key, { key: s.key, parent: s.parent, created: s.created, used: s.created, layer });
  }
  return { steps };
}
