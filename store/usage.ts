/**
 * What the store holds and what of it is in use (`mbuild system df`, and the plan `mbuild prune`
 * carries out):
 *
 *   images     names in images.json, and the blobs their manifests reach (indexes, manifests, configs, layers)
 *   blobs      ROOT/blobs/sha256/*; in use: reachable from a name, or named by a build-cache entry
 *   snapshots  ROOT/snapshots/c-* (unpacked image layers); in use: a layer chain of a named image,
 *              or named by a build-cache entry
 *   cache      ROOT/cache/*.json entries and the k-* snapshots they name (all of it goes with --all)
 *   cache mounts ROOT/cache-mounts/* (RUN --mount=type=cache, store/cache-mounts.ts; go with --all)
 *   gzip twins ROOT/compressed/<hex>.json memos (store/compress.ts): the gzip form of an
 *              uncompressed layer blob; kept while a named image has that layer (not with --all)
 *              or a build-cache entry names it; a layer from a shared cache may be kept as its
 *              twin alone (store/layer-blobs.ts), which --all keeps too while an image has it
 *   temp       work in progress of running builds and loads (what killed runs left is swept by
 *              every Store.open, store/recovery.ts)
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Store } from './store.js';
import { isDigest } from './digest.js';
import { imageSnapshotNames, layout, parseSnapshotName, snapshotNamesIn } from './layout.js';
import { findStaleTemp, treeBytes } from './recovery.js';
import { pidAlive } from '../util/process.js';
import { humanBytes } from '../util/format.js';
import { CacheMounts } from './cache-mounts.js';

export { treeBytes };

export interface Bucket {
  count: number;
  bytes: number;
  /** what `mbuild prune` (cache: `prune --all`) would free */
  reclaimableCount: number;
  reclaimableBytes: number;
}

export interface Usage {
  images: Bucket;
  blobs: Bucket;
  snapshots: Bucket;
  cache: Bucket;
  /** RUN --mount=type=cache directories (ROOT/cache-mounts; all of it goes with --all) */
  cacheMounts: Bucket;
  temp: Bucket;
}

export interface StoreAnalysis {
  names: number;
  /** every blob: digest → size */
  blobs: Map<string, number>;
  /** blobs reachable from image names */
  imageBlobs: Set<string>;
  /** blobs and snapshot ids named by build-cache entries */
  cacheBlobs: Set<string>;
  cacheSnapshots: Set<string>;
  /** ROOT/cache/*.json */
  cacheEntries: string[];
  /** snapshot dir names by kind */
  imageSnapshots: string[]; // c-*
  cacheSnapshotDirs: string[]; // k-*
  /** c-* ids of the layer chains of named images */
  usedSnapshots: Set<string>;
  /** ROOT/compressed memos: the gzip twin `gzip` of layer blob `source` */
  gzipMemos: { file: string; source: string; gzip?: string }[];
}

const MAX_INDEX_DEPTH = 4;
const MAX_CACHE_ENTRY = 4 << 20;

async function readJsonBlob(store: Store, digest: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v = await store.content.readJson<unknown>(digest);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined; // missing or unreadable: nothing reachable through it
  }
}

function descriptorDigest(d: unknown): string | undefined {
  const digest = (d as { digest?: unknown } | null)?.digest;
  return typeof digest === 'string' && isDigest(digest) ? digest : undefined;
}

/** Add everything `digest` (an index or a manifest) reaches; collect the image layer chains. */
async function walkManifest(store: Store, digest: string, blobs: Set<string>, chains: Set<string>, depth: number): Promise<void> {
  if (blobs.has(digest) || depth > MAX_INDEX_DEPTH) return;
  blobs.add(digest);
  const json = await readJsonBlob(store, digest);
  if (!json) return;
  if (Array.isArray(json.manifests)) {
    for (const m of json.manifests) {
      const d = descriptorDigest(m);
      if (d) await walkManifest(store, d, blobs, chains, depth + 1);
    }
    return;
  }
  const cfg = descriptorDigest(json.config);
  if (cfg) blobs.add(cfg);
  for (const l of Array.isArray(json.layers) ? json.layers : []) {
    const d = descriptorDigest(l);
    if (d) blobs.add(d);
  }
  if (!cfg) return;
  const config = await readJsonBlob(store, cfg);
  const diffIds = (config?.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
  if (Array.isArray(diffIds) && diffIds.every((d) => typeof d === 'string' && isDigest(d))) {
    for (const id of imageSnapshotNames(diffIds as string[])) chains.add(id);
  }
}

async function names(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => [] as string[]);
}

export async function analyzeStore(store: Store): Promise<StoreAnalysis> {
  const root = store.root;
  const blobs = new Map<string, number>();
  for (const n of await names(store.content.dir)) {
    if (!/^[a-f0-9]{64}$/.test(n)) continue;
    const st = await fs.lstat(path.join(store.content.dir, n)).catch(() => null);
    if (st?.isFile()) blobs.set('sha256:' + n, st.size);
  }
  const records = await store.images.list();
  const imageBlobs = new Set<string>();
  const usedSnapshots = new Set<string>();
  for (const r of records) if (isDigest(r.digest)) await walkManifest(store, r.digest, imageBlobs, usedSnapshots, 0);

  const cacheDir = layout.cache(root);
  const cacheEntries = (await names(cacheDir)).filter((n) => n.endsWith('.json') && !n.startsWith('.')).map((n) => path.join(cacheDir, n));
  const cacheBlobs = new Set<string>();
  const cacheSnapshots = new Set<string>();
  for (const file of cacheEntries) {
    const st = await fs.lstat(file).catch(() => null);
    if (!st?.isFile() || st.size > MAX_CACHE_ENTRY) continue;
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    for (const m of text.matchAll(/sha256:[a-f0-9]{64}/g)) cacheBlobs.add(m[0]);
    for (const name of snapshotNamesIn(text)) cacheSnapshots.add(name);
  }
  const gzipMemos: StoreAnalysis['gzipMemos'] = [];
  const memoDir = layout.compressed(root);
  for (const n of await names(memoDir)) {
    const m = /^([a-f0-9]{64})\.json$/.exec(n);
    if (!m) continue;
    const text = await fs.readFile(path.join(memoDir, n), 'utf8').catch(() => '');
    const gzip = /"digest"\s*:\s*"(sha256:[a-f0-9]{64})"/.exec(text)?.[1];
    gzipMemos.push({ file: path.join(memoDir, n), source: 'sha256:' + m[1], gzip });
  }
  const snaps = await names(layout.snapshots(root));
  return {
    names: records.length,
    blobs,
    imageBlobs,
    cacheBlobs,
    cacheSnapshots,
    cacheEntries,
    imageSnapshots: snaps.filter((n) => parseSnapshotName(n)?.kind === 'image'),
    cacheSnapshotDirs: snaps.filter((n) => parseSnapshotName(n)?.kind === 'cache'),
    usedSnapshots,
    gzipMemos,
  };
}

/**
 * Blobs kept although no manifest names them: the gzip twins of a named image's layers (unless
 * --all), and, as long as the build cache is kept, of the layers its entries name. A layer kept
 * lazily (store/layer-blobs.ts: its twin and no tar) is reachable only this way.
 */
function keptTwins(a: StoreAnalysis, all: boolean): Set<string> {
  const out = new Set<string>();
  for (const m of a.gzipMemos) {
    if (!m.gzip) continue;
    const lazy = !a.blobs.has(m.source);
    // --all keeps an image's layers but not their twins; a lazy layer's twin is the layer itself
    if (a.imageBlobs.has(m.source) && (!all || lazy)) out.add(m.gzip);
    else if (!all && a.cacheBlobs.has(m.source)) out.add(m.gzip);
  }
  return out;
}

/** Blobs `mbuild prune` removes: not reachable from a name, and (unless --all) not named by the cache. */
export function unusedBlobs(a: StoreAnalysis, all: boolean): string[] {
  const twins = keptTwins(a, all);
  return [...a.blobs.keys()].filter((d) => !a.imageBlobs.has(d) && !twins.has(d) && (all || !a.cacheBlobs.has(d))).sort();
}

/**
 * gzip memos whose twin will be gone after prune, or whose source goes while the twin stays. A
 * memo of a source that was never there is a lazy layer's record (store/layer-blobs.ts): it stays
 * with its twin.
 */
export function staleMemos(a: StoreAnalysis, removedBlobs: Set<string>): string[] {
  return a.gzipMemos.filter((m) => !m.gzip || removedBlobs.has(m.gzip) || !a.blobs.has(m.gzip) || removedBlobs.has(m.source)).map((m) => m.file);
}

/** c-* snapshots `mbuild prune` removes: no named image has that layer chain, and (unless --all) no cache entry names it. */
export function unusedSnapshots(a: StoreAnalysis, all: boolean): string[] {
  return a.imageSnapshots.filter((id) => !a.usedSnapshots.has(id) && (all || !a.cacheSnapshots.has(id))).sort();
}

function bucket(count: number, bytes: number, reclaimableCount: number, reclaimableBytes: number): Bucket {
  return { count, bytes, reclaimableCount, reclaimableBytes };
}

export async function storeUsage(store: Store): Promise<Usage> {
  const a = await analyzeStore(store);
  const sum = (ds: Iterable<string>) => [...ds].reduce((t, d) => t + (a.blobs.get(d) ?? 0), 0);
  // a lazily kept layer (store/layer-blobs.ts) is there as its gzip twin
  const lazyTwins = a.gzipMemos.filter((m) => m.gzip && a.imageBlobs.has(m.source) && !a.blobs.has(m.source) && a.blobs.has(m.gzip)).map((m) => m.gzip!);
  const present = [...new Set([...a.imageBlobs, ...lazyTwins])].filter((d) => a.blobs.has(d));
  const unused = unusedBlobs(a, false);

  const snapDir = layout.snapshots(store.root);
  const snapBytes = new Map<string, number>();
  for (const id of [...a.imageSnapshots, ...a.cacheSnapshotDirs]) snapBytes.set(id, await treeBytes(path.join(snapDir, id)));
  const sumSnaps = (ids: string[]) => ids.reduce((t, id) => t + (snapBytes.get(id) ?? 0), 0);
  const unusedSnaps = unusedSnapshots(a, false);

  let cacheBytes = sumSnaps(a.cacheSnapshotDirs);
  for (const f of a.cacheEntries) cacheBytes += (await fs.lstat(f).catch(() => null))?.size ?? 0;

  const mounts = await new CacheMounts(store.root).list();
  const mountBytes = mounts.reduce((t, m) => t + m.bytes, 0);

  // Store.open has already swept what dead runs left: what is here is running builds' work in progress
  const temp = (await findStaleTemp(store.root, true)).filter((t) => !t.path.startsWith(layout.run(store.root) + '/') && !t.path.startsWith(layout.locks(store.root) + '/'));
  let tempBytes = 0;
  let staleCount = 0;
  let staleBytes = 0;
  for (const t of temp) {
    const b = await treeBytes(t.path);
    tempBytes += b;
    if (t.pid !== undefined && !pidAlive(t.pid)) {
      staleCount++;
      staleBytes += b;
    }
  }

  return {
    images: bucket(a.names, sum(present), 0, 0),
    blobs: bucket(a.blobs.size, sum(a.blobs.keys()), unused.length, sum(unused)),
    snapshots: bucket(a.imageSnapshots.length, sumSnaps(a.imageSnapshots), unusedSnaps.length, sumSnaps(unusedSnaps)),
    cache: bucket(a.cacheEntries.length, cacheBytes, a.cacheEntries.length, cacheBytes),
    cacheMounts: bucket(mounts.length, mountBytes, mounts.length, mountBytes),
    temp: bucket(temp.length, tempBytes, staleCount, staleBytes),
  };
}

export { humanBytes };

/** The `mbuild system df` table. */
export function formatUsage(u: Usage): string {
  const rows: string[][] = [['TYPE', 'TOTAL', 'SIZE', 'RECLAIMABLE']];
  const pct = (b: Bucket) => (b.bytes > 0 ? ` (${Math.round((100 * b.reclaimableBytes) / b.bytes)}%)` : '');
  const add = (name: string, b: Bucket, note = '') => rows.push([name, String(b.count), humanBytes(b.bytes), `${humanBytes(b.reclaimableBytes)}${pct(b)}${note}`]);
  add('Images', u.images);
  add('Blobs', u.blobs);
  add('Snapshots', u.snapshots);
  add('Build cache', u.cache, ' (prune --all)');
  add('Cache mounts', u.cacheMounts, ' (prune --all)');
  add('Temp', u.temp);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]! + 3))).join('')).join('\n') + '\n';
}
