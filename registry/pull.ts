/**
 * Pull: resolve the reference (mirrors first), pick the platform's manifest from an index or
 * manifest list, then stream config and layers into the content store, each verified against
 * its digest and size before it is committed; the manifest is committed after everything it
 * names, and the name last.
 */
import PQueue from 'p-queue';
import type { Readable } from 'node:stream';
import type { Store } from '../store/store.js';
import type { ProgressReporter } from '../util/progress.js';
import type { Descriptor, Manifest, Platform } from '../store/oci.js';
import { checkDescriptor, checkDiffIds, checkManifest, isIndexType, isManifestType } from '../store/archive/plan.js';
import { RegistryClient, MAX_MANIFEST_BYTES, type FetchedManifest } from './client.js';
import { pullEndpoints } from './mirrors.js';
import { DEFAULT_PLATFORM, displayRef, formatPlatform, manifestRef, parseRemote, platformMatches, storeName, type RemoteRef } from './reference.js';
import { TransferProgress, humanBytes } from './progress.js';
import { recordSources } from './sources.js';
import { MbuildError, RegistryError } from '../util/errors.js';

export interface PullOptions {
  platform?: Platform;
  /** the platform was asked for (--platform): a single-platform image of another one is an error */
  explicitPlatform?: boolean;
  progress?: ProgressReporter;
  /** concurrent layer downloads (default 3) */
  concurrency?: number;
}

export interface PullResult {
  /** the name it is stored under */
  name: string;
  manifestDigest: string;
  /** the index or manifest list the manifest was picked from */
  indexDigest?: string;
  layers: number;
  bytes: number;
}

const MAX_INDEX_DEPTH = 2;

function parseJson(m: FetchedManifest, what: string): Record<string, unknown> {
  try {
    return JSON.parse(m.bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', `${what} is not valid JSON`);
  }
}

/** The manifest for `want` in an index; nested indexes are followed (a little). */
async function pickPlatform(client: RegistryClient, index: FetchedManifest, want: Platform, what: string, depth = 1): Promise<FetchedManifest> {
  const json = parseJson(index, what);
  if (!Array.isArray(json.manifests)) throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', `${what} has no manifests list`);
  const all: Descriptor[] = json.manifests.map((m, i) => checkDescriptor(m, `entry ${i + 1} of ${what}`));
  const matches = all.filter((d) => platformMatches(d.platform, want));
  // without a wanted variant, entries without one first (what containerd's matcher prefers)
  matches.sort((a, b) => Number(Boolean(a.platform?.variant) && a.platform?.variant !== want.variant) - Number(Boolean(b.platform?.variant) && b.platform?.variant !== want.variant));
  const pick = matches[0];
  if (!pick) {
    const have = [...new Set(all.filter((d) => d.platform && d.platform.os !== 'unknown').map((d) => formatPlatform(d.platform)))].join(', ');
    throw new MbuildError('MBUILD_NO_MATCHING_PLATFORM', `${what} has no ${formatPlatform(want)} image (it has: ${have || 'nothing'})`);
  }
  if (pick.size > MAX_MANIFEST_BYTES) throw new RegistryError('MBUILD_REGISTRY_TOO_LARGE', `manifest ${pick.digest} is ${pick.size} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`);
  const child = await client.getManifest(pick.digest);
  if (child.bytes.length !== pick.size) throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', `manifest ${pick.digest} is ${child.bytes.length} bytes, the index says ${pick.size}`);
  if (isIndexType(child.mediaType)) {
    if (depth >= MAX_INDEX_DEPTH) throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', `indexes nested more than ${MAX_INDEX_DEPTH} deep`);
    return pickPlatform(client, child, want, `index ${child.digest}`, depth + 1);
  }
  return child;
}

/** Find the reference on the first endpoint that has it (mirrors before the registry). */
async function resolveTop(ref: RemoteRef, tp: TransferProgress): Promise<{ client: RegistryClient; top: FetchedManifest }> {
  const endpoints = pullEndpoints(ref.registry);
  let lastErr: unknown;
  for (const [i, ep] of endpoints.entries()) {
    const client = new RegistryClient(ep, ref.repository);
    try {
      return { client, top: await client.getManifest(manifestRef(ref)) };
    } catch (err) {
      lastErr = err;
      if (!ep.mirror || i === endpoints.length - 1) throw err;
      tp.note(`mirror ${ep.url.host}: ${(err as Error).message}; trying the next endpoint`);
    }
  }
  throw lastErr;
}

export async function pullImage(store: Store, reference: string, opts: PullOptions = {}): Promise<PullResult> {
  const ref = parseRemote(reference);
  const want = opts.platform ?? DEFAULT_PLATFORM;
  const name = storeName(ref);
  const step = opts.progress?.step(`pulling ${displayRef(ref)}`);
  const tp = new TransferProgress(step);
  try {
    const { client, top } = await resolveTop(ref, tp);
    let indexDigest: string | undefined;
    let picked = top;
    if (isIndexType(top.mediaType)) {
      indexDigest = top.digest;
      picked = await pickPlatform(client, top, want, `index ${displayRef(ref)}`);
      tp.note(`${formatPlatform(want)}: manifest ${picked.digest}`);
    } else if (!isManifestType(picked.mediaType)) {
      throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', `${displayRef(ref)} has media type ${picked.mediaType}, which is not an image`);
    }
    const what = `manifest ${picked.digest}`;
    const manifest: Manifest = checkManifest(parseJson(picked, what), what);

    // config first: it is small, and its diff_ids must agree with the layers before they are fetched
    const cfg = manifest.config;
    if (cfg.size > MAX_MANIFEST_BYTES) throw new RegistryError('MBUILD_REGISTRY_TOO_LARGE', `config ${cfg.digest} is ${cfg.size} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`);
    if (!(await store.content.has(cfg.digest))) await store.content.ingest(client.blobStream(cfg.digest, cfg.size), { digest: cfg.digest, size: cfg.size });
    const config = await store.content.readJson<Record<string, unknown>>(cfg.digest);
    checkDiffIds(config, manifest.layers.length, `config ${cfg.digest}`);
    const got: Platform = { os: String(config.os ?? ''), architecture: String(config.architecture ?? '') };
    if (typeof config.variant === 'string') got.variant = config.variant;
    if (!indexDigest && !platformMatches(got, want)) {
      if (opts.explicitPlatform) throw new MbuildError('MBUILD_NO_MATCHING_PLATFORM', `${displayRef(ref)} is a ${formatPlatform(got)} image, not ${formatPlatform(want)}`);
      tp.note(`WARNING: ${displayRef(ref)} is a ${formatPlatform(got)} image (wanted ${formatPlatform(want)})`);
    }

    const layers = [...new Map(manifest.layers.map((l) => [l.digest, l])).values()];
    const queue = new PQueue({ concurrency: opts.concurrency ?? 3 });
    let failure: unknown;
    const active = new Set<Readable>();
    const jobs = layers.map((l) =>
      queue.add(async () => {
        if (failure) return;
        const bp = tp.blob(l.digest, l.size, 'layer');
        if (await store.content.has(l.digest)) {
          bp.done('already present');
          return;
        }
        const src = client.blobStream(l.digest, l.size);
        const counted = src.pipe(bp.meter());
        src.on('error', (e) => counted.destroy(e));
        active.add(src);
        try {
          await store.content.ingest(counted as Readable, { digest: l.digest, size: l.size });
        } catch (err) {
          src.destroy();
          if (!failure) {
            failure = err;
            // one failed layer fails the pull: stop the other downloads (their temp files go too)
            for (const other of active) if (other !== src) other.destroy(new Error('canceled'));
          }
          throw err;
        } finally {
          active.delete(src);
        }
        bp.done(`done ${humanBytes(l.size)}`);
      }),
    );
    const settled = await Promise.allSettled(jobs);
    if (failure) throw failure;
    for (const s of settled) if (s.status === 'rejected') throw s.reason;

    await store.content.ingest(picked.bytes, { digest: picked.digest, size: picked.bytes.length });
    // a multi-platform image keeps its index under the name (the store picks each platform's
    // manifest from it, so pulling a second platform adds to the name instead of replacing it)
    if (indexDigest) await store.content.ingest(top.bytes, { digest: top.digest, size: top.bytes.length });
    await store.images.put({ name, digest: indexDigest ?? picked.digest, created: new Date().toISOString() });
    await recordSources(store, client.host, ref.repository, [cfg.digest, ...layers.map((l) => l.digest)]).catch(() => undefined);
    step?.done(`${layers.length} layer${layers.length === 1 ? '' : 's'}, ${tp.summary()}`);
    return { name, manifestDigest: picked.digest, indexDigest, layers: layers.length, bytes: tp.bytes };
  } catch (err) {
    step?.fail();
    throw err;
  }
}
