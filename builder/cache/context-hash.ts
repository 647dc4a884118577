/** The content a COPY reads from the context, as one digest (plus per-file digests to explain a miss). */
import { promises as fs, type Stats } from 'node:fs';
import { walkSource, type SourceEntry } from '../context/sources.js';
import type { IgnoreMatcher } from '../context/dockerignore.js';
import type { FileHashCache } from './file-hashes.js';
import { digestOf } from './keys.js';

async function describe(hostPath: string, st: Stats, hashes: FileHashCache): Promise<string> {
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isSymbolicLink()) return `l:${mode}:${await fs.readlink(hostPath)}`;
  if (st.isDirectory()) return `d:${mode}`;
  if (st.isFile()) return `f:${mode}:${await hashes.hash(hostPath, st)}`;
  return `o:${mode}`;
}

export async function digestSources(
  root: string,
  entries: SourceEntry[],
  ignore: IgnoreMatcher | undefined,
  hashes: FileHashCache,
): Promise<{ digest: string; files: Record<string, string> }> {
  const files: Record<string, string> = {};
  const pending: Promise<void>[] = [];
  const add = (name: string, hostPath: string, st: Stats) => {
    pending.push(describe(hostPath, st, hashes).then((d) => void (files[name] = d)));
  };
  for (const e of entries) {
    const st = await fs.stat(e.hostPath);
    add(e.rel, e.hostPath, st);
    if (!e.isDir) continue;
    for await (const item of walkSource(root, e, ignore)) {
      add(e.rel === '.' ? item.rel : `${e.rel}/${item.rel}`, item.hostPath, item.stat);
      if (pending.length >= 64) await Promise.all(pending.splice(0));
    }
  }
  await Promise.all(pending);
  const sorted = Object.keys(files).sort().map((k) => [k, files[k]]);
  return { digest: digestOf(sorted), files };
}
