/**
 * Content hashes of context files, remembered between builds by (path, device, inode, size,
 * mtime, ctime): an unchanged context is re-hashed without reading a byte. The cache key of a
 * COPY is still the content hash, never the mtime.
 */
import { closeSync, constants as C, createReadStream, openSync, readFileSync, readSync, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { writeFileAtomic } from '../../store/fsutil.js';

const MAX_ENTRIES = 500_000;
/** Files up to this size are hashed with synchronous reads (a context is mostly small files). */
const SYNC_READ_MAX = 1024 * 1024;
const scratch = Buffer.allocUnsafe(SYNC_READ_MAX);

function hashSmallFile(file: string): string {
  const hash = createHash('sha256');
  const fd = openSync(file, C.O_RDONLY | C.O_NOFOLLOW);
  try {
    for (;;) {
      const n = readSync(fd, scratch, 0, scratch.length, null);
      if (n === 0) break;
      hash.update(scratch.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

function statKey(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export class FileHashCache {
  private dirty = false;
  private constructor(private readonly file: string, private readonly map: Map<string, [string, string]>) {}

  static async load(file: string): Promise<FileHashCache> {
    let map = new Map<string, [string, string]>();
    try {
      const data = JSON.parse(readFileSync(file, 'utf8')) as Record<string, [string, string]>;
      map = new Map(Object.entries(data));
    } catch {
      /* first build, or an unreadable cache: start empty */
    }
    return new FileHashCache(file, map);
  }

  /** The remembered hash, if the file's stat has not changed since. */
  cached(file: string, st: Stats): string | undefined {
    const known = this.map.get(file.startsWith('/') ? file : path.resolve(file));
    return known && known[0] === statKey(st) ? known[1] : undefined;
  }

  async hash(file: string, st: Stats): Promise<string> {
    const abs = path.resolve(file);
    const key = statKey(st);
    const known = this.map.get(abs);
    if (known && known[0] === key) return known[1];
    let digest: string;
    if (st.size <= SYNC_READ_MAX) digest = hashSmallFile(abs);
    else {
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(abs)) hash.update(chunk as Buffer);
      digest = hash.digest('hex');
    }
    this.map.set(abs, [key, digest]);
    this.dirty = true;
    return digest;
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    const entries = [...this.map.entries()].slice(-MAX_ENTRIES);
    await writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(entries)));
    this.dirty = false;
  }
}
