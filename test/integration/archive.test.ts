import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack as tarPack, type Header } from 'tar-stream';
import { readTar as readTarBytes } from '../helpers/tar.js';
import { Store } from '../../store/store.js';
import { importArchive } from '../../store/archive/import.js';
import { exportImage } from '../../store/archive/export.js';
import { MediaType, type Index, type Manifest } from '../../store/oci.js';

const BUSYBOX = '/work/shared/conformance/bases/busybox.oci.tar';
const IMAGETREE = '/work/shared/conformance/imagetree.py';
const BUSYBOX_DIGEST = 'sha256:1aa9a7af2aa420e8dd47e57a99139bd3d7a7a409921c78e214e2eb4ea22a4489';
const BUSYBOX_NAME = 'docker.io/library/busybox:latest';

let work: string;
beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-archive-'));
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

let storeCount = 0;
async function freshStore(): Promise<Store> {
  return Store.open(path.join(work, `store-${++storeCount}`));
}

const sha = (b: Buffer | string): string => 'sha256:' + createHash('sha256').update(b).digest('hex');
const hexOf = (d: string): string => d.slice('sha256:'.length);

type TarEntry = { name: string; data?: Buffer | string; type?: Header['type']; linkname?: string };

/** A tar (optionally gzip-compressed) with exactly these entries, in this order. */
async function makeTar(entries: TarEntry[], gzip = false): Promise<Buffer> {
  const p = tarPack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    p.on('data', (c: Buffer) => chunks.push(c));
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const data = typeof e.data === 'string' ? Buffer.from(e.data) : e.data;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (type === 'file') p.entry({ name: e.name, type, mode: 0o644, mtime: new Date(0) }, data ?? Buffer.alloc(0), cb);
      else p.entry({ name: e.name, type, linkname: e.linkname, mode: 0o755, mtime: new Date(0) }, Buffer.alloc(0), cb);
    });
  }
  p.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  return gzip ? gzipSync(tar) : tar;
}

async function writeFile(name: string, data: Buffer): Promise<string> {
  const f = path.join(work, name);
  await fs.writeFile(f, data);
  return f;
}

/** The entries of a tar file: header and data. */
async function readTar(file: string) {
  return readTarBytes(await fs.readFile(file));
}

function imagetree(file: string): string {
  return execFileSync('python3', [IMAGETREE, 'show', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The busybox fixture's files, by name. */
async function busyboxEntries(): Promise<Map<string, Buffer>> {
  return new Map((await readTar(BUSYBOX)).filter((e) => e.header.type === 'file').map((e) => [e.header.name, e.data]));
}

/** An OCI layout tar from busybox's blobs with index.json / a blob replaced. */
async function busyboxVariant(change: (files: Map<string, Buffer>) => void): Promise<Buffer> {
  const files = await busyboxEntries();
  change(files);
  return makeTar([...files].map(([name, data]) => ({ name, data })));
}

async function expectUntouched(store: Store): Promise<void> {
  expect(await store.images.list()).toEqual([]);
  expect(await store.content.list()).toEqual([]);
  expect(await fs.readdir(store.tmpDir)).toEqual([]);
}

/** A small docker-save style image: an uncompressed layer tar and a config with its diff_id. */
async function dockerSaveFixture(opts: { gzipLayer?: boolean; diffId?: string; layerPath?: string; configPath?: string; repoTags?: unknown } = {}) {
  const layer = await makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/hello.txt', data: 'hello from docker save\n' },
  ]);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['PATH=/bin'], Cmd: ['cat', '/etc/hello.txt'] },
      rootfs: { type: 'layers', diff_ids: [opts.diffId ?? sha(layer)] },
      history: [{ created_by: 'test' }],
    }),
  );
  const layerBytes = opts.gzipLayer ? gzipSync(layer) : layer;
  const layerPath = opts.layerPath ?? 'abc123/layer.tar';
  const configPath = opts.configPath ?? `${hexOf(sha(config))}.json`;
  const configEntry = opts.configPath && !opts.configPath.startsWith('/') && !opts.configPath.includes('..') ? opts.configPath : `${hexOf(sha(config))}.json`;
  const manifest = [{ Config: configPath, RepoTags: opts.repoTags ?? ['myapp:1'], Layers: [layerPath] }];
  const tar = await makeTar([
    { name: 'abc123/', type: 'directory' },
    { name: 'abc123/layer.tar', data: layerBytes },
    { name: configEntry, data: config },
    { name: 'manifest.json', data: JSON.stringify(manifest) },
  ]);
  return { tar, layer, config };
}

describe('importArchive: OCI layout', () => {
  it('imports busybox.oci.tar under its name and manifest digest', async () => {
    const store = await freshStore();
    const progress: string[] = [];
    const res = await importArchive(store, BUSYBOX, { onProgress: (m) => progress.push(m) });
    expect(res).toEqual([{ name: BUSYBOX_NAME, digest: BUSYBOX_DIGEST }]);
    expect((await store.images.get(BUSYBOX_NAME))?.digest).toBe(BUSYBOX_DIGEST);
    const img = await store.requireImage('busybox');
    expect(img.manifestDigest).toBe(BUSYBOX_DIGEST);
    expect(img.config.architecture).toBe('amd64');
    expect((await store.content.list()).sort()).toEqual(
      [BUSYBOX_DIGEST, img.configDigest, ...img.manifest.layers.map((l) => l.digest)].sort(),
    );
    expect(await fs.readdir(store.tmpDir)).toEqual([]);
    expect(progress.join('\n')).toContain(BUSYBOX_NAME);
    // loading again is harmless
    expect(await importArchive(store, BUSYBOX)).toEqual(res);
  });

  it('accepts a gzip-compressed archive', async () => {
    const file = await writeFile('busybox.oci.tar.gz', gzipSync(await fs.readFile(BUSYBOX)));
    const store = await freshStore();
    expect(await importArchive(store, file)).toEqual([{ name: BUSYBOX_NAME, digest: BUSYBOX_DIGEST }]);
  });

  it('accepts names written as ./NAME with a ./ root entry (tar -C dir .)', async () => {
    const files = await busyboxEntries();
    const tar = await makeTar([
      { name: './', type: 'directory' },
      { name: './blobs/', type: 'directory' },
      ...[...files].map(([name, data]) => ({ name: `./${name}`, data })),
    ]);
    const store = await freshStore();
    expect(await importArchive(store, await writeFile('dotslash.tar', tar))).toEqual([{ name: BUSYBOX_NAME, digest: BUSYBOX_DIGEST }]);
  });

  it('gives no name when ref.name is only a tag', async () => {
    const tar = await busyboxVariant((files) => {
      const index = JSON.parse(files.get('index.json')!.toString()) as Index;
      index.manifests[0].annotations = { 'org.opencontainers.image.ref.name': 'latest' };
      files.set('index.json', Buffer.from(JSON.stringify(index)));
    });
    const store = await freshStore();
    expect(await importArchive(store, await writeFile('tag-only.tar', tar))).toEqual([{ digest: BUSYBOX_DIGEST }]);
    expect(await store.images.list()).toEqual([]);
    expect(await store.content.has(BUSYBOX_DIGEST)).toBe(true);
  });

  it('names from a full ref.name', async () => {
    const tar = await busyboxVariant((files) => {
      const index = JSON.parse(files.get('index.json')!.toString()) as Index;
      index.manifests[0].annotations = { 'org.opencontainers.image.ref.name': 'localhost:5000/tools/bb:1.36' };
      files.set('index.json', Buffer.from(JSON.stringify(index)));
    });
    const store = await freshStore();
    expect(await importArchive(store, await writeFile('refname.tar', tar))).toEqual([{ name: 'localhost:5000/tools/bb:1.36', digest: BUSYBOX_DIGEST }]);
  });

  it('takes the linux/amd64 manifest of a nested index', async () => {
    const files = await busyboxEntries();
    const busyIndex = JSON.parse(files.get('index.json')!.toString()) as Index;
    const armManifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:' + 'a'.repeat(64) + '","size":10},"layers":[]}');
    const nested: Index = {
      schemaVersion: 2,
      mediaType: MediaType.index,
      manifests: [
        { mediaType: MediaType.manifest, digest: sha(armManifest), size: armManifest.length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: MediaType.manifest, digest: BUSYBOX_DIGEST, size: busyIndex.manifests[0].size, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: MediaType.manifest, digest: sha(armManifest), size: armManifest.length, platform: { os: 'unknown', architecture: 'unknown' } },
      ],
    };
    const nestedBytes = Buffer.from(JSON.stringify(nested));
    files.set(`blobs/sha256/${hexOf(sha(nestedBytes))}`, nestedBytes);
    files.set(`blobs/sha256/${hexOf(sha(armManifest))}`, armManifest); // its config is absent: must not matter
    const top: Index = {
      schemaVersion: 2,
      mediaType: MediaType.index,
      manifests: [{ mediaType: MediaType.index, digest: sha(nestedBytes), size: nestedBytes.length, annotations: { 'io.containerd.image.name': 'docker.io/library/multi:2' } }],
    };
    files.set('index.json', Buffer.from(JSON.stringify(top)));
    // entries in an unusual order: index.json first, blobs after
    const order = ['index.json', ...[...files.keys()].filter((n) => n !== 'index.json').reverse()];
    const tar = await makeTar(order.map((name) => ({ name, data: files.get(name)! })));
    const store = await freshStore();
    expect(await importArchive(store, await writeFile('nested.tar', tar))).toEqual([{ name: 'docker.io/library/multi:2', digest: BUSYBOX_DIGEST }]);
    expect(await store.content.has(sha(armManifest))).toBe(false);
    expect(await store.content.has(sha(nestedBytes))).toBe(false);
  });

  it('refuses a blob whose bytes do not match its digest, leaving no name and no blob', async () => {
    const img = (await busyboxEntries()).get(`blobs/sha256/${hexOf(BUSYBOX_DIGEST)}`)!;
    const manifest = JSON.parse(img.toString()) as Manifest;
    const layerName = `blobs/sha256/${hexOf(manifest.layers[0].digest)}`;
    const tar = await busyboxVariant((files) => {
      const bad = Buffer.from(files.get(layerName)!);
      bad[bad.length >> 1] ^= 0xff;
      files.set(layerName, bad);
    });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('corrupt.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_DIGEST_MISMATCH' });
    await expectUntouched(store);
  });

  it('refuses a blob whose size does not match its descriptor', async () => {
    const tar = await busyboxVariant((files) => {
      const index = JSON.parse(files.get('index.json')!.toString()) as Index;
      index.manifests[0].size += 1;
      files.set('index.json', Buffer.from(JSON.stringify(index)));
    });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('size.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_DIGEST_MISMATCH' });
    await expectUntouched(store);
  });

  it('refuses a missing blob', async () => {
    const img = (await busyboxEntries()).get(`blobs/sha256/${hexOf(BUSYBOX_DIGEST)}`)!;
    const manifest = JSON.parse(img.toString()) as Manifest;
    const tar = await busyboxVariant((files) => files.delete(`blobs/sha256/${hexOf(manifest.config.digest)}`));
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('missing.tar', tar))).rejects.toThrow(/missing from the archive/);
    await expectUntouched(store);
  });

  it.each(['sha256:../../../etc/passwd', 'sha256:' + 'A'.repeat(64), 'sha256:abc', 'sha512:' + 'a'.repeat(64)])('refuses the malformed digest %s in index.json', async (digest) => {
    const tar = await busyboxVariant((files) => {
      const index = JSON.parse(files.get('index.json')!.toString()) as Index;
      index.manifests[0].digest = digest;
      files.set('index.json', Buffer.from(JSON.stringify(index)));
    });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('baddigest.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_BAD_DIGEST' });
    await expectUntouched(store);
  });

  it('refuses an index.json over 4 MiB', async () => {
    const tar = await busyboxVariant((files) => {
      const index = JSON.parse(files.get('index.json')!.toString()) as Index;
      index.annotations = { pad: 'x'.repeat(5 << 20) };
      files.set('index.json', Buffer.from(JSON.stringify(index)));
    });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('huge.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_UNSAFE_ARCHIVE' });
    await expectUntouched(store);
  });

  it.each([
    ['../evil', 'file'],
    ['/etc/passwd', 'file'],
    ['blobs/../../evil', 'file'],
    ['../', 'directory'],
    ['/', 'directory'],
    ['../../tmp/x', 'symlink'],
  ] as const)('refuses the tar entry name %s (%s)', async (name, type) => {
    const tar = await makeTar([
      { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
      { name, type, data: 'x', linkname: 'index.json' },
    ]);
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('evilname.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_UNSAFE_ARCHIVE' });
    await expectUntouched(store);
  });

  it('refuses a file that is not an image archive', async () => {
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('empty.tar', await makeTar([{ name: 'hello', data: 'x' }])))).rejects.toMatchObject({ code: 'MBUILD_BAD_ARCHIVE' });
    await expect(importArchive(store, await writeFile('garbage.tar', Buffer.from('not a tar at all'.repeat(100))))).rejects.toMatchObject({ code: 'MBUILD_BAD_ARCHIVE' });
    await expect(importArchive(store, await writeFile('truncated.tar', (await fs.readFile(BUSYBOX)).subarray(0, 600_000)))).rejects.toMatchObject({ code: 'MBUILD_BAD_ARCHIVE' });
    await expectUntouched(store);
  });
});

describe('importArchive: docker save', () => {
  it('converts a docker save archive with an uncompressed layer to an OCI image', async () => {
    const { tar, layer, config } = await dockerSaveFixture();
    const store = await freshStore();
    const res = await importArchive(store, await writeFile('docker-save.tar', tar));
    expect(res).toHaveLength(1);
    expect(res[0].name).toBe('docker.io/library/myapp:1');
    const img = await store.requireImage('myapp:1');
    expect(img.manifestDigest).toBe(res[0].digest);
    expect(img.manifest.mediaType).toBe(MediaType.manifest);
    expect(img.configDigest).toBe(sha(config));
    expect(await fs.readFile(store.content.path(img.configDigest))).toEqual(config); // bytes unchanged
    expect(img.manifest.layers).toHaveLength(1);
    expect(img.manifest.layers[0].mediaType).toBe(MediaType.layerGzip);
    const blob = await fs.readFile(store.content.path(img.manifest.layers[0].digest));
    expect(blob[0]).toBe(0x1f);
    expect(sha(blob)).toBe(img.manifest.layers[0].digest);
    expect(blob.length).toBe(img.manifest.layers[0].size);
    const { gunzipSync } = await import('node:zlib');
    expect(gunzipSync(blob)).toEqual(layer);
    expect(await fs.readdir(store.tmpDir)).toEqual([]);

    // and it exports to something both imagetree and mbuild read back
    const out = path.join(work, 'myapp.docker.tar');
    await exportImage(store, { manifestDigest: img.manifestDigest, names: ['myapp:1'] }, { type: 'docker', dest: out });
    const tree = JSON.parse(imagetree(out)) as { tree: Record<string, { sha256?: string }>; config: { Cmd?: string[] } };
    expect(tree.tree['etc/hello.txt'].sha256).toBe(hexOf(sha('hello from docker save\n')));
    expect(tree.config.Cmd).toEqual(['cat', '/etc/hello.txt']);
    expect(imagetree(out)).toBe(imagetree(await writeFile('docker-save-orig.tar', tar)));
  });

  it('keeps a gzip layer as it is', async () => {
    const { tar } = await dockerSaveFixture({ gzipLayer: true });
    const gzLayer = (await readTar(await writeFile('gz-src.tar', tar))).find((e) => e.header.name === 'abc123/layer.tar')!.data;
    const store = await freshStore();
    const [res] = await importArchive(store, await writeFile('docker-save-gz.tar', tar));
    const img = await store.requireImage(res.digest);
    expect(img.manifest.layers[0].digest).toBe(sha(gzLayer));
  });

  it('follows a layer symlink inside the archive (older docker save) and blobs/ paths (newer)', async () => {
    const { layer, config } = await dockerSaveFixture();
    const cfgHex = hexOf(sha(config));
    const manifest = [
      { Config: `${cfgHex}.json`, RepoTags: ['a:1'], Layers: ['one/layer.tar'] },
      { Config: `blobs/sha256/${cfgHex}`, RepoTags: ['b:2', 'example.com/c/d:3'], Layers: ['./two/layer.tar'] },
    ];
    const tar = await makeTar([
      { name: 'manifest.json', data: JSON.stringify(manifest) },
      { name: 'two/layer.tar', type: 'symlink', linkname: '../one/layer.tar' },
      { name: 'one/layer.tar', data: layer },
      { name: `${cfgHex}.json`, data: config },
      { name: `blobs/sha256/${cfgHex}`, data: config },
    ]);
    const store = await freshStore();
    const res = await importArchive(store, await writeFile('symlinked.tar', tar));
    expect(res.map((r) => r.name)).toEqual(['docker.io/library/a:1', 'docker.io/library/b:2', 'example.com/c/d:3']);
    expect(new Set(res.map((r) => r.digest)).size).toBe(1);
  });

  it('refuses a layer whose diff_id does not match the config', async () => {
    const { tar } = await dockerSaveFixture({ diffId: 'sha256:' + 'b'.repeat(64) });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('diffid.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_DIGEST_MISMATCH' });
    await expectUntouched(store);
  });

  it('refuses a config that does not match its <hex>.json name', async () => {
    const { tar } = await dockerSaveFixture({ configPath: `${'c'.repeat(64)}.json` });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('cfgname.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_DIGEST_MISMATCH' });
    await expectUntouched(store);
  });

  it.each(['../../etc/passwd', '/etc/passwd', 'abc123/../../../etc/passwd'])('refuses the layer path %s in manifest.json', async (layerPath) => {
    const { tar } = await dockerSaveFixture({ layerPath });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('evilpath.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_UNSAFE_ARCHIVE' });
    await expectUntouched(store);
  });

  it('refuses a Config path with ".." in manifest.json', async () => {
    const { tar } = await dockerSaveFixture({ configPath: '../../etc/passwd' });
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('evilcfg.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_UNSAFE_ARCHIVE' });
    await expectUntouched(store);
  });

  it('refuses a symlink that leads out of the archive', async () => {
    const { config } = await dockerSaveFixture();
    const cfgHex = hexOf(sha(config));
    const tar = await makeTar([
      { name: 'manifest.json', data: JSON.stringify([{ Config: `${cfgHex}.json`, RepoTags: ['a:1'], Layers: ['x/layer.tar'] }]) },
      { name: 'x/layer.tar', type: 'symlink', linkname: '../../../etc/passwd' },
      { name: `${cfgHex}.json`, data: config },
    ]);
    const store = await freshStore();
    await expect(importArchive(store, await writeFile('evillink.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_UNSAFE_ARCHIVE' });
    await expectUntouched(store);
  });

  it('refuses a malformed diff_id and a bad RepoTag', async () => {
    const store = await freshStore();
    const { tar } = await dockerSaveFixture({ diffId: 'sha256:../../x' });
    await expect(importArchive(store, await writeFile('bad-diffid.tar', tar))).rejects.toMatchObject({ code: 'MBUILD_BAD_DIGEST' });
    const { tar: tar2 } = await dockerSaveFixture({ repoTags: ['UPPER/case:1'] });
    await expect(importArchive(store, await writeFile('bad-tag.tar', tar2))).rejects.toMatchObject({ code: 'MBUILD_BAD_REFERENCE' });
    await expectUntouched(store);
  });
});

describe('exportImage', () => {
  let store: Store;
  let ociOut: string;
  let dockerOut: string;
  beforeAll(async () => {
    store = await freshStore();
    await importArchive(store, BUSYBOX);
    ociOut = path.join(work, 'busybox.export.oci.tar');
    dockerOut = path.join(work, 'busybox.export.docker.tar');
    await exportImage(store, { manifestDigest: BUSYBOX_DIGEST, names: [BUSYBOX_NAME] }, { type: 'oci', dest: ociOut });
    await exportImage(store, { manifestDigest: BUSYBOX_DIGEST, names: ['busybox'] }, { type: 'docker', dest: dockerOut });
  });

  it('writes an OCI layout with the name annotations', async () => {
    const entries = await readTar(ociOut);
    const names = entries.map((e) => e.header.name);
    expect(names).toEqual([...names].sort());
    expect(names.slice(0, 2)).toEqual(['blobs/', 'blobs/sha256/']);
    expect(names).toContain('oci-layout');
    expect(names).not.toContain('manifest.json');
    const byName = new Map(entries.map((e) => [e.header.name, e]));
    expect(JSON.parse(byName.get('oci-layout')!.data.toString())).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(byName.get('index.json')!.data.toString()) as Index;
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]).toMatchObject({
      digest: BUSYBOX_DIGEST,
      mediaType: MediaType.manifest,
      annotations: { 'io.containerd.image.name': BUSYBOX_NAME, 'org.opencontainers.image.ref.name': 'latest' },
    });
    for (const e of entries) {
      expect(e.header.mtime.getTime()).toBe(0);
      expect([e.header.uid, e.header.gid]).toEqual([0, 0]);
      expect(e.header.mode).toBe(e.header.type === 'directory' ? 0o755 : 0o644);
      if (e.header.name.startsWith('blobs/sha256/') && e.header.type === 'file') expect(sha(e.data)).toBe('sha256:' + path.basename(e.header.name));
    }
    // the same blobs as the original
    const orig = await busyboxEntries();
    for (const [name, data] of orig) if (name.startsWith('blobs/')) expect(byName.get(name)?.data.equals(data)).toBe(true);
  });

  it('writes a docker save manifest.json next to the OCI layout', async () => {
    const byName = new Map((await readTar(dockerOut)).map((e) => [e.header.name, e]));
    const manifest = (await store.requireImage(BUSYBOX_DIGEST)).manifest;
    expect(JSON.parse(byName.get('manifest.json')!.data.toString())).toEqual([
      {
        Config: `blobs/sha256/${hexOf(manifest.config.digest)}`,
        RepoTags: ['busybox:latest'],
        Layers: manifest.layers.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
      },
    ]);
    for (const p of ['index.json', 'oci-layout', `blobs/sha256/${hexOf(BUSYBOX_DIGEST)}`]) expect(byName.has(p)).toBe(true);
  });

  it('both exports show the same tree as the original with imagetree.py', () => {
    const want = imagetree(BUSYBOX);
    expect(imagetree(ociOut)).toBe(want);
    expect(imagetree(dockerOut)).toBe(want);
    expect(JSON.parse(want).tree['bin/busybox']).toBeDefined();
  });

  it('re-imports both exports into fresh stores', async () => {
    for (const file of [ociOut, dockerOut]) {
      const s = await freshStore();
      expect(await importArchive(s, file)).toEqual([{ name: BUSYBOX_NAME, digest: BUSYBOX_DIGEST }]);
    }
    // the docker export read as a plain docker save archive (index.json dropped) imports as well
    const entries = (await readTar(dockerOut)).filter((e) => e.header.type === 'file' && e.header.name !== 'index.json' && e.header.name !== 'oci-layout');
    const legacy = await makeTar(entries.map((e) => ({ name: e.header.name, data: e.data })));
    const s = await freshStore();
    const [res] = await importArchive(s, await writeFile('docker-only.tar', legacy));
    expect(res.name).toBe(BUSYBOX_NAME);
    expect((await s.requireImage(res.digest)).configDigest).toBe((await store.requireImage(BUSYBOX_DIGEST)).configDigest);
  });

  it('gives identical bytes for the same image', async () => {
    for (const type of ['oci', 'docker'] as const) {
      const again = path.join(work, `again.${type}.tar`);
      await exportImage(store, { manifestDigest: BUSYBOX_DIGEST, names: [BUSYBOX_NAME] }, { type, dest: again });
      const first = type === 'oci' ? ociOut : dockerOut;
      expect((await fs.readFile(again)).equals(await fs.readFile(first))).toBe(true);
    }
  });

  it('exports an image without a name, and leaves no temp file behind', async () => {
    const out = path.join(work, 'noname', 'img.tar');
    await fs.mkdir(path.dirname(out));
    await exportImage(store, { manifestDigest: BUSYBOX_DIGEST, names: [] }, { type: 'oci', dest: out });
    expect(await fs.readdir(path.dirname(out))).toEqual(['img.tar']);
    const s = await freshStore();
    expect(await importArchive(s, out)).toEqual([{ digest: BUSYBOX_DIGEST }]);
  });

  it('refuses a corrupt blob in the store and writes nothing', async () => {
    const s = await freshStore();
    await importArchive(s, BUSYBOX);
    const img = await s.requireImage(BUSYBOX_DIGEST);
    const layerPath = s.content.path(img.manifest.layers[0].digest);
    const bytes = await fs.readFile(layerPath);
    bytes[100] ^= 0xff;
    await fs.writeFile(layerPath, bytes);
    const dir = path.join(work, 'corrupt-out');
    await fs.mkdir(dir);
    await expect(exportImage(s, { manifestDigest: BUSYBOX_DIGEST, names: [BUSYBOX_NAME] }, { type: 'oci', dest: path.join(dir, 'x.tar') })).rejects.toMatchObject({ code: 'MBUILD_DIGEST_MISMATCH' });
    expect(await fs.readdir(dir)).toEqual([]);
  });
});
