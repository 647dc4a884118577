/**
 * The store's on-disk layout, in one place: every directory under ROOT, every snapshot, temp and
 * trash name, and the chain-id rule that names image layers. The snapshotter, the build cache,
 * recovery, usage and prune all take their names from here.
 *
 *   ROOT/blobs/sha256/<hex>        content, uncompressed layers and their gzip twins (content.ts)
 *   ROOT/images.json               image names (images.ts)
 *   ROOT/compressed/<hex>.json     which gzip blob a layer compressed to (compress.ts)
 *   ROOT/cache/<hex>.json          build-cache entries; file-hashes.json, last/ (builder/cache)
 *   ROOT/snapshots/<name>/fs       a snapshot's files, in overlay format; meta.json beside them once
 *                                  committed, work/ (overlay) or merged/ (copy) while active
 *       c-<32 hex>                 an image layer, named by its chain id: shared by every image with it
 *       k-<32 hex>                 a layer kept by the build cache, named by its cache key
 *       b-<pid>-<12 hex>           a build step's layer, private to its build (removed when it ends)
 *       tmp-<pid>-<tag>            in-progress work (an unpack, a mountpoint, a probe, a prune)
 *       trash-<pid>-<12 hex>       a tree renamed away, waiting for its detached deleter (trash.ts)
 *       empty                      an empty lowerdir (FROM scratch)
 *   ROOT/tmp/<prefix>-<pid>-XXXXXX temp dirs (Store.mkTemp, the RUN sandbox's state)
 *   ROOT/run/<pid>                 use markers of live processes (recovery.ts)
 *   ROOT/locks/                    lock files (lock.ts, recovery.ts's gc.lock)
 *   ROOT/registry/blob-sources.json  which repositories a blob came from (registry/sources.ts)
 *   ROOT/containers/<id>.json      `mbuild run` containers (builder/sandbox/containers.ts)
 *   ROOT/cache-mounts/<32 hex>/    RUN --mount=type=cache directories (cache-mounts.ts)
 *   ROOT/volumes/<name>/_data      `mbuild run --mount type=volume` volumes (cli/run-mount-flag.ts)
 *   ROOT/server/context/<hex>      `mbuild serve`: uploaded context files by sha256 (server/context-store.ts)
 *   ROOT/server/contexts/<key>/    `mbuild serve`: a repository's context folder, kept between builds (<key>.json: what it holds)
 *   ROOT/server/builds/<id>/       `mbuild serve`: a running build's context copy and outputs (swept at start)
 *
 * A name with a pid in it belongs to that process: once it is gone, the next Store.open sweeps it.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { sha256 } from './digest.js';

export const layout = {
  blobs: (root: string): string => path.join(root, 'blobs', 'sha256'),
  images: (root: string): string => path.join(root, 'images.json'),
  compressed: (root: string): string => path.join(root, 'compressed'),
  cache: (root: string): string => path.join(root, 'cache'),
  snapshots: (root: string): string => path.join(root, 'snapshots'),
  tmp: (root: string): string => path.join(root, 'tmp'),
  run: (root: string): string => path.join(root, 'run'),
  locks: (root: string): string => path.join(root, 'locks'),
  registry: (root: string): string => path.join(root, 'registry'),
  containers: (root: string): string => path.join(root, 'containers'),
  cacheMounts: (root: string): string => path.join(root, 'cache-mounts'),
  volumes: (root: string): string => path.join(root, 'volumes'),
  serverContext: (root: string): string => path.join(root, 'server', 'context'),
  serverBuilds: (root: string): string => path.join(root, 'server', 'builds'),
  serverContexts: (root: string): string => path.join(root, 'server', 'contexts'),
};

/** The directory inside a snapshot that holds its files (the overlay lowerdir / upperdir). */
export const SNAPSHOT_FILES = 'fs';
/** A committed snapshot's record beside its files: { parent?: names of the stack below, blob? }. */
export const SNAPSHOT_META = 'meta.json';
/** An active snapshot's overlay workdir (overlay) and its copy of the parent (copy); commit removes them. */
export const SNAPSHOT_WORK = 'work';
export const SNAPSHOT_MERGED = 'merged';
/** The snapshot of no files, the lowerdir of FROM scratch. */
export const EMPTY_SNAPSHOT = 'empty';

/**
 * OCI chain ids of a layer stack (image-spec config.md): the first is its diff_id, each next one
 * sha256("<previous chain id> <diff_id>").
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const ids: string[] = [];
  for (let i = 0; i < diffIds.length; i++) ids.push(i === 0 ? diffIds[0]! : sha256(`${ids[i - 1]} ${diffIds[i]}`));
  return ids;
}

/** Snapshot names of an image's layers, bottom-most first: each names the chain ending in that layer. */
export function imageSnapshotNames(diffIds: readonly string[]): string[] {
  return chainIds(diffIds).map((c) => 'c-' + c.slice(7, 39));
}

/** A build-cache entry's file name in layout.cache(). */
export function cacheEntryName(key: string): string {
  return `${key.replace(/^sha256:/, '')}.json`;
}

/** The snapshot the build cache keeps a step's layer in, named by the step's cache key. */
export function cacheSnapshotName(key: string): string {
  return 'k-' + key.replace(/^sha256:/, '').slice(0, 32);
}

const hex6 = (): string => randomBytes(6).toString('hex');

/** A build step's private snapshot. */
export function buildSnapshotName(): string {
  return `b-${process.pid}-${hex6()}`;
}

/** In-progress work in the snapshots dir; `tag` says what for (e.g. "probe", "prune"). */
export function tempSnapshotName(tag?: string): string {
  return `tmp-${process.pid}-${tag ? `${tag}-` : ''}${hex6()}`;
}

/** A tree renamed away for deletion. */
export function trashName(): string {
  return `trash-${process.pid}-${hex6()}`;
}

export type SnapshotNameKind = 'image' | 'cache' | 'build' | 'temp' | 'trash' | 'empty';

/** What a name in the snapshots dir is, and for per-process names the pid that made it. */
export function parseSnapshotName(name: string): { kind: SnapshotNameKind; pid?: number } | undefined {
  if (name === EMPTY_SNAPSHOT) return { kind: 'empty' };
  if (name.startsWith('c-')) return { kind: 'image' };
  if (name.startsWith('k-')) return { kind: 'cache' };
  const m = /^(b|tmp|trash)-(\d+)-/.exec(name);
  if (!m) return undefined;
  return { kind: m[1] === 'b' ? 'build' : m[1] === 'tmp' ? 'temp' : 'trash', pid: Number(m[2]) };
}

/** A name trashName() made. */
export function isTrashName(name: string): boolean {
  return /^trash-\d+-[0-9a-f]+$/.test(name);
}

/** A well-formed build-cache snapshot name (what a cache entry may point at). */
export function isCacheSnapshotName(name: string): boolean {
  return /^k-[a-f0-9]{32}$/.test(name);
}

/** The snapshot names (image and cache layers) a build-cache entry's text refers to. */
export function snapshotNamesIn(text: string): string[] {
  return [...text.matchAll(/\b([ck]-[A-Za-z0-9_.-]+)/g)].map((m) => m[1]!);
}
