/**
 * What the overlay and copy snapshotters share: a committed snapshot is ROOT/snapshots/<name>/fs in
 * overlay format with meta.json beside it, so commit, remove, stat and walk are the same for both;
 * they differ in how an active snapshot is laid out and mounted, and how its changes are found.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EMPTY_SNAPSHOT, SNAPSHOT_FILES, SNAPSHOT_MERGED, SNAPSHOT_META, SNAPSHOT_WORK, parseSnapshotName } from '../store/layout.js';
import { SnapshotError, SnapshotExistsError } from '../util/errors.js';
import { isEmptyLayerDir } from './diff/layer-tar.js';
import type { CommitOptions, Layer, Mount, SnapshotInfo, Snapshotter } from './snapshotter.js';

/** An active snapshot or a view of this process. */
export interface Live {
  kind: 'active' | 'view';
  /** names of the stack it is over, bottom-most first */
  chain: string[];
  mounts: Mount[];
  /** commit's first half is done (a retry under another name skips it) */
  finished?: { opaqueDirs?: string[] };
}

interface Meta {
  parent?: string[];
  blob?: Layer['blob'];
}

export abstract class BaseSnapshotter implements Snapshotter {
  abstract readonly kind: 'overlay' | 'copy';
  protected readonly live = new Map<string, Live>();
  readonly emptyDir: string;

  constructor(readonly dir: string) {
    this.emptyDir = path.join(dir, EMPTY_SNAPSHOT);
  }

  protected base(name: string): string {
    return path.join(this.dir, name);
  }
  protected files(name: string): string {
    return path.join(this.dir, name, SNAPSHOT_FILES);
  }

  abstract prepare(key: string, parent: readonly Layer[]): Promise<Mount[]>;
  abstract view(key: string, parent: readonly Layer[]): Promise<Mount[]>;
  /** Leave the layer's changes, in overlay format, in key/fs; remove what only the active snapshot needed. */
  protected abstract finish(key: string, live: Live, opts: CommitOptions): Promise<{ opaqueDirs?: string[] }>;
  /** Remove what an active snapshot or a view of this process holds. */
  protected abstract discard(key: string, live: Live): Promise<void>;

  /** A new snapshot's directory; SnapshotExistsError when the key is taken. */
  protected async claim(key: string): Promise<string> {
    if (this.live.has(key)) throw new SnapshotExistsError(key);
    const base = this.base(key);
    try {
      await fs.mkdir(base);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SnapshotExistsError(key);
      throw err;
    }
    return base;
  }

  /** The layers' dirs that hold changes, bottom-most first. */
  protected layerDirs(layers: readonly Layer[]): string[] {
    return layers.filter((l) => !l.empty).map((l) => path.resolve(l.dir));
  }

  async mounts(key: string): Promise<Mount[]> {
    const l = this.live.get(key);
    if (!l) throw new SnapshotError(`snapshot ${key} is not active and not a view`);
    return l.mounts;
  }

  async commit(name: string, key: string, opts: CommitOptions = {}): Promise<Layer> {
    const l = this.live.get(key);
    if (!l || l.kind !== 'active') throw new SnapshotError(`snapshot ${key} is not active: it cannot be committed`);
    if (name !== key && (this.live.has(name) || (await exists(this.base(name))))) throw new SnapshotExistsError(name);
    l.finished ??= await this.finish(key, l, opts);
    const meta: Meta = { ...(l.chain.length ? { parent: l.chain } : {}), ...(opts.blob ? { blob: opts.blob } : {}) };
    await fs.writeFile(path.join(this.base(key), SNAPSHOT_META), JSON.stringify(meta));
    if (name !== key) {
      try {
        await fs.rename(this.base(key), this.base(name));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new SnapshotExistsError(name);
        throw err;
      }
    }
    this.live.delete(key);
    const dir = this.files(name);
    return { id: name, dir, empty: await isEmptyLayerDir(dir), ...(l.finished.opaqueDirs ? { opaqueDirs: l.finished.opaqueDirs } : {}), ...(opts.blob ? { blob: opts.blob } : {}) };
  }

  async remove(key: string): Promise<void> {
    const l = this.live.get(key);
    if (l) {
      this.live.delete(key);
      await this.discard(key, l);
      return;
    }
    if (!(await exists(this.base(key)))) throw new SnapshotError(`snapshot ${key} does not exist`);
    const over: string[] = [];
    await this.walk((info) => {
      if (info.name !== key && this.chainOf(info).includes(key)) over.push(info.name);
    });
    if (over.length) throw new SnapshotError(`snapshot ${key} cannot be removed: ${over.join(', ')} ${over.length === 1 ? 'is' : 'are'} over it`);
    await fs.rm(this.base(key), { recursive: true, force: true });
  }

  private readonly chains = new Map<string, string[]>();
  private chainOf(info: SnapshotInfo): string[] {
    return this.live.get(info.name)?.chain ?? this.chains.get(info.name) ?? [];
  }

  async stat(key: string): Promise<SnapshotInfo> {
    const l = this.live.get(key);
    if (l) return { name: key, kind: l.kind, ...(l.chain.length ? { parent: l.chain[l.chain.length - 1] } : {}) };
    const base = this.base(key);
    const meta = await fs.readFile(path.join(base, SNAPSHOT_META), 'utf8').then((t) => JSON.parse(t) as Meta, () => undefined);
    if (meta) {
      this.chains.set(key, meta.parent ?? []);
      const parent = meta.parent?.[meta.parent.length - 1];
      return { name: key, kind: 'committed', ...(parent ? { parent } : {}) };
    }
    if (!(await exists(base))) throw new SnapshotError(`snapshot ${key} does not exist`);
    // another process's active snapshot, or a layer an older mbuild committed without a record
    const active = (await exists(path.join(base, SNAPSHOT_WORK))) || (await exists(path.join(base, SNAPSHOT_MERGED)));
    return { name: key, kind: active ? 'active' : 'committed' };
  }

  async walk(fn: (info: SnapshotInfo) => void | Promise<void>): Promise<void> {
    const seen = new Set<string>();
    for (const name of (await fs.readdir(this.dir).catch(() => [] as string[])).sort()) {
      const kind = parseSnapshotName(name)?.kind;
      if (kind !== 'image' && kind !== 'cache' && kind !== 'build' && !this.live.has(name)) continue;
      const info = await this.stat(name).catch(() => undefined); // removed meanwhile
      if (!info) continue;
      seen.add(name);
      await fn(info);
    }
    for (const name of [...this.live.keys()].sort()) if (!seen.has(name)) await fn(await this.stat(name));
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}
