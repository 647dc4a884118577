/** The content a COPY reads from the context, as one digest (plus per-file digests to explain a miss). */
import { readlinkSync, statSync, type Stats } from 'node:fs';
import { walkSourceSync, type SourceEntry } from '../context/sources.js';
import type { IgnoreMatcher } from '../context/dockerignore.js';
import type { FileHashCache } from './file-hashes.js';
import { digestOf } from './keys.js';

/** How one entry enters the digest. Only a file whose hash is not remembered needs a wait (it is read). */
function describe(hostPath: string, st: Stats, hashes: FileHashCache): string | Promise<string> {
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isFile()) {
    const known = hashes.cached(hostPath, st);
    return known !== undefined ? `f:${mode}:${known}` : hashes.hash(hostPath, st).then((h) => `f:${mode}:${h}`);
  }
  if (st.isSymbolicLink()) return `l:${mode}:${readlinkSync(hostPath)}`;
  if (st.isDirectory()) return `d:${mode}`;
  return `o:${mode}`;
}

export async function digestSources(
  root: string,
  entries: SourceEntry[],
  ignore: IgnoreMatcher | undefined,
  hashes: FileHashCache,
): Promise<{ digest: string; files: Record<string, string> }> {
  const files: Record<string, string> = {};
  // one file at a time: small files are hashed with synchronous reads, which beats a pool of
  // asynchronous ones on a context of many small files
  for (const e of entries) {
    files[e.rel] = await describe(e.hostPath, statSync(e.hostPath), hashes);
    if (!e.isDir) continue;
    for (const item of walkSourceSync(root, e, ignore)) {
      const d = describe(item.hostPath, item.stat, hashes);
      files[e.rel === '.' ? item.rel : `${e.rel}/${item.rel}`] = typeof d === 'string' ? d : await d;
    }
  }
  const sorted = Object.keys(files).sort().map((k) => [k, files[k]]);
  // for an array of string pairs JSON.stringify gives canonicalJson's bytes, natively
  return { digest: digestOf(JSON.stringify(sorted)), files };
}
