/**
 * Pull and push against a real registry (Debian's docker-registry, distribution 2.8) on
 * 127.0.0.1, with skopeo as the independent client and a recording proxy in front of the
 * registry for counting and fault injection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, run, type CliResult } from '../helpers/cli.js';
import { startProxy, startRegistry, uploadRequests, type RecordingProxy, type RunningRegistry } from '../helpers/registry.js';

let work: string;
let reg: RunningRegistry;
let proxy: RecordingProxy;
let env: NodeJS.ProcessEnv;
let storeN = 0;

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex');

function mb(root: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return mbuild(['--root', root, ...args], { env: { ...env, ...extraEnv } });
}

async function emptyStore(): Promise<string> {
  return fs.mkdtemp(path.join(work, `store${++storeN}-`));
}

async function skopeo(args: string[]): Promise<CliResult> {
  const r = await run('skopeo', args);
  if (r.code !== 0) throw new Error(`skopeo ${args.join(' ')} failed: ${r.stderr}`);
  return r;
}

async function inspect(root: string, name: string): Promise<{ Digest: string; Architecture: string; RootFS: { diff_ids: string[] } }> {
  const r = await mb(root, ['inspect', name]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout)[0];
}

/** Every blob of a skopeo-written OCI layout matches its name and its descriptor's size. */
async function verifyLayout(dir: string): Promise<{ manifestDigest: string; manifest: { config: { digest: string }; layers: { digest: string; size: number }[] } }> {
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
  const blob = (d: string) => fs.readFile(path.join(dir, 'blobs', 'sha256', d.slice(7)));
  for (const name of await fs.readdir(path.join(dir, 'blobs', 'sha256'))) {
    expect(sha(await fs.readFile(path.join(dir, 'blobs', 'sha256', name)))).toBe('sha256:' + name);
  }
  const manifestDigest = index.manifests[0].digest as string;
  const manifest = JSON.parse((await blob(manifestDigest)).toString());
  for (const d of [manifest.config, ...manifest.layers]) expect((await blob(d.digest)).length).toBe(d.size);
  return { manifestDigest, manifest };
}

let seed: string; // a store with busybox loaded
let ctxDir: string;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-registry-it-'));
  env = {
    MBUILD_CONFIG: path.join(work, 'no-config.json'),
    DOCKER_CONFIG: path.join(work, 'docker'),
    MBUILD_REGISTRY_BACKOFF_MS: '20',
  };
  reg = await startRegistry();
  proxy = await startProxy(reg.host);
  seed = await emptyStore();
  expect((await mb(seed, ['load', '-i', BUSYBOX_TAR])).code).toBe(0);
  ctxDir = path.join(work, 'ctx');
  await fs.mkdir(ctxDir);
  await fs.writeFile(path.join(ctxDir, 'Dockerfile'), 'FROM busybox\nRUN echo built-by-mbuild > /hello\nCOPY note.txt /note.txt\n');
  await fs.writeFile(path.join(ctxDir, 'note.txt'), 'pushed through a registry\n');
  await fs.mkdir(path.join(work, 'ctx-plain'));
  await fs.writeFile(path.join(work, 'ctx-plain', 'Dockerfile'), 'FROM busybox\n');
}, 180_000);

afterAll(async () => {
  await proxy?.close();
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('push', () => {
  let pushed: string;
  it('build --push; skopeo inspect and skopeo copy read it and every digest verifies', async () => {
    // the plain busybox image first, as `mbuild push` (whole command, process start included)
    const tagged = await mb(seed, ['build', '-q', '-t', `${proxy.host}/plain/busybox:latest`, path.join(work, 'ctx-plain')]);
    expect(tagged.code, tagged.stderr).toBe(0);
    const t0 = Date.now();
    const p = await mb(seed, ['push', `${proxy.host}/plain/busybox:latest`]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stderr).toContain('2 pushed, 0 mounted, 0 already there');
    console.log(`measured: mbuild push of busybox (1 layer, ~1 MB): ${Date.now() - t0} ms wall, push step ${/DONE ([\d.]+)s/.exec(p.stderr)?.[1]}s`);
    const name = `${proxy.host}/app/web:1`;
    const r = await mb(seed, ['build', '--push', '-t', name, ctxDir]);
    expect(r.code, r.stderr).toBe(0);
    const m = /manifest (sha256:[a-f0-9]{64}) tagged 1/.exec(r.stderr);
    expect(m, r.stderr).toBeTruthy();
    pushed = m![1];
    const secs = /#\d+ \d+ pushed, \d+ mounted, \d+ already there, .* DONE ([\d.]+)s/.exec(r.stderr);
    expect(secs, r.stderr).toBeTruthy();
    console.log(`measured: build --push of a 3-layer busybox-based image: push step ${secs![1]}s`);

    const info = JSON.parse((await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/app/web:1`])).stdout);
    expect(info.Digest).toBe(pushed);
    expect(info.Architecture).toBe('amd64');
    const raw = (await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/app/web:1`])).stdout;
    expect(sha(Buffer.from(raw))).toBe(pushed);

    const out = path.join(work, 'copied');
    await skopeo(['copy', '--src-tls-verify=false', `docker://${reg.host}/app/web:1`, `oci:${out}:x`]);
    const { manifestDigest, manifest } = await verifyLayout(out);
    expect(manifestDigest).toBe(pushed);
    expect(manifest.layers).toHaveLength(3);
    // the config skopeo read is the one mbuild built
    const local = await inspect(seed, name);
    const cfg = JSON.parse(await fs.readFile(path.join(out, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
    expect(cfg.rootfs.diff_ids).toEqual(local.RootFS.diff_ids);
    // Go's gzip reader takes the layers (gzip members compressed in parallel) back to their diff_ids
    const plain = path.join(work, 'decompressed');
    await skopeo(['copy', '--dest-decompress', '--src-tls-verify=false', `docker://${reg.host}/app/web:1`, `dir:${plain}`]);
    const dm = JSON.parse(await fs.readFile(path.join(plain, 'manifest.json'), 'utf8')) as { layers: { digest: string }[] };
    const unpacked = await Promise.all(dm.layers.map(async (l) => sha(await fs.readFile(path.join(plain, l.digest.slice(7))))));
    expect(unpacked).toEqual(local.RootFS.diff_ids);
  });

  it('a re-push of an unchanged image uploads no blob (nor the manifest)', async () => {
    const before = proxy.requests.length;
    const r = await mb(seed, ['push', `${proxy.host}/app/web:1`]);
    expect(r.code, r.stderr).toBe(0);
    const reqs = proxy.requests.slice(before);
    expect(uploadRequests(reqs)).toEqual([]);
    expect(reqs.filter((q) => q.method === 'PUT')).toEqual([]);
    expect(reqs.filter((q) => q.method === 'HEAD' && q.path.includes('/blobs/')).length).toBe(4); // 3 layers + config
    expect(r.stdout).toContain(pushed);
  });

  it('pushing to another repository of the same registry mounts the blobs instead of uploading', async () => {
    const tagged = await mb(seed, ['build', '-q', '-t', `${proxy.host}/other/web:2`, ctxDir]);
    expect(tagged.code, tagged.stderr).toBe(0);
    const before = proxy.requests.length;
    const r = await mb(seed, ['push', `${proxy.host}/other/web:2`]);
    expect(r.code, r.stderr).toBe(0);
    const ups = uploadRequests(proxy.requests.slice(before));
    expect(ups.length).toBe(4);
    for (const u of ups) expect(u.method === 'POST' && u.path.includes('mount=') && u.path.includes('from=app%2Fweb')).toBe(true);
    expect(r.stderr).toContain('4 mounted');
  });

  it('chunked uploads (PATCH with Content-Range) produce the same image', async () => {
    const t = await mb(seed, ['build', '-q', '-t', `${proxy.host}/chunky/busybox:latest`, ctxDir]);
    expect(t.code, t.stderr).toBe(0);
    await fs.rm(path.join(seed, 'registry', 'blob-sources.json'), { force: true }); // no mounts: upload
    const before = proxy.requests.length;
    const r2 = await mb(seed, ['push', `${proxy.host}/chunky/busybox:latest`], { MBUILD_PUSH_CHUNK_SIZE: String(256 << 10) });
    expect(r2.code, r2.stderr).toBe(0);
    const patches = proxy.requests.slice(before).filter((q) => q.method === 'PATCH');
    expect(patches.length).toBeGreaterThanOrEqual(4); // the ~1 MB busybox layer in 256 KiB chunks
    const info = JSON.parse((await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/chunky/busybox:latest`])).stdout);
    expect(info.Digest).toBe(pushed);
  });
});

describe('pull', () => {
  let skopeoDigest: string;
  beforeAll(async () => {
    // skopeo pushes busybox as a Docker schema 2 image
    await skopeo(['copy', '--format', 'v2s2', '--dest-tls-verify=false', `oci-archive:${BUSYBOX_TAR}`, `docker://${reg.host}/sk/busybox:1.0`]);
    skopeoDigest = JSON.parse((await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/sk/busybox:1.0`])).stdout).Digest;
  });

  it('pulls into an empty store an image skopeo pushed (Docker schema 2), and FROM pulls what the store lacks', async () => {
    const root = await emptyStore();
    const r = await mb(root, ['pull', `${proxy.host}/sk/busybox:1.0`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Digest: ${skopeoDigest}`);
    expect((await inspect(root, `${proxy.host}/sk/busybox:1.0`)).Digest).toBe(skopeoDigest);

    const root2 = await emptyStore();
    const dir = path.join(work, 'ctx-from');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'Dockerfile'), `FROM ${proxy.host}/sk/busybox:1.0\nRUN echo ok > /ok\nCOPY --from=${proxy.host}/sk/busybox:1.0 /bin/busybox /copied\n`);
    const b = await mb(root2, ['build', '-t', 'local/from-registry:1', dir]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr.match(/pulling /g)).toHaveLength(1); // FROM and COPY --from share one pull
    // --pull checks the registry again (the manifest is fetched, no blob)
    const before = proxy.requests.length;
    const b2 = await mb(root2, ['build', '--pull', '-t', 'local/from-registry:1', dir]);
    expect(b2.code, b2.stderr).toBe(0);
    const reqs = proxy.requests.slice(before);
    expect(reqs.some((q) => q.method === 'GET' && q.path === '/v2/sk/busybox/manifests/1.0')).toBe(true);
    expect(reqs.filter((q) => q.path.includes('/blobs/'))).toEqual([]);
  });

  it('pulls through a mirror (flag, and config file) without touching the upstream registry', async () => {
    await skopeo(['copy', '--dest-tls-verify=false', `oci-archive:${BUSYBOX_TAR}`, `docker://${reg.host}/library/busybox:latest`]);
    const cfg = path.join(work, 'mirror-config.json');
    await fs.writeFile(cfg, JSON.stringify({ mirrorFallback: false }));
    const root = await emptyStore();
    const before = proxy.requests.length;
    const r = await mb(root, ['--registry-mirror', `docker.io=http://${proxy.host}`, 'pull', 'busybox'], { MBUILD_CONFIG: cfg });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('docker.io/library/busybox:latest');
    expect(proxy.requests.slice(before).some((q) => q.path === '/v2/library/busybox/manifests/latest')).toBe(true);
    expect((await inspect(root, 'busybox')).Digest).toBe('sha256:1aa9a7af2aa420e8dd47e57a99139bd3d7a7a409921c78e214e2eb4ea22a4489');

    // the same from the config file alone: FROM busybox in an empty store comes from the mirror
    await fs.writeFile(cfg, JSON.stringify({ registryMirrors: { 'docker.io': [`http://${proxy.host}`] }, mirrorFallback: false }));
    const root2 = await emptyStore();
    const dir = path.join(work, 'ctx-mirror');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\nRUN test -x /bin/sh\n');
    const b = await mb(root2, ['build', '-t', 'mirrored:1', dir], { MBUILD_CONFIG: cfg });
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toContain('pulling docker.io/library/busybox:latest');
  });

  it('refuses a blob corrupted on the way in and stores nothing of it', async () => {
    const manifest = JSON.parse((await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/sk/busybox:1.0`])).stdout);
    const layer = manifest.layers[0].digest as string;
    proxy.hooks = {
      rewrite: (req, body) => {
        if (!req.path.endsWith(`/blobs/${layer}`) || body.length < 100) return body;
        const bad = Buffer.from(body);
        bad[50] ^= 0xff; // same size, different bytes
        return bad;
      },
    };
    const root = await emptyStore();
    try {
      const r = await mb(root, ['pull', `${proxy.host}/sk/busybox:1.0`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/error: blob digest mismatch: got sha256:[a-f0-9]{64}, expected sha256:/);
    } finally {
      proxy.hooks = {};
    }
    const blobs = await fs.readdir(path.join(root, 'blobs', 'sha256'));
    expect(blobs).not.toContain(layer.slice(7));
    expect(blobs.filter((b) => b.startsWith('.tmp'))).toEqual([]);
    const images = await mb(root, ['images', '-q']);
    expect(images.stdout.trim()).toBe('');
    // the store still works: the same pull without the corruption succeeds
    const again = await mb(root, ['pull', `${proxy.host}/sk/busybox:1.0`]);
    expect(again.code, again.stderr).toBe(0);
  });

  it('retries a registry that answers 500 twice, then succeeds; gives up with a clear error when it keeps failing', async () => {
    let failures = 0;
    proxy.hooks = { intercept: (q) => (q.method === 'GET' && q.path.includes('/manifests/') && failures++ < 2 ? { status: 500 } : undefined) };
    const root = await emptyStore();
    const before = proxy.requests.length;
    try {
      const r = await mb(root, ['pull', `${proxy.host}/sk/busybox:1.0`]);
      expect(r.code, r.stderr).toBe(0);
      expect(proxy.requests.slice(before).filter((q) => q.method === 'GET' && q.path.includes('/manifests/'))).toHaveLength(3);

      proxy.hooks = { intercept: (q) => (q.path.includes('/blobs/') ? { status: 503 } : undefined) };
      const root2 = await emptyStore();
      const r2 = await mb(root2, ['pull', `${proxy.host}/sk/busybox:1.0`], { MBUILD_REGISTRY_RETRIES: '3' });
      expect(r2.code).toBe(1);
      expect(r2.stderr).toMatch(/error: blob sha256:[a-f0-9]{64} of sk\/busybox on 127\.0\.0\.1:\d+: HTTP 503/);
    } finally {
      proxy.hooks = {};
    }
  });

  it('picks linux/amd64 from a multi-arch index, or the --platform asked for', async () => {
    // an OCI index with an arm64 image listed first and the amd64 busybox second
    const dir = path.join(work, 'multi');
    await skopeo(['copy', `oci-archive:${BUSYBOX_TAR}`, `oci:${dir}:amd64`]);
    const blobPath = (d: string) => path.join(dir, 'blobs', 'sha256', d.slice(7));
    const index0 = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    const amdDesc = index0.manifests[0];
    const amd = JSON.parse(await fs.readFile(blobPath(amdDesc.digest), 'utf8'));
    const cfg = JSON.parse(await fs.readFile(blobPath(amd.config.digest), 'utf8'));
    const put = async (obj: unknown) => {
      const b = Buffer.from(JSON.stringify(obj));
      await fs.writeFile(blobPath(sha(b)), b);
      return { digest: sha(b), size: b.length };
    };
    const armCfg = await put({ ...cfg, architecture: 'arm64', variant: 'v8' });
    const armMan = await put({ ...amd, config: { ...amd.config, ...armCfg } });
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: amd.mediaType, ...armMan, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: amd.mediaType, digest: amdDesc.digest, size: amdDesc.size, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    };
    const idx = await put(index);
    await fs.writeFile(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: index.mediaType, ...idx, annotations: { 'org.opencontainers.image.ref.name': 'multi' } }] }));
    await skopeo(['copy', '--all', '--dest-tls-verify=false', `oci:${dir}:multi`, `docker://${reg.host}/multi/busybox:1`]);

    const root = await emptyStore();
    const r = await mb(root, ['pull', `${proxy.host}/multi/busybox:1`]);
    expect(r.code, r.stderr).toBe(0);
    const img = await inspect(root, `${proxy.host}/multi/busybox:1`);
    expect(img.Architecture).toBe('amd64');
    expect(img.Digest).toBe(amdDesc.digest);

    const root2 = await emptyStore();
    const r2 = await mb(root2, ['pull', '--platform', 'linux/arm64', `${proxy.host}/multi/busybox:1`]);
    expect(r2.code, r2.stderr).toBe(0);
    expect((await inspect(root2, `${proxy.host}/multi/busybox:1`)).Architecture).toBe('arm64');

    const r3 = await mb(root2, ['pull', '--platform', 'linux/s390x', `${proxy.host}/multi/busybox:1`]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/has no linux\/s390x image \(it has: linux\/arm64\/v8, linux\/amd64\)/);
  });
});
