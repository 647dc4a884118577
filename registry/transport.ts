/**
 * HTTP over undici for registries: one dispatcher per TLS policy, redirects followed by hand so
 * that credentials go only to the origin they were meant for (never to another host, never
 * over a downgrade to plain http).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { Agent, type Dispatcher } from 'undici';
import { RegistryError, RegistryUnreachableError } from '../util/errors.js';
import { describeNetworkError } from './errors.js';
import { isInsecure, registrySettings } from './settings.js';

// undici parses HTTP with llhttp compiled to WebAssembly on the first connection. V8 then tiers it
// up with TurboFan on a background thread, and the process cannot exit until that compile ends:
// 130 ms of a 0.42 s push that found every blob already there. The baseline compiler's code is
// plenty for parsing response headers. The flag is read when the module is compiled, which
// happens after this line.
setFlagsFromString('--liftoff-only');

export type Body = Buffer | string | Readable;

export interface SendOptions {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  headers?: Record<string, string>;
  body?: Body;
  /** sent only to this origin (scheme+host+port), dropped on a redirect elsewhere */
  authorization?: { origin: string; value: string };
  maxRedirects?: number;
  /**
   * not a registry (ADD <url>): TLS is always verified, against the system roots and the
   * NODE_EXTRA_CA_CERTS file; registry settings (certs.d, insecure hosts) do not apply
   */
  plainWeb?: boolean;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  /** the URL that answered (after redirects) */
  url: URL;
}

const agents = new Map<string, Agent>();

/** The CA certificates configured for a host: CERTSDIR/<host:port>/*.crt (Docker's certs.d). */
export function extraCAs(hostPort: string): string[] {
  const dir = path.join(registrySettings().certsDir, hostPort.replace(/[/\\]/g, '_'));
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n.endsWith('.crt')).sort().map((n) => readFileSync(path.join(dir, n), 'utf8'));
}

let launcherCAs: { file: string | undefined; pems: string[] } | undefined;

/**
 * The CA file of NODE_EXTRA_CA_CERTS, which the launcher (bin/mbuild) hands over as
 * MBUILD_EXTRA_CA_CERTS: node itself would parse it at start-up, ~50 ms for a system bundle, in
 * every command, most of which make no TLS connection. Read here on first use, with node's
 * meaning: trusted in addition to the built-in roots; an unreadable file is a warning.
 */
export function launcherExtraCAs(): string[] {
  const file = process.env.MBUILD_EXTRA_CA_CERTS || undefined;
  if (launcherCAs && launcherCAs.file === file) return launcherCAs.pems;
  const pems: string[] = [];
  if (file) {
    try {
      pems.push(readFileSync(file, 'utf8'));
    } catch (err) {
      process.stderr.write(`warning: ignoring extra certs from ${file} (NODE_EXTRA_CA_CERTS): ${(err as Error).message}\n`);
    }
  }
  launcherCAs = { file, pems };
  return pems;
}

/** The TLS options for a host: see dispatcherFor. */
export function tlsOptionsFor(url: URL, plainWeb = false): { key: string; connect: Record<string, unknown> } {
  if (url.protocol !== 'https:') return { key: 'default', connect: {} };
  const fromEnv = launcherExtraCAs();
  if (!plainWeb) {
    const cas = extraCAs(url.host);
    if (cas.length) return { key: 'ca:' + url.host, connect: { ca: [...rootCertificates, ...fromEnv, ...cas] } };
    if (isInsecure(url.host)) return { key: 'noverify', connect: { rejectUnauthorized: false } };
  }
  return fromEnv.length ? { key: 'env-ca', connect: { ca: [...rootCertificates, ...fromEnv] } } : { key: 'default', connect: {} };
}

/**
 * The dispatcher for a URL. https to a host with its own CA in certs.d: verified against that CA
 * (and the system roots). https to an insecure host (loopback, --insecure-registry): TLS
 * without verification, as Docker does. Everything else: normal verification, trusting the
 * NODE_EXTRA_CA_CERTS file too.
 */
export function dispatcherFor(url: URL, plainWeb = false): Agent {
  const { key, connect } = tlsOptionsFor(url, plainWeb);
  let a = agents.get(key);
  if (!a) {
    a = new Agent({ connect: { timeout: 15_000, ...connect }, headersTimeout: 60_000, bodyTimeout: 60_000, keepAliveTimeout: 4_000 });
    agents.set(key, a);
  }
  return a;
}

/** Close pooled connections (the CLI calls this so the process can exit promptly). */
export async function closeTransport(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map((a) => a.close().catch(() => undefined)));
}

/** A URL without userinfo, query or fragment: safe to show. */
export function safeUrl(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/** One request; redirects (GET/HEAD only) followed with the credential rules above. */
export async function send(url: URL, opts: SendOptions): Promise<Response> {
  let current = url;
  const max = opts.maxRedirects ?? 5;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { 'user-agent': 'mbuild/0.1', ...(opts.headers ?? {}) };
    if (opts.authorization && current.origin === opts.authorization.origin) headers.authorization = opts.authorization.value;
    let res: Dispatcher.ResponseData;
    try {
      res = await dispatcherFor(current, opts.plainWeb).request({
        origin: current.origin,
        path: `${current.pathname}${current.search}`,
        method: opts.method,
        headers,
        body: hop === 0 ? opts.body : undefined,
      });
    } catch (err) {
      throw new RegistryUnreachableError(`${opts.method} ${safeUrl(current)}: ${describeNetworkError(err)}`, err);
    }
    const status = res.statusCode;
    const location = res.headers.location;
    if (status >= 300 && status < 400 && status !== 304 && typeof location === 'string') {
      await res.body.dump().catch(() => undefined);
      if (opts.method !== 'GET' && opts.method !== 'HEAD') {
        throw new RegistryError('MBUILD_REGISTRY', `${opts.method} ${safeUrl(current)}: unexpected redirect (${status})`, status);
      }
      if (hop >= max) throw new RegistryError('MBUILD_REGISTRY', `${opts.method} ${safeUrl(url)}: too many redirects`, status);
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new RegistryError('MBUILD_REGISTRY', `${opts.method} ${safeUrl(current)}: invalid redirect location`, status);
      }
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new RegistryError('MBUILD_REGISTRY', `${safeUrl(current)} redirected to a ${next.protocol} URL`, status);
      if (current.protocol === 'https:' && next.protocol === 'http:' && !isInsecure(next.host)) {
        throw new RegistryError('MBUILD_REGISTRY', `${safeUrl(current)} redirected to plain http (${next.host}); refused`, status);
      }
      current = next;
      continue;
    }
    return { status, headers: res.headers, body: res.body, url: current };
  }
}

/** Read a response body, at most `max` bytes (the rest is an error). */
export async function readCapped(res: Response, max: number, what: string): Promise<Buffer> {
  const len = Number(res.headers['content-length']);
  if (Number.isFinite(len) && len > max) {
    res.body.destroy();
    throw new RegistryError('MBUILD_REGISTRY_TOO_LARGE', `${what} is ${len} bytes, more than the ${max} allowed`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) {
      res.body.destroy();
      throw new RegistryError('MBUILD_REGISTRY_TOO_LARGE', `${what} is more than the ${max} bytes allowed`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** A short text of an error response (for messages), never more than 64 KiB read. */
export async function errorText(res: Response): Promise<string> {
  try {
    return (await readCapped(res, 64 << 10, 'error body')).toString('utf8');
  } catch {
    return '';
  }
}

export function header(res: Response, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
