/**
 * The registry client against small fake servers on loopback: credentials and redirects,
 * Bearer tokens cached per scope, retries, Range resume, manifest caps and digest checks.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RegistryClient } from '../../registry/client.js';
import { Authenticator, resetAuthenticators } from '../../registry/auth.js';
import { configureRegistry } from '../../registry/settings.js';
import type { Endpoint } from '../../registry/mirrors.js';
import { ContentStore } from '../../store/content.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
interface Fake {
  host: string;
  seen: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  handler: Handler;
  close: () => Promise<void>;
}

async function fake(bind: string, handler: Handler = (_q, r) => r.end()): Promise<Fake> {
  const f = { seen: [], handler } as unknown as Fake;
  const srv = http.createServer((req, res) => {
    f.seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    f.handler(req, res);
  });
  await new Promise<void>((r) => srv.listen(0, bind, r));
  f.host = `${bind}:${(srv.address() as AddressInfo).port}`;
  f.close = () => new Promise<void>((r) => (srv.closeAllConnections(), srv.close(() => r())));
  return f;
}

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');
const endpoint = (host: string): Endpoint => ({ url: new URL(`http://${host}`), registry: host, mirror: false, credName: host, httpFallback: false });
const basic = (u: string, p: string) => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');

let work: string;
const fakes: Fake[] = [];
const saved = { ...process.env };
beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-regclient-'));
  process.env.MBUILD_CONFIG = path.join(work, 'none.json');
  process.env.DOCKER_CONFIG = path.join(work, 'docker');
  process.env.MBUILD_REGISTRY_BACKOFF_MS = '5';
  configureRegistry({});
});
afterEach(async () => {
  for (const f of fakes.splice(0)) await f.close();
  resetAuthenticators();
});
afterAll(async () => {
  process.env = saved;
  await fs.rm(work, { recursive: true, force: true });
});

async function start(bind: string, handler?: Handler): Promise<Fake> {
  const f = await fake(bind, handler);
  fakes.push(f);
  return f;
}

describe('credentials and redirects', () => {
  it('sends credentials to the registry, keeps them on a same-origin redirect, drops them on a redirect to another host', async () => {
    const blob = randomBytes(3000);
    const digest = sha(blob);
    const other = await start('127.0.0.2', (_q, r) => r.end(blob));
    const reg = await start('127.0.0.1', (q, r) => {
      if (q.headers.authorization !== basic('u', 'pw')) {
        r.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
      } else if (q.url === `/v2/r/blobs/${digest}`) {
        r.writeHead(307, { location: '/storage/one' }).end();
      } else if (q.url === '/storage/one') {
        r.writeHead(302, { location: `http://${other.host}/elsewhere?sig=1` }).end();
      } else r.writeHead(404).end();
    });
    const ep = endpoint(reg.host);
    const client = new RegistryClient(ep, 'r', false, new Authenticator(ep.url, reg.host, { username: 'u', password: 'pw' }));
    const store = new ContentStore(path.join(work, 'store1'));
    expect(await store.ingest(client.blobStream(digest, blob.length), { digest, size: blob.length })).toEqual({ digest, size: blob.length });
    expect(reg.seen.map((s) => s.headers.authorization)).toEqual([undefined, basic('u', 'pw'), basic('u', 'pw')]);
    expect(other.seen).toHaveLength(1);
    expect(other.seen[0].headers.authorization).toBeUndefined();
  });

  it('gets Bearer tokens from the realm (with credentials), caches them per scope', async () => {
    let tokens = 0;
    const reg: Fake = await start('127.0.0.1', (q, r) => {
      if (q.url!.startsWith('/token')) {
        const u = new URL(q.url!, 'http://x');
        if (q.headers.authorization !== basic('u', 'pw')) return void r.writeHead(401).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad"}]}');
        tokens++;
        return void r.end(JSON.stringify({ token: `tok:${u.searchParams.getAll('scope').join('+')}`, expires_in: 300 }));
      }
      const m = /^\/v2\/([^/]+)\/manifests\//.exec(q.url!);
      if (q.headers.authorization !== `Bearer tok:repository:${m?.[1]}:pull`) {
        return void r.writeHead(401, { 'www-authenticate': `Bearer realm="http://${reg.host}/token",service="fake"` }).end();
      }
      r.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end('{"schemaVersion":2,"config":{},"layers":[]}');
    });
    const ep = endpoint(reg.host);
    const auth = new Authenticator(ep.url, reg.host, { username: 'u', password: 'pw' });
    const a = new RegistryClient(ep, 'a', false, auth);
    await a.getManifest('1');
    await a.getManifest('2');
    expect(tokens).toBe(1);
    await new RegistryClient(ep, 'b', false, auth).getManifest('1');
    expect(tokens).toBe(2);
    const tokenReq = reg.seen.find((s) => s.url.startsWith('/token'))!;
    expect(tokenReq.url).toBe('/token?service=fake&scope=repository%3Aa%3Apull');

    const wrong = new RegistryClient(ep, 'c', false, new Authenticator(ep.url, reg.host, { username: 'u', password: 'nope' }));
    await expect(wrong.getManifest('1')).rejects.toThrow(`${reg.host}: authentication failed: wrong username or password (UNAUTHORIZED: bad)`);
  });
});

describe('retries and resume', () => {
  it('resumes a download cut mid-transfer with a Range request', async () => {
    const blob = randomBytes(300_000);
    const digest = sha(blob);
    let first = true;
    const reg = await start('127.0.0.1', (q, r) => {
      const range = /^bytes=(\d+)-$/.exec(String(q.headers.range ?? ''));
      if (first) {
        first = false;
        r.writeHead(200, { 'content-length': String(blob.length) });
        r.write(blob.subarray(0, 100_000), () => setTimeout(() => r.socket?.destroy(), 20));
        return;
      }
      const start = range ? Number(range[1]) : 0;
      r.writeHead(range ? 206 : 200, { 'content-length': String(blob.length - start), ...(range ? { 'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}` } : {}) });
      r.end(blob.subarray(start));
    });
    const store = new ContentStore(path.join(work, 'store2'));
    const client = new RegistryClient(endpoint(reg.host), 'r');
    expect(await store.ingest(client.blobStream(digest, blob.length), { digest, size: blob.length })).toEqual({ digest, size: blob.length });
    expect(reg.seen).toHaveLength(2);
    expect(reg.seen[1].headers.range).toMatch(/^bytes=\d+-$/);
    expect(Number(reg.seen[1].headers.range!.slice(6, -1))).toBeGreaterThan(0);
  });

  it('retries 429 (Retry-After) and resets; a server ignoring Range resends everything and the prefix is skipped', async () => {
    const blob = randomBytes(200_000);
    const digest = sha(blob);
    let n = 0;
    const reg = await start('127.0.0.1', (_q, r) => {
      n++;
      if (n === 1) return void r.writeHead(429, { 'retry-after': '0' }).end();
      if (n === 2) return void r.socket?.destroy();
      if (n === 3) {
        r.writeHead(200, { 'content-length': String(blob.length) });
        r.write(blob.subarray(0, 50_000), () => setTimeout(() => r.socket?.destroy(), 20));
        return;
      }
      r.writeHead(200, { 'content-length': String(blob.length) }).end(blob); // ignores Range
    });
    const store = new ContentStore(path.join(work, 'store3'));
    const client = new RegistryClient(endpoint(reg.host), 'r');
    expect((await store.ingest(client.blobStream(digest, blob.length), { digest, size: blob.length })).digest).toBe(digest);
    expect(n).toBe(4);
  });

  it('gives up after the configured attempts with the status in the message', async () => {
    const reg = await start('127.0.0.1', (_q, r) => r.writeHead(502).end('bad gateway'));
    process.env.MBUILD_REGISTRY_RETRIES = '3';
    try {
      await expect(new RegistryClient(endpoint(reg.host), 'r').getManifest('x')).rejects.toThrow(`manifest r:x on ${reg.host}: HTTP 502 from http://${reg.host}/v2/r/manifests/x: bad gateway`);
      expect(reg.seen).toHaveLength(3);
    } finally {
      delete process.env.MBUILD_REGISTRY_RETRIES;
    }
  });
});

describe('manifests', () => {
  it('caps manifests at 4 MiB (announced or streamed) and checks digests', async () => {
    const big = Buffer.alloc((4 << 20) + 10, 0x20);
    const good = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}');
    const reg = await start('127.0.0.1', (q, r) => {
      if (q.url!.endsWith('/announced')) return void r.writeHead(200, { 'content-length': String(big.length) }).end(big);
      if (q.url!.endsWith('/streamed')) {
        r.writeHead(200); // chunked, no length
        return void r.end(big);
      }
      if (q.url!.endsWith('/lying')) return void r.writeHead(200, { 'docker-content-digest': sha(Buffer.from('other')) }).end(good);
      r.end(good);
    });
    const c = new RegistryClient(endpoint(reg.host), 'r');
    await expect(c.getManifest('announced')).rejects.toThrow(/is 4194314 bytes, more than the 4194304 allowed/);
    await expect(c.getManifest('streamed')).rejects.toThrow(/more than the 4194304 bytes allowed/);
    await expect(c.getManifest('lying')).rejects.toThrow(/does not match the Docker-Content-Digest/);
    await expect(c.getManifest(sha(Buffer.from('x')))).rejects.toThrow(/the registry sent content with digest/);
    const m = await c.getManifest('ok');
    expect([m.digest, m.mediaType]).toEqual([sha(good), 'application/vnd.oci.image.manifest.v1+json']);
  });
});
