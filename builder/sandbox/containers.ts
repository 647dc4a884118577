/**
 * Running containers of `mbuild run`, so that `--network container:NAME` can find one:
 * ROOT/containers/<id>.json, written under ROOT/containers/.lock. An entry is live while its owner
 * (the `mbuild run` process) is; entries of dead owners are ignored and removed on the next change.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { withLock } from '../../store/lock.js';
import { layout } from '../../store/layout.js';
import { writeFileAtomic } from '../../store/fsutil.js';
import { UsageError } from '../../util/errors.js';
import { ownerAlive, ownerOf, type Owner } from './network/state.js';

export interface ContainerRecord {
  id: string;
  name?: string;
  image: string;
  owner: Owner;
  /** the helper holding the namespaces, once started */
  sandbox?: Owner;
  network?: string;
  /** the network namespace others join with --network container:NAME (/proc/<sandbox pid>/ns/net) */
  netns?: string;
  address?: string;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function checkContainerName(name: string): void {
  if (!NAME_RE.test(name) || name.length > 128) throw new UsageError(`invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
}

export class ContainerRegistry {
  readonly dir: string;
  constructor(root: string) {
    this.dir = layout.containers(root);
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  private lock<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(path.join(this.dir, '.lock'), fn, 30_000);
  }

  /** Live records; removes dead owners' files when `prune` (needs the lock held). */
  private async all(prune: boolean): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    for (const f of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}\.json$/.test(f)) continue;
      let rec: ContainerRecord;
      try {
        rec = JSON.parse(await fs.readFile(path.join(this.dir, f), 'utf8')) as ContainerRecord;
      } catch {
        continue; // being written
      }
      if (ownerAlive(rec.owner)) out.push(rec);
      else if (prune) await fs.rm(path.join(this.dir, f), { force: true });
    }
    return out;
  }

  /** Claims the name for this process (a name a live container holds is refused, as Docker does). */
  async register(rec: Omit<ContainerRecord, 'owner'>): Promise<ContainerRecord> {
    await fs.mkdir(this.dir, { recursive: true });
    return this.lock(async () => {
      if (rec.name) {
        const taken = (await this.all(true)).find((r) => r.name === rec.name);
        if (taken) throw new UsageError(`the container name "${rec.name}" is already in use by container ${taken.id.slice(0, 12)}`);
      }
      const full: ContainerRecord = { ...rec, owner: ownerOf(process.pid) };
      await writeFileAtomic(this.file(rec.id), JSON.stringify(full) + '\n');
      return full;
    });
  }

  async update(rec: ContainerRecord): Promise<void> {
    await this.lock(() => writeFileAtomic(this.file(rec.id), JSON.stringify(rec) + '\n'));
  }

  async remove(id: string): Promise<void> {
    await fs.rm(this.file(id), { force: true });
  }

  /** A running container by name or id (prefix of at least 12), with its sandbox started. */
  async find(nameOrId: string): Promise<ContainerRecord | undefined> {
    const live = await this.all(false);
    const hit =
      live.find((r) => r.name === nameOrId) ??
      (/^[0-9a-f]{12,64}$/.test(nameOrId) ? live.find((r) => r.id.startsWith(nameOrId)) : undefined);
    if (!hit?.sandbox || !ownerAlive(hit.sandbox)) return undefined;
    return hit;
  }
}
