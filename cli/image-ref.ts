/**
 * An image as a docker user names it on the command line: a name, an image ID (the config digest,
 * `sha256:…` as `build -q` prints it), or a unique prefix of the ID as `mbuild images` shows it.
 * Unnamed builds are found too: each build records ID → manifest in ROOT/image-ids.json (the
 * blobs stay until `mbuild prune`, which removes what no name keeps).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ResolvedImage, Store } from '../store/store.js';
import { writeFileAtomic } from '../store/fsutil.js';
import { withLock } from '../store/lock.js';
import { isDigest } from '../store/digest.js';
import { normalizeName } from '../store/reference.js';
import { ImageNotFoundError, MbuildError, UsageError } from '../util/errors.js';
import { isIndexJson } from '../store/store.js';
import { platformString, type TargetPlatform } from '../util/platform.js';

interface IdRecord {
  id: string; // config digest
  manifest: string; // manifest digest
}

const MAX_RECORDS = 500;
const file = (store: Store) => path.join(store.root, 'image-ids.json');

async function readIds(store: Store): Promise<IdRecord[]> {
  try {
    const data = JSON.parse(await fs.readFile(file(store), 'utf8')) as { ids?: IdRecord[] };
    return (data.ids ?? []).filter((r) => isDigest(r.id) && isDigest(r.manifest));
  } catch {
    return [];
  }
}

/** Remember a built image's ID (newest first, a bounded list). */
export async function recordImageId(store: Store, id: string, manifest: string): Promise<void> {
  await withLock(path.join(store.root, 'locks', 'image-ids.lock'), async () => {
    const known = await readIds(store);
    // a rebuild that changed nothing: the record is first already (no write, no two fsyncs)
    if (known[0]?.id === id && known[0].manifest === manifest) return;
    const ids = [{ id, manifest }, ...known.filter((r) => r.id !== id)].slice(0, MAX_RECORDS);
    // not durable: a record lost in a power cut only means that ID of an unnamed build is not found
    // again (named images are in the store's image list); two fsyncs under a lock every build
    // waited for cost concurrent builds on one store up to 0.2 s each
    await writeFileAtomic(file(store), JSON.stringify({ ids }) + '\n', 0o644, { durable: false });
  });
}

export async function forgetImageId(store: Store, id: string): Promise<void> {
  await withLock(path.join(store.root, 'locks', 'image-ids.lock'), async () => {
    await writeFileAtomic(file(store), JSON.stringify({ ids: (await readIds(store)).filter((r) => r.id !== id) }) + '\n');
  });
}

/** Every known image: config digest → manifest digest, and the names on it. */
export async function knownImages(store: Store): Promise<Map<string, { manifest: string; names: string[] }>> {
  const out = new Map<string, { manifest: string; names: string[] }>();
  for (const rec of await store.images.list()) {
    const m = await store.content.readJson<{ config?: { digest?: string }; manifests?: unknown[] }>(rec.digest).catch(() => undefined);
    // a multi-platform image's ID is its index digest (as with containerd's image store)
    const id = isIndexJson(m) ? rec.digest : m?.config?.digest;
    if (!id) continue;
    const e = out.get(id) ?? { manifest: rec.digest, names: [] };
    e.names.push(rec.name);
    out.set(id, e);
  }
  for (const r of await readIds(store)) if (!out.has(r.id) && (await store.content.has(r.manifest))) out.set(r.id, { manifest: r.manifest, names: [] });
  return out;
}

const ID_LIKE = /^(sha256:)?[a-f0-9]{1,64}$/;

/**
 * A name or digest in the store, through a multi-platform index: the `platform` asked for (an
 * error naming the platforms there when the store has no such image), else this machine's, else
 * the first platform the store has.
 */
export async function resolvePlatform(store: Store, ref: string, platform?: TargetPlatform): Promise<ResolvedImage | undefined> {
  const img = await store.resolveImage(ref, platform).catch(() => undefined);
  if (img) return img;
  const digest = /^sha256:[a-f0-9]{64}$/.test(ref) ? ref : await store.images.get(normalizeSafe(ref)).then((r) => r?.digest);
  if (!digest) return undefined;
  const top = await store.content.readJson<unknown>(digest).catch(() => undefined);
  if (!isIndexJson(top)) {
    const single = platform ? await store.resolveImage(digest).catch(() => undefined) : undefined;
    if (single && platform) throw new MbuildError('MBUILD_NO_MATCHING_PLATFORM', `${ref} is a ${platformString({ os: single.config.os, architecture: single.config.architecture, variant: single.config.variant })} image, not ${platformString(platform)}`);
    return undefined;
  }
  const entries = await store.indexEntries(digest);
  const present = [];
  for (const e of entries) if (await store.content.has(e.digest)) present.push(e);
  if (platform || !present.length) {
    const have = present.map((e) => platformString(e.platform!)).join(', ');
    throw new MbuildError('MBUILD_NO_MATCHING_PLATFORM', `${ref} has no ${platform ? platformString(platform) : 'platform'} image in the store (it has: ${have || 'nothing'}; mbuild pull --platform P fetches another)`);
  }
  return store.resolveImage(ref, present[0]!.platform);
}

function normalizeSafe(ref: string): string {
  try {
    return normalizeName(ref);
  } catch {
    return ref;
  }
}

/** The image an argument names (name first, as docker does, then an ID or a unique ID prefix); `platform` picks from a multi-platform image. */
export async function resolveImageArg(store: Store, arg: string, platform?: TargetPlatform): Promise<ResolvedImage & { id: string; names: string[] }> {
  const full = /^sha256:[a-f0-9]{64}$/.test(arg) || /^[a-f0-9]{64}$/.test(arg);
  if (!full) {
    const byName = await resolvePlatform(store, arg, platform);
    if (byName && byName.name) {
      const top = byName.indexDigest ?? byName.manifestDigest;
      const names = (await store.images.list()).filter((r) => r.digest === top).map((r) => r.name);
      return { ...byName, id: byName.indexDigest ?? byName.configDigest, names };
    }
  }
  if (ID_LIKE.test(arg)) {
    const want = arg.startsWith('sha256:') ? arg : `sha256:${arg}`;
    const known = await knownImages(store);
    const hits = [...known.entries()].filter(([id]) => id.startsWith(want));
    // a manifest digest names its image too (as `mbuild inspect` shows it in Digest)
    if (!hits.length) for (const [id, e] of known) if (e.manifest === want) hits.push([id, e]);
    if (hits.length > 1) throw new UsageError(`${arg} is ambiguous: it is the start of ${hits.length} image IDs (give more of it)`);
    if (hits.length === 1) {
      const [id, e] = hits[0];
      const img = await resolvePlatform(store, e.manifest, platform);
      if (!img) throw new ImageNotFoundError(arg);
      return { ...img, name: e.names[0], id, names: e.names };
    }
  }
  throw new ImageNotFoundError(arg);
}
