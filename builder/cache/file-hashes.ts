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

/** What a file's hash is remembered with: [dev, ino, size, mtimeMs, ctimeMs, sha256 hex]. */
type Known = [number, number, number, number, number, string];

// compared as numbers: formatting the float times as a string key cost more than the lookup
function unchanged(k: Known | undefined, st: Stats): k is Known {
  return k !== undefined && k[3] === st.mtimeMs && k[1] === st.ino && k[2] === st.size && k[4] === st.ctimeMs && k[0] === st.dev;
}

export class FileHashCache {
  private dirty = false;
  private constructor(private readonly file: string, private readonly map: Map<string, Known>) {}

  static async load(file: string): Promise<FileHashCache> {
    const map = new Map<string, Known>();
    try {
      const data = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      for (const k in data) {
        const v = data[k];
        if (Array.isArray(v) && v.length === 6) map.set(k, v as Known);
      }
    } catch {
      /* first build, or an unreadable cache: start empty */
    }
    return new FileHashCache(file, map);
  }

  /** The remembered hash, if the file's stat has not changed since. */
  cached(file: string, st: Stats): string | undefined {
    const known = this.map.get(file.startsWith('/') ? file : path.resolve(file));
    return unchanged(known, st) ? known[5] : undefined;
  }

  /** Read and hash the file (call when cached() has no answer), and remember the result. */
  async hash(file: string, st: Stats): Promise<string> {
    const abs = path.resolve(file);
    let digest: string;
    if (st.size <= SYNC_READ_MAX) digest = hashSmallFile(abs);
    else {
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(abs)) hash.update(chunk as Buffer);
      digest = hash.digest('hex');
    }
    this.map.set(abs, [st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs, digest]);
    this.dirty = true;
    return digest;
  }

  /**
   * A hash known without reading the file: the server (server/service.ts) wrote the file itself
   * from content it verified by this digest, so its worker's COPY does not hash it again.
   */
  remember(file: string, st: Stats, sha256hex: string): void {
    this.map.set(path.resolve(file), [st.dev, st.ino, st.size, st.mtimeMs, st.ctimeMs, sha256hex]);
    this.dirty = true;
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    const entries = [...this.map.entries()].slice(-MAX_ENTRIES);
    await writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(entries)));
    this.dirty = false;
  }
}
