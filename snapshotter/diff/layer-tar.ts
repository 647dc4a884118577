/**
 * Overlay-format layer directory → OCI layer tar.
 *
 * The directory is an overlayfs upperdir (or a layer unpacked by apply.ts): a deleted path is a
 * character device 0:0 of the same name, an opaque directory carries `trusted.overlay.opaque=y`.
 * The tar follows the OCI image-spec layer format: `.wh.NAME` for deletions, `DIR/.wh..wh..opq`
 * right after an opaque directory, hard links inside the layer as tar hard links, no xattrs.
 *
 * Order: depth first, parents before children, the siblings of a directory sorted bytewise by their
 * name in the tar (so `.wh.NAME` sorts as `.wh.NAME`); the opaque marker of a directory comes right
 * after the directory's own entry. The same directory always gives the same bytes (uname/gname and
 * atime are not written; mtimes are whole seconds).
 *
 * Metadata calls (lstat, readdir, readlink) and reads of small files are synchronous: on a real
 * layer they are a few microseconds each, several times less than the thread-pool round trip of
 * their async forms. Larger files are streamed asynchronously with backpressure.
 */
import { promises as fs, constants as C, closeSync, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, realpathSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
// tar-stream is loaded by the first tar written or read: a build whose steps are all cached
// writes none (the CLI bundle is split at imports, scripts/bundle.mjs)
import type { Pack } from 'tar-stream';
import { findOpaqueDirs } from '../../util/native-helper.js';
import { MbuildError } from '../../util/errors.js';

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export interface LayerTarOptions {
  /** Clamp timestamps: an entry newer than this is written with this time (SOURCE_DATE_EPOCH style). */
  mtime?: Date;
  /** End `out` when the tar is complete (default true, like stream.pipeline). */
  end?: boolean;
  /** the layer's opaque directories if already known (relative paths); else the helper finds them */
  opaqueDirs?: string[];
}

/** tar-stream's entry header (what `pack.entry` accepts). */
type EntryHeader = Parameters<Pack['entry']>[0];

// ustar numeric fields as tar-stream writes them: 6 octal digits for ids, 11 for times.
const MAX_USTAR_ID = 0o777777;
const MAX_HEADER_SECONDS = 2 ** 31 - 1; // tar-stream truncates the mtime to int32

const S_IFREG = 0o100000;
/** Files up to this size are read in one synchronous read (never more than this in memory per file). */
const SMALL_FILE = 128 * 1024;
/** How far the tar may run ahead of the consumer before header-only entries wait. */
const MAX_AHEAD = 4 * 1024 * 1024;

/** True when the layer directory holds no change at all (no entries). */
export async function isEmptyLayerDir(dir: string): Promise<boolean> {
  const d = await fs.opendir(dir);
  try {
    return (await d.read()) === null;
  } finally {
    await d.close().catch(() => undefined);
  }
}

export function isWhiteoutDevice(st: BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

/** Linux dev_t → major/minor (glibc's gnu_dev_major/minor). */
export function devMajor(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
export function devMinor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

/** Directory entries sorted bytewise; names must be valid UTF-8 (tar-stream writes strings). */
function readNames(dir: string): string[] {
  const raw = readdirSync(dir, { encoding: 'buffer' });
  const out: string[] = [];
  for (const b of raw) {
    const s = b.toString('utf8');
    if (!Buffer.from(s, 'utf8').equals(b)) {
      throw new MbuildError('MBUILD_LAYER_NAME', `cannot write layer: file name ${JSON.stringify(b.toString('latin1'))} in ${dir} is not valid UTF-8`);
    }
    out.push(s);
  }
  return out;
}

function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function normalizeRel(p: string): string {
  let s = p.replace(/\/+$/, '');
  while (s.startsWith('./')) s = s.slice(2);
  s = s.replace(/^\/+/, '');
  return s === '' ? '.' : s;
}

interface Child {
  /** real file name */
  name: string;
  /** name in the tar (`.wh.NAME` for a whiteout) */
  tarName: string;
  /** UTF-8 bytes of tarName, the sort key */
  key: Buffer;
  st: BigIntStats;
}

/** Bytes handed to the consumer so far, and a way to wait until it has taken more. */
class Flow {
  consumed = 0;
  private waiters: Array<() => void> = [];
  readonly counter = new Transform({
    transform: (chunk: Buffer, _enc, cb) => {
      this.consumed += chunk.length;
      for (const w of this.waiters.splice(0)) w();
      cb(null, chunk);
    },
  });
  /** Resolves when the consumer moved on (or the stream closed). */
  progress(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  wakeAll(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** One entry of a layer tar, in the form both writers (a layer directory, a planned COPY) produce. */
export interface TarEntry {
  /** path in the tar, no leading or trailing slash */
  name: string;
  type: 'directory' | 'file' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  /** mtime in whole seconds (already clamped) */
  sec: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** regular files with content: where it is read, and the identity and size it must still have */
  source?: { path: string; size: number; ino: bigint; dev: bigint };
}

/** mtime of a stat in whole seconds (floored), clamped to `clampSec` when given. */
export function statSeconds(st: { mtimeNs: bigint }, clampSec?: number): number {
  let s = Number(st.mtimeNs / 1_000_000_000n);
  if (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n) s -= 1; // floor
  if (clampSec !== undefined && s > clampSec) s = clampSec;
  return s;
}

/** Adds TarEntry values to a tar-stream pack, with backpressure (see Flow). */
export class TarEntryWriter {
  /** Bytes of tar requested from tar-stream so far (headers approximated as one block each). */
  private produced = 0;

  constructor(
    private readonly pack: Pack,
    private readonly flow: Flow,
  ) {}

  /** Header fields tar-stream cannot write in ustar go to a PAX record. */
  private header(e: TarEntry): EntryHeader {
    const pax: Record<string, string> = {};
    if (e.uid > MAX_USTAR_ID) pax.uid = String(e.uid);
    if (e.gid > MAX_USTAR_ID) pax.gid = String(e.gid);
    let hsec = e.sec;
    if (e.sec < 0 || e.sec > MAX_HEADER_SECONDS) {
      pax.mtime = String(e.sec);
      hsec = e.sec < 0 ? 0 : MAX_HEADER_SECONDS;
    }
    const h: EntryHeader = {
      name: e.type === 'directory' ? e.name + '/' : e.name,
      type: e.type,
      // tar-stream replaces a falsy mode with 0644/0755; the file-type bits keep it truthy and are
      // masked off (& 07777) when the header is encoded.
      mode: (e.mode & 0o7777) | S_IFREG,
      uid: Math.min(e.uid, MAX_USTAR_ID),
      gid: Math.min(e.gid, MAX_USTAR_ID),
      mtime: new Date(hsec * 1000),
      size: 0,
    };
    if (e.linkname !== undefined) h.linkname = e.linkname;
    if (e.devmajor !== undefined) h.devmajor = e.devmajor;
    if (e.devminor !== undefined) h.devminor = e.devminor;
    if (Object.keys(pax).length) h.pax = pax;
    return h;
  }

  /**
   * Add an entry with its (small) content. tar-stream applies no backpressure to header-only
   * entries, so when the tar runs MAX_AHEAD bytes ahead of the consumer, wait for it.
   */
  private async put(h: EntryHeader, data: Buffer = EMPTY): Promise<void> {
    this.produced += 512 + (h.pax ? 1024 : 0) + Math.ceil(data.length / 512) * 512;
    while (this.produced - this.flow.consumed > MAX_AHEAD && !this.pack.destroyed) await this.flow.progress();
    if (this.pack.destroyed) throw new MbuildError('MBUILD_LAYER', 'cannot write layer: the tar stream was closed');
    return new Promise((resolve, reject) => {
      this.pack.entry(h, data, (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * A zero-length marker file (`.wh.NAME`, `.wh..wh..opq`): mode 0, owner 0:0, mtime 0 (the epoch).
   * Fixed values keep the tar of an applied layer identical to the tar it was applied from (a
   * whiteout device made by overlayfs and one made by apply.ts differ in time and owner).
   */
  marker(name: string): Promise<void> {
    return this.put(this.header({ name, type: 'file', mode: 0, uid: 0, gid: 0, sec: 0 }));
  }

  async add(e: TarEntry): Promise<void> {
    const h = this.header(e);
    const src = e.source;
    if (e.type !== 'file' || !src || src.size === 0) return this.put(h);
    if (src.size <= SMALL_FILE) return this.put(h, readSmall(src.path, src, src.size));
    return this.stream(h, src);
  }

  /** A larger file, streamed with tar-stream's own backpressure. */
  private async stream(h: EntryHeader, src: NonNullable<TarEntry['source']>): Promise<void> {
    const size = src.size;
    h.size = size;
    this.produced += 512 + Math.ceil(size / 512) * 512;
    const fh = await fs.open(src.path, C.O_RDONLY | C.O_NOFOLLOW);
    try {
      const fst = await fh.stat({ bigint: true });
      if (fst.ino !== src.ino || fst.dev !== src.dev) throw new MbuildError('MBUILD_LAYER', `cannot write layer: ${src.path} changed while it was read`);
      let sink!: ReturnType<Pack['entry']>;
      // The entry callback fires once the entry is complete, or with the error that destroyed it.
      const done = new Promise<void>((resolve, reject) => {
        sink = this.pack.entry(h, (err) => (err ? reject(err) : resolve()));
      });
      done.catch(() => undefined);
      // the callback above reports the entry's error; without a listener the same error, emitted
      // again when the consumer fails (e.g. ENOSPC in the content store), would crash the process
      sink.on('error', () => undefined);
      const input = fh.createReadStream({ start: 0, end: size - 1, autoClose: false });
      try {
        for await (const chunk of input) {
          if (!sink.write(chunk as Buffer)) {
            await Promise.race([new Promise<void>((r) => sink.once('drain', () => r())), done]);
          }
        }
      } catch (err) {
        input.destroy();
        sink.destroy(err as Error);
        throw err;
      }
      sink.end(undefined);
      await done;
    } finally {
      await fh.close();
    }
  }
}

/** Walks an overlay-format layer directory and hands its entries, in tar order, to a TarEntryWriter. */
class LayerWalker {
  private readonly links = new Map<string, string>();
  private readonly clampSec: number | undefined;

  constructor(
    private readonly out: TarEntryWriter,
    private readonly root: string,
    private readonly opaque: Set<string>,
    opts: LayerTarOptions,
  ) {
    this.clampSec = opts.mtime ? Math.floor(opts.mtime.getTime() / 1000) : undefined;
  }

  async run(): Promise<void> {
    const rootSt = lstatSync(this.root, { bigint: true });
    if (!rootSt.isDirectory()) throw new MbuildError('MBUILD_LAYER', `cannot write layer: ${this.root} is not a directory`);
    if (this.opaque.has('.')) await this.out.marker(OPAQUE_MARKER);
    await this.walk(this.root, '');
  }

  private entry(name: string, type: TarEntry['type'], st: BigIntStats): TarEntry {
    return { name, type, mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), sec: statSeconds(st, this.clampSec) };
  }

  private children(abs: string): Child[] {
    const names = readNames(abs);
    const out: Child[] = [];
    for (const name of names) {
      const st = lstatSync(path.join(abs, name), { bigint: true });
      const tarName = isWhiteoutDevice(st) ? WHITEOUT_PREFIX + name : name;
      out.push({ name, st, tarName, key: Buffer.from(tarName, 'utf8') });
    }
    out.sort((a, b) => Buffer.compare(a.key, b.key) || byteCompare(a.name, b.name));
    return out;
  }

  private async walk(absDir: string, relDir: string): Promise<void> {
    const kids = this.children(absDir);
    for (const { name, tarName, st } of kids) {
      const abs = path.join(absDir, name);
      const rel = relDir ? `${relDir}/${name}` : name;
      const tarRel = relDir ? `${relDir}/${tarName}` : tarName;

      if (st.isDirectory()) {
        await this.out.add(this.entry(rel, 'directory', st));
        if (this.opaque.has(rel)) await this.out.marker(`${rel}/${OPAQUE_MARKER}`);
        await this.walk(abs, rel);
        continue;
      }
      if (isWhiteoutDevice(st)) {
        // Never tracked as a hard link: overlayfs shares one whiteout inode between deletions.
        await this.out.marker(tarRel);
        continue;
      }
      if (st.isSocket()) continue; // not representable in tar (Docker skips them too)

      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = this.links.get(key);
        if (first !== undefined) {
          await this.out.add({ ...this.entry(rel, 'link', st), linkname: first });
          continue;
        }
        this.links.set(key, rel);
      }

      if (st.isFile()) await this.out.add({ ...this.entry(rel, 'file', st), source: { path: abs, size: Number(st.size), ino: st.ino, dev: st.dev } });
      else if (st.isSymbolicLink()) await this.out.add({ ...this.entry(rel, 'symlink', st), linkname: readlinkSync(abs) });
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        await this.out.add({ ...this.entry(rel, st.isCharacterDevice() ? 'character-device' : 'block-device', st), devmajor: devMajor(st.rdev), devminor: devMinor(st.rdev) });
      } else if (st.isFIFO()) await this.out.add(this.entry(rel, 'fifo', st));
    }
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * tar-stream emits every header and small file as its own chunk; a file sink would make one write
 * through the thread pool for each (three times slower on a tree of small files). Hand them on in
 * batches of about `size` bytes.
 */
const COALESCE_BYTES = 1024 * 1024;
function coalesce(size: number): Transform {
  let parts: Buffer[] = [];
  let held = 0;
  const take = (): Buffer => {
    const b = parts.length === 1 ? parts[0]! : Buffer.concat(parts, held);
    parts = [];
    held = 0;
    return b;
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      held += chunk.length;
      cb(null, held >= size ? take() : undefined);
    },
    flush(cb) {
      cb(null, held ? take() : undefined);
    },
  });
}

/** Read a small file whole (O_NOFOLLOW, same inode as listed, exactly `size` bytes). */
function readSmall(abs: string, st: { ino: bigint; dev: bigint }, size: number): Buffer {
  const fd = openSync(abs, C.O_RDONLY | C.O_NOFOLLOW);
  try {
    const fst = fstatSync(fd, { bigint: true });
    if (fst.ino !== st.ino || fst.dev !== st.dev) throw new MbuildError('MBUILD_LAYER', `cannot write layer: ${abs} changed while it was read`);
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) throw new MbuildError('MBUILD_LAYER', `cannot write layer: ${abs} shrank while it was read`);
      off += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/**
 * Write a tar to `out`, streaming: `produce` adds the entries. `out` is ended when the tar is
 * complete (unless `end` is false) and destroyed on error.
 */
export async function writeTar(out: NodeJS.WritableStream | Writable, produce: (w: TarEntryWriter) => Promise<void>, end = true): Promise<void> {
  const pack = (await import('./tar-stream.js')).pack();
  const flow = new Flow();
  const src = Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
  const piping = pipeline(src, flow.counter, coalesce(COALESCE_BYTES), out as NodeJS.WritableStream, { end });
  piping.catch(() => undefined).finally(() => flow.wakeAll());
  try {
    await produce(new TarEntryWriter(pack, flow));
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    src.destroy(err as Error);
    const pipeErr = await piping.then(
      () => null,
      (e: unknown) => e,
    );
    // When the consumer failed first, its error is the cause; ours is only the consequence.
    throw pipeErr ?? err;
  }
  await piping;
}

/**
 * Write the OCI layer tar of an overlay-format layer directory to `out`, streaming.
 * `out` is ended when the tar is complete (unless `opts.end === false`) and destroyed on error.
 */
export async function writeLayerTar(layerDir: string, out: NodeJS.WritableStream | Writable, opts: LayerTarOptions = {}): Promise<void> {
  const root = realpathSync(layerDir);
  const opaque = new Set<string>((opts.opaqueDirs ?? (await findOpaqueDirs(root))).map((p: string) => normalizeRel(p)));
  await writeTar(out, (w) => new LayerWalker(w, root, opaque, opts).run(), opts.end ?? true);
}

/** The OCI layer tar of an overlay-format layer directory as a readable stream. */
export function layerTarStream(layerDir: string, opts: Omit<LayerTarOptions, 'end'> = {}): Readable {
  const out = new PassThrough();
  writeLayerTar(layerDir, out, opts).catch((err: unknown) => out.destroy(err as Error));
  return out;
}
