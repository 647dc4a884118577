/**
 * Layers fetched from a shared build cache are kept lazily: a fresh runner keeps only the
 * compressed blob it downloaded (and the record that it is the gzip form of the layer's diff_id),
 * never the uncompressed tar. Everything that later reads the layer works from that blob: `mbuild
 * run`, `save`, `-o type=oci` (compressed and uncompressed), a push to another registry; and a push
 * to the registry the cache came from mounts the blob from the cache's repository.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, run } from '../helpers/cli.js';
import { startProxy, startRegistry, uploadRequests, type RecordingProxy, type RunningRegistry } from '../helpers/registry.js';

let work: string;
let reg: RunningRegistry;
let other: RunningRegistry;
let proxy: RecordingProxy;
let env: NodeJS.ProcessEnv;
let n = 0;

const DOCKERFILE = `FROM busybox AS build
RUN head -c 300000 /dev/urandom > /blob.bin && echo lazy-content > /note.txt
FROM busybox
COPY --from=build /blob.bin /note.txt /app/
RUN echo final > /app/final.txt && sha256sum /app/blob.bin > /app/blob.sum
`;

async function runner(): Promise<string> {
  const root = path.join(work, `runner${++n}`);
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR], { env });
  expect(r.code, r.stderr).toBe(0);
  return root;
}

async function checkout(): Promise<string> {
  const dir = path.join(work, `ctx${++n}`);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'Dockerfile'), DOCKERFILE);
  return dir;
}

async function ok(args: string[]): Promise<string> {
  const r = await mbuild(args, { env });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout + r.stderr;
}

/** The image's layers as the store lists them: diff_ids, bottom first. */
async function diffIds(root: string, image: string): Promise<string[]> {
  const r = await mbuild(['--root', root, 'inspect', image], { env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout)[0].RootFS.diff_ids as string[];
}

const blobFile = (root: string, digest: string) => path.join(root, 'blobs/sha256', digest.slice(7));

/** What runs in the image: the files the cached steps made, checked. */
async function checkRuns(root: string, image: string): Promise<void> {
  const out = await ok(['--root', root, 'run', '--rm', image, 'sh', '-c', 'cat /app/note.txt /app/final.txt && sha256sum -c /app/blob.sum']);
  expect(out).toContain('lazy-content\nfinal\n');
  expect(out).toContain('/app/blob.bin: OK');
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-lazy-layers-'));
  env = { MBUILD_CONFIG: path.join(work, 'no-config.json'), DOCKER_CONFIG: path.join(work, 'docker'), MBUILD_REGISTRY_BACKOFF_MS: '20' };
  [reg, other] = await Promise.all([startRegistry(), startRegistry()]);
  proxy = await startProxy(reg.host);
}, 180_000);

afterAll(async () => {
  await proxy?.close();
  await Promise.all([reg?.stop(), other?.stop()]);
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('layers from a shared cache are kept compressed only', () => {
  let b: string;
  let image: string;
  let lazy: string[];
  let twins: Map<string, string>;
  const cacheRef = () => `${proxy.host}/app/cache:lazy`;

  it('a fresh runner gets the image from the cache without writing the layers\' uncompressed tars', async () => {
    await ok(['--root', await runner(), 'build', '--progress', 'plain', '--cache-to', `type=registry,ref=${cacheRef()},mode=max`, await checkout()]);
    b = await runner();
    image = `${proxy.host}/app/web:lazy`;
    const out = await ok(['--root', b, 'build', '--progress', 'plain', '--cache-from', cacheRef(), '-t', image, await checkout()]);
    expect(out).toMatch(/fetching cached layer/);
    const ids = await diffIds(b, image);
    lazy = ids.slice(-2); // COPY --from=build and RUN of the final stage, both from the cache
    twins = new Map();
    for (const id of lazy) {
      expect(existsSync(blobFile(b, id)), `the tar ${id} was written`).toBe(false);
      const memo = JSON.parse(await fs.readFile(path.join(b, 'compressed', `${id.slice(7)}.json`), 'utf8')) as { digest: string };
      expect(existsSync(blobFile(b, memo.digest))).toBe(true);
      twins.set(id, memo.digest);
    }
  });

  it('a push to the registry the cache came from mounts the blobs: none is downloaded or uploaded', async () => {
    const before = proxy.requests.length;
    const out = await ok(['--root', b, 'push', image]);
    expect(out).toMatch(/2 mounted/);
    const reqs = proxy.requests.slice(before);
    for (const gz of twins.values()) {
      const mounts = reqs.filter((r) => r.method === 'POST' && r.path.includes(`mount=${encodeURIComponent(gz)}`));
      expect(mounts.length, gz).toBe(1);
      expect(mounts[0]!.path).toContain('from=app%2Fcache');
      expect(reqs.filter((r) => r.method === 'GET' && r.path.includes(`/blobs/${gz}`))).toEqual([]);
    }
    // the only uploads are the mounts (the base layer and config are sent, not the cached layers)
    expect(uploadRequests(reqs).filter((r) => [...twins.values()].some((gz) => r.path.includes(gz)) && !r.path.includes('mount='))).toEqual([]);
    expect(existsSync(blobFile(b, lazy[0]!))).toBe(false); // still lazy
    // the pushed image is whole: another runner pulls and runs it
    const c = await runner();
    await ok(['--root', c, 'pull', image]);
    await checkRuns(c, image);
  });

  it('build --push from a fresh runner to the cache\'s registry mounts the cached layers too', async () => {
    const target = `${proxy.host}/app/pushed:lazy`;
    const before = proxy.requests.length;
    const out = await ok(['--root', await runner(), 'build', '--progress', 'plain', '--cache-from', cacheRef(), '--push', '-t', target, await checkout()]);
    expect(out).toMatch(/2 mounted/);
    const reqs = proxy.requests.slice(before);
    for (const gz of twins.values()) {
      expect(reqs.some((r) => r.method === 'POST' && r.path.includes(`mount=${encodeURIComponent(gz)}`) && r.path.includes('from=app%2Fcache'))).toBe(true);
      expect(reqs.filter((r) => ['PUT', 'PATCH'].includes(r.method) && r.path.includes(encodeURIComponent(gz)))).toEqual([]);
    }
  });

  it('a registry that refuses the mount (202) gets a normal upload', async () => {
    // the proxy forwards the mount request without its mount: the registry opens an upload session
    proxy.hooks = { forwardPath: (r) => (r.method === 'POST' && r.path.includes('mount=') ? r.path.replace(/\?.*$/, '') : undefined) };
    try {
      const target = `${proxy.host}/app/refused:lazy`;
      await ok(['--root', b, 'tag', image, target]);
      const before = proxy.requests.length;
      const out = await ok(['--root', b, 'push', target]);
      expect(out).toMatch(/0 mounted/);
      const reqs = proxy.requests.slice(before);
      for (const gz of twins.values()) {
        expect(reqs.some((r) => r.method === 'POST' && r.path.includes(`mount=${encodeURIComponent(gz)}`))).toBe(true);
        expect(reqs.some((r) => r.method === 'PUT' && r.path.includes(`digest=${encodeURIComponent(gz)}`))).toBe(true);
      }
      const c = await runner();
      await ok(['--root', c, 'pull', target]);
      await checkRuns(c, target);
    } finally {
      proxy.hooks = {};
    }
  });

  it('mbuild run unpacks the layers from the compressed blobs', async () => {
    await checkRuns(b, image);
  });

  it('save writes the compressed blobs as they are; the archive loads and runs', async () => {
    const file = path.join(work, 'saved.tar');
    await ok(['--root', b, 'save', '-o', file, image]);
    const list = await run('tar', ['-tf', file]);
    for (const gz of twins.values()) expect(list.stdout).toContain(`blobs/sha256/${gz.slice(7)}`);
    const c = await runner();
    await ok(['--root', c, 'load', '-i', file]);
    await checkRuns(c, image);
  });

  it('-o type=oci with an SBOM (gzip: the cache\'s blobs as they are; uncompressed: decompressed) loads and runs', async () => {
    for (const extra of ['', ',compression=uncompressed']) {
      const file = path.join(work, `out${extra ? '-plain' : ''}.tar`);
      // the second build on this runner finds the lazy layers in its own build cache
      const name = `oci-out:${extra ? 'plain' : 'gzip'}`;
      const out = await ok(['--root', b, 'build', '--progress', 'plain', '-t', name, '--sbom=true', '-o', `type=oci,dest=${file}${extra}`, await checkout()]);
      expect(out).not.toMatch(/fetching cached layer/);
      const list = (await run('tar', ['-tf', file])).stdout;
      for (const [id, gz] of twins) expect(list).toContain(`blobs/sha256/${(extra ? id : gz).slice(7)}`);
      // (the SBOM scanner read every layer, the lazy ones from their compressed blobs: a failure fails the build)
      const c = await runner();
      await ok(['--root', c, 'load', '-i', file]);
      await checkRuns(c, name);
    }
    expect(existsSync(blobFile(b, lazy[1]!))).toBe(false); // an output does not keep the tar either
  });

  it('a push to another registry sends the compressed blobs', async () => {
    const target = `${other.host}/app/elsewhere:lazy`;
    await ok(['--root', b, 'tag', image, target]);
    const out = await ok(['--root', b, 'push', target]);
    expect(out).toMatch(/0 mounted/);
    const c = await runner();
    await ok(['--root', c, 'pull', target]);
    await checkRuns(c, target);
    const manifest = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${target}`])).stdout);
    for (const gz of twins.values()) expect(manifest.layers.map((l: { digest: string }) => l.digest)).toContain(gz);
  });

  it('prune keeps a lazy layer (its compressed blob is the layer); prune --all keeps it while the image is named', async () => {
    await ok(['--root', b, 'prune']);
    await ok(['--root', b, 'prune', '--all']);
    for (const gz of twins.values()) expect(existsSync(blobFile(b, gz))).toBe(true);
    await checkRuns(b, image);
  });
});
