/**
 * `--cache-to type=registry|local`: the steps of this build (mode=min: those of the final image;
 * mode=max: every stage's) are merged into what the cache already holds and written back.
 * Concurrent exports to one ref merge instead of clobbering: read, merge, upload, check that the
 * manifest did not move meanwhile (else merge again), write, and read back to see our steps
 * survived, at once and again after a few times the registry's latency (else merge again). A local directory is changed under a lock. Steps not exported for
 * `max-age` are dropped; a local directory is also trimmed to `max-size`, least recent first.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import PQueue from 'p-queue';
import type { Store } from '../../store/store.js';
import type { ProgressReporter } from '../../util/progress.js';
import type { CacheBackend } from '../../registry/cache-backend.js';
import type { Layer } from '../../snapshotter/snapshotter.js';
import type { Layers } from '../../snapshotter/layers.js';
import type { Manifest } from '../../store/oci.js';
import { gzipLayer } from '../../store/compress.js';
import { sha256 } from '../../store/digest.js';
import { MbuildError } from '../../util/errors.js';
import type { StepRecord } from './explain.js';
import { CACHE_CONFIG_MEDIA_TYPE, decodeCache, decodeExplain, encodeCache, type CachedStep, type ExplainData } from './remote-format.js';
import type { CacheExportSpec } from './remote-spec.js';
import { openBackend, type RemoteCaches } from './remote-import.js';
import { LocalCacheBackend } from './local-backend.js';

/** A step of this build, as the build saw it. */
export interface BuiltStep {
  key: string;
  parent: string;
  created: string;
  layer: Layer;
}

export interface ExportInput {
  steps: BuiltStep[];
  /** the inputs of every step position of this build, under its scope (Dockerfile and target) */
  scope: string;
  records: Record<string, StepRecord>;
}

const ATTEMPTS = 6;

export async function exportCache(
  spec: Extract<CacheExportSpec, { type: 'registry' | 'local' }>,
  input: ExportInput,
  deps: { store: Store; snap: Layers; remote?: RemoteCaches; progress: ProgressReporter },
): Promise<void> {
  const backend = await openBackend(spec, true);
  const step = deps.progress.step(`exporting cache to ${backend.label} (mode=${spec.mode})`);
  try {
    const now = new Date().toISOString();
    const ours = await prepareSteps(input.steps, backend, deps, now);
    const explain: ExplainData = { scopes: { [input.scope]: { used: now, steps: input.records } } };
    const written = await backend.exclusive(() => mergeAndWrite(backend, spec, ours, explain, deps.store, now, deps.progress));
    step.done(`${ours.length} steps, ${written.steps} in the cache, manifest ${written.digest}`);
  } catch (err) {
    step.fail();
    const msg = `cannot export the build cache to ${backend.label}: ${(err as Error).message}`;
    if (spec.ignoreError) {
      deps.progress.info(`WARNING: ${msg}`);
      return;
    }
    throw new MbuildError('MBUILD_CACHE_EXPORT', msg, { cause: err });
  }
}

/** Our steps with their compressed layers (made once per layer; remembered by the store). */
async function prepareSteps(steps: BuiltStep[], backend: CacheBackend, deps: { store: Store; snap: Layers; remote?: RemoteCaches }, now: string): Promise<(CachedStep & { upload: boolean })[]> {
  const out: (CachedStep & { upload: boolean })[] = [];
  for (const s of steps) {
    const base = { key: s.key, parent: s.parent, created: s.created, used: now };
    if (s.layer.empty) {
      out.push({ ...base, upload: false });
      continue;
    }
    // hit in a cache at this very place and never fetched: its blob is there already
    const reuse = deps.remote?.reusable(s.key, backend.id);
    if (reuse) {
      out.push({ ...base, layer: reuse, upload: false });
      continue;
    }
    const blob = await deps.snap.ensureBlob(s.layer);
    if (blob.digest !== blob.diffId) continue; // not an uncompressed layer of this store: nothing to key its size on
    const gz = await gzipLayer(deps.store, { mediaType: blob.mediaType, digest: blob.digest, size: blob.size });
    out.push({ ...base, layer: { desc: { mediaType: gz.mediaType, digest: gz.digest, size: gz.size }, diffId: blob.diffId, size: blob.size }, upload: true });
  }
  return out;
}

async function readCurrent(backend: CacheBackend, progress?: ProgressReporter): Promise<{ digest?: string; steps: Map<string, CachedStep>; explain?: ExplainData }> {
  const cur = await backend.readManifest();
  if (!cur) return { steps: new Map() };
  try {
    const manifest = JSON.parse(cur.bytes.toString('utf8')) as Manifest;
    if (manifest.config?.mediaType !== CACHE_CONFIG_MEDIA_TYPE) throw new Error(`it is not a build cache (config ${manifest.config?.mediaType})`);
    const parsed = decodeCache(manifest, await backend.readSmallBlob(manifest.config));
    const explain = parsed.explain ? await backend.readSmallBlob(parsed.explain).then(decodeExplain).catch(() => undefined) : undefined;
    return { digest: cur.digest, steps: parsed.steps, explain };
  } catch (err) {
    progress?.info(`WARNING: replacing the unreadable cache at ${backend.label}: ${(err as Error).message}`);
    return { digest: cur.digest, steps: new Map() };
  }
}

/** Theirs (not too old) and ours (ours win for the same key), trimmed to the size limit. */
export function mergeSteps(theirs: Iterable<CachedStep>, ours: CachedStep[], nowMs: number, maxAgeMs: number, maxBytes = Infinity): CachedStep[] {
  const merged = new Map<string, CachedStep>();
  for (const s of theirs) if (nowMs - Date.parse(s.used) <= maxAgeMs) merged.set(s.key, s);
  for (const s of ours) merged.set(s.key, s);
  if (maxBytes === Infinity) return [...merged.values()];
  const mine = new Set(ours.map((s) => s.key));
  const sizeOf = (steps: Iterable<CachedStep>) => {
    const blobs = new Map<string, number>();
    for (const s of steps) if (s.layer) blobs.set(s.layer.desc.digest, s.layer.desc.size);
    return [...blobs.values()].reduce((a, b) => a + b, 0);
  };
  // least recently exported first; this export's steps stay whatever their size
  const candidates = [...merged.values()].filter((s) => !mine.has(s.key)).sort((a, b) => Date.parse(a.used) - Date.parse(b.used));
  let total = sizeOf(merged.values());
  for (const s of candidates) {
    if (total <= maxBytes) break;
    merged.delete(s.key);
    total = sizeOf(merged.values());
  }
  return [...merged.values()];
}

function mergeExplain(theirs: ExplainData | undefined, ours: ExplainData, nowMs: number, maxAgeMs: number): ExplainData {
  const scopes: ExplainData['scopes'] = {};
  for (const [k, v] of Object.entries(theirs?.scopes ?? {})) if (v && nowMs - Date.parse(v.used) <= maxAgeMs) scopes[k] = v;
  Object.assign(scopes, ours.scopes);
  return { scopes };
}

/** Merge `ours` into the cache at `backend` and write it (call under backend.exclusive()). */
export async function mergeAndWrite(
  backend: CacheBackend,
  spec: Extract<CacheExportSpec, { type: 'registry' | 'local' }>,
  ours: (CachedStep & { upload: boolean })[],
  explain: ExplainData,
  store: Store,
  now: string,
  progress?: ProgressReporter,
): Promise<{ digest: string; steps: number }> {
  const nowMs = Date.parse(now);
  const maxBytes = spec.type === 'local' ? spec.maxBytes : Infinity;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const cur = await readCurrent(backend, attempt === 1 ? progress : undefined);
    const steps = mergeSteps(cur.steps.values(), ours, nowMs, spec.maxAgeMs, maxBytes);
    const enc = encodeCache(steps, mergeExplain(cur.explain, explain, nowMs, spec.maxAgeMs));
    const uploads = new PQueue({ concurrency: 3 });
    await Promise.all(ours.filter((s) => s.upload && s.layer).map((s) => uploads.add(() => backend.putBlob(s.layer!.desc, () => store.content.open(s.layer!.desc.digest)), { throwOnTimeout: true })));
    const cfgDesc = JSON.parse(enc.manifest.toString('utf8')) as Manifest;
    await backend.putBlob(cfgDesc.config, () => streamOf(enc.config));
    if (enc.explain) {
      const d = cfgDesc.layers[cfgDesc.layers.length - 1]!;
      await backend.putBlob(d, () => streamOf(enc.explain!));
    }
    // someone else wrote meanwhile: merge with theirs again
    const checked = Date.now();
    if ((await backend.readManifest())?.digest !== cur.digest) {
      await sleep(50 * attempt * Math.random());
      continue;
    }
    await backend.putManifest(enc.manifest);
    // how long this registry takes from a check to a written tag: another writer whose check came
    // before our write may land its own write up to about that long after ours
    const latency = Date.now() - checked;
    const digest = sha256(enc.manifest);
    if (backend instanceof LocalCacheBackend) {
      // under the lock: the blobs no step names any more go
      await backend.removeUnreferenced(new Set([digest, cfgDesc.config.digest, ...cfgDesc.layers.map((l) => l.digest)]));
      return { digest, steps: steps.length };
    }
    // a registry has no compare-and-swap: read back that our steps are there, at once and again
    // after a few times the registry's latency (a write that replaced ours without them is seen,
    // and merged again), else merge and write again
    if ((await survived(backend, ours)) && (await sleep(readBackDelay(latency)), await survived(backend, ours))) return { digest, steps: steps.length };
  }
  throw new MbuildError('MBUILD_CACHE_EXPORT', `the cache kept changing under ${ATTEMPTS} concurrent writes`);
}

/** The wait before the second read-back: three times the check-to-write latency, at least 150 ms, jittered. */
export function readBackDelay(latencyMs: number): number {
  return Math.max(150, 3 * latencyMs) + Math.random() * 150;
}

async function survived(backend: CacheBackend, ours: CachedStep[]): Promise<boolean> {
  const now = await readCurrent(backend);
  return ours.every((s) => now.steps.has(s.key));
}

function streamOf(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}
