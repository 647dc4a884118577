/**
 * `mbuild load -i FILE`: import an OCI image layout tar or a `docker save` tar (either may be
 * gzip-compressed) into the store.
 *
 * The archive is read once, every regular file spooled into a private temp dir inside the store
 * (blobs/sha256/<hex> entries verified while they stream). Then the images are planned and
 * verified in full: every referenced blob present with its declared digest and size, JSON capped
 * at 4 MiB, docker layers' diff_ids checked. Only then are blobs committed (renamed into the
 * content store; config and layers before the manifest that names them) and, last, the names
 * registered. A failure at any point before the commit leaves the store as it was; the temp dir
 * is always removed.
 */
import { targetPlatform } from '../../util/platform.js';
import { createReadStream, promises as fs } from 'node:fs';
import type { Store } from '../store.js';
import type { Platform } from '../oci.js';
import { syncDir } from '../fsutil.js';
import { MbuildError } from '../../util/errors.js';
import { openArchive, spoolArchive } from './spool.js';
import { planOciLayout } from './oci-layout.js';
import { planDockerSave } from './docker-save.js';
import type { BlobFile, PlannedImage } from './plan.js';

export interface ImportOptions {
  onProgress?: (msg: string) => void;
  /** the platform taken from a nested (multi-platform) index; this machine's unless given */
  platform?: Platform;
}

export interface ImportedImage {
  /** canonical name, e.g. docker.io/library/busybox:latest; undefined when the archive names none */
  name?: string;
  /** manifest digest */
  digest: string;
}

export async function importArchive(store: Store, file: string, opts: ImportOptions = {}): Promise<ImportedImage[]> {
  const onProgress = opts.onProgress ?? (() => {});
  const platform = opts.platform ?? targetPlatform();
  const dir = await store.mkTemp('load');
  try {
    const sp = await spoolArchive(await openArchive(file), dir, onProgress);
    let plans: PlannedImage[];
    if (sp.has('index.json')) plans = await planOciLayout(sp, { platform, onProgress });
    else if (sp.has('manifest.json')) plans = await planDockerSave(sp, { platform, onProgress });
    else throw new MbuildError('MBUILD_BAD_ARCHIVE', `${file} is neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)`);

    // everything is verified: commit blobs, then manifests, then names
    const committed = new Set<string>();
    const results: ImportedImage[] = [];
    for (const plan of plans) {
      for (const blob of plan.blobs) await commitOnce(store, blob, committed);
      let digest: string;
      if (plan.manifest.kind === 'file') {
        await commitOnce(store, plan.manifest, committed);
        digest = plan.manifest.digest;
      } else {
        digest = (await store.content.putJson(plan.manifest.value)).digest;
      }
      if (plan.names.length === 0) results.push({ digest });
      for (const name of plan.names) results.push({ name, digest });
    }
    await syncDir(store.content.dir);

    // one record per name; when an archive gives a name twice, the last one wins (as docker load does)
    const created = new Date().toISOString();
    const byName = new Map<string, string>();
    for (const r of results) if (r.name !== undefined) byName.set(r.name, r.digest);
    const records = [...byName].map(([name, digest]) => ({ name, digest, created }));
    if (records.length) await store.images.put(records);
    for (const r of results) onProgress(r.name ? `Loaded image: ${r.name}` : `Loaded image ID: ${r.digest}`);
    return results;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function commitOnce(store: Store, blob: BlobFile, done: Set<string>): Promise<void> {
  if (done.has(blob.digest)) return;
  await commitVerified(store, blob);
  done.add(blob.digest);
}

/**
 * Move a verified spool file into the content store under its digest. The spool dir is inside
 * the store, so this is a rename (what ContentStore.ingest does after its own verification);
 * across filesystems it falls back to ingest, which verifies digest and size again.
 */
async function commitVerified(store: Store, blob: BlobFile): Promise<void> {
  if (await store.content.has(blob.digest)) return;
  const fh = await fs.open(blob.file, 'r');
  try {
    const st = await fh.stat();
    if (st.size !== blob.size) throw new MbuildError('MBUILD_STORE', `temp file for ${blob.digest} changed size before commit`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.rename(blob.file, store.content.path(blob.digest));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await store.content.ingest(createReadStream(blob.file), { digest: blob.digest, size: blob.size });
  }
}
