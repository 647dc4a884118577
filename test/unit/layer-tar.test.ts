import { describe, it, expect, vi, beforeEach, afterEach } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { PassThrough, Readable, Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { extract as tarExtract, pack as tarPack } from 'tar-stream';

// Unit tests run without the native helper: the opaque-dir query is mocked per test.
const native = vi.hoisted(() => ({ opaque: [] as string[] }));
vi.mock('../../util/native-helper.js', () => ({
  findOpaqueDirs: async () => native.opaque,
  fsOps: async () => {
    throw new Error('fsOps is not available in unit tests');
  },
}));

import { writeLayerTar, isEmptyLayerDir, layerTarStream, devMajor, devMinor } from '../../snapshotter/diff/layer-tar.js';
import { decompressStream, isArchive, detectCompression, looksLikeTarHeader } from '../../snapshotter/diff/decompress.js';
import { cleanEntryPath, classifyWhiteout } from '../../snapshotter/diff/apply.js';

const isRoot = process.getuid?.() === 0;

interface Entry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string | null;
  devmajor: number;
  devminor: number;
  pax: Record<string, string> | null;
  data: Buffer;
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function tarOf(dir: string, opts?: { mtime?: Date }): Promise<Buffer> {
  const out = new PassThrough();
  const [, buf] = await Promise.all([writeLayerTar(dir, out, opts), collect(out)]);
  return buf;
}

async function entriesOf(tar: Buffer): Promise<Entry[]> {
  const ex = tarExtract();
  const out: Entry[] = [];
  Readable.from([tar]).pipe(ex as unknown as Writable);
  for await (const e of ex) {
    const h = e.header;
    out.push({
      name: h.name,
      type: h.type,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      size: h.size,
      mtime: h.mtime.getTime() / 1000,
      linkname: h.linkname ?? null,
      devmajor: h.devmajor,
      devminor: h.devminor,
      pax: (h.pax as Record<string, string> | null) ?? null,
      data: await collect(e),
    });
  }
  return out;
}

let tmp: string;
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-layertar-'));
  native.opaque = [];
});
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function mkLayer(): Promise<string> {
  const d = path.join(tmp, 'layer');
  await fs.mkdir(d);
  await fs.mkdir(path.join(d, 'a'));
  await fs.writeFile(path.join(d, 'a', 'x'), 'x-content');
  await fs.writeFile(path.join(d, 'a-b'), 'ab');
  await fs.writeFile(path.join(d, 'B'), 'upper');
  await fs.mkdir(path.join(d, 'usr', 'bin'), { recursive: true });
  await fs.writeFile(path.join(d, 'usr', 'bin', 'tool'), '#!/bin/sh\n');
  await fs.chmod(path.join(d, 'usr', 'bin', 'tool'), 0o4755);
  await fs.symlink('../a/x', path.join(d, 'usr', 'link'));
  await fs.link(path.join(d, 'usr', 'bin', 'tool'), path.join(d, 'usr', 'hard'));
  await fs.writeFile(path.join(d, 'empty'), '');
  await fs.chmod(path.join(d, 'empty'), 0o000);
  return d;
}

describe('writeLayerTar', () => {
  it('writes parents before children, siblings in byte order, clean relative names', async () => {
    const d = await mkLayer();
    const entries = await entriesOf(await tarOf(d));
    expect(entries.map((e) => e.name)).toEqual([
      'B',
      'a/',
      'a/x',
      'a-b',
      'empty',
      'usr/',
      'usr/bin/',
      'usr/bin/tool',
      'usr/hard',
      'usr/link',
    ]);
    for (const e of entries) {
      expect(e.name.startsWith('/')).toBe(false);
      expect(e.name.startsWith('./')).toBe(false);
      expect(e.name.endsWith('/')).toBe(e.type === 'directory');
    }
    // every entry's parent directory came earlier
    const seen = new Set<string>();
    for (const e of entries) {
      const parent = e.name.replace(/\/$/, '').split('/').slice(0, -1).join('/');
      if (parent) expect(seen.has(parent + '/')).toBe(true);
      seen.add(e.name);
    }
  });

  it('keeps modes (setuid, 0000), contents, symlinks and hard links', async () => {
    const d = await mkLayer();
    const byName = new Map((await entriesOf(await tarOf(d))).map((e) => [e.name, e]));
    const tool = byName.get('usr/bin/tool')!;
    expect(tool.type).toBe('file');
    expect(tool.mode).toBe(0o4755);
    expect(tool.data.toString()).toBe('#!/bin/sh\n');
    const hard = byName.get('usr/hard')!;
    expect(hard.type).toBe('link');
    expect(hard.linkname).toBe('usr/bin/tool');
    expect(hard.size).toBe(0);
    const link = byName.get('usr/link')!;
    expect(link.type).toBe('symlink');
    expect(link.linkname).toBe('../a/x');
    expect(byName.get('empty')!.mode).toBe(0);
    expect(byName.get('empty')!.size).toBe(0);
    expect(byName.get('a/')!.type).toBe('directory');
    const st = await fs.lstat(path.join(d, 'a', 'x'));
    expect(byName.get('a/x')!.mtime).toBe(Math.floor(st.mtimeMs / 1000));
    expect(byName.get('a/x')!.uid).toBe(st.uid);
  });

  it('is deterministic and writes no PAX headers for short ASCII names', async () => {
    const d = await mkLayer();
    const one = await tarOf(d);
    await fs.readFile(path.join(d, 'a', 'x')); // atime changes must not matter
    const two = await tarOf(d);
    expect(two.equals(one)).toBe(true);
    for (const e of await entriesOf(one)) expect(e.pax).toBeNull();
    expect(one.includes(Buffer.from('PaxHeader'))).toBe(false);
    expect(one.length % 512).toBe(0);
  });

  it('uses PAX only where needed: long and non-ASCII names, long link targets', async () => {
    const d = path.join(tmp, 'layer');
    const long = 'd'.repeat(120);
    await fs.mkdir(path.join(d, long), { recursive: true });
    await fs.writeFile(path.join(d, long, 'f'.repeat(150)), 'long');
    await fs.writeFile(path.join(d, 'héllo'), 'u');
    await fs.symlink('t'.repeat(200), path.join(d, 'sl'));
    const entries = await entriesOf(await tarOf(d));
    const names = entries.map((e) => e.name);
    expect(names).toEqual([`${long}/`, `${long}/${'f'.repeat(150)}`, 'héllo', 'sl']);
    expect(entries[1]!.data.toString()).toBe('long');
    expect(entries[3]!.linkname).toBe('t'.repeat(200));
  });

  it('emits the opaque marker right after its directory, and at the root', async () => {
    const d = path.join(tmp, 'layer');
    await fs.mkdir(path.join(d, 'op', 'sub'), { recursive: true });
    await fs.writeFile(path.join(d, 'op', '-first'), '');
    native.opaque = ['./op', '.'];
    const names = (await entriesOf(await tarOf(d))).map((e) => e.name);
    expect(names).toEqual(['.wh..wh..opq', 'op/', 'op/.wh..wh..opq', 'op/-first', 'op/sub/']);
    const marker = (await entriesOf(await tarOf(d))).find((e) => e.name === 'op/.wh..wh..opq')!;
    expect(marker.type).toBe('file');
    expect(marker.size).toBe(0);
  });

  it('clamps mtimes with opts.mtime', async () => {
    const d = await mkLayer();
    const when = new Date('2001-02-03T04:05:06Z');
    for (const e of await entriesOf(await tarOf(d, { mtime: when }))) expect(e.mtime).toBe(when.getTime() / 1000);
    await fs.utimes(path.join(d, 'B'), new Date(0), new Date('1990-01-01T00:00:00Z'));
    const b = (await entriesOf(await tarOf(d, { mtime: when }))).find((e) => e.name === 'B')!;
    expect(b.mtime).toBe(Date.parse('1990-01-01T00:00:00Z') / 1000);
  });

  it('streams large files with backpressure', async () => {
    const d = path.join(tmp, 'layer');
    await fs.mkdir(d);
    const big = Buffer.alloc(8 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    await fs.writeFile(path.join(d, 'big'), big);
    // a slow consumer
    let total = 0;
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _e, cb) {
        total += chunk.length;
        setImmediate(cb);
      },
    });
    await writeLayerTar(d, slow);
    expect(total).toBe(512 + Math.ceil(big.length / 512) * 512 + 1024);
    const e = (await entriesOf(await tarOf(d)))[0]!;
    expect(e.data.equals(big)).toBe(true);
  });

  it('layerTarStream gives the same bytes; isEmptyLayerDir', async () => {
    const d = await mkLayer();
    expect((await collect(layerTarStream(d))).equals(await tarOf(d))).toBe(true);
    const empty = path.join(tmp, 'empty');
    await fs.mkdir(empty);
    expect(await isEmptyLayerDir(empty)).toBe(true);
    expect(await isEmptyLayerDir(d)).toBe(false);
    expect((await tarOf(empty)).equals(Buffer.alloc(1024))).toBe(true);
  });

  it('reports a missing layer directory', async () => {
    await expect(tarOf(path.join(tmp, 'nope'))).rejects.toThrow();
  });

  it('decodes Linux dev_t', () => {
    expect(devMajor(0x0103n)).toBe(1);
    expect(devMinor(0x0103n)).toBe(3);
    // major 259, minor 70000 (glibc makedev)
    const rdev = ((259n & 0xfffn) << 8n) | ((259n & ~0xfffn) << 32n) | (70000n & 0xffn) | ((70000n & ~0xffn) << 12n);
    expect(devMajor(rdev)).toBe(259);
    expect(devMinor(rdev)).toBe(70000);
  });

  describe.skipIf(!isRoot)('as root', () => {
    it('turns 0:0 char devices into .wh. files, keeps devices and FIFOs, never links whiteouts', async () => {
      const d = path.join(tmp, 'layer');
      await fs.mkdir(path.join(d, 'dev'), { recursive: true });
      execFileSync('mknod', [path.join(d, 'gone'), 'c', '0', '0']);
      await fs.link(path.join(d, 'gone'), path.join(d, 'dev', 'gone2')); // overlayfs shares whiteout inodes
      execFileSync('mknod', ['-m', '0666', path.join(d, 'dev', 'null'), 'c', '1', '3']);
      execFileSync('mknod', ['-m', '0660', path.join(d, 'dev', 'loop9'), 'b', '7', '9']);
      execFileSync('mknod', ['-m', '0600', path.join(d, 'dev', 'fifo'), 'p']);
      await fs.chown(path.join(d, 'dev', 'fifo'), 300000, 7);
      const entries = await entriesOf(await tarOf(d));
      expect(entries.map((e) => e.name)).toEqual(['.wh.gone', 'dev/', 'dev/.wh.gone2', 'dev/fifo', 'dev/loop9', 'dev/null']);
      const by = new Map(entries.map((e) => [e.name, e]));
      for (const w of ['.wh.gone', 'dev/.wh.gone2']) {
        expect(by.get(w)!.type).toBe('file');
        expect(by.get(w)!.size).toBe(0);
      }
      expect(by.get('dev/null')).toMatchObject({ type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 });
      expect(by.get('dev/loop9')).toMatchObject({ type: 'block-device', devmajor: 7, devminor: 9, mode: 0o660 });
      expect(by.get('dev/fifo')).toMatchObject({ type: 'fifo', gid: 7 });
      expect(by.get('dev/fifo')!.pax).toMatchObject({ uid: '300000' });
    });
  });
});

describe('apply helpers', () => {
  it('cleans entry names inside the root', () => {
    expect(cleanEntryPath('../../etc/passwd')).toEqual(['etc', 'passwd']);
    expect(cleanEntryPath('/etc/passwd')).toEqual(['etc', 'passwd']);
    expect(cleanEntryPath('./a/./b/../c/')).toEqual(['a', 'c']);
    expect(cleanEntryPath('./')).toEqual([]);
    expect(cleanEntryPath('a/../../..')).toEqual([]);
  });
  it('classifies whiteouts', () => {
    expect(classifyWhiteout('.wh..wh..opq')).toEqual({ kind: 'opaque' });
    expect(classifyWhiteout('.wh.foo')).toEqual({ kind: 'whiteout', victim: 'foo' });
    expect(classifyWhiteout('.wh..wh.plnk')).toEqual({ kind: 'meta' });
    expect(classifyWhiteout('foo.wh.')).toEqual({ kind: 'none' });
    for (const bad of ['.wh.', '.wh..', '.wh...']) expect(() => classifyWhiteout(bad)).toThrow(/invalid whiteout/);
  });
});

describe('decompress', () => {
  async function sampleTar(): Promise<Buffer> {
    const p = tarPack();
    p.entry({ name: 'hello.txt', mode: 0o644 }, 'hello world\n');
    p.finalize();
    return collect(p as unknown as AsyncIterable<unknown>);
  }
  function viaTool(cmd: string, data: Buffer): Buffer {
    return execFileSync(cmd, ['-c'], { input: data });
  }
  const tools = ['bzip2', 'xz', 'zstd'].filter((t) => {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`]);
      return true;
    } catch {
      return false;
    }
  });

  it('detects compression by magic', () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 8]))).toBe('gzip');
    expect(detectCompression(Buffer.from('BZh91AY'))).toBe('bzip2');
    expect(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toBe('xz');
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(detectCompression(Buffer.from('hello'))).toBe('none');
    expect(detectCompression(Buffer.alloc(0))).toBe('none');
  });

  it('passes plain data through and inflates gzip', async () => {
    const tar = await sampleTar();
    expect((await collect(await decompressStream(Readable.from([tar])))).equals(tar)).toBe(true);
    // split the magic over two chunks
    const gz = gzipSync(tar);
    const out = await collect(await decompressStream(Readable.from([gz.subarray(0, 1), gz.subarray(1, 3), gz.subarray(3)])));
    expect(out.equals(tar)).toBe(true);
    expect((await collect(await decompressStream(Readable.from([Buffer.from('ab')])))).toString()).toBe('ab');
    expect((await collect(await decompressStream(Readable.from([])))).length).toBe(0);
  });

  it.each(['bzip2', 'xz', 'zstd'])('decompresses %s with the system tool', async (tool) => {
    if (!tools.includes(tool)) return;
    const tar = await sampleTar();
    const out = await collect(await decompressStream(Readable.from([viaTool(tool, tar)])));
    expect(out.equals(tar)).toBe(true);
  });

  it('fails on corrupt or truncated compressed data', async () => {
    const tar = await sampleTar();
    const big = Buffer.concat([tar, Buffer.alloc(200000, 7)]);
    for (const tool of tools) {
      const c = viaTool(tool, big);
      await expect(collect(await decompressStream(Readable.from([c.subarray(0, c.length - 20)])))).rejects.toThrow();
    }
    const gz = gzipSync(big);
    await expect(collect(await decompressStream(Readable.from([gz.subarray(0, gz.length - 20)])))).rejects.toThrow();
  });

  it('propagates input errors', async () => {
    const tar = await sampleTar();
    for (const c of [gzipSync(tar), ...tools.map((t) => viaTool(t, tar))]) {
      const src = new PassThrough();
      src.write(c.subarray(0, 10));
      const out = await decompressStream(src);
      setTimeout(() => src.destroy(new Error('network down')), 10);
      await expect(collect(out)).rejects.toThrow();
    }
  });

  it('isArchive decides by content', async () => {
    const tar = await sampleTar();
    const files: Record<string, Buffer> = {
      'a.tar': tar,
      'a.tgz': gzipSync(tar),
      'text.gz': gzipSync(Buffer.from('not a tar at all\n'.repeat(100))),
      'text.tar': Buffer.from('hello\n'.repeat(200)),
      short: Buffer.from('x'),
      zeros: Buffer.alloc(2048),
      empty: Buffer.alloc(0),
      'bad.gz': Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    };
    for (const t of tools) files[`a.${t}`] = viaTool(t, tar);
    for (const [n, b] of Object.entries(files)) await fs.writeFile(path.join(tmp, n), b);
    const want = (n: string) => n.startsWith('a.');
    for (const n of Object.keys(files)) expect([n, await isArchive(path.join(tmp, n))]).toEqual([n, want(n)]);
    expect(looksLikeTarHeader(tar.subarray(0, 512))).toBe(true);
    const v7 = Buffer.from(tar.subarray(0, 512));
    v7.fill(0, 257, 265); // no ustar magic
    let sum = 0;
    v7.fill(0x20, 148, 156);
    for (const b of v7) sum += b;
    v7.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    expect(looksLikeTarHeader(v7)).toBe(true);
  });
});
