/**
 * `mbuild prune [--all]`: remove what no image name needs (store/usage.ts says what that is).
 *
 * Runs as the store's only user (recovery.withExclusiveStore): a build or load that has the store
 * open makes prune refuse, and one that starts meanwhile waits for it, so nothing a running build
 * has written but not yet named can disappear. The order keeps the store consistent if prune is
 * killed half-way: stale temp work, then (--all) cache entries before the k-* snapshots they
 * name, then unused blobs and c-* snapshots, none of which a name or a remaining entry reaches.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Store } from './store.js';
import { layout, tempSnapshotName } from './layout.js';
import { findStaleTemp, mountsAt, removeUnmounted, withExclusiveStore } from './recovery.js';
import { CacheMounts } from './cache-mounts.js';
import { analyzeStore, staleMemos, treeBytes, unusedBlobs, unusedSnapshots } from './usage.js';

export interface Freed {
  count: number;
  bytes: number;
}

export interface PruneReport {
  blobs: Freed;
  snapshots: Freed;
  cache: Freed;
  cacheMounts: Freed;
  temp: Freed;
  /** left alone because something is mounted there */
  skipped: string[];
}

export interface PruneOptions {
  /** also empty the build cache (ROOT/cache entries and their k-* snapshots) */
  all?: boolean;
  /** only the RUN --mount=type=cache directories (`--filter type=exec.cachemount`) */
  onlyCacheMounts?: boolean;
}

export async function pruneStore(store: Store, opts: PruneOptions = {}): Promise<PruneReport> {
  return withExclusiveStore(store.root, async () => {
    if (!opts.onlyCacheMounts) return pruneExclusive(store, opts.all ?? false);
    const report: PruneReport = { blobs: freed(), snapshots: freed(), cache: freed(), cacheMounts: freed(), temp: freed(), skipped: [] };
    await pruneCacheMounts(store, report);
    return report;
  });
}

async function pruneCacheMounts(store: Store, report: PruneReport): Promise<void> {
  const r = await new CacheMounts(store.root).removeAll();
  report.cacheMounts.count += r.count;
  report.cacheMounts.bytes += r.bytes;
  report.skipped.push(...r.skipped);
}

async function pruneExclusive(store: Store, all: boolean): Promise<PruneReport> {
  const report: PruneReport = { blobs: freed(), snapshots: freed(), cache: freed(), cacheMounts: freed(), temp: freed(), skipped: [] };
  const snapDir = layout.snapshots(store.root);
  // what Store.open already swept counts too
  const counted = (p: string) => !p.startsWith(layout.run(store.root) + path.sep) && !p.startsWith(layout.locks(store.root) + path.sep);
  const swept = (store.recovered?.removed ?? []).filter(counted);
  report.temp.count += swept.length;
  report.temp.bytes += swept.length ? (store.recovered?.bytes ?? 0) : 0;
  const remove = async (p: string, into: Freed, bytes?: number) => {
    const size = bytes ?? (await treeBytes(p));
    if (await removeUnmounted(p)) {
      into.count++;
      into.bytes += size;
    } else report.skipped.push(p);
  };
  // A snapshot goes away in one step (renamed to a temp name first): a prune killed half-way
  // through rm -r must not leave a c-*/k-* that looks complete but has lost files.
  const removeSnapshot = async (id: string, into: Freed) => {
    const p = path.join(snapDir, id);
    if ((await mountsAt(p)).length) {
      report.skipped.push(p);
      return;
    }
    const size = await treeBytes(p);
    const doomed = path.join(snapDir, tempSnapshotName('prune'));
    try {
      await fs.rename(p, doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await fs.rm(doomed, { recursive: true, force: true });
    into.count++;
    into.bytes += size;
  };

  // nobody else has the store open: every temp entry is stale, whoever made it
  for (const t of await findStaleTemp(store.root, true)) await remove(t.path, counted(t.path) ? report.temp : freed());

  if (all) {
    const a = await analyzeStore(store);
    for (const entry of a.cacheEntries) await remove(entry, report.cache);
    for (const id of a.cacheSnapshotDirs) await removeSnapshot(id, report.cache);
    // an entry counts once, whatever the number of snapshots it had
    report.cache.count = a.cacheEntries.length;
    await pruneCacheMounts(store, report);
  }

  const a = await analyzeStore(store);
  const doomed = unusedBlobs(a, all);
  // a memo goes before the blob it names, so no memo ever points at a missing blob for long
  for (const memo of staleMemos(a, new Set(doomed))) await fs.rm(memo, { force: true });
  for (const d of doomed) await remove(store.content.path(d), report.blobs, a.blobs.get(d));
  for (const id of unusedSnapshots(a, all)) await removeSnapshot(id, report.snapshots);
  return report;
}

function freed(): Freed {
  return { count: 0, bytes: 0 };
}
