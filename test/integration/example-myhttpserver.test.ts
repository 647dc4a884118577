/**
 * The seed's journey (issue 5), as a user takes it: the base images made by examples/bases/build.sh,
 * `mbuild -t myhttpserver examples/myhttpserver`, `mbuild run --rm -p 18111:1111 myhttpserver`, a
 * page from 127.0.0.1:18111, a slim image, and the seed's two earlier variants (glibc on musl fails
 * with the loader's "no such file or directory"; CGO_ENABLED=0 works).
 *
 * The bases take minutes to make (debootstrap, apt-get install golang-go), so each is kept outside
 * the repo as an OCI archive keyed by its Dockerfile, build.sh and its parent's key, and loaded into
 * this test's own store with `mbuild load`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, mbuild, mountsUnder, run } from '../helpers/cli.js';

const CACHE = process.env.MBUILD_BASES_CACHE || '/var/cache/mbuild-bases';
const BASES_DIR = path.join(REPO, 'examples/bases');
const EXAMPLE = path.join(REPO, 'examples/myhttpserver');
const BASES: { name: string; dir: string; parent?: string }[] = [
  { name: 'busybox', dir: 'busybox' },
  { name: 'alpine', dir: 'alpine', parent: 'busybox' },
  { name: 'debian:bookworm', dir: 'debian' },
  { name: 'golang', dir: 'golang', parent: 'debian:bookworm' },
];
const NEEDED = ['alpine', 'golang'];
const LOADER_ERROR = /myhttpserver: no such file or directory/i;

let tmp: string;
let root: string;
const children = new Set<ChildProcess>();

async function baseKeys(): Promise<Map<string, string>> {
  const script = await fs.readFile(path.join(BASES_DIR, 'build.sh'));
  const keys = new Map<string, string>();
  for (const b of BASES) {
    const h = createHash('sha256');
    h.update(b.name).update('\0').update(await fs.readFile(path.join(BASES_DIR, b.dir, 'Dockerfile'))).update('\0').update(script);
    if (b.parent) h.update('\0').update(keys.get(b.parent)!);
    keys.set(b.name, h.digest('hex').slice(0, 24));
  }
  return keys;
}

const stem = (name: string) => `${name.replace(/[^a-z0-9]+/g, '-')}-`;
const archiveOf = (name: string, key: string) => path.join(CACHE, `${stem(name)}${key}.oci.tar`);

/** Loads the cached bases; builds the missing ones with build.sh into this store, then caches them. */
async function provideBases(): Promise<void> {
  const keys = await baseKeys();
  const missing: string[] = [];
  for (const name of NEEDED) {
    const archive = archiveOf(name, keys.get(name)!);
    const ok = await fs.stat(archive).then(() => true, () => false);
    if (ok && (await mbuild(['--root', root, 'load', '-i', archive])).code === 0) continue;
    missing.push(name);
  }
  if (!missing.length) return;
  const r = await run('bash', [path.join(BASES_DIR, 'build.sh'), ...missing], { env: { MBUILD_ROOT: root, MBUILD_BASES_CACHE: CACHE } });
  if (r.code !== 0) throw new Error(`examples/bases/build.sh ${missing.join(' ')} failed (${r.code}):\n${r.stderr.slice(-4000)}`);
  await fs.mkdir(CACHE, { recursive: true });
  for (const b of BASES) {
    const archive = archiveOf(b.name, keys.get(b.name)!);
    if (await fs.stat(archive).then(() => true, () => false)) continue;
    if ((await mbuild(['--root', root, 'inspect', b.name])).code !== 0) continue;
    const part = `${archive}.${process.pid}.part`;
    const s = await mbuild(['--root', root, 'save', '--format', 'oci', '-o', part, b.name]);
    if (s.code !== 0) throw new Error(`saving ${b.name} failed: ${s.stderr}`);
    await fs.rename(part, archive);
    // archives of older Dockerfiles of this base are dead weight
    const prefix = stem(b.name);
    for (const f of await fs.readdir(CACHE)) {
      if (f.startsWith(prefix) && /^[0-9a-f]{24}\.oci\.tar$/.test(f.slice(prefix.length)) && f !== path.basename(archive)) await fs.rm(path.join(CACHE, f), { force: true });
    }
  }
}

async function inspect(name: string): Promise<{ Size: number; Config: Record<string, unknown>; Manifest: { layers: { size: number }[] } }> {
  const r = await mbuild(['--root', root, 'inspect', name]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout)[0];
}

/** The layers of IMAGE as `mbuild save --format oci` writes them (compressed, as pushed). */
async function savedLayers(image: string): Promise<{ count: number; size: number; mediaTypes: string[] }> {
  const tar = path.join(tmp, `${image}-saved.tar`);
  const r = await mbuild(['--root', root, 'save', '--format', 'oci', '-o', tar, image]);
  expect(r.code, r.stderr).toBe(0);
  const py = `import json, sys, tarfile
t = tarfile.open(sys.argv[1])
blob = lambda d: json.load(t.extractfile('blobs/sha256/' + d.split(':')[1]))
m = blob(json.load(t.extractfile('index.json'))['manifests'][0]['digest'])
while 'manifests' in m: m = blob(m['manifests'][0]['digest'])
print(json.dumps({'count': len(m['layers']), 'size': sum(l['size'] for l in m['layers']), 'mediaTypes': [l['mediaType'] for l in m['layers']]}))`;
  const p = await run('python3', ['-c', py, tar]);
  expect(p.code, p.stderr).toBe(0);
  await fs.rm(tar, { force: true });
  return JSON.parse(p.stdout);
}

async function buildExample(tag: string, dockerfile = 'Dockerfile'): Promise<number> {
  const t0 = Date.now();
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-t', tag, '-f', path.join(EXAMPLE, dockerfile), EXAMPLE]);
  if (r.code !== 0) throw new Error(`build of ${dockerfile} failed (${r.code}):\n${r.stderr.slice(-4000)}`);
  return Date.now() - t0;
}

/** `mbuild run ...` in the background, its output collected as it comes. */
function startRun(args: string[]) {
  const child = spawn(process.execPath, [path.join(REPO, 'bin/mbuild.js'), '--root', root, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => (children.delete(child), resolve(code))));
  return {
    child,
    exited,
    output: () => out,
    async waitFor(re: RegExp, ms: number): Promise<void> {
      const end = Date.now() + ms;
      while (!re.test(out)) {
        if (child.exitCode !== null || Date.now() > end) throw new Error(`waiting for ${re} from mbuild run; it printed:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

/** GET from 127.0.0.1 until the published port answers (bounded: ~10 s). */
async function fetchPage(port: number): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 50; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
      return await res.text();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`127.0.0.1:${port} did not answer: ${(last as Error)?.message}`);
}

/** Stops a running `mbuild run` the way a user does (Ctrl-C), then harder if it lingers. */
async function stop(r: ReturnType<typeof startRun>): Promise<number | null> {
  if (r.child.exitCode !== null) return r.exited;
  r.child.kill('SIGINT');
  const t = setTimeout(() => r.child.kill('SIGKILL'), 15_000);
  const code = await r.exited;
  clearTimeout(t);
  return code;
}

async function serves(image: string, port: number, flags: string[] = []): Promise<{ page: string; output: string }> {
  const r = startRun(['--rm', ...flags, '-p', `${port}:1111`, image]);
  try {
    await r.waitFor(/Webserver start/, 30_000);
    const page = await fetchPage(port);
    return { page, output: r.output() };
  } finally {
    await stop(r);
  }
}

/** Runs IMAGE's entrypoint to its end with `mbuild run --rm IMAGE`. */
async function runToExit(image: string): Promise<{ code: number | null; output: string }> {
  const r = startRun(['--rm', image]);
  const t = setTimeout(() => r.child.kill('SIGKILL'), 60_000);
  const code = await r.exited;
  clearTimeout(t);
  return { code, output: r.output() };
}


beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-example-'));
  root = path.join(tmp, 'root');
  const t0 = Date.now();
  await provideBases();
  console.log(`bases ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
}, 30 * 60_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('examples/myhttpserver (the seed\'s journey)', () => {
  it('builds myhttpserver from the multi-stage Dockerfile into an image of at most 20 MB of compressed layers', async () => {
    const ms = await buildExample('myhttpserver');
    const img = await inspect('myhttpserver');
    expect(img.Size).toBe(img.Manifest.layers.reduce((a, l) => a + l.size, 0));
    expect(img.Config.Entrypoint).toEqual(['./myhttpserver']);
    expect(img.Config.ExposedPorts).toEqual({ '1111/tcp': {} });
    // what a registry or `docker load` gets: the saved archive's gzip layers
    const saved = await savedLayers('myhttpserver');
    console.log(`myhttpserver built in ${(ms / 1000).toFixed(1)}s: ${saved.count} layers, ${saved.size} bytes compressed (${img.Size} in the store)`);
    expect(saved.mediaTypes.every((t) => t.endsWith('+gzip'))).toBe(true);
    expect(saved.count).toBe(3); // busybox, musl, the binary: nothing of the golang stage came along
    expect(saved.size).toBeGreaterThan(1_000_000); // the binary is in there
    expect(saved.size).toBeLessThanOrEqual(20_000_000);
  }, 10 * 60_000);

  it(`mbuild run --rm -p 18111:1111 myhttpserver prints "Webserver start" and answers on 127.0.0.1:18111`, async () => {
    const { page, output } = await serves('myhttpserver', 18111);
    expect(output).toContain('Webserver start');
    expect(page).toContain('Welcome to this website!');
    // stopped: the published port is gone, and nothing of the container is left mounted
    await expect(fetch('http://127.0.0.1:18111/', { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
    expect(await mountsUnder(root)).toEqual([]);
  }, 5 * 60_000);

  it(`the glibc-linked binary on the musl base fails at run time with the loader's "no such file or directory"`, async () => {
    await buildExample('myhttpserver-glibc', 'Dockerfile.glibc-on-musl');
    const { code, output } = await runToExit('myhttpserver-glibc');
    expect(code).not.toBe(0);
    expect(output).toMatch(LOADER_ERROR);
    expect(output).not.toContain('Webserver start');
    // and it is the loader that is missing, not the program
    const rootfs = path.join(tmp, 'glibc-rootfs');
    const b = await mbuild(['--root', root, 'build', '-q', '-f', path.join(EXAMPLE, 'Dockerfile.glibc-on-musl'), '-o', `type=local,dest=${rootfs}`, EXAMPLE]);
    expect(b.code, b.stderr).toBe(0);
    expect((await fs.stat(path.join(rootfs, 'myhttpserver'))).mode & 0o111).not.toBe(0);
    await expect(fs.stat(path.join(rootfs, 'lib64/ld-linux-x86-64.so.2'))).rejects.toThrow();
    expect((await fs.readFile(path.join(rootfs, 'myhttpserver'))).includes('/lib64/ld-linux-x86-64.so.2')).toBe(true);
  }, 10 * 60_000);

  it(`the CGO_ENABLED=0 variant runs on the same base`, async () => {
    await buildExample('myhttpserver-static', 'Dockerfile.static');
    const { page, output } = await serves('myhttpserver-static', 18112);
    expect(output).toContain('Webserver start');
    expect(page).toContain('Welcome to this website!');
  }, 10 * 60_000);

  // issue 17: the alpine base for amd64 and arm64 (build.sh --platform: Debian's arm64 busybox and
  // musl, seconds), golang only for this machine. The builder stage (FROM --platform=$BUILDPLATFORM)
  // can only run natively, since golang has no arm64 image here; Go cross-compiles for each target.
  it('builds for linux/amd64 and linux/arm64: each binary cross-compiled for its platform, and the arm64 image serves the page under qemu', async () => {
    const bases = await run('bash', [path.join(BASES_DIR, 'build.sh'), '--platform', 'linux/arm64', 'alpine'], { env: { MBUILD_ROOT: root, MBUILD_BASES_CACHE: CACHE } });
    expect(bases.code, bases.stderr.slice(-3000)).toBe(0);
    const out = path.join(tmp, 'multi');
    const b = await mbuild(['--root', root, 'build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', 'myhttpserver-multi', '-o', `type=local,dest=${out}`, EXAMPLE]);
    expect(b.code, b.stderr.slice(-3000)).toBe(0);
    // the binary of each platform is an ELF for that machine (e_machine: x86-64 62, aarch64 183)
    const machine = async (p: string) => (await fs.readFile(path.join(out, p, 'root/myhttpserver'))).readUInt16LE(18);
    expect([await machine('linux_amd64'), await machine('linux_arm64')]).toEqual([62, 183]);
    const arch = await mbuild(['--root', root, 'run', '--rm', '--platform', 'linux/arm64', '--network', 'none', '--entrypoint', 'uname', 'myhttpserver-multi', '-m']);
    expect([arch.code, arch.stdout]).toEqual([0, 'aarch64\n']);
    const { page, output } = await serves('myhttpserver-multi', 18131, ['--platform', 'linux/arm64']);
    expect(output).toContain('Webserver start');
    expect(page).toContain('Welcome to this website!');
  }, 15 * 60_000);
});
