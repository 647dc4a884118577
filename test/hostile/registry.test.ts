/**
 * docs/security.md items 12–14: a hostile or flaky registry. A small fake registry written here
 * (127.0.0.1 only) serves the busybox base over the distribution API and misbehaves on purpose;
 * `mbuild pull` must retry and resume, keep credentials to the origin they belong to, and never
 * show them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { busyboxLayer, isRoot, mbuild, sha256 } from './helpers.js';

const USER = 'ci-bot';
const PASSWORD = 'Pa55-TOPSECRET-4711';
const BASIC = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
/** every spelling of the secret that must never be printed */
const SECRETS = [PASSWORD, Buffer.from(`${USER}:${PASSWORD}`).toString('base64'), Buffer.from(PASSWORD).toString('base64')];

let tmp: string;
let n = 0;

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface Behaviour {
  /** statuses answered to the first manifest requests, in order */
  manifestFailures?: number[];
  /** cut the first layer download after this many bytes */
  cutLayerAt?: number;
  /** statuses answered to the first config requests */
  configFailures?: number[];
  /** require Basic auth (401 with a Basic challenge otherwise) */
  basic?: boolean;
  /** answer 401 with this WWW-Authenticate */
  challenge?: string;
  /** redirect blob downloads here */
  redirectBlobsTo?: string;
  /** answer every manifest request with this status */
  manifestStatus?: number;
}

interface Fake {
  url: string;
  host: string;
  seen: Seen[];
  close(): Promise<void>;
}

let image: { manifest: Buffer; config: Buffer; layer: Buffer };

function blobFor(digest: string): Buffer | undefined {
  for (const b of [image.config, image.layer]) if (sha256(b) === digest) return b;
  return undefined;
}

/** Serve a blob, honouring `Range: bytes=N-`. */
function serveBlob(req: http.IncomingMessage, res: http.ServerResponse, blob: Buffer, cutAt?: number): void {
  const m = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
  if (m) {
    const from = Number(m[1]);
    res.writeHead(206, { 'content-length': blob.length - from, 'content-range': `bytes ${from}-${blob.length - 1}/${blob.length}` });
    res.end(blob.subarray(from));
    return;
  }
  res.writeHead(200, { 'content-length': blob.length, 'content-type': 'application/octet-stream' });
  if (cutAt !== undefined) {
    res.write(blob.subarray(0, cutAt), () => setTimeout(() => res.socket?.destroy(), 20));
    return;
  }
  res.end(blob);
}

async function fakeRegistry(b: Behaviour, tls?: { key: string; cert: string }): Promise<Fake> {
  const seen: Seen[] = [];
  const manifestFailures = [...(b.manifestFailures ?? [])];
  const configFailures = [...(b.configFailures ?? [])];
  let layerCut = b.cutLayerAt;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    const deny = () => {
      res.writeHead(401, { 'www-authenticate': b.challenge ?? 'Basic realm="fake"', 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    };
    if ((b.basic || b.challenge) && req.headers.authorization !== BASIC) return deny();
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/v2/') return res.end('{}');
    const mm = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (mm) {
      const fail = b.manifestStatus ?? manifestFailures.shift();
      if (fail) {
        res.writeHead(fail, fail === 429 ? { 'retry-after': '0' } : {});
        return res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: `fake ${fail}` }] }));
      }
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': sha256(image.manifest), 'content-length': image.manifest.length });
      return res.end(req.method === 'HEAD' ? undefined : image.manifest);
    }
    const bm = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
    const blob = bm ? blobFor(bm[2]!) : undefined;
    if (bm && blob) {
      if (b.redirectBlobsTo) {
        res.writeHead(307, { location: `${b.redirectBlobsTo}/storage/${bm[2]}?sig=abc` });
        return res.end();
      }
      if (blob === image.config && configFailures.length) {
        res.writeHead(configFailures.shift()!);
        return res.end();
      }
      const cut = blob === image.layer ? layerCut : undefined;
      if (blob === image.layer) layerCut = undefined;
      return serveBlob(req, res, blob, cut);
    }
    const sm = /^\/storage\/(sha256:[a-f0-9]{64})$/.exec(url.pathname);
    const stored = sm ? blobFor(sm[1]!) : undefined;
    if (stored) return serveBlob(req, res, stored);
    res.writeHead(404);
    res.end(JSON.stringify({ errors: [{ code: 'NOT_FOUND', message: 'no such thing' }] }));
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}

async function pull(ref: string, extra: string[] = []) {
  const root = path.join(tmp, `root-${++n}`);
  const r = await mbuild(['--root', root, ...extra, 'pull', ref], {
    env: { DOCKER_CONFIG: path.join(tmp, 'docker'), MBUILD_CONFIG: path.join(tmp, 'no-config.json'), MBUILD_REGISTRY_BACKOFF_MS: '5' },
  });
  return { ...r, root };
}

async function withCredentials(host: string): Promise<void> {
  await fs.mkdir(path.join(tmp, 'docker'), { recursive: true });
  await fs.writeFile(path.join(tmp, 'docker', 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } } }));
}

function expectNoSecret(...texts: string[]): void {
  for (const t of texts) for (const s of SECRETS) expect(t.includes(s), `a credential (${s.slice(0, 4)}…) was printed:\n${t}`).toBe(false);
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-registry-'));
  const bb = await busyboxLayer();
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [bb.diffId] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: bb.layer.digest, size: bb.layer.bytes.length }],
    }),
  );
  image = { manifest, config, layer: bb.layer.bytes };
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe.skipIf(!isRoot)('a hostile or flaky registry', () => {
  it('item 12: 5xx, 429 and a connection reset mid-blob are retried with backoff; the download resumes with Range', async () => {
    const reg = await fakeRegistry({ manifestFailures: [500, 502, 429], configFailures: [503], cutLayerAt: 300_000 });
    try {
      const r = await pull(`${reg.host}/lib/busybox:1`);
      expect(r.code, r.stderr).toBe(0);
      const manifestGets = reg.seen.filter((s) => s.url.includes('/manifests/'));
      expect(manifestGets.length).toBeGreaterThanOrEqual(4);
      const layerGets = reg.seen.filter((s) => s.url.endsWith(sha256(image.layer)));
      expect(layerGets.map((s) => s.headers.range ?? '')).toEqual(['', 'bytes=300000-']);
      const stored = await fs.readFile(path.join(r.root, 'blobs', 'sha256', sha256(image.layer).slice(7)));
      expect(sha256(stored)).toBe(sha256(image.layer));
    } finally {
      await reg.close();
    }
  });

  it('item 13: credentials never follow a redirect to another host, and a token realm must be https', async () => {
    const storage = await fakeRegistry({});
    const reg = await fakeRegistry({ basic: true, redirectBlobsTo: storage.url });
    try {
      await withCredentials(reg.host);
      const r = await pull(`${reg.host}/lib/busybox:1`);
      expect(r.code, r.stderr).toBe(0);
      expect(reg.seen.some((s) => s.headers.authorization === BASIC)).toBe(true); // the registry got them
      expect(storage.seen.length).toBeGreaterThanOrEqual(2); // config and layer came from the other host...
      expect(storage.seen.map((s) => s.headers.authorization)).toEqual(storage.seen.map(() => undefined)); // ...without them
    } finally {
      await reg.close();
      await storage.close();
    }

    // an https registry whose Bearer challenge names a plain-http token service
    const key = path.join(tmp, 'key.pem');
    const cert = path.join(tmp, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    const tokens = await fakeRegistry({});
    const secure = await fakeRegistry({ challenge: `Bearer realm="${tokens.url}/token",service="fake"` }, { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') });
    try {
      await withCredentials(secure.host);
      const r = await pull(`${secure.host}/lib/busybox:1`);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/refusing to fetch a token from http:\/\/127\.0\.0\.1:\d+\/token \(not https\)/);
      expect(tokens.seen).toEqual([]);
      expectNoSecret(r.stdout, r.stderr);
    } finally {
      await secure.close();
      await tokens.close();
    }
  });

  it('item 14: credentials never appear in output, errors (even with --debug) or the image', async () => {
    const ok = await fakeRegistry({ basic: true });
    try {
      await withCredentials(ok.host);
      const r = await pull(`${ok.host}/lib/busybox:1`);
      expect(r.code, r.stderr).toBe(0);
      expectNoSecret(r.stdout, r.stderr);
      const inspect = await mbuild(['--root', r.root, 'inspect', `${ok.host}/lib/busybox:1`]);
      expect(inspect.code, inspect.stderr).toBe(0);
      expectNoSecret(inspect.stdout);
      for (const f of ['images.json']) expectNoSecret(await fs.readFile(path.join(r.root, f), 'utf8'));
    } finally {
      await ok.close();
    }
    const failing: Behaviour[] = [{ basic: true, manifestStatus: 500 }, { basic: true, manifestStatus: 404 }, { challenge: 'Basic realm="x"', manifestStatus: 403 }];
    for (const b of failing) {
      const reg = await fakeRegistry(b);
      try {
        await withCredentials(reg.host);
        const r = await pull(`${reg.host}/lib/busybox:1`, ['--debug']);
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(/^error: /m);
        expectNoSecret(r.stdout, r.stderr);
      } finally {
        await reg.close();
      }
    }
    // a wrong password: the error says so, without the password
    const strict = await fakeRegistry({ basic: true });
    try {
      await fs.writeFile(path.join(tmp, 'docker', 'config.json'), JSON.stringify({ auths: { [strict.host]: { auth: Buffer.from(`${USER}:${PASSWORD}-wrong`).toString('base64') } } }));
      const r = await pull(`${strict.host}/lib/busybox:1`, ['--debug']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/authentication|unauthorized|password/i);
      expectNoSecret(r.stdout, r.stderr);
      expect(r.stderr).not.toContain(Buffer.from(`${USER}:${PASSWORD}-wrong`).toString('base64'));
    } finally {
      await strict.close();
    }
  });
});
