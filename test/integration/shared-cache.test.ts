/**
 * The shared build cache (--cache-to / --cache-from) between runners: two stores are two CI
 * runners, a real registry on 127.0.0.1 is the cache. Runner B starts empty, with a fresh copy
 * of the context (other path, new mtimes), and must get runner A's image digest without running
 * a step; one changed file reruns only what reads it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { BUSYBOX_TAR, REPO, mbuild, run, type CliResult } from '../helpers/cli.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

let work: string;
let reg: RunningRegistry;
let env: NodeJS.ProcessEnv;
let n = 0;

// the build stage's RUN prints a marker: a runner that runs it shows the marker in its progress
const DOCKERFILE = `FROM busybox AS build
RUN echo STEP-RAN-prepare && echo prepared > /prep
WORKDIR /src
COPY src/ ./
RUN echo STEP-RAN-concat && cat a.txt b.txt > /all.txt && date +%s%N > /stamp
FROM busybox AS side
RUN echo STEP-RAN-side && echo side > /side
FROM busybox
COPY --from=build /all.txt /stamp /out/
COPY static.txt /static.txt
RUN echo STEP-RAN-count && wc -c /out/all.txt > /count.txt
`;
const FILES: Record<string, string> = { Dockerfile: DOCKERFILE, 'src/a.txt': 'a\n', 'src/b.txt': 'b\n', 'static.txt': 'static\n' };

interface Built {
  r: CliResult;
  digest: string;
  ran: string[];
  cached: number;
  misses: string[];
  fetched: number;
}

/** A fresh runner: an empty store with the base image loaded (as a runner's pull would give it). */
async function runner(): Promise<string> {
  const root = path.join(work, `runner${++n}`);
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR], { env });
  expect(r.code, r.stderr).toBe(0);
  return root;
}

/** A fresh checkout of the context: another directory, files written now. */
async function checkout(changes: Record<string, string> = {}): Promise<string> {
  const dir = path.join(work, `ctx${++n}`);
  for (const [f, text] of Object.entries({ ...FILES, ...changes })) {
    await fs.mkdir(path.dirname(path.join(dir, f)), { recursive: true });
    await fs.writeFile(path.join(dir, f), text);
  }
  return dir;
}

async function build(root: string, ctx: string, args: string[]): Promise<Built> {
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', ...args, ctx], { env });
  expect(r.code, r.stderr).toBe(0);
  const digest = /exporting layers\n#\d+ manifest (sha256:[a-f0-9]{64})/.exec(r.stderr)?.[1] ?? /manifest (sha256:[a-f0-9]{64}) DONE/.exec(r.stderr)?.[1];
  expect(digest, r.stderr).toBeDefined();
  return {
    r,
    digest: digest!,
    // a marker echoed by a RUN that ran (the command line itself is on the step's title line)
    ran: [...r.stderr.matchAll(/^#\d+ [\d.]+ STEP-RAN-(\w+)$/gm)].map((m) => m[1]!),
    cached: (r.stderr.match(/ CACHED DONE/g) ?? []).length,
    misses: [...r.stderr.matchAll(/cache miss: (.*)$/gm)].map((m) => m[1]!),
    fetched: (r.stderr.match(/fetching cached layer/g) ?? []).length,
  };
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-shared-cache-'));
  env = { MBUILD_CONFIG: path.join(work, 'no-config.json'), DOCKER_CONFIG: path.join(work, 'docker'), MBUILD_REGISTRY_BACKOFF_MS: '20' };
  reg = await startRegistry();
}, 180_000);

afterAll(async () => {
  await (await import('../../registry/transport.js')).closeTransport();
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('registry cache between runners', () => {
  let a: Built;
  let ref: string;

  it('runner A builds and exports every stage (mode=max)', async () => {
    ref = `${reg.host}/app/cache:main`;
    a = await build(await runner(), await checkout(), ['--cache-to', `type=registry,ref=${ref},mode=max`]);
    expect(a.ran.sort()).toEqual(['concat', 'count', 'prepare']); // the side stage is not needed
    expect(a.r.stderr).toMatch(/exporting cache to .*app\/cache:main \(mode=max\)/);
  });

  it('is an OCI image manifest with the BuildKit cache config media type (skopeo reads it)', async () => {
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
    expect(raw.code, raw.stderr).toBe(0);
    const manifest = JSON.parse(raw.stdout);
    expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(manifest.config.mediaType).toBe('application/vnd.buildkit.cacheconfig.v0');
    const layers = manifest.layers.filter((l: { mediaType: string }) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip');
    expect(layers.length).toBe(7); // RUN, WORKDIR, COPY, RUN of the build stage; COPY --from, COPY, RUN of the final one
    for (const l of layers) expect(l.annotations['containerd.io/uncompressed']).toMatch(/^sha256:/);
    const cfg = await run('skopeo', ['inspect', '--raw', '--config', '--tls-verify=false', `docker://${ref}`]);
    expect(cfg.code, cfg.stderr).toBe(0);
    const config = JSON.parse(cfg.stdout);
    expect(config.records.length).toBe(7);
    expect(config.layers.length).toBe(layers.length);
  });

  it('runner B, empty store and a fresh checkout, gets the same image without running a step', async () => {
    const b = await build(await runner(), await checkout(), ['--cache-from', ref]);
    expect(b.digest).toBe(a.digest);
    expect(b.ran).toEqual([]);
    expect(b.misses).toEqual([]);
    // the final stage's three steps hit; COPY --from=build hits by key, so the build stage never runs
    expect(b.cached).toBe(3);
    expect(b.r.stderr).not.toContain('[build ');
    // lazily: only the final image's layers are downloaded, never the build stage's
    expect(b.fetched).toBe(3);
  });

  it('with one file changed only the steps that read it run, and the miss names the file', async () => {
    const c = await build(await runner(), await checkout({ 'src/b.txt': 'b changed\n' }), ['--cache-from', `type=registry,ref=${ref}`]);
    expect(c.ran.sort()).toEqual(['concat', 'count']);
    expect(c.misses).toContain('files changed: src/b.txt');
    expect(c.digest).not.toBe(a.digest);
  });

  it('a layer deleted from the registry is a miss with a warning, not a failure', async () => {
    const other = `${reg.host}/app/cache:deleted`;
    const ctx = await checkout({ 'static.txt': 'static, another branch\n' });
    const first = await build(await runner(), ctx, ['--cache-to', `type=registry,ref=${other}`]);
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${other}`])).stdout);
    const cfg = JSON.parse((await run('skopeo', ['inspect', '--raw', '--config', '--tls-verify=false', `docker://${other}`])).stdout);
    // delete the layer of the final RUN (the newest record's layer)
    const rec = cfg.mbuild.steps.filter((s: { layer?: number }) => s.layer !== undefined).sort((x: { created: string }, y: { created: string }) => (x.created < y.created ? 1 : -1))[0];
    const digest = cfg.layers[rec.layer].blob as string;
    expect(raw.layers.some((l: { digest: string }) => l.digest === digest)).toBe(true);
    const del = await fetch(`http://${reg.host}/v2/app/cache/blobs/${digest}`, { method: 'DELETE' });
    expect(del.status).toBe(202);
    const b = await build(await runner(), await checkout({ 'static.txt': 'static, another branch\n' }), ['--cache-from', other]);
    expect(b.r.stderr).toContain(`WARNING: the cached layer ${digest} is missing`);
    expect(b.ran).toEqual(['count']);
    expect(b.digest).not.toBe(''); // it built
    expect(first.digest).toMatch(/^sha256:/);
  });

  it('a changed mode is named as such on another runner', async () => {
    const ctx = await checkout();
    await fs.chmod(path.join(ctx, 'src/a.txt'), 0o600);
    const c = await build(await runner(), ctx, ['--cache-from', ref]);
    expect(c.misses).toContain('files changed: src/a.txt (mode 600 vs 644)');
  });

  it('concurrent exports of two branches to one ref merge: a third runner finds both', async () => {
    const shared = `${reg.host}/app/cache:shared`;
    const [x, y] = await Promise.all([
      checkout({ 'static.txt': 'branch x\n' }).then(async (ctx) => build(await runner(), ctx, ['--cache-to', `type=registry,ref=${shared},mode=max`])),
      checkout({ 'static.txt': 'branch y\n' }).then(async (ctx) => build(await runner(), ctx, ['--cache-to', `type=registry,ref=${shared},mode=max`])),
    ]);
    expect(x.ran.sort()).toEqual(['concat', 'count', 'prepare']);
    expect(y.ran.sort()).toEqual(['concat', 'count', 'prepare']);
    // without the merge, the branch that wrote first would find its COPY static.txt and RUN gone
    for (const text of ['branch x\n', 'branch y\n']) {
      const got = await build(await runner(), await checkout({ 'static.txt': text }), ['--cache-from', shared]);
      expect(got.ran).toEqual([]);
      expect(got.misses).toEqual([]);
    }
  });

  it('six writers merging into one ref at once lose nothing (read-merge-write, read back, retry)', async () => {
    process.env.MBUILD_CONFIG = env.MBUILD_CONFIG;
    const { RegistryCacheBackend } = await import('../../registry/cache-backend.js');
    const { mergeAndWrite } = await import('../../builder/cache/remote-export.js');
    const { decodeCache } = await import('../../builder/cache/remote-format.js');
    const { DEFAULT_MAX_AGE_MS } = await import('../../builder/cache/remote-spec.js');
    const target = `${reg.host}/app/cache:race`;
    const spec = { type: 'registry' as const, ref: target, mode: 'min' as const, ignoreError: false, maxAgeMs: DEFAULT_MAX_AGE_MS };
    const now = new Date().toISOString();
    const keyOf = (w: number, i: number) => 'sha256:' + createHash('sha256').update(`${w}/${i}`).digest('hex');
    await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (w) => {
        const backend = new RegistryCacheBackend(target, true);
        const steps = [0, 1, 2, 3, 4].map((i) => ({ key: keyOf(w, i), parent: 'scratch', created: now, used: now, upload: false }));
        const explain = { scopes: { [`writer${w}|`]: { used: now, steps: {} } } };
        await mergeAndWrite(backend, spec, steps, explain, undefined as never, now);
      }),
    );
    const backend = new RegistryCacheBackend(target, false);
    const top = (await backend.readManifest())!;
    const manifest = JSON.parse(top.bytes.toString());
    const parsed = decodeCache(manifest, await backend.readSmallBlob(manifest.config));
    for (let w = 0; w < 6; w++) for (let i = 0; i < 5; i++) expect(parsed.steps.has(keyOf(w, i)), `writer ${w} step ${i}`).toBe(true);
  });

  it('a cache ref that does not exist is a warning', async () => {
    const b = await build(await runner(), await checkout(), ['--cache-from', `${reg.host}/app/nothing:here`]);
    expect(b.r.stderr).toMatch(/WARNING: .*app\/nothing:here holds no build cache/);
    expect(b.ran.sort()).toEqual(['concat', 'count', 'prepare']);
  });
});

describe('local cache directory', () => {
  it('type=local: runner B gets the same image from a directory A wrote; skopeo reads the layout', async () => {
    const dir = path.join(work, 'local-cache');
    const a = await build(await runner(), await checkout(), ['--cache-to', `type=local,dest=${dir},mode=max`]);
    const raw = await run('skopeo', ['inspect', '--raw', `oci:${dir}:latest`]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(JSON.parse(raw.stdout).config.mediaType).toBe('application/vnd.buildkit.cacheconfig.v0');
    const b = await build(await runner(), await checkout(), ['--cache-from', `type=local,src=${dir}`]);
    expect(b.digest).toBe(a.digest);
    expect(b.ran).toEqual([]);
  });
});

describe('inline cache', () => {
  it('type=inline: the pushed image carries the cache; runner B gets the same image and pushes the same digest', async () => {
    const a = await build(await runner(), await checkout(), ['--cache-to', 'type=inline', '--push', '-t', `${reg.host}/app/web:a`]);
    const config = JSON.parse((await run('skopeo', ['inspect', '--raw', '--config', '--tls-verify=false', `docker://${reg.host}/app/web:a`])).stdout);
    expect(config['mbuild.cache.v0'].steps.length).toBe(3); // the final stage's steps (mode=min)
    const b = await build(await runner(), await checkout(), ['--cache-from', `${reg.host}/app/web:a`, '--cache-to', 'type=inline', '--push', '-t', `${reg.host}/app/web:b`]);
    expect(b.ran).toEqual([]);
    expect(b.digest).toBe(a.digest);
    const pushed = async (tag: string) => JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/app/web:${tag}`])).stdout).Digest;
    expect(await pushed('b')).toBe(await pushed('a'));
  });
});

describe('local cache: corruption and eviction', () => {
  it('a corrupt blob is a miss: the build starts again without it and the step runs', async () => {
    const dir = path.join(work, 'corrupt-cache');
    const a = await build(await runner(), await checkout(), ['--cache-to', `type=local,dest=${dir}`]);
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    const blob = (d: string) => path.join(dir, 'blobs/sha256', d.slice(7));
    const manifest = JSON.parse(await fs.readFile(blob(index.manifests[0].digest), 'utf8'));
    const cfg = JSON.parse(await fs.readFile(blob(manifest.config.digest), 'utf8'));
    const newest = cfg.mbuild.steps.filter((s: { layer?: number }) => s.layer !== undefined).sort((x: { created: string }, y: { created: string }) => (x.created < y.created ? 1 : -1))[0];
    const victim = blob(cfg.layers[newest.layer].blob);
    const bytes = await fs.readFile(victim);
    bytes[bytes.length >> 1] ^= 0xff;
    await fs.writeFile(victim, bytes);
    const b = await build(await runner(), await checkout(), ['--cache-from', `type=local,src=${dir}`]);
    expect(b.r.stderr).toMatch(/WARNING: the cached layer sha256:[a-f0-9]+ from .* cannot be used: .*; building again without it/);
    expect(b.ran).toEqual(['count']);
    expect(a.digest).toMatch(/^sha256:/);
  });

  it('max-size evicts the least recently exported steps and their blobs; max-age drops old ones', async () => {
    const dir = path.join(work, 'evicting-cache');
    const blobs = async () => (await fs.readdir(path.join(dir, 'blobs/sha256'))).length;
    await build(await runner(), await checkout({ 'static.txt': 'old branch\n' }), ['--cache-to', `type=local,dest=${dir},mode=max`]);
    const full = await blobs();
    // a limit smaller than this export's own layers: every other step goes, this export's stay
    await build(await runner(), await checkout({ 'static.txt': 'new branch\n' }), ['--cache-to', `type=local,dest=${dir},max-size=1`]);
    expect(await blobs()).toBe(3 + 3); // three layers, config, explain record, manifest
    expect(full).toBe(7 + 3);
    // the old branch's COPY static.txt was evicted (COPY --from=build has the same key in both: kept)
    const old = await build(await runner(), await checkout({ 'static.txt': 'old branch\n' }), ['--cache-from', `type=local,src=${dir}`]);
    expect(old.ran).toEqual(['count']);
    const kept = await build(await runner(), await checkout({ 'static.txt': 'new branch\n' }), ['--cache-from', `type=local,src=${dir}`]);
    expect(kept.ran).toEqual([]);
    // an export with max-age=0s keeps only its own steps
    await build(await runner(), await checkout({ 'static.txt': 'third\n' }), ['--cache-to', `type=local,dest=${dir},max-age=0s`]);
    const gone = await build(await runner(), await checkout({ 'static.txt': 'new branch\n' }), ['--cache-from', `type=local,src=${dir}`]);
    expect(gone.ran).toEqual(['count']);
  });
});

describe('fleet: two servers (separate stores) share one registry cache', () => {
  it('server B, fed by a client over --host, gets server A\'s image from the cache without running a step; type=local is refused there', async () => {
    const servers: ChildProcess[] = [];
    try {
      const start = async (name: string) => {
        const root = await runner();
        const sock = path.join(work, `${name}.sock`);
        const child = spawn(path.join(REPO, 'bin/mbuild'), ['--root', root, 'serve', '--addr', `unix://${sock}`], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
        servers.push(child);
        let log = '';
        child.stderr!.on('data', (d) => (log += d));
        for (let i = 0; i < 300 && !log.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 100));
        expect(log).toContain('listening on');
        return `unix://${sock}`;
      };
      const [hostA, hostB] = await Promise.all([start('server-a'), start('server-b')]);
      const remote = async (host: string, ctx: string, args: string[]): Promise<Built> => {
        const r = await mbuild(['--host', host, 'build', '--progress', 'plain', ...args, ctx], { env });
        expect(r.code, r.stderr).toBe(0);
        return {
          r,
          digest: /manifest (sha256:[a-f0-9]{64})/.exec(r.stderr)![1]!,
          ran: [...r.stderr.matchAll(/^#\d+ [\d.]+ STEP-RAN-(\w+)$/gm)].map((m) => m[1]!),
          cached: (r.stderr.match(/ CACHED DONE/g) ?? []).length,
          misses: [...r.stderr.matchAll(/cache miss: (.*)$/gm)].map((m) => m[1]!),
          fetched: (r.stderr.match(/fetching cached layer/g) ?? []).length,
        };
      };
      const ref = `${reg.host}/app/cache:fleet`;
      const a = await remote(hostA, await checkout({ 'static.txt': 'fleet\n' }), ['--cache-to', `type=registry,ref=${ref},mode=max`]);
      expect(a.ran.sort()).toEqual(['concat', 'count', 'prepare']);
      const b = await remote(hostB, await checkout({ 'static.txt': 'fleet\n' }), ['--cache-from', ref]);
      expect(b.ran).toEqual([]);
      expect(b.digest).toBe(a.digest);
      const refused = await mbuild(['--host', hostB, 'build', '--cache-to', `type=local,dest=${work}/x`, await checkout()], { env });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/--cache-to type=local,dest=.*: type=local is not available with --host/);
    } finally {
      for (const s of servers) s.kill('SIGTERM');
      await Promise.all(servers.map((s) => (s.exitCode === null ? new Promise((r) => s.once('exit', r)) : undefined)));
    }
  });
});

describe('flags', () => {
  it('refuses unknown types and keys with one line naming the flag', async () => {
    const root = path.join(work, 'flags');
    const ctx = await checkout();
    for (const [flag, spec, want] of [
      ['--cache-to', 'type=s3,ref=x', /--cache-to type=s3,ref=x: unknown cache type "s3"/],
      ['--cache-to', 'type=registry,ref=x,colour=blue', /--cache-to .*: unknown key "colour" for type=registry/],
      ['--cache-to', 'type=inline,mode=max', /type=inline supports only mode=min/],
      ['--cache-from', 'type=local,dest=/x', /--cache-from .*: unknown key "dest" for type=local/],
      ['--cache-to', 'type=registry', /needs ref=/],
    ] as const) {
      const r = await mbuild(['--root', root, 'build', flag, spec, ctx], { env });
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(want);
    }
  });
});
