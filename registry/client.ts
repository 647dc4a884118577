/**
 * The OCI distribution API for one repository on one endpoint: authentication on demand,
 * retries with backoff on 429/5xx/connection resets, blob downloads that resume with Range.
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Authenticator, authenticatorFor } from './auth.js';
import { describeErrorBody } from './errors.js';
import { rememberScheme, type Endpoint } from './mirrors.js';
import { errorText, header, readCapped, safeUrl, send, type Body, type Response } from './transport.js';
import { DigestMismatchError, RegistryAuthError, RegistryError, RegistryNotFoundError, RegistryUnreachableError } from '../util/errors.js';
import { isDigest, sha256 } from '../store/digest.js';
import { MediaType } from '../store/oci.js';

/** containerd's cap: a manifest or index larger than this is refused */
export const MAX_MANIFEST_BYTES = 4 << 20;

export const MANIFEST_ACCEPT = [MediaType.index, MediaType.manifest, MediaType.dockerManifestList, MediaType.dockerManifest].join(', ');

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RETRY_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

export function retryPolicy(): { attempts: number; baseMs: number } {
  const attempts = Number(process.env.MBUILD_REGISTRY_RETRIES ?? 5);
  const baseMs = Number(process.env.MBUILD_REGISTRY_BACKOFF_MS ?? 250);
  return { attempts: Number.isFinite(attempts) && attempts >= 1 ? attempts : 5, baseMs: Number.isFinite(baseMs) && baseMs >= 0 ? baseMs : 250 };
}

function errCode(err: unknown): string | undefined {
  let e = err as { code?: string; cause?: unknown } | undefined;
  for (let i = 0; e && i < 4; i++) {
    if (e.code && RETRY_CODES.has(e.code)) return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

/** A failure worth another try: a reset or timeout, or a retryable status. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof RegistryError && err.status !== undefined) return RETRY_STATUS.has(err.status);
  return errCode(err) !== undefined;
}

export function backoffMs(attempt: number, retryAfter?: string): number {
  const { baseMs } = retryPolicy();
  const ra = retryAfter !== undefined ? Number(retryAfter) : NaN;
  if (Number.isFinite(ra) && ra >= 0) return Math.min(ra * 1000, 10_000);
  return Math.min(baseMs * 2 ** (attempt - 1), 8_000) * (0.75 + Math.random() * 0.5);
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** called for every attempt: a request body must be made anew each time */
  body?: () => Body | undefined;
  /** retry 429/5xx/resets (off for upload steps that cannot be repeated) */
  retry?: boolean;
  extraScopes?: string[];
}

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

export class RegistryClient {
  private auth: Authenticator;
  constructor(
    public endpoint: Endpoint,
    readonly repository: string,
    readonly push = false,
    /** a private authenticator (login checks credentials not yet saved) */
    private readonly ownAuth?: Authenticator,
  ) {
    this.auth = ownAuth ?? authenticatorFor(endpoint.url, endpoint.credName);
  }

  get host(): string {
    return this.endpoint.url.host;
  }

  scopes(extra: string[] = []): string[] {
    if (!this.repository) return extra;
    return [`repository:${this.repository}:${this.push ? 'pull,push' : 'pull'}`, ...extra];
  }

  url(rest: string): URL {
    const base = this.endpoint.url;
    return new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}/v2/${this.repository}/${rest}`);
  }

  /** A Location header from the registry, resolved against the endpoint. */
  resolve(location: string): URL {
    return new URL(location, this.endpoint.url);
  }

  private probing?: Promise<void>;

  /**
   * An insecure host (loopback, --insecure-registry) is tried over https first, then over plain
   * http when https cannot be spoken at all (Docker's order). The answer to GET /v2/ also
   * teaches the authenticator the registry's challenge.
   */
  private async probe(): Promise<void> {
    const base = this.endpoint.url;
    const v2 = new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}/v2/`);
    let res: Response;
    try {
      res = await send(v2, { method: 'GET' });
    } catch (err) {
      if (!(err instanceof RegistryUnreachableError)) throw err;
      this.fallBackToHttp();
      return;
    }
    if (res.status === 401) this.auth.learn(res.headers['www-authenticate'], this.scopes());
    await res.body.dump().catch(() => undefined);
    rememberScheme(base.host, 'https:');
    this.endpoint = { ...this.endpoint, httpFallback: false };
  }

  /** https could not be spoken to an insecure host: switch this endpoint to plain http. */
  private fallBackToHttp(): void {
    const u = new URL(this.endpoint.url);
    u.protocol = 'http:';
    rememberScheme(u.host, 'http:');
    this.endpoint = { ...this.endpoint, url: u, httpFallback: false };
    this.auth = this.ownAuth ? new Authenticator(u, this.endpoint.credName, this.ownAuth.credentialsGiven) : authenticatorFor(u, this.endpoint.credName);
  }

  async request(method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE', target: URL, opts: RequestOptions = {}): Promise<Response> {
    const { attempts } = retryPolicy();
    const retry = opts.retry ?? true;
    const scopes = this.scopes(opts.extraScopes);
    let url = target;
    if (this.endpoint.httpFallback) {
      await (this.probing ??= this.probe());
      if (url.host === this.endpoint.url.host && url.protocol !== this.endpoint.url.protocol) {
        url = new URL(url);
        url.protocol = this.endpoint.url.protocol;
      }
    }
    let authRetried = false;
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        const value = await this.auth.header(scopes);
        res = await send(url, { method, headers: opts.headers, body: opts.body?.(), authorization: value ? { origin: this.endpoint.url.origin, value } : undefined });
      } catch (err) {
        if (retry && attempt < attempts && isRetryable(err)) {
          await sleep(backoffMs(attempt));
          continue;
        }
        throw err;
      }
      if (res.status === 401) {
        const challenge = res.headers['www-authenticate'];
        await res.body.dump().catch(() => undefined);
        if (!authRetried && this.auth.learn(challenge, scopes)) {
          authRetried = true;
          attempt--;
          continue;
        }
        throw this.unauthorized(401);
      }
      if (retry && attempt < attempts && RETRY_STATUS.has(res.status)) {
        await res.body.dump().catch(() => undefined);
        await sleep(backoffMs(attempt, header(res, 'retry-after')));
        continue;
      }
      return res;
    }
  }

  private unauthorized(status: number, detail = ''): RegistryAuthError {
    const d = detail ? ` (${detail})` : '';
    if (!this.auth.usedCredentials) {
      return new RegistryAuthError(`${this.host}: authentication required to access ${this.repository}${d}; log in with "mbuild login ${this.endpoint.credName}"`, status);
    }
    return new RegistryAuthError(`${this.host}: unauthorized: wrong username or password, or no access to ${this.repository}${d}`, status);
  }

  /** Turn an unexpected answer into an error (consuming its body). */
  async fail(res: Response, what: string): Promise<never> {
    const detail = describeErrorBody(await errorText(res));
    if (res.status === 404) throw new RegistryNotFoundError(`${what}: not found${detail ? ` (${detail})` : ''}`);
    if (res.status === 401 || res.status === 403) throw this.unauthorized(res.status, detail);
    throw new RegistryError('MBUILD_REGISTRY', `${what}: HTTP ${res.status} from ${safeUrl(res.url)}${detail ? `: ${detail}` : ''}`, res.status);
  }

  /** GET a manifest or index (≤ 4 MiB), verified against the digest asked for or announced. */
  async getManifest(reference: string): Promise<FetchedManifest> {
    const what = `manifest ${this.repository}:${reference} on ${this.host}`;
    const res = await this.request('GET', this.url(`manifests/${reference}`), { headers: { accept: MANIFEST_ACCEPT } });
    if (res.status !== 200) await this.fail(res, what);
    const bytes = await readCapped(res, MAX_MANIFEST_BYTES, what);
    const digest = sha256(bytes);
    if (isDigest(reference) && digest !== reference) throw new DigestMismatchError(`${what}: the registry sent content with digest ${digest}`);
    const announced = header(res, 'docker-content-digest');
    if (announced && announced.startsWith('sha256:') && announced !== digest) {
      throw new DigestMismatchError(`${what}: content digest ${digest} does not match the Docker-Content-Digest ${announced}`);
    }
    return { bytes, digest, mediaType: manifestMediaType(bytes, header(res, 'content-type')) };
  }

  /** HEAD a manifest: its digest and media type, or undefined when the registry has none. */
  async headManifest(reference: string): Promise<{ digest?: string; mediaType?: string } | undefined> {
    const res = await this.request('HEAD', this.url(`manifests/${reference}`), { headers: { accept: MANIFEST_ACCEPT } });
    await res.body.dump().catch(() => undefined);
    if (res.status === 404) return undefined;
    if (res.status !== 200) await this.fail(res, `manifest ${this.repository}:${reference} on ${this.host}`);
    return { digest: header(res, 'docker-content-digest'), mediaType: header(res, 'content-type') };
  }

  async putManifest(reference: string, mediaType: string, bytes: Buffer): Promise<string | undefined> {
    const res = await this.request('PUT', this.url(`manifests/${reference}`), { headers: { 'content-type': mediaType }, body: () => bytes });
    if (res.status !== 201 && res.status !== 200) await this.fail(res, `upload of manifest ${this.repository}:${reference} to ${this.host}`);
    await res.body.dump().catch(() => undefined);
    return header(res, 'docker-content-digest');
  }

  async blobExists(digest: string): Promise<boolean> {
    const res = await this.request('HEAD', this.url(`blobs/${digest}`));
    await res.body.dump().catch(() => undefined);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    return this.fail(res, `blob ${digest} in ${this.repository} on ${this.host}`);
  }

  /**
   * A blob's bytes as one stream. A connection that breaks mid-transfer is resumed with a Range
   * request from the byte reached (a server that ignores Range resends all: the part already
   * passed on is skipped). The caller verifies digest and size.
   */
  blobStream(digest: string, size: number): Readable {
    return Readable.from(this.blobChunks(digest, size), { objectMode: false });
  }

  private async *blobChunks(digest: string, size: number): AsyncGenerator<Buffer> {
    const what = `blob ${digest} of ${this.repository} on ${this.host}`;
    const { attempts } = retryPolicy();
    let received = 0;
    for (let failures = 0; ; ) {
      const headers: Record<string, string> = received > 0 ? { range: `bytes=${received}-` } : {};
      const res = await this.request('GET', this.url(`blobs/${digest}`), { headers });
      let skip = 0;
      if (res.status === 206 && received > 0) {
        const m = /^bytes (\d+)-/.exec(header(res, 'content-range') ?? '');
        const start = m ? Number(m[1]) : NaN;
        if (start !== received) {
          res.body.destroy();
          throw new RegistryError('MBUILD_REGISTRY', `${what}: the registry resumed at the wrong offset`);
        }
      } else if (res.status === 200) skip = received;
      else await this.fail(res, what);
      try {
        for await (const chunk of chunksOf(res.body as unknown as Readable)) {
          let c = chunk;
          if (skip > 0) {
            const n = Math.min(skip, c.length);
            skip -= n;
            c = c.subarray(n);
            if (!c.length) continue;
          }
          received += c.length;
          yield c;
        }
        // the body ended cleanly: done unless it was cut short
        if (received >= size) return;
        throw Object.assign(new Error(`connection closed after ${received} of ${size} bytes`), { code: 'ECONNRESET' });
      } catch (err) {
        res.body.destroy();
        if (!isRetryable(err) || ++failures >= attempts) {
          if (err instanceof RegistryError || err instanceof DigestMismatchError) throw err;
          throw new RegistryUnreachableError(`${what}: download failed after ${received} bytes: ${(err as Error).message}`, err);
        }
        await sleep(backoffMs(failures));
      } finally {
        if (!res.body.destroyed) res.body.destroy();
      }
    }
  }

  /** POST an upload session; with `mount`, ask the registry to link the blob from another repository. */
  async startUpload(mount?: { digest: string; from: string }): Promise<{ mounted: true } | { mounted: false; location: URL }> {
    const u = this.url('blobs/uploads/');
    let extraScopes: string[] | undefined;
    if (mount) {
      u.searchParams.set('mount', mount.digest);
      u.searchParams.set('from', mount.from);
      extraScopes = [`repository:${mount.from}:pull`];
    }
    const res = await this.request('POST', u, { extraScopes });
    await res.body.dump().catch(() => undefined);
    if (res.status === 201 && mount) return { mounted: true };
    if (res.status !== 202) return this.fail(res, `starting an upload to ${this.repository} on ${this.host}`);
    const loc = header(res, 'location');
    if (!loc) throw new RegistryError('MBUILD_REGISTRY', `${this.host} started an upload without a Location`);
    return { mounted: false, location: this.resolve(loc) };
  }

  /** Send a chunk (PATCH with Content-Range); returns the next location. */
  async patchChunk(location: URL, start: number, data: Buffer): Promise<URL> {
    const res = await this.request('PATCH', location, {
      retry: false,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length), 'content-range': `${start}-${start + data.length - 1}` },
      body: () => data,
    });
    await res.body.dump().catch(() => undefined);
    if (res.status !== 202) return this.fail(res, `uploading to ${this.repository} on ${this.host}`);
    const loc = header(res, 'location');
    return loc ? this.resolve(loc) : location;
  }

  /** Close an upload with PUT ?digest= (with the whole blob when `body` is given). */
  async finishUpload(location: URL, digest: string, body?: { size: number; open: () => Readable }): Promise<void> {
    const u = new URL(location);
    u.searchParams.set('digest', digest);
    const headers: Record<string, string> = body ? { 'content-type': 'application/octet-stream', 'content-length': String(body.size) } : {};
    const res = await this.request('PUT', u, { retry: false, headers, body: body ? () => body.open() : undefined });
    await res.body.dump().catch(() => undefined);
    if (res.status !== 201 && res.status !== 204) return this.fail(res, `upload of blob ${digest} to ${this.repository} on ${this.host}`);
  }

  /** A login check: GET /v2/ authenticated. */
  async ping(): Promise<void> {
    const base = this.endpoint.url;
    const res = await this.request('GET', new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}/v2/`));
    if (res.status !== 200) return this.fail(res, `login to ${this.host}`);
    await res.body.dump().catch(() => undefined);
  }
}

/** The media type of a manifest: its own field, else Content-Type, else by its shape. */
export function manifestMediaType(bytes: Buffer, contentType: string | undefined): string {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', 'the registry sent a manifest that is not JSON');
  }
  if (typeof json !== 'object' || json === null) throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', 'the registry sent a manifest that is not a JSON object');
  if (json.schemaVersion === 1) throw new RegistryError('MBUILD_REGISTRY_BAD_MANIFEST', 'Docker schema 1 manifests are not supported (push the image again with a current client)');
  if (typeof json.mediaType === 'string' && json.mediaType) return json.mediaType;
  const ct = (contentType ?? '').split(';')[0].trim();
  if (ct && ct !== 'application/json' && ct !== 'text/plain') return ct;
  if (Array.isArray(json.manifests)) return MediaType.index;
  return MediaType.manifest;
}

/**
 * A body's chunks as they arrive. Readable's own async iterator reads with read(), which joins
 * every chunk buffered meanwhile into one new buffer: for a 20 MB blob that copying was ~10% of a
 * cache import's CPU. 'data' events hand each chunk over as it is; the body is paused while a
 * few wait, so a slow consumer still holds back the connection.
 */
async function* chunksOf(body: Readable): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let ended = false;
  let failed: { err: unknown } | undefined;
  let wake: (() => void) | undefined;
  const signal = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  body.on('data', (c: Buffer) => {
    queue.push(c);
    if (queue.length >= 16) body.pause();
    signal();
  });
  body.on('end', () => {
    ended = true;
    signal();
  });
  body.on('close', () => {
    ended = true; // closed without 'end': the caller's byte count tells a cut-short body
    signal();
  });
  body.on('error', (err) => {
    failed = { err };
    signal();
  });
  for (;;) {
    const c = queue.shift();
    if (c) {
      if (queue.length < 4 && body.isPaused()) body.resume();
      yield c;
      continue;
    }
    if (failed) throw failed.err;
    if (ended) return;
    await new Promise<void>((resolve) => (wake = resolve));
  }
}
