/**
 * The client's description of a build context: every path the .dockerignore leaves, with its
 * type, mode, size, mtime and (for a file) sha256. Hashes come from the stat-keyed cache the local
 * builder uses (builder/cache/file-hashes.ts), so an unchanged context is described without being
 * read; the server asks only for the content its store lacks.
 */
import { readlinkSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadIgnore } from '../builder/context/dockerignore.js';
import { walkSourceSync } from '../builder/context/sources.js';
import { FileHashCache } from '../builder/cache/file-hashes.js';

export interface ManifestEntry {
  /** path relative to the context, '/'-separated */
  p: string;
  t: 'f' | 'd' | 'l';
  /** permission bits (mode & 0o7777) */
  m: number;
  /** mtime in milliseconds (kept on the server: COPY keeps it, as BuildKit's transfer does) */
  mt: number;
  s?: number;
  h?: string;
  /** a symlink's target */
  l?: string;
  /** server side only, in a kept context folder's record: the client's mtime, where mt is the folder's */
  cmt?: number;
}

/** Where the client remembers context file hashes (it may have no store of its own). */
export function clientHashCacheFile(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'mbuild', 'context-hashes.json');
}

export interface ContextManifest {
  entries: ManifestEntry[];
  /** the context folder's own mode and mtime (`COPY . /dst` gives them to /dst) */
  root: { m: number; mt: number };
  skipped: string[];
  /** sha256 -> a host path with that content, for the upload */
  sources: Map<string, string>;
}

export async function contextManifest(contextDir: string, dockerfile: string): Promise<ContextManifest> {
  const ignore = await loadIgnore(contextDir, dockerfile);
  const hashes = await FileHashCache.load(clientHashCacheFile());
  const entries: ManifestEntry[] = [];
  const skipped: string[] = [];
  const sources = new Map<string, string>();
  const root = path.resolve(contextDir);
  for (const item of walkSourceSync(root, { hostPath: root, rel: '.', isDir: true }, ignore)) {
    const st = item.stat;
    const base = { p: item.rel, m: st.mode & 0o7777, mt: st.mtimeMs };
    if (st.isFile()) {
      const h = hashes.cached(item.hostPath, st) ?? (await hashes.hash(item.hostPath, st));
      entries.push({ ...base, t: 'f', s: st.size, h });
      if (!sources.has(h)) sources.set(h, item.hostPath);
    } else if (st.isDirectory()) entries.push({ ...base, t: 'd' });
    else if (st.isSymbolicLink()) entries.push({ ...base, t: 'l', l: readlinkSync(item.hostPath) });
    else skipped.push(item.rel); // sockets, fifos, devices: nothing a COPY can take
  }
  await hashes.save().catch(() => undefined);
  const rootStat = statSync(root);
  return { entries, root: { m: rootStat.mode & 0o7777, mt: rootStat.mtimeMs }, skipped, sources };
}
