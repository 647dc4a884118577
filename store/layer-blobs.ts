/**
 * A layer's content in the store, in whichever form is there. mbuild keeps a layer it made as its
 * uncompressed tar (digest = diff_id) and remembers its gzip twin once compressed
 * (ROOT/compressed/<diff_id>.json, compress.ts). A layer that came from a shared build cache
 * (builder/cache/remote-import.ts) is kept the other way round: only the compressed blob it was
 * fetched as, plus that same record, and no tar at all (a "lazy" layer) — a fresh runner's image
 * then costs one download and no decompression. Every reader of layer content goes through here,
 * so a lazy layer works wherever a tar would:
 *
 *   openLayerBlob  the bytes as stored, the tar or its gzip twin, for readers that decompress
 *                  anyway (unpacking, the SBOM scanner)
 *   openLayerTar   the exact tar bytes, decompressed on the fly when only the twin is there and
 *                  verified against the diff_id as they stream (save, uncompressed/zstd outputs)
 *   keepLayerTar   write the tar blob (a reader that needs a file, as a chunked push)
 */
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Store } from './store.js';

/** what these functions use of a store */
type Blobs = Pick<Store, 'root' | 'content'>;
import { hex } from './digest.js';
import { layout } from './layout.js';
import { DigestMismatchError, MbuildError } from '../util/errors.js';

export interface GzipTwin {
  digest: string;
  size: number;
}

/** The memo file that names the gzip twin of the uncompressed blob `diffId`. */
export function gzipMemoPath(store: Blobs, diffId: string, gzipLevel?: number): string {
  return path.join(layout.compressed(store.root), gzipLevel === undefined ? `${hex(diffId)}.json` : `${hex(diffId)}.level${gzipLevel}.json`);
}

/** The gzip twin recorded for `diffId`, when its blob is in the store. */
export async function gzipTwin(store: Blobs, diffId: string, gzipLevel?: number): Promise<GzipTwin | undefined> {
  try {
    const known = JSON.parse(await fs.readFile(gzipMemoPath(store, diffId, gzipLevel), 'utf8')) as GzipTwin;
    if (typeof known.digest === 'string' && typeof known.size === 'number' && (await store.content.has(known.digest))) return { digest: known.digest, size: known.size };
  } catch {
    /* no memo, or a damaged one: no twin */
  }
  return undefined;
}

/** Is the layer blob `digest` there, as itself or (an uncompressed one) as its gzip twin? */
export async function hasLayerBlob(store: Blobs, digest: string): Promise<boolean> {
  return (await store.content.has(digest)) || (await gzipTwin(store, digest)) !== undefined;
}

/**
 * The blob `digest` as stored: itself, or the gzip twin of a lazily kept tar. The caller
 * decompresses by content (both forms are layer tars, one of them gzipped) and checks the diff_id.
 */
export async function openLayerBlob(store: Blobs, digest: string): Promise<Readable> {
  if (await store.content.has(digest)) return store.content.open(digest);
  const twin = await gzipTwin(store, digest);
  if (!twin) throw missing(digest);
  return store.content.open(twin.digest);
}

/**
 * The uncompressed layer tar `diffId`, byte for byte: its blob, or its gzip twin decompressed.
 * A decompressed stream ends in an error unless its digest (and `size`, when given) match.
 */
export async function openLayerTar(store: Blobs, diffId: string, size?: number): Promise<Readable> {
  if (await store.content.has(diffId)) return store.content.open(diffId);
  const twin = await gzipTwin(store, diffId);
  if (!twin) throw missing(diffId);
  const src = store.content.open(twin.digest);
  const gunzip = createGunzip();
  const hash = createHash('sha256');
  let bytes = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      hash.update(chunk);
      cb(null, chunk);
    },
    flush(cb) {
      const got = 'sha256:' + hash.digest('hex');
      if (got !== diffId) cb(new DigestMismatchError(`layer ${twin.digest}: uncompressed digest ${got} does not match diff_id ${diffId}`));
      else if (size !== undefined && bytes !== size) cb(new DigestMismatchError(`layer ${diffId}: ${bytes} bytes uncompressed, expected ${size}`));
      else cb();
    },
  });
  pipeline(src, gunzip, check, () => {
    /* errors surface on `check` */
  });
  return check;
}

/** Make sure the tar blob `diffId` itself is in the store (written from its gzip twin if need be). */
export async function keepLayerTar(store: Blobs, diffId: string): Promise<void> {
  if (await store.content.has(diffId)) return;
  await store.content.ingest(await openLayerTar(store, diffId), { digest: diffId });
}

function missing(digest: string): MbuildError {
  return new MbuildError('MBUILD_STORE', `blob ${digest} is missing from the local store`);
}
