/**
 * Push: for every blob, HEAD first (nothing is sent for a blob the repository has), then a
 * cross-repository mount when the blob is known to be in another repository of the same
 * registry, else an upload (monolithic, or chunked for big blobs). Layers go concurrently, then
 * the config, then the manifest (skipped when the tag already points at it).
 */
import PQueue from 'p-queue';
import { promises as fs } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Store } from '../store/store.js';
import type { ProgressReporter } from '../util/progress.js';
import { MediaType, type Descriptor } from '../store/oci.js';
import { isIndexJson } from '../store/store.js';
import { normalizeName } from '../store/reference.js';
import { RegistryClient, backoffMs, isRetryable, manifestMediaType } from './client.js';
import { pushEndpoint } from './mirrors.js';
import { displayRef, parseRemote } from './reference.js';
import { TransferProgress, humanBytes, type BlobProgress } from './progress.js';
import { knownSources, recordSources } from './sources.js';
import { MbuildError } from '../util/errors.js';
import { distributable, distributableIndex } from '../store/compress.js';
import { hasLayerBlob, keepLayerTar } from '../store/layer-blobs.js';

export interface PushOptions {
  progress?: ProgressReporter;
  /** concurrent layer uploads (default 3) */
  concurrency?: number;
  /** blobs larger than this go in chunks of this size (default 32 MiB, env MBUILD_PUSH_CHUNK_SIZE) */
  chunkSize?: number;
  /** push this manifest (already in the content store, e.g. in the form `-o` asked for) instead of the name's */
  manifestDigest?: string;
}

export interface PushResult {
  name: string;
  digest: string;
  uploaded: number;
  mounted: number;
  existing: number;
  bytes: number;
}

function defaultChunkSize(): number {
  const v = Number(process.env.MBUILD_PUSH_CHUNK_SIZE);
  return Number.isSafeInteger(v) && v >= 1024 ? v : 32 << 20;
}

type BlobOutcome = 'existing' | 'mounted' | 'uploaded';

async function uploadChunked(client: RegistryClient, store: Store, location: URL, d: Descriptor, chunkSize: number, bp: BlobProgress): Promise<URL> {
  const fh = await fs.open(store.content.path(d.digest), 'r');
  try {
    let loc = location;
    for (let start = 0; start < d.size; start += chunkSize) {
      const len = Math.min(chunkSize, d.size - start);
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, start);
      if (bytesRead !== len) throw new MbuildError('MBUILD_STORE', `blob ${d.digest} is shorter than its ${d.size} bytes`);
      loc = await client.patchChunk(loc, start, buf);
      bp.add(len);
    }
    return loc;
  } finally {
    await fh.close();
  }
}

async function pushBlob(client: RegistryClient, store: Store, d: Descriptor, tp: TransferProgress, chunkSize: number, label: string): Promise<BlobOutcome> {
  const bp = tp.blob(d.digest, d.size, label);
  // an uncompressed layer may be kept only as its gzip twin (store/layer-blobs.ts): written out if it has to be sent
  if (!(await hasLayerBlob(store, d.digest))) throw new MbuildError('MBUILD_STORE', `blob ${d.digest} is missing from the local store`);
  if (await client.blobExists(d.digest)) {
    bp.done('already in the repository');
    return 'existing';
  }
  let location: URL | undefined;
  for (const from of (await knownSources(store, d.digest, client.host, client.repository)).slice(0, 3)) {
    const r = await client.startUpload({ digest: d.digest, from }).catch(() => undefined);
    if (r?.mounted) {
      bp.done(`mounted from ${from}`);
      return 'mounted';
    }
    if (r) {
      location = r.location; // the registry could not mount: it opened an upload instead
      break;
    }
  }
  await keepLayerTar(store, d.digest);
  for (let attempt = 1; ; attempt++) {
    try {
      location ??= ((await client.startUpload()) as { location: URL }).location;
      if (d.size <= chunkSize) {
        await client.finishUpload(location, d.digest, { size: d.size, open: () => store.content.open(d.digest).pipe(bp.meter()) });
      } else {
        const last = await uploadChunked(client, store, location, d, chunkSize, bp);
        await client.finishUpload(last, d.digest);
      }
      bp.done(`pushed ${humanBytes(d.size)}`);
      return 'uploaded';
    } catch (err) {
      location = undefined; // a failed session is not reused: start over
      if (attempt >= 3 || !isRetryable(err)) throw err;
      await sleep(backoffMs(attempt));
    }
  }
}

export async function pushImage(store: Store, reference: string, opts: PushOptions = {}): Promise<PushResult> {
  const ref = parseRemote(reference);
  // the name (or the digest given) may hold a multi-platform index: then every manifest, then the index
  const topDigest = opts.manifestDigest ?? (await store.images.get(normalizeName(reference)))?.digest;
  const top = topDigest ? await store.content.readJson<Record<string, unknown>>(topDigest).catch(() => undefined) : undefined;
  if (topDigest && top && isIndexJson(top)) {
    if (ref.digest && ref.digest !== topDigest) throw new MbuildError('MBUILD_USAGE', `${reference}: the local image index has digest ${topDigest}`);
    if (opts.manifestDigest || ref.digest) return pushIndex(store, reference, topDigest, opts);
    // by name: each platform's layers leave compressed, under an index of those manifests
    return pushIndex(store, reference, (await distributableIndex(store, topDigest)).digest, opts);
  }
  const img = opts.manifestDigest ? await store.requireImage(opts.manifestDigest) : await store.requireImage(reference);
  if (ref.digest && ref.digest !== img.manifestDigest) throw new MbuildError('MBUILD_USAGE', `${reference}: the local image has digest ${img.manifestDigest}`);
  const step = opts.progress?.step(`pushing ${displayRef(ref)}`);
  const tp = new TransferProgress(step);
  const chunkSize = opts.chunkSize ?? defaultChunkSize();
  try {
    const client = new RegistryClient(pushEndpoint(ref.registry), ref.repository, true);
    // layers leave the store compressed (the gzip twin is made once and remembered)
    const { manifestDigest, manifest } = ref.digest || opts.manifestDigest ? { manifestDigest: img.manifestDigest, manifest: img.manifest } : await distributable(store, img.manifestDigest);
    const manifestBytes = await store.content.readBytes(manifestDigest);
    const mediaType = manifest.mediaType || manifestMediaType(manifestBytes, undefined);
    if (mediaType !== MediaType.manifest && mediaType !== MediaType.dockerManifest) throw new MbuildError('MBUILD_USAGE', `${reference}: cannot push a ${mediaType}`);
    const counts: Record<BlobOutcome, number> = { existing: 0, mounted: 0, uploaded: 0 };
    const layers = [...new Map(manifest.layers.map((l) => [l.digest, l])).values()];
    const queue = new PQueue({ concurrency: opts.concurrency ?? 3 });
    const results = await Promise.allSettled(layers.map((l) => queue.add(() => pushBlob(client, store, l, tp, chunkSize, 'layer'), { throwOnTimeout: true })));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    for (const r of results) if (r.status === 'fulfilled') counts[r.value]++;
    counts[await pushBlob(client, store, manifest.config, tp, chunkSize, 'config')]++;

    const tag = ref.digest ? manifestDigest : (ref.tag ?? 'latest');
    const current = await client.headManifest(tag);
    if (current?.digest === manifestDigest) tp.note(`manifest ${manifestDigest} already tagged ${tag}`);
    else {
      const got = await client.putManifest(tag, mediaType, manifestBytes);
      if (got && got !== manifestDigest) throw new MbuildError('MBUILD_REGISTRY', `${client.host} stored the manifest as ${got}, expected ${manifestDigest}`);
      tp.note(`manifest ${manifestDigest} tagged ${tag}`);
    }
    await recordSources(store, client.host, ref.repository, [manifest.config.digest, ...layers.map((l) => l.digest)]).catch(() => undefined);
    step?.done(`${counts.uploaded} pushed, ${counts.mounted} mounted, ${counts.existing} already there, ${tp.summary()}`);
    return { name: displayRef(ref), digest: manifestDigest, ...counts, bytes: tp.bytes };
  } catch (err) {
    step?.fail();
    throw err;
  }
}

/**
 * Push an index (a build with attestations, or several platforms): each manifest it lists with
 * its config and layers, put by digest, then the index under the tag (skipped when the tag
 * already points at it). Blobs the repository has are not sent.
 */
export async function pushIndex(store: Store, reference: string, indexDigest: string, opts: PushOptions = {}): Promise<PushResult> {
  const ref = parseRemote(reference);
  const step = opts.progress?.step(`pushing ${displayRef(ref)}`);
  const tp = new TransferProgress(step);
  const chunkSize = opts.chunkSize ?? defaultChunkSize();
  try {
    const client = new RegistryClient(pushEndpoint(ref.registry), ref.repository, true);
    const indexBytes = await store.content.readBytes(indexDigest);
    const index = JSON.parse(indexBytes.toString('utf8')) as { mediaType?: string; manifests?: Descriptor[] };
    const counts: Record<BlobOutcome, number> = { existing: 0, mounted: 0, uploaded: 0 };
    const sent: string[] = [];
    for (const d of index.manifests ?? []) {
      const bytes = await store.content.readBytes(d.digest);
      const manifest = JSON.parse(bytes.toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
      const blobs = [...new Map([...manifest.layers, manifest.config].map((l) => [l.digest, l])).values()];
      const queue = new PQueue({ concurrency: opts.concurrency ?? 3 });
      const results = await Promise.allSettled(blobs.map((l) => queue.add(() => pushBlob(client, store, l, tp, chunkSize, l === manifest.config ? 'config' : 'layer'), { throwOnTimeout: true })));
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      for (const r of results) if (r.status === 'fulfilled') counts[r.value]++;
      const got = await client.putManifest(d.digest, d.mediaType, bytes);
      if (got && got !== d.digest) throw new MbuildError('MBUILD_REGISTRY', `${client.host} stored manifest ${d.digest} as ${got}`);
      sent.push(...blobs.map((b) => b.digest));
    }
    const tag = ref.digest ? indexDigest : (ref.tag ?? 'latest');
    const current = await client.headManifest(tag);
    if (current?.digest === indexDigest) tp.note(`index ${indexDigest} already tagged ${tag}`);
    else {
      const got = await client.putManifest(tag, index.mediaType ?? MediaType.index, indexBytes);
      if (got && got !== indexDigest) throw new MbuildError('MBUILD_REGISTRY', `${client.host} stored the index as ${got}, expected ${indexDigest}`);
      tp.note(`index ${indexDigest} tagged ${tag}`);
    }
    await recordSources(store, client.host, ref.repository, sent).catch(() => undefined);
    step?.done(`${counts.uploaded} pushed, ${counts.mounted} mounted, ${counts.existing} already there, ${tp.summary()}`);
    return { name: displayRef(ref), digest: indexDigest, ...counts, bytes: tp.bytes };
  } catch (err) {
    step?.fail();
    throw err;
  }
}
