import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { tarOf as buildTar, type TarEntry } from '../helpers/tar.js';
import { applyLayerTar, extractArchive } from '../../snapshotter/diff/apply.js';
import { decompressStream } from '../../snapshotter/diff/decompress.js';
import { findOpaqueDirs } from '../../util/native-helper.js';
import { UnsafeArchiveError, MbuildError } from '../../util/errors.js';

const isRoot = process.getuid?.() === 0;
/** unique name part for anything a regression could create outside the test dirs */
const U = `mbuild-test-${process.pid}-${randomBytes(4).toString('hex')}`;

type E = TarEntry;

const T0 = new Date('2020-01-02T03:04:05Z');
const tarOf = (entries: E[]) => buildTar(entries, T0);

const apply = (tar: Buffer, dir: string, opts?: Parameters<typeof applyLayerTar>[2]) => applyLayerTar(Readable.from([tar]), dir, opts);

let tmp: string;
let layer: string;
let sentinel: string;
const sentinelFiles = new Map<string, string>();

async function treeHash(dir: string): Promise<string> {
  const h = createHash('sha256');
  async function walk(d: string): Promise<void> {
    for (const n of (await fs.readdir(d)).sort()) {
      const p = path.join(d, n);
      const st = await fs.lstat(p);
      h.update(`${path.relative(dir, p)} ${st.mode} ${st.uid} ${st.gid} ${st.nlink} ${st.size} ${st.mtimeMs}\n`);
      if (st.isDirectory()) await walk(p);
      else if (st.isFile()) h.update(await fs.readFile(p));
    }
  }
  await walk(dir);
  return h.digest('hex');
}

beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-apply-'));
  // tmp/sentinel is what "../.." escapes would reach: tmp/a/b/layer + ../../x = tmp/a/x, + ../../../x = tmp/x
  sentinel = path.join(tmp, 'sentinel');
  await fs.mkdir(path.join(sentinel, 'etc'), { recursive: true });
  await fs.writeFile(path.join(sentinel, 'etc', 'passwd'), 'sentinel\n');
  await fs.writeFile(path.join(sentinel, 'file'), 'do not touch\n');
  await fs.chmod(path.join(sentinel, 'file'), 0o600);
  layer = path.join(tmp, 'a', 'b', 'layer');
  sentinelFiles.set('sentinel', await treeHash(sentinel));
});

afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
  // where a broken extractor would have put the uniquely named entries (also when a test failed early)
  for (const p of [`/lib/${U}.so`, `/usr/lib/${U}.so`, `/${U}-escape`, `/${U}-top`]) await fs.rm(p, { force: true });
});

/** Nothing outside the extraction directories changed: the sentinel tree is intact, no stray names. */
async function expectOutsideUntouched(): Promise<void> {
  expect(await treeHash(sentinel)).toBe(sentinelFiles.get('sentinel'));
  const stray = ['etc', 'escape', 'top', 'x', 'file', 'new', 'shadow', 'y', 'h', 'passwd'];
  for (const d of [path.dirname(tmp), tmp, path.join(tmp, 'a'), path.join(tmp, 'a', 'b')]) {
    const names = await fs.readdir(d).catch(() => [] as string[]);
    if (d === path.dirname(tmp)) expect(names.filter((n) => ['escape', 'top', 'sentinel'].includes(n))).toEqual([]);
    else expect(names.filter((n) => stray.includes(n))).toEqual([]);
  }
}

/** A uniquely named file a broken extractor would have created on the host: must not exist (removed if it does). */
async function expectNotOnHost(p: string): Promise<void> {
  const there = await fs.lstat(p).then(
    () => true,
    () => false,
  );
  if (there) await fs.rm(p, { force: true });
  expect([p, there]).toEqual([p, false]);
}

const hostPasswd = async () => {
  const st = await fs.stat('/etc/passwd');
  return `${createHash('sha256').update(await fs.readFile('/etc/passwd')).digest('hex')} ${st.mode} ${st.nlink} ${st.mtimeMs}`;
};

describe.skipIf(!isRoot)('applyLayerTar (root)', () => {
  // Entries that a broken extractor would write on the host point at the sentinel dir (inside tmp)
  // or use unique names, so a regression cannot clobber real host files.
  it('keeps "..", absolute names and symlinked parents inside the layer', async () => {
    const before = await hostPasswd();
    const S = sentinel.slice(1);
    const tar = await tarOf([
      { name: '../../etc/passwd', data: 'one\n' },
      { name: `${sentinel}/etc/passwd`, data: 'two\n' },
      { name: `../../../../../../../..${sentinel}/file`, data: 'three\n' },
      { name: 'a', type: 'symlink', linkname: `${sentinel}/etc` },
      { name: 'a/passwd', data: 'four\n' },
      { name: 'up', type: 'symlink', linkname: '../../../sentinel' },
      { name: 'up/file', data: 'five\n' },
      { name: 'up/new', data: 'six\n' },
      { name: 'rootfoo/x', data: 'seven\n' },
      { name: 'loop', type: 'symlink', linkname: 'loop' },
      { name: 'self', type: 'symlink', linkname: '.' },
      { name: 'self/self/y', data: 'eight\n' },
    ]);
    const res = await apply(tar, layer);
    expect(res.entries).toBe(12);
    expect(await fs.readFile(path.join(layer, 'etc', 'passwd'), 'utf8')).toBe('one\n');
    expect(await fs.readFile(path.join(layer, S, 'etc', 'passwd'), 'utf8')).toBe('four\n');
    expect(await fs.readFile(path.join(layer, S, 'file'), 'utf8')).toBe('three\n');
    expect(await fs.readFile(path.join(layer, 'sentinel', 'file'), 'utf8')).toBe('five\n');
    expect(await fs.readFile(path.join(layer, 'sentinel', 'new'), 'utf8')).toBe('six\n');
    expect(await fs.readFile(path.join(layer, 'y'), 'utf8')).toBe('eight\n');
    expect((await fs.lstat(path.join(layer, 'a'))).isSymbolicLink()).toBe(true);
    expect(await fs.readlink(path.join(layer, 'a'))).toBe(`${sentinel}/etc`);
    expect(await fs.readlink(path.join(layer, 'loop'))).toBe('loop');
    expect(await hostPasswd()).toBe(before);
    await expectOutsideUntouched();
  });

  it('refuses symlink loops and parents that are not directories', async () => {
    const loop = await tarOf([
      { name: 'loop', type: 'symlink', linkname: 'loop' },
      { name: 'loop/x', data: '' },
    ]);
    await expect(apply(loop, path.join(tmp, 'loop'))).rejects.toThrow(/too many levels of symbolic links/);
    const file = await tarOf([
      { name: 'f', data: '' },
      { name: 'f/x', data: '' },
    ]);
    await expect(apply(file, path.join(tmp, 'file'))).rejects.toThrow(/is not a directory/);
  });

  it('follows a symlink left by an earlier entry only inside the layer (also absolute ones)', async () => {
    const tar = await tarOf([
      { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
      { name: 'lib/libc.so', data: 'libc' },
      { name: 'abs', type: 'symlink', linkname: '/usr/../../../lib' },
      { name: `abs/${U}.so`, data: 'libm' },
    ]);
    await apply(tar, layer);
    expect(await fs.readFile(path.join(layer, 'usr', 'lib', 'libc.so'), 'utf8')).toBe('libc');
    // "/usr/../../../lib" resolves to /lib in the layer, which is the symlink to usr/lib
    expect(await fs.readFile(path.join(layer, 'usr', 'lib', `${U}.so`), 'utf8')).toBe('libm');
    await expectNotOnHost(`/lib/${U}.so`);
    const st = await fs.stat(path.join(layer, 'usr'));
    expect(st.mode & 0o7777).toBe(0o755);
    expect(st.uid).toBe(0);
    await expectOutsideUntouched();
  });

  it('resolves hard links inside the layer and refuses targets that are not there', async () => {
    const ok = await tarOf([
      { name: 'x', data: 'x' },
      { name: 'h', type: 'link', linkname: '../../x' },
      { name: 'h2', type: 'link', linkname: '/x' },
    ]);
    await apply(ok, layer);
    const x = await fs.stat(path.join(layer, 'x'));
    expect((await fs.stat(path.join(layer, 'h'))).ino).toBe(x.ino);
    expect((await fs.stat(path.join(layer, 'h2'))).ino).toBe(x.ino);
    expect(x.nlink).toBe(3);

    for (const linkname of ['../../sentinel/file', '/etc/passwd', '../../../../../etc/passwd', 'missing']) {
      const dir = path.join(tmp, 'a', 'b', `l-${createHash('md5').update(linkname).digest('hex')}`);
      const err = await apply(await tarOf([{ name: 'h', type: 'link', linkname }]), dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnsafeArchiveError);
      expect(String((err as Error).message)).toMatch(/does not exist/);
    }
    expect((await fs.stat(path.join(sentinel, 'file'))).nlink).toBe(1);
    expect((await fs.stat('/etc/passwd')).nlink).toBe(1);

    const viaSymlink = path.join(tmp, 'a', 'b', 'vs');
    const err = await apply(
      await tarOf([
        { name: 'esc', type: 'symlink', linkname: '/' },
        { name: 'h', type: 'link', linkname: 'esc/etc/passwd' },
      ]),
      viaSymlink,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeArchiveError);
    expect((await fs.stat('/etc/passwd')).nlink).toBe(1);

    const toDir = await apply(await tarOf([{ name: 'd/', type: 'directory' }, { name: 'h', type: 'link', linkname: 'd' }]), path.join(tmp, 'todir')).catch((e: unknown) => e);
    expect(toDir).toBeInstanceOf(UnsafeArchiveError);
    await expectOutsideUntouched();
  });

  it('links a hard link to a symlink to the symlink itself, and never chmods through it', async () => {
    const target = path.join(sentinel, 'file');
    const tar = await tarOf([
      { name: 's', type: 'symlink', linkname: target },
      { name: 'h', type: 'link', linkname: 's', mode: 0o777, uid: 1234 },
      { name: 'rel', type: 'symlink', linkname: '../../../sentinel/file' },
      { name: 'h2', type: 'link', linkname: 'rel', mode: 0o4777 },
      { name: 'h2', type: 'link', linkname: 'rel', mode: 0o4777 },
      { name: 'self', type: 'link', linkname: 'h2' },
      { name: 'self', type: 'link', linkname: 'self' },
    ]);
    await apply(tar, layer);
    const s = await fs.lstat(path.join(layer, 's'));
    const h = await fs.lstat(path.join(layer, 'h'));
    expect(h.isSymbolicLink()).toBe(true);
    expect(h.ino).toBe(s.ino);
    expect((await fs.lstat(path.join(layer, 'h2'))).isSymbolicLink()).toBe(true);
    const st = await fs.stat(target);
    expect(st.mode & 0o7777).toBe(0o600);
    expect(st.uid).toBe(0);
    expect(await fs.readFile(target, 'utf8')).toBe('do not touch\n');
    await expectOutsideUntouched();
  });

  it('refuses invalid whiteouts', async () => {
    for (const name of ['.wh.', '.wh..', 'etc/.wh...', 'x/.wh.', '.wh.a/b', 'd/.wh.x/y']) {
      const dir = path.join(tmp, 'w', createHash('md5').update(name).digest('hex'));
      const err = await apply(await tarOf([{ name, data: '' }]), dir).catch((e: unknown) => e);
      expect([name, err]).toEqual([name, expect.any(UnsafeArchiveError)]);
      expect((err as MbuildError).code).toBe('MBUILD_UNSAFE_ARCHIVE');
      expect((err as Error).message).toMatch(/invalid whiteout/);
    }
  });

  it('turns whiteouts into 0:0 devices and opaque markers into the xattr', async () => {
    const tar = await tarOf([
      { name: '.wh.gone', data: '' },
      { name: 'etc/', type: 'directory', mode: 0o755, mtime: new Date('2010-01-01T00:00:00Z') },
      { name: 'etc/.wh.old.conf', data: '' },
      { name: 'etc/.wh..wh..opq', data: '' },
      { name: 'var/lib/.wh.dpkg', data: '' }, // parents created
      { name: 'kept', data: 'mine' },
      { name: '.wh.kept', data: '' }, // same layer: the layer's own entry wins
      { name: '.wh.dir', data: '' },
      { name: 'dir/new', data: 'n' }, // lower dir is gone: the layer's dir becomes opaque
      { name: '.wh..wh.plnk', type: 'directory' }, // AUFS metadata: ignored
    ]);
    await apply(tar, layer);
    for (const w of ['gone', 'etc/old.conf', 'var/lib/dpkg']) {
      const st = await fs.lstat(path.join(layer, w));
      expect([w, st.isCharacterDevice(), st.rdev]).toEqual([w, true, 0]);
    }
    expect(await fs.readFile(path.join(layer, 'kept'), 'utf8')).toBe('mine');
    expect((await findOpaqueDirs(layer)).sort()).toEqual(['dir', 'etc']);
    expect((await fs.stat(path.join(layer, 'etc'))).mtime.toISOString()).toBe('2010-01-01T00:00:00.000Z');
    await expect(fs.lstat(path.join(layer, '.wh..wh.plnk'))).rejects.toThrow();
    await expect(fs.lstat(path.join(layer, '.wh.gone'))).rejects.toThrow();
  });

  it('lets later entries replace earlier ones', async () => {
    const tar = await tarOf([
      { name: 'a', data: 'first' },
      { name: 'a', data: 'second' },
      { name: 'd/', type: 'directory', mode: 0o700 },
      { name: 'd/x', data: 'x' },
      { name: 'd', data: 'now a file' },
      { name: 'f', data: 'file' },
      { name: 'f/', type: 'directory', mode: 0o750 },
      { name: 'm/', type: 'directory', mode: 0o700, uid: 5 },
      { name: 'm/child', data: 'c' },
      { name: 'm/', type: 'directory', mode: 0o755, uid: 7, mtime: new Date('2015-05-05T05:05:05Z') },
      { name: 'l', type: 'symlink', linkname: `${sentinel}/file` },
      { name: 'l', data: 'not through the link' },
      { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev', data: 'a file now' },
    ]);
    await apply(tar, layer);
    expect(await fs.readFile(path.join(layer, 'a'), 'utf8')).toBe('second');
    expect(await fs.readFile(path.join(layer, 'd'), 'utf8')).toBe('now a file');
    expect((await fs.lstat(path.join(layer, 'f'))).isDirectory()).toBe(true);
    expect((await fs.lstat(path.join(layer, 'f'))).mode & 0o7777).toBe(0o750);
    const m = await fs.lstat(path.join(layer, 'm'));
    expect([m.mode & 0o7777, m.uid, m.mtime.toISOString()]).toEqual([0o755, 7, '2015-05-05T05:05:05.000Z']);
    expect(await fs.readFile(path.join(layer, 'm', 'child'), 'utf8')).toBe('c');
    expect(await fs.readFile(path.join(layer, 'l'), 'utf8')).toBe('not through the link');
    expect(await fs.readFile(path.join(layer, 'dev'), 'utf8')).toBe('a file now');
    expect(await treeHash(sentinel)).toBe(sentinelFiles.get('sentinel'));
  });

  it('creates device nodes and FIFOs, hard links to them, with owners and modes', async () => {
    const tar = await tarOf([
      { name: 'dev/', type: 'directory', mode: 0o755, mtime: new Date('2011-01-01T00:00:00Z') },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666, uid: 3, gid: 4 },
      { name: 'dev/loop0', type: 'block-device', devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
      { name: 'dev/fifo', type: 'fifo', mode: 0o620 },
      { name: 'dev/null2', type: 'link', linkname: 'dev/null' },
      { name: 'dev/big', type: 'character-device', devmajor: 259, devminor: 70000, mode: 0o600 },
    ]);
    await apply(tar, layer);
    const nul = await fs.lstat(path.join(layer, 'dev', 'null'));
    expect(nul.isCharacterDevice()).toBe(true);
    expect([nul.rdev, nul.mode & 0o7777, nul.uid, nul.gid, nul.nlink]).toEqual([0x103, 0o666, 3, 4, 2]);
    expect(nul.mtime.toISOString()).toBe(T0.toISOString());
    expect((await fs.lstat(path.join(layer, 'dev', 'null2'))).ino).toBe(nul.ino);
    const loop = await fs.lstat(path.join(layer, 'dev', 'loop0'));
    expect([loop.isBlockDevice(), loop.rdev, loop.mode & 0o7777, loop.gid]).toEqual([true, 0x700, 0o660, 6]);
    const fifo = await fs.lstat(path.join(layer, 'dev', 'fifo'));
    expect([fifo.isFIFO(), fifo.mode & 0o7777]).toEqual([true, 0o620]);
    expect((await fs.lstat(path.join(layer, 'dev', 'big'))).isCharacterDevice()).toBe(true);
    expect((await fs.stat(path.join(layer, 'dev'))).mtime.toISOString()).toBe('2011-01-01T00:00:00.000Z');
  });

  it('applies owners, setuid modes, times, and PAX owners/times; drops xattrs', async () => {
    const tar = await tarOf([
      { name: 'bin/', type: 'directory', mode: 0o755, uid: 0, mtime: new Date('2012-01-01T00:00:00Z') },
      { name: 'bin/su', data: 'su', mode: 0o4755, uid: 1234, gid: 99 },
      { name: 'bin/sg', data: 'sg', mode: 0o2711, uid: 1, gid: 2 },
      { name: 'tmp/', type: 'directory', mode: 0o1777 },
      { name: 'bin/none', data: '', mode: 0 },
      { name: 'ln', type: 'symlink', linkname: 'bin/su', uid: 77, gid: 78, mtime: new Date('2013-01-01T00:00:00Z') },
      {
        name: 'pax',
        data: 'p',
        pax: { uid: '300000', gid: '400000', mtime: '1600000000.5', 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.security.capability': 'x' },
      },
    ]);
    await apply(tar, layer);
    const su = await fs.lstat(path.join(layer, 'bin', 'su'));
    expect([su.mode & 0o7777, su.uid, su.gid, su.mtime.toISOString()]).toEqual([0o4755, 1234, 99, T0.toISOString()]);
    const sg = await fs.lstat(path.join(layer, 'bin', 'sg'));
    expect([sg.mode & 0o7777, sg.uid, sg.gid]).toEqual([0o2711, 1, 2]);
    expect((await fs.lstat(path.join(layer, 'tmp'))).mode & 0o7777).toBe(0o1777);
    expect((await fs.lstat(path.join(layer, 'bin', 'none'))).mode & 0o7777).toBe(0);
    const ln = await fs.lstat(path.join(layer, 'ln'));
    expect([ln.isSymbolicLink(), ln.uid, ln.gid, ln.mtime.toISOString()]).toEqual([true, 77, 78, '2013-01-01T00:00:00.000Z']);
    const pax = await fs.lstat(path.join(layer, 'pax'));
    expect([pax.uid, pax.gid, pax.mtimeMs]).toEqual([300000, 400000, 1600000000500]);
    expect(await findOpaqueDirs(layer)).toEqual([]);
    expect((await fs.stat(path.join(layer, 'bin'))).mtime.toISOString()).toBe('2012-01-01T00:00:00.000Z');
  });

  it('enforces entry and size budgets with a clear error', async () => {
    const many = await tarOf(Array.from({ length: 10 }, (_, i) => ({ name: `f${i}`, data: 'x' })));
    await expect(apply(many, path.join(tmp, 'b1'), { maxEntries: 5 })).rejects.toThrow(/more than 5 entries/);
    const big = await tarOf([{ name: 'big', data: Buffer.alloc(4096) }]);
    const err = await apply(big, path.join(tmp, 'b2'), { maxBytes: 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeArchiveError);
    expect((err as Error).message).toMatch(/size budget of 1000 bytes/);
    // a header that claims a huge (e.g. sparse) file is refused before its data is read
    const hdr = await tarOf([{ name: 'huge', data: 'x' }]);
    const block = Buffer.from(hdr.subarray(0, 512));
    block.write('77777777777\0', 124, 'latin1'); // 8 GiB - 1
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of block) sum += b;
    block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const input = new Readable({ read() {} });
    input.push(block);
    await expect(applyLayerTar(input, path.join(tmp, 'b3'), { maxBytes: 1024 ** 3 })).rejects.toThrow(/size budget/);
    // within budget works and reports the totals
    expect(await apply(many, path.join(tmp, 'b4'), { maxEntries: 10, maxBytes: 10 })).toEqual({ entries: 10, bytes: 10 });
  });

  it('reports truncated and corrupt tars, and a non-empty layer dir', async () => {
    const tar = await tarOf([{ name: 'f', data: Buffer.alloc(10000, 1) }]);
    await expect(apply(tar.subarray(0, 3000), path.join(tmp, 't1'))).rejects.toThrow(MbuildError);
    const bad = Buffer.from(tar);
    bad[150] ^= 0x01; // checksum
    await expect(apply(bad, path.join(tmp, 't2'))).rejects.toThrow(MbuildError);
    const odd = Buffer.from(tar);
    odd[156] = 'V'.charCodeAt(0); // GNU volume header: not something a layer may hold
    odd.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of odd.subarray(0, 512)) sum += b;
    odd.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    await expect(apply(odd, path.join(tmp, 't4'))).rejects.toThrow(/unsupported tar entry type/);
    await fs.mkdir(path.join(tmp, 't3'));
    await fs.writeFile(path.join(tmp, 't3', 'x'), '');
    await expect(apply(tar, path.join(tmp, 't3'))).rejects.toThrow(/not empty/);
  });

  it('reads gzip layers through decompressStream', async () => {
    const tar = await tarOf([{ name: 'usr/share/doc/x', data: 'doc' }]);
    const res = await applyLayerTar(await decompressStream(Readable.from([gzipSync(tar)])), layer);
    expect(res.entries).toBe(1);
    expect(await fs.readFile(path.join(layer, 'usr', 'share', 'doc', 'x'), 'utf8')).toBe('doc');
  });

  it('writes large files with backpressure', async () => {
    const big = Buffer.alloc(20 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i += 1000) big[i] = (i / 1000) & 0xff;
    const tar = await tarOf([{ name: 'big', data: big }]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < tar.length; i += 65536) chunks.push(tar.subarray(i, i + 65536));
    const res = await applyLayerTar(Readable.from(chunks), layer);
    expect(res.bytes).toBe(big.length);
    expect((await fs.readFile(path.join(layer, 'big'))).equals(big)).toBe(true);
  });
});

describe.skipIf(!isRoot)('extractArchive (root)', () => {
  it('keeps whiteout names as files, owners and modes, and leaves destDir itself alone', async () => {
    const dest = path.join(tmp, 'dest');
    await fs.mkdir(dest, { mode: 0o755 });
    await fs.chmod(dest, 0o755);
    await fs.writeFile(path.join(dest, 'existing'), 'old');
    const before = await fs.stat(dest);
    const tar = await tarOf([
      { name: './', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
      { name: './.wh.foo', data: 'not a whiteout' },
      { name: './app/.wh..wh..opq', data: 'nor this' },
      { name: './app/run.sh', data: '#!/bin/sh', mode: 0o4750, uid: 1000, gid: 50 },
      { name: './existing', data: 'new' },
      { name: `../../../${U}-escape`, data: 'inside' },
      { name: 'ln', type: 'symlink', linkname: '/' },
      { name: `ln/${sentinel.slice(1)}/file`, data: 'inside too' },
    ]);
    const res = await extractArchive(Readable.from([tar]), dest);
    expect(res.entries).toBe(8);
    const after = await fs.stat(dest);
    expect([after.mode, after.uid, after.gid]).toEqual([before.mode, before.uid, before.gid]);
    expect(await fs.readFile(path.join(dest, '.wh.foo'), 'utf8')).toBe('not a whiteout');
    expect(await fs.readFile(path.join(dest, 'app', '.wh..wh..opq'), 'utf8')).toBe('nor this');
    const run = await fs.lstat(path.join(dest, 'app', 'run.sh'));
    expect([run.mode & 0o7777, run.uid, run.gid]).toEqual([0o4750, 1000, 50]);
    expect(await fs.readFile(path.join(dest, 'existing'), 'utf8')).toBe('new');
    expect(await fs.readFile(path.join(dest, `${U}-escape`), 'utf8')).toBe('inside');
    expect(await fs.readFile(path.join(dest, sentinel.slice(1), 'file'), 'utf8')).toBe('inside too');
    await expectNotOnHost(`/${U}-escape`);
    expect(await findOpaqueDirs(dest)).toEqual([]);
    await expectOutsideUntouched();
  });

  it('resolves symlinks in the wider root when asked, never above it', async () => {
    const root = path.join(tmp, 'root');
    await fs.mkdir(path.join(root, 'usr', 'lib'), { recursive: true });
    await fs.mkdir(path.join(root, 'app'));
    await fs.symlink('/usr/lib', path.join(root, 'app', 'lib'));
    const tar = await tarOf([
      { name: `lib/${U}.so`, data: 'x' },
      { name: 'up', type: 'symlink', linkname: '../../../../..' },
      { name: `up/${U}-top`, data: 'top' },
    ]);
    await extractArchive(Readable.from([tar]), path.join(root, 'app'), { root });
    expect(await fs.readFile(path.join(root, 'usr', 'lib', `${U}.so`), 'utf8')).toBe('x');
    await expectNotOnHost(`/usr/lib/${U}.so`);
    expect(await fs.readFile(path.join(root, `${U}-top`), 'utf8')).toBe('top');
    await expectNotOnHost(`/${U}-top`);
    await expect(extractArchive(Readable.from([tar]), tmp, { root })).rejects.toThrow(/not inside/);
  });
});
