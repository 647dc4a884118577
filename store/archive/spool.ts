/**
 * Read an image archive (tar, or gzip-compressed tar) once, spooling every regular file into a
 * private temp dir. Entries may come in any order, so nothing is interpreted until the whole
 * archive has been read. Blob entries named `blobs/sha256/<hex>` are verified against their name
 * while they stream, so a corrupt blob is refused on the spot.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract } from 'tar-stream';
import { DigestMismatchError, MbuildError, UnsafeArchiveError } from '../../util/errors.js';
import { hex } from '../digest.js';
import { BLOB_PATH_RE, isArchiveRoot, safeEntryName, symlinkTarget } from './entries.js';
import { HashMeter, assertSupportedCompression, peekStream, sniffCompression } from './streams.js';

/** manifest.json, index.json, manifests, indexes and configs are read at most this big (containerd's cap). */
export const MAX_JSON_BYTES = 4 << 20;
/** More entries than any image archive needs; each one is a temp file. */
export const MAX_ENTRIES = 100_000;
const MAX_LINK_HOPS = 16;

export interface SpooledFile {
  name: string; // canonical archive name
  file: string; // where its bytes are, inside the spool dir
  size: number;
  digest: string; // sha256 of its bytes
}

export class SpooledArchive {
  constructor(
    readonly dir: string,
    private readonly files: Map<string, SpooledFile>,
    /** symlink and hard-link entries: name → target archive name (undefined when it points outside). */
    private readonly links: Map<string, string | undefined>,
  ) {}

  has(name: string): boolean {
    return this.files.has(name) || this.links.has(name);
  }

  /** The regular file called `name`, following link entries inside the archive. */
  get(name: string): SpooledFile | undefined {
    let cur = name;
    for (let hop = 0; hop <= MAX_LINK_HOPS; hop++) {
      const f = this.files.get(cur);
      if (f) return f;
      if (!this.links.has(cur)) return undefined;
      const next = this.links.get(cur);
      if (next === undefined) throw new UnsafeArchiveError(`archive entry "${cur}" is a link pointing outside the archive`);
      cur = next;
    }
    throw new UnsafeArchiveError(`archive entry "${name}": too many levels of links`);
  }

  /** The file at a path named by the archive's own metadata (manifest.json), checked first. */
  require(rawPath: unknown, what: string): SpooledFile {
    const name = safeEntryName(rawPath, what);
    const f = this.get(name);
    if (!f) throw new MbuildError('MBUILD_BAD_ARCHIVE', `${what} "${name}" is not in the archive`);
    return f;
  }

  /** The blob `blobs/sha256/<hex>` (digest validated first), already verified against its name. */
  blob(digest: string): SpooledFile | undefined {
    return this.files.get(`blobs/sha256/${hex(digest)}`);
  }

  /** Parse a spooled JSON file, refusing more than `cap` bytes. */
  async readJson(f: SpooledFile, what: string, cap = MAX_JSON_BYTES): Promise<unknown> {
    if (f.size > cap) throw new UnsafeArchiveError(`${what} is ${f.size} bytes, more than the ${cap} bytes allowed`);
    const bytes = await fs.readFile(f.file);
    if (bytes.length !== f.size) throw new MbuildError('MBUILD_BAD_ARCHIVE', `${what} changed while being read`);
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch (err) {
      throw new MbuildError('MBUILD_BAD_ARCHIVE', `${what} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Open `file` (`-` for stdin) as a tar stream, decompressing it if it is gzip-compressed. */
export async function openArchive(file: string): Promise<Readable> {
  const raw = file === '-' ? process.stdin : createReadStream(file, { highWaterMark: 1 << 20 });
  const { head, stream } = await peekStream(raw);
  const c = sniffCompression(head);
  assertSupportedCompression(c, file === '-' ? 'the archive on stdin' : file);
  if (c === 'gzip') {
    const gunzip = createGunzip();
    stream.on('error', (err) => gunzip.destroy(err));
    return stream.pipe(gunzip);
  }
  return stream;
}

/** Read the tar stream `input` into `dir` (which must exist and be private to this import). */
export async function spoolArchive(input: Readable, dir: string, onProgress?: (msg: string) => void): Promise<SpooledArchive> {
  const files = new Map<string, SpooledFile>();
  const links = new Map<string, string | undefined>();
  const extract = tarExtract();
  let feedError: unknown;
  const feed = pipeline(input, extract).catch((err: unknown) => {
    feedError = err;
  });
  let count = 0;
  try {
    for await (const entry of extract) {
      const h = entry.header;
      if (++count > MAX_ENTRIES) throw new UnsafeArchiveError(`the archive has more than ${MAX_ENTRIES} entries`);
      if (h.type === 'directory') {
        // `./` (from `tar -C dir .`) is fine; `..` and absolute names are not
        if (!isArchiveRoot(h.name)) safeEntryName(h.name, 'archive entry');
        entry.resume();
        continue;
      }
      const name = safeEntryName(h.name, 'archive entry');
      if (files.has(name) || links.has(name)) throw new UnsafeArchiveError(`archive entry "${name}" appears twice`);
      if (h.type === 'symlink') {
        links.set(name, symlinkTarget(name, h.linkname ?? ''));
        entry.resume();
        continue;
      }
      if (h.type === 'link') {
        let target: string | undefined;
        try {
          target = safeEntryName(h.linkname, 'hard link target');
        } catch {
          target = undefined;
        }
        links.set(name, target);
        entry.resume();
        continue;
      }
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        entry.resume(); // devices, fifos: nothing an image archive needs
        continue;
      }
      if (onProgress && h.size >= 1 << 20) onProgress(`Reading ${name} (${(h.size / 1e6).toFixed(1)} MB)`);
      const file = path.join(dir, `e${count}`);
      const meter = new HashMeter();
      await pipeline(entry as unknown as Readable, meter, createWriteStream(file, { flags: 'wx', mode: 0o644 }));
      const digest = meter.digest();
      const m = BLOB_PATH_RE.exec(name);
      if (m && digest !== `sha256:${m[1]}`) {
        throw new DigestMismatchError(`blob ${name} in the archive does not match its digest (its bytes hash to ${digest})`);
      }
      files.set(name, { name, file, size: meter.bytes, digest });
    }
  } catch (err) {
    extract.destroy();
    await feed;
    throw wrapReadError(err);
  }
  await feed;
  if (feedError) throw wrapReadError(feedError);
  return new SpooledArchive(dir, files, links);
}

function wrapReadError(err: unknown): Error {
  if (err instanceof MbuildError) return err;
  if (err instanceof Error && 'syscall' in err) return err; // ENOSPC, EIO...: the store's problem, not the archive's
  const msg = err instanceof Error ? err.message : String(err);
  return new MbuildError('MBUILD_BAD_ARCHIVE', `cannot read the archive: ${msg}`, { cause: err });
}
