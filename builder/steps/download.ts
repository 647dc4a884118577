/**
 * ADD <url>: what BuildKit's http source does. The step is keyed by the downloaded content's
 * digest (or by --checksum, without downloading at all); the ETag and Last-Modified of the last
 * download are sent back (If-None-Match / If-Modified-Since), so an unchanged resource answers 304
 * and is not downloaded again. The content goes into the store's temp area, following redirects
 * as Docker does (the HTTP client is loaded lazily: only builds with URLs pay for it).
 */
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Store } from '../../store/store.js';
import { MbuildError } from '../../util/errors.js';
import type { SourceRange } from '../../util/errors.js';

export interface Downloaded {
  file: string;
  name: string;
  mtime?: Date;
  mode?: number;
}

/** What a URL resolved to for the cache key; `file` is set when it had to be downloaded. */
export interface UrlSource {
  url: string;
  name: string;
  /** content digest ("sha256:…"): from --checksum, or of the bytes */
  digest: string;
  mtime?: string;
  file?: Downloaded;
}

interface UrlRecord {
  etag?: string;
  lastModified?: string;
  digest: string;
}

/** BuildKit names the file after the URL path's last element, `__unnamed__` when there is none. */
export function urlFileName(url: string): string {
  const base = path.posix.basename(new URL(url).pathname);
  let name = base;
  try {
    name = decodeURIComponent(base);
  } catch {
    /* kept as written */
  }
  return name === '' || name === '.' || name === '/' ? '__unnamed__' : name;
}

const ALGORITHMS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** ADD --checksum's value, checked the way go-digest parses it. */
export function parseChecksum(value: string, range: SourceRange): string {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(value);
  if (!m || ALGORITHMS[m[1]!] === undefined || ALGORITHMS[m[1]!] !== m[2]!.length) {
    throw new MbuildError('MBUILD_PARSE', `invalid ADD --checksum "${value}": expected sha256:<64 hex digits> (or sha384, sha512)`, { range });
  }
  return value;
}

const recordFile = (cacheDir: string, url: string) => path.join(cacheDir, 'urls', `${createHash('sha256').update(url).digest('hex')}.json`);

async function readRecord(cacheDir: string, url: string): Promise<UrlRecord | undefined> {
  try {
    return JSON.parse(await fs.readFile(recordFile(cacheDir, url), 'utf8')) as UrlRecord;
  } catch {
    return undefined;
  }
}

async function writeRecord(cacheDir: string, url: string, rec: UrlRecord): Promise<void> {
  const file = recordFile(cacheDir, url);
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(rec));
  await fs.rename(tmp, file);
}

/**
 * The URL's identity for the step's cache key. With a checksum nothing is fetched. Otherwise the
 * last download's validators are sent; a 304 keeps the recorded digest, anything else is
 * downloaded (and verified against `checksum` when given).
 */
export async function resolveUrl(store: Store, cacheDir: string, url: string, checksum: string | undefined, range: SourceRange): Promise<UrlSource> {
  const name = urlFileName(url);
  if (checksum) return { url, name, digest: checksum };
  const rec = await readRecord(cacheDir, url);
  const headers: Record<string, string> = {};
  if (rec?.etag) headers['if-none-match'] = rec.etag;
  if (rec?.lastModified) headers['if-modified-since'] = rec.lastModified;
  const got = await download(store, url, undefined, range, headers);
  if (got === 'not-modified') return { url, name, digest: rec!.digest, mtime: rec!.lastModified };
  await writeRecord(cacheDir, url, { etag: got.etag, lastModified: got.lastModified, digest: got.digest });
  return { url, name, digest: got.digest, mtime: got.lastModified, file: got.file };
}

/** The content of a resolved URL for the copy itself: downloaded now if the key needed no download. */
export async function fetchUrl(store: Store, src: UrlSource, checksum: string | undefined, range: SourceRange): Promise<Downloaded> {
  if (src.file) return src.file;
  const got = await download(store, src.url, checksum, range, {});
  if (got === 'not-modified') throw new MbuildError('MBUILD_ADD_URL', `ADD ${src.url}: the server answered 304 to an unconditional request`, { range });
  if (!checksum && got.digest !== src.digest) {
    await fs.rm(path.dirname(got.file.file), { recursive: true, force: true });
    throw new MbuildError('MBUILD_ADD_URL', `ADD ${src.url}: the content changed during the build (${src.digest}, now ${got.digest})`, { range });
  }
  return got.file;
}

async function download(
  store: Store,
  url: string,
  checksum: string | undefined,
  range: SourceRange,
  headers: Record<string, string>,
): Promise<'not-modified' | { file: Downloaded; digest: string; etag?: string; lastModified?: string }> {
  const { send } = await import('../../registry/transport.js');
  const dir = await store.mkTemp('add');
  const file = path.join(dir, 'download');
  const algorithm = checksum ? checksum.slice(0, checksum.indexOf(':')) : 'sha256';
  try {
    const res = await send(new URL(url), { method: 'GET', maxRedirects: 10, plainWeb: true, headers });
    if (res.status === 304 && Object.keys(headers).length > 0) {
      res.body.resume();
      await fs.rm(dir, { recursive: true, force: true });
      return 'not-modified';
    }
    if (res.status >= 300) {
      res.body.resume();
      throw new MbuildError('MBUILD_ADD_URL', `ADD ${url}: the server answered ${res.status}`, { range });
    }
    const hash = createHash(algorithm);
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    await pipeline(res.body as unknown as Readable, tap, createWriteStream(file, { mode: 0o600 }));
    const digest = `${algorithm}:${hash.digest('hex')}`;
    if (checksum && digest !== checksum) {
      throw new MbuildError('MBUILD_ADD_CHECKSUM', `ADD ${url}: checksum mismatch: expected ${checksum}, got ${digest}`, { range });
    }
    const header = (h: string) => (typeof res.headers[h] === 'string' ? (res.headers[h] as string) : undefined);
    const lastModified = header('last-modified');
    const mtime = lastModified !== undefined && !Number.isNaN(Date.parse(lastModified)) ? new Date(lastModified) : undefined;
    return { file: { file, name: urlFileName(url), mtime }, digest, etag: header('etag'), lastModified };
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    if (err instanceof MbuildError) throw err;
    throw new MbuildError('MBUILD_ADD_URL', `ADD ${url}: ${(err as Error).message}`, { cause: err, range });
  }
}
