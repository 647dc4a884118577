/**
 * Where blobs are known to live remotely (ROOT/registry/blob-sources.json: digest →
 * ["host/repository", ...]), recorded after pulls and pushes, so a push to another repository
 * of the same registry can ask for a cross-repository mount instead of uploading.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Store } from '../store/store.js';
import { writeFileAtomic } from '../store/fsutil.js';
import { withLock } from '../store/lock.js';
import { layout } from '../store/layout.js';
import { isDigest } from '../store/digest.js';

const MAX_PER_BLOB = 8;

function files(store: Store): { file: string; lock: string } {
  return { file: path.join(layout.registry(store.root), 'blob-sources.json'), lock: path.join(layout.locks(store.root), 'blob-sources.lock') };
}

async function read(file: string): Promise<Record<string, string[]>> {
  try {
    const v = JSON.parse(await fs.readFile(file, 'utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, string[]>) : {};
  } catch {
    return {}; // missing or damaged: it is only a hint
  }
}

/** Repositories on `host` (other than `exclude`) known to hold the blob. */
export async function knownSources(store: Store, digest: string, host: string, exclude: string): Promise<string[]> {
  const all = await read(files(store).file);
  const list = Array.isArray(all[digest]) ? all[digest] : [];
  return list.filter((s) => typeof s === 'string' && s.startsWith(host + '/')).map((s) => s.slice(host.length + 1)).filter((r) => r && r !== exclude);
}

export async function recordSources(store: Store, host: string, repository: string, digests: string[]): Promise<void> {
  const { file, lock } = files(store);
  const where = `${host}/${repository}`;
  await withLock(lock, async () => {
    const all = await read(file);
    for (const d of digests) {
      if (!isDigest(d)) continue;
      const list = (Array.isArray(all[d]) ? all[d] : []).filter((s) => s !== where);
      list.unshift(where);
      all[d] = list.slice(0, MAX_PER_BLOB);
    }
    await writeFileAtomic(file, JSON.stringify(all) + '\n');
  });
}
