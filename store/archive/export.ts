/**
 * `mbuild save -o FILE NAME` and `--output type=oci|docker,dest=FILE`: write an image from the
 * store as an OCI image layout tar, or as a tar that is both an OCI layout and a `docker load`
 * archive (manifest.json next to index.json, as docker 25 writes).
 *
 * Deterministic: entries sorted by name, mtime 0, uid/gid 0, no user/group names, mode 0644 for
 * files and 0755 for directories, so the same image and names always give the same bytes. Blobs
 * are streamed from the store and their digests verified on the way; the tar goes to a temp file
 * next to `dest` and is renamed into place only when complete (`-` writes to stdout).
 */
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Pack } from 'tar-stream';
import type { Store } from '../store.js';
import { MediaType, type Descriptor, type Index, type Manifest } from '../oci.js';
import { assertDigest, hex, sha256 } from '../digest.js';
import { familiarName, formatReference, parseReference } from '../reference.js';
import { syncDir, tempSibling } from '../fsutil.js';
import { DigestMismatchError, MbuildError } from '../../util/errors.js';
import { checkManifest } from './plan.js';
import { ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from './oci-layout.js';
import { HashMeter } from './streams.js';
import { gzipTwin, openLayerTar } from '../layer-blobs.js';

export interface ExportOptions {
  type: 'oci' | 'docker';
  /** the output file; `-` for stdout */
  dest: string;
}

export interface ExportImage {
  manifestDigest: string;
  /** names to record in the archive (any docker spelling); may be empty */
  names: string[];
  /** on index.json's descriptor of the image (BuildKit's index-descriptor / manifest-descriptor annotations) */
  annotations?: Record<string, string>;
}

const EPOCH = new Date(0);

/** A name as stored (domain/path:tag); digest-only references cannot name an archive entry. */
function canonicalTagged(name: string): { full: string; tag: string } {
  const ref = parseReference(name);
  if (!ref.tag) throw new MbuildError('MBUILD_BAD_REFERENCE', `cannot save ${name} under a name: it has no tag`);
  return { full: formatReference({ domain: ref.domain, path: ref.path, tag: ref.tag }), tag: ref.tag };
}

interface BlobEntry {
  digest: string;
  size: number;
}

export async function exportImage(store: Store, image: ExportImage, opts: ExportOptions): Promise<void> {
  if (opts.type !== 'oci' && opts.type !== 'docker') throw new MbuildError('MBUILD_USAGE', `unknown export type ${JSON.stringify(opts.type)} (use oci or docker)`);
  const manifestDigest = assertDigest(image.manifestDigest, 'manifest digest');
  const manifestBytes = await store.content.readBytes(manifestDigest);
  if (sha256(manifestBytes) !== manifestDigest) throw new DigestMismatchError(`manifest ${manifestDigest} in the store does not match its digest`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifestBytes.toString('utf8'));
  } catch (err) {
    throw new MbuildError('MBUILD_STORE', `manifest ${manifestDigest} in the store is not valid JSON`, { cause: err });
  }
  // an index (a build with attestations): every manifest it lists goes in, the index is what names point at
  const top = parsed as { mediaType?: string; manifests?: Descriptor[] };
  const isIndex = top.mediaType === MediaType.index || (top.mediaType === undefined && Array.isArray(top.manifests));
  const children: { digest: string; bytes: Buffer; mediaType: string; platform?: Descriptor['platform'] }[] = [];
  if (isIndex) {
    for (const d of top.manifests ?? []) {
      const bytes = await store.content.readBytes(assertDigest(d.digest, 'manifest digest'));
      if (sha256(bytes) !== d.digest) throw new DigestMismatchError(`manifest ${d.digest} in the store does not match its digest`);
      children.push({ digest: d.digest, bytes, mediaType: d.mediaType, platform: d.platform });
    }
  } else children.push({ digest: manifestDigest, bytes: manifestBytes, mediaType: (top.mediaType as string | undefined) ?? MediaType.manifest });
  const images = children.map((c) => ({ ...c, manifest: checkManifest(JSON.parse(c.bytes.toString('utf8')), `manifest ${c.digest}`) }));
  // the image `docker load` reads: the first one that is not an attestation manifest
  const manifest = (images.find((i) => i.platform?.architecture !== 'unknown') ?? images[0]!).manifest;
  const manifestMediaType = isIndex ? MediaType.index : images[0]!.mediaType;

  const names: { full: string; tag: string }[] = [];
  for (const n of image.names) {
    const c = canonicalTagged(n);
    if (!names.some((x) => x.full === c.full)) names.push(c);
  }

  // every blob once, with the size its descriptor promises
  const blobs = new Map<string, BlobEntry>();
  const all: Descriptor[] = [{ mediaType: manifestMediaType, digest: manifestDigest, size: manifestBytes.length }];
  for (const i of images) {
    if (isIndex) all.push({ mediaType: i.mediaType, digest: i.digest, size: i.bytes.length });
    all.push(i.manifest.config, ...i.manifest.layers);
  }
  for (const d of all) {
    const prev = blobs.get(d.digest);
    if (prev && prev.size !== d.size) throw new MbuildError('MBUILD_STORE', `blob ${d.digest} is listed with two sizes in manifest ${manifestDigest}`);
    blobs.set(d.digest, { digest: d.digest, size: d.size });
  }
  for (const b of blobs.values()) {
    let size: number;
    try {
      size = await store.content.size(b.digest);
    } catch {
      // a layer kept only as its gzip twin (store/layer-blobs.ts): its tar is checked as it streams
      if (await gzipTwin(store, b.digest)) continue;
      throw new MbuildError('MBUILD_STORE', `blob ${b.digest} of image ${manifestDigest} is missing from the store`);
    }
    if (size !== b.size) throw new DigestMismatchError(`blob ${b.digest} in the store is ${size} bytes, but the manifest says ${b.size}`);
  }

  const target: Descriptor = { mediaType: manifestMediaType, digest: manifestDigest, size: manifestBytes.length };
  const own = image.annotations ?? {};
  const index: Index = {
    schemaVersion: 2,
    mediaType: MediaType.index,
    manifests: names.length
      ? names.map((n) => ({ ...target, annotations: { ...own, [ANNOTATION_IMAGE_NAME]: n.full, [ANNOTATION_REF_NAME]: n.tag } }))
      : [Object.keys(own).length ? { ...target, annotations: own } : target],
  };
  const files = new Map<string, Buffer>();
  files.set('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  files.set('index.json', Buffer.from(JSON.stringify(index)));
  if (opts.type === 'docker') {
    const dockerManifest = [
      {
        Config: `blobs/sha256/${hex(manifest.config.digest)}`,
        RepoTags: names.map((n) => familiarName(n.full)),
        Layers: manifest.layers.map((l) => `blobs/sha256/${hex(l.digest)}`),
      },
    ];
    files.set('manifest.json', Buffer.from(JSON.stringify(dockerManifest)));
  }

  // sorted entry list: blobs/, blobs/sha256/, blobs/sha256/<hex>..., index.json, manifest.json, oci-layout
  type Entry = { name: string; dir: true } | { name: string; bytes: Buffer } | { name: string; blob: BlobEntry };
  const entries: Entry[] = [{ name: 'blobs/', dir: true }, { name: 'blobs/sha256/', dir: true }];
  for (const b of blobs.values()) entries.push({ name: `blobs/sha256/${hex(b.digest)}`, blob: b });
  for (const [name, bytes] of files) entries.push({ name, bytes });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  await writeOutput(opts.dest, async (pack) => {
    for (const e of entries) {
      const header = { name: e.name, mtime: EPOCH, uid: 0, gid: 0, uname: '', gname: '' };
      if ('dir' in e) {
        await addEntry(pack, { ...header, type: 'directory', mode: 0o755, size: 0 });
      } else if ('bytes' in e) {
        await addEntry(pack, { ...header, type: 'file', mode: 0o644, size: e.bytes.length }, e.bytes);
      } else {
        await addBlob(store, pack, { ...header, type: 'file', mode: 0o644, size: e.blob.size }, e.blob);
      }
    }
  });
}

type EntryHeader = Parameters<Pack['entry']>[0];

function addEntry(pack: Pack, header: EntryHeader, bytes?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null): void => (err ? reject(err) : resolve());
    pack.entry(header, bytes ?? Buffer.alloc(0), done);
  });
}

/** Stream a blob from the store into the tar, verifying its digest on the way. */
async function addBlob(store: Store, pack: Pack, header: EntryHeader, blob: BlobEntry): Promise<void> {
  const meter = new HashMeter();
  let sink!: Writable;
  const entryDone = new Promise<void>((resolve, reject) => {
    sink = pack.entry(header, (err) => (err ? reject(err) : resolve())) as unknown as Writable;
  });
  entryDone.catch(() => {}); // a failure also surfaces through the pipeline; awaited below
  await pipeline(await openLayerTar(store, blob.digest, blob.size), meter, sink);
  await entryDone;
  if (meter.digest() !== blob.digest || meter.bytes !== blob.size) {
    throw new DigestMismatchError(`blob ${blob.digest} in the store does not match its digest`);
  }
}

/** Run `fill` against a tar pack streaming to `dest` (temp file + rename, or stdout for `-`). */
async function writeOutput(dest: string, fill: (pack: Pack) => Promise<void>): Promise<void> {
  const pack = tarPack();
  const run = async (out: Writable, end: boolean): Promise<void> => {
    let outError: unknown;
    const drained = pipeline(pack as unknown as Readable, out, { end }).catch((err: unknown) => {
      outError = err;
    });
    try {
      await fill(pack);
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      await drained;
      // our own errors (digest mismatch...) first; else what broke the output (ENOSPC, EPIPE...)
      throw err instanceof MbuildError || outError === undefined ? err : outError;
    }
    await drained;
    if (outError !== undefined) throw outError;
  };
  if (dest === '-') {
    const out = process.stdout;
    await run(out, false);
    // Node 20's pipeline ends a piped stdout despite end: false (then it is flushed already)
    if (out.writableEnded) return;
    // stdout is not ended (it belongs to the process): wait until what was written is flushed
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      out.once('error', onError);
      out.write(Buffer.alloc(0), (err) => {
        out.off('error', onError);
        if (err) reject(err);
        else resolve();
      });
    });
    return;
  }
  const final = path.resolve(dest);
  const tmp = tempSibling(final);
  try {
    const out = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    await run(out, true);
    const fh = await fs.open(tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, final);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(final));
}
