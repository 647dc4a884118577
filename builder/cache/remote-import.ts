/**
 * `--cache-from`: the cache manifests and configs are read when the build starts; a layer's blob
 * is fetched only when something needs the layer's bytes (Layer.fetch: a later step mounts it,
 * or the image is written). A step of an intermediate stage that every later step finds in the
 * cache is never downloaded. A cache that cannot be read, or a blob that is missing, is a miss
 * with a warning; a blob that turns out corrupt when fetched makes the build start again
 * without that step (CacheBlobError, handled by builder/build).
 */
import path from 'node:path';
import PQueue from 'p-queue';
import { PassThrough, type Readable } from 'node:stream';
import type { Store } from '../../store/store.js';
import type { ProgressReporter } from '../../util/progress.js';
import type { CacheBackend } from '../../registry/cache-backend.js';
import type { FetchedManifest } from '../../registry/client.js';
import { MediaType, type Manifest, type Index } from '../../store/oci.js';
import type { Layer, LayerBlob } from '../../snapshotter/snapshotter.js';
import type { Layers } from '../../snapshotter/layers.js';
import { decompressStream } from '../../snapshotter/diff/decompress.js';
import { rememberGzip } from '../../store/compress.js';
import { hasLayerBlob } from '../../store/layer-blobs.js';
import { CacheBlobError } from '../../util/errors.js';
import { begin, span } from '../../util/trace.js';
import { BuildCache } from './cache.js';
import { SNAPSHOT_FILES } from '../../store/layout.js';
import type { StepRecord } from './explain.js';
import { CACHE_CONFIG_MEDIA_TYPE, decodeCache, decodeExplain, decodeInline, type CachedStep, type ExplainData, type InlineCache, INLINE_KEY } from './remote-format.js';
import type { CacheImportSpec } from './remote-spec.js';
import { pickPlatformEntry, type TargetPlatform } from '../../util/platform.js';
import { LocalCacheBackend } from './local-backend.js';


interface Source {
  backend: CacheBackend;
  steps: Map<string, CachedStep>;
  explain?: () => Promise<ExplainData | undefined>;
  inlineExplain?: InlineCache['explain'];
}

export async function openBackend(spec: { type: 'registry'; ref: string } | { type: 'local'; dir: string }, push: boolean): Promise<CacheBackend> {
  if (spec.type === 'local') return new LocalCacheBackend(spec.dir);
  const { RegistryCacheBackend } = await import('../../registry/cache-backend.js');
  return new RegistryCacheBackend(spec.ref, push);
}

const warn = (progress: ProgressReporter, text: string) => progress.info(`WARNING: ${text}`);

export class RemoteCaches {
  private readonly excluded = new Set<string>();
  private readonly fetches = new Map<string, Promise<void>>();
  /** a few layers at a time */
  private readonly downloads = new PQueue({ concurrency: 3 });
  private readonly found = new Map<string, Promise<{ layer: Layer; created: string } | undefined>>();
  /** steps hit but not fetched yet, by key: an export to the same place reuses their blobs */
  private readonly lazy = new Map<string, { source: Source; step: CachedStep }>();

  private constructor(
    private readonly sources: Source[],
    private readonly store: Store,
    private readonly snap: Layers,
    private readonly cache: BuildCache,
    private readonly progress: ProgressReporter,
  ) {}

  get empty(): boolean {
    return this.sources.length === 0;
  }

  /** platforms: the build's (an image index given as a cache is read at each one's entry) */
  static async load(specs: CacheImportSpec[], snap: Layers, cache: BuildCache, progress: ProgressReporter, platforms: TargetPlatform[]): Promise<RemoteCaches> {
    const sources: Source[] = [];
    await Promise.all(
      specs.map(async (spec) => {
        const backend = await openBackend(spec, false);
        const step = progress.step(`importing cache manifest from ${backend.label}`);
        try {
          const found = await span('cache.import-manifest', () => readSources(backend, platforms));
          sources.push(...found);
          if (!found.length) warn(progress, `${backend.label} holds no build cache`);
          const steps = found.reduce((n, f) => n + f.steps.size, 0);
          step.done(found.length ? `${steps} steps${found.length > 1 ? ` of ${found.length} platforms` : ''}` : undefined);
        } catch (err) {
          // a cache that cannot be read is not used: the build goes on without it
          step.done();
          warn(progress, `cannot import the build cache from ${backend.label}: ${(err as Error).message}`);
        }
      }),
    );
    return new RemoteCaches(sources, snap.store, snap, cache, progress);
  }

  /** A step was found corrupt when fetched: the next attempt of the build runs it. */
  exclude(key: string): void {
    this.excluded.add(key);
  }

  /** The layer a shared cache keeps under this key, ready to be fetched on first use (asked once per key). */
  lookup(key: string): Promise<{ layer: Layer; created: string } | undefined> {
    if (this.excluded.has(key)) return Promise.resolve(undefined);
    let p = this.found.get(key);
    if (!p) {
      p = this.find(key);
      this.found.set(key, p);
    }
    return p;
  }

  private async find(key: string): Promise<{ layer: Layer; created: string } | undefined> {
    for (const source of this.sources) {
      const step = source.steps.get(key);
      if (!step) continue;
      const id = BuildCache.snapshotId(key);
      const dir = path.join(this.snap.dir, id, SNAPSHOT_FILES);
      if (!step.layer) {
        await this.cache.adopt(key, undefined, step.created);
        return { layer: { id, dir, empty: true, cacheKey: key }, created: step.created };
      }
      const l = step.layer;
      const blob: LayerBlob = { diffId: l.diffId, digest: l.diffId, size: l.size, mediaType: MediaType.layerTar };
      if (!(await hasLayerBlob(this.store, l.diffId))) {
        // a blob deleted from the cache is a miss now rather than a failure later
        const present = await source.backend.hasBlob(l.desc.digest).catch(() => false);
        if (!present) {
          warn(this.progress, `the cached layer ${l.desc.digest} is missing from ${source.backend.label}: the step runs`);
          continue;
        }
        this.lazy.set(key, { source, step });
      }
      return { layer: { id, dir, empty: false, blob, cacheKey: key, fetch: () => this.fetch(source, step) }, created: step.created };
    }
    return undefined;
  }

  /** The cached blob of a step hit but never fetched, when it already lives where an export goes. */
  reusable(key: string, backendId: string): CachedStep['layer'] | undefined {
    const lazy = this.lazy.get(key);
    return lazy && lazy.source.backend.id === backendId ? lazy.step.layer : undefined;
  }

  /** The inputs another runner recorded for this step position (for "cache miss: ..." lines). */
  async explain(scope: string, position: string): Promise<StepRecord | undefined> {
    for (const source of this.sources) {
      const inline = source.inlineExplain?.[scope]?.[position];
      if (inline) return { inputs: inline.inputs };
      const data = await source.explain?.().catch(() => undefined);
      const rec = data?.scopes[scope]?.steps[position];
      if (rec && typeof rec.inputs === 'object') return rec;
    }
    return undefined;
  }

  private fetch(source: Source, step: CachedStep): Promise<void> {
    const l = step.layer!;
    let p = this.fetches.get(l.diffId);
    if (!p) {
      p = this.downloads.add(() => this.download(source, step), { throwOnTimeout: true });
      this.fetches.set(l.diffId, p);
    }
    return p;
  }

  /**
   * Start fetching a hit's layer now, for a layer the image will certainly need (a step of the
   * final stage): the download overlaps the rest of the build. A failure surfaces when the layer
   * is used (the same promise), where it makes the build start again without the step.
   */
  prefetch(layer: Layer): void {
    if (layer.fetch) layer.fetch().catch(() => undefined);
  }

  /**
   * Download the compressed blob, verified against its digest as it streams to disk. A gzip layer
   * is kept as that blob only, with the record naming it the twin of its diff_id (a "lazy" layer,
   * store/layer-blobs.ts): nothing is decompressed until something reads the files (an unpack, which
   * checks the diff_id then, a save, an uncompressed output), and a push sends the very same blob,
   * or mounts it from the cache's repository. Another compression is also kept uncompressed.
   */
  private async download(source: Source, step: CachedStep): Promise<void> {
    const end = begin('cache.fetch-layer');
    try {
      await this.downloadOnce(source, step);
    } finally {
      end();
    }
  }

  private async downloadOnce(source: Source, step: CachedStep): Promise<void> {
    const l = step.layer!;
    const content = this.store.content;
    const lazy = GZIP_LAYER.has(l.desc.mediaType);
    const have = lazy ? (await content.has(l.desc.digest)) || (await content.has(l.diffId)) : await content.has(l.diffId);
    if (!have) {
      const fetchStep = this.progress.step(`fetching cached layer ${l.desc.digest.slice(0, 19)} from ${source.backend.label}`);
      let input: Readable | undefined;
      const gz = new PassThrough();
      const raw = new PassThrough();
      try {
        input = source.backend.openBlob(l.desc);
        if (lazy) {
          await content.ingest(input, { digest: l.desc.digest, size: l.desc.size });
        } else {
          input.pipe(gz);
          input.pipe(raw);
          input.on('error', (e) => {
            gz.destroy(e);
            raw.destroy(e);
          });
          const keepCompressed = content.has(l.desc.digest).then((have) => (have ? void gz.resume() : content.ingest(gz, { digest: l.desc.digest, size: l.desc.size })));
          const unpacked = decompressStream(raw).then((s) => content.ingest(s, { digest: l.diffId, size: l.size }));
          await Promise.all([keepCompressed, unpacked]);
        }
        fetchStep.done();
      } catch (err) {
        input?.destroy();
        gz.destroy();
        raw.destroy();
        fetchStep.fail();
        throw new CacheBlobError(step.key, `the cached layer ${l.desc.digest} from ${source.backend.label} cannot be used: ${(err as Error).message}`, err);
      }
    }
    const blob: LayerBlob = { diffId: l.diffId, digest: l.diffId, size: l.size, mediaType: MediaType.layerTar };
    const where = source.backend.blobSource;
    // three small records at once (each is fsynced): one killed half-way leaves a cache entry
    // whose layer is not found (a miss next time), never a wrong one
    await Promise.all([
      // the twin record: for a lazy layer it is how the store finds the layer at all
      content.has(l.desc.digest).then((gzHere) => (gzHere && GZIP_LAYER.has(l.desc.mediaType) ? rememberGzip(this.store, l.diffId, l.desc) : undefined)),
      // a push to the cache's registry mounts the blob from there instead of uploading it
      // imported here: this module shares a chunk with the build cache every build loads (bundle split)
      where ? import('../../registry/sources.js').then((m) => m.recordSources(this.store, where.host, where.repository, [l.desc.digest])).catch(() => undefined) : undefined,
      this.cache.adopt(step.key, blob, step.created),
    ]);
    this.lazy.delete(step.key);
  }
}

const GZIP_LAYER = new Set<string>([MediaType.layerGzip, MediaType.dockerLayerGzip]);

/**
 * Read one --cache-from: a cache manifest (registry, local) or an image with an inline cache; an
 * image index (a multi-platform image) at its entry for each of the build's platforms, a source
 * each (a step's key names its platform's inputs, so each plan finds its own platform's steps).
 */
async function readSources(backend: CacheBackend, platforms: TargetPlatform[]): Promise<Source[]> {
  const top: FetchedManifest | undefined = await backend.readManifest();
  if (!top) return [];
  const json = JSON.parse(top.bytes.toString('utf8')) as Manifest & Index;
  if (!Array.isArray(json.manifests)) return [await readSource(backend, json)].filter((s): s is Source => s !== undefined);
  const picks = new Set(platforms.map((p) => pickPlatformEntry(json.manifests, p)?.digest).filter((d): d is string => d !== undefined));
  const out: Source[] = [];
  for (const digest of picks) {
    const entry = await backend.readManifest(digest);
    const source = entry ? await readSource(backend, JSON.parse(entry.bytes.toString('utf8')) as Manifest & Index) : undefined;
    if (source) out.push(source);
  }
  return out;
}

/** One manifest: a cache manifest, or an image whose config holds an inline cache. */
async function readSource(backend: CacheBackend, json: Manifest & Index): Promise<Source | undefined> {
  if (!json.config || !Array.isArray(json.layers)) return undefined;
  const config = await backend.readSmallBlob(json.config);
  if (json.config.mediaType === CACHE_CONFIG_MEDIA_TYPE) {
    const parsed = decodeCache(json, config);
    let explained: Promise<ExplainData | undefined> | undefined;
    const desc = parsed.explain;
    return {
      backend,
      steps: parsed.steps,
      explain: desc ? () => (explained ??= backend.readSmallBlob(desc).then(decodeExplain)) : undefined,
    };
  }
  const imageConfig = JSON.parse(config.toString('utf8')) as Record<string, unknown>;
  const inline = decodeInline(json, imageConfig);
  if (!inline) return undefined;
  return { backend, steps: inline.steps, inlineExplain: (imageConfig[INLINE_KEY] as InlineCache).explain };
}
