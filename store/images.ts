/** Image names → manifest digests, in ROOT/images.json, read-modify-write under a cross-process lock. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './fsutil.js';
import { withLock } from './lock.js';
import { layout } from './layout.js';
import { assertDigest, isDigest } from './digest.js';
import { asNoSpace } from './recovery.js';

export interface ImageRecord {
  name: string; // canonical, e.g. docker.io/library/busybox:latest
  digest: string; // manifest digest
  created: string; // when it got this name (ISO time)
}

export class ImageIndex {
  private readonly file: string;
  private readonly lockFile: string;
  constructor(root: string) {
    this.file = layout.images(root);
    this.lockFile = path.join(layout.locks(root), 'images.lock');
  }

  async list(): Promise<ImageRecord[]> {
    try {
      const data = JSON.parse(await fs.readFile(this.file, 'utf8')) as { images?: ImageRecord[] };
      // a record with a malformed digest (a hand-edited or hostile file) names nothing: skipped,
      // so one bad line never makes every command fail (docs/security.md 11)
      return (data.images ?? []).filter((r) => typeof r.name === 'string' && typeof r.digest === 'string' && isDigest(r.digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    return (await this.list()).find((r) => r.name === name);
  }

  async put(records: ImageRecord | ImageRecord[]): Promise<void> {
    // the same name twice in one call: the last one wins
    const list = [...new Map((Array.isArray(records) ? records : [records]).map((r) => [r.name, r])).values()];
    for (const r of list) assertDigest(r.digest, 'manifest digest');
    await withLock(this.lockFile, async () => {
      const names = new Set(list.map((r) => r.name));
      const current = await this.list();
      // every name already on that image (a rebuild that changed nothing): nothing to write
      if (list.every((r) => current.some((c) => c.name === r.name && c.digest === r.digest))) return;
      const next = current.filter((r) => !names.has(r.name)).concat(list);
      next.sort((a, b) => a.name.localeCompare(b.name));
      await writeFileAtomic(this.file, JSON.stringify({ images: next }, null, 1) + '\n');
    }).catch((err: unknown) => {
      throw asNoSpace(err, path.dirname(this.file), 'naming the image');
    });
  }

  async remove(name: string): Promise<boolean> {
    return withLock(this.lockFile, async () => {
      const all = await this.list();
      const next = all.filter((r) => r.name !== name);
      if (next.length === all.length) return false;
      await writeFileAtomic(this.file, JSON.stringify({ images: next }, null, 1) + '\n');
      return true;
    });
  }
}
