/**
 * docs/security.md items 1–9: hostile layer tars. Each test builds its evil tar itself, drives the
 * applier directly (snapshotter/diff/apply.ts) and/or end to end (an evil image loaded into a
 * store, then a build FROM it, which unpacks it), and checks a sentinel directory on the host.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { applyLayerTar } from '../../snapshotter/diff/apply.js';
import { decompressStream } from '../../snapshotter/diff/decompress.js';
import { MbuildError, UnsafeArchiveError } from '../../util/errors.js';
import { imageSnapshotNames } from '../../store/layout.js';
import { Sentinel, buildText, errorLines, exists, isRoot, loadEvil, mountsAnywhere, runOutput, tarOf, type E } from './helpers.js';

let tmp: string;
let root: string;
let sentinel: Sentinel;
let S: string; // the sentinel's absolute path
let n = 0;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-layers-'));
  root = path.join(tmp, 'root');
  sentinel = await Sentinel.make(tmp);
  S = sentinel.dir;
});

afterAll(async () => {
  expect(mountsAnywhere(root)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(async () => {
  await sentinel.check();
});

/** Apply `entries` as a layer into a fresh dir deep below tmp (so "../.." has somewhere to go). */
async function apply(entries: E[], opts?: Parameters<typeof applyLayerTar>[2]): Promise<{ dir: string; err?: unknown }> {
  const dir = path.join(tmp, 'x', 'y', `layer-${++n}`);
  try {
    await applyLayerTar(Readable.from([await tarOf(entries)]), dir, opts);
    return { dir };
  } catch (err) {
    return { dir, err };
  }
}

/** Load an image made of busybox + these layers and build `FROM it` + `steps`. */
async function buildOn(layers: E[][], steps: string, opts: { env?: Record<string, string>; files?: Record<string, string> } = {}) {
  const name = `evil${++n}`;
  const loaded = await loadEvil(root, tmp, name, await Promise.all(layers.map((l) => tarOf(l))));
  expect(loaded.code, loaded.stderr).toBe(0);
  return buildText(root, tmp, `FROM ${name}\n${steps}\n`, ['--no-cache'], opts.files, opts.env);
}

describe.skipIf(!isRoot)('hostile layer tars', () => {
  it('item 1: ".." and absolute entry names, and sibling-prefix tricks, stay inside the layer', async () => {
    const sibling = path.join(tmp, 'x', 'y', `layer-${n + 1}foo`); // what "../layer-Nfoo" would reach
    await fs.mkdir(sibling, { recursive: true });
    const entries: E[] = [
      { name: `../../../../../../../../../..${S}/file`, data: 'pwned-1' },
      { name: `${S}/etc/passwd`, data: 'pwned-2' },
      { name: `/../${S}/new`, data: 'pwned-3' },
      { name: `../layer-${n + 1}foo/x`, data: 'pwned-4' },
      { name: `./a/../../../../${S}/dir/y`, data: 'pwned-5' },
    ];
    const { dir, err } = await apply(entries);
    expect(err).toBeUndefined();
    expect(await fs.readFile(path.join(dir, S, 'file'), 'utf8')).toBe('pwned-1');
    expect(await fs.readFile(path.join(dir, S, 'etc/passwd'), 'utf8')).toBe('pwned-2');
    expect(await fs.readFile(path.join(dir, `layer-${n}foo`, 'x'), 'utf8')).toBe('pwned-4');
    expect(await fs.readdir(sibling)).toEqual([]);
    await sentinel.check();

    const r = await buildOn([entries], `RUN cat ${S}/file ${S}/new ${S}/dir/y`);
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r).join('')).toContain('pwned-1pwned-3pwned-5');
    await sentinel.check();
  });

  it('item 2: a symlink out of the root, written through in the same or a later layer, stays inside', async () => {
    const same: E[] = [
      { name: 'a', type: 'symlink', linkname: S },
      { name: 'a/pwned', data: 'same-layer' },
      { name: 'b', type: 'symlink', linkname: `../../../../../../../../../..${S}/etc` },
      { name: 'b/passwd', data: 'via-relative' },
    ];
    const { dir, err } = await apply(same);
    expect(err).toBeUndefined();
    expect(await fs.readFile(path.join(dir, S, 'pwned'), 'utf8')).toBe('same-layer');
    expect(await fs.readFile(path.join(dir, S, 'etc/passwd'), 'utf8')).toBe('via-relative');
    await sentinel.check();

    // a later layer writes below the links; a later COPY and WORKDIR go through a link a RUN made
    const later: E[] = [
      { name: 'a/later', data: 'later-layer' },
      { name: 'b/passwd', data: 'later-passwd' },
    ];
    const r = await buildOn([same, later], `RUN cat /a/later /b/passwd && ln -s ${S} /run-link\nCOPY f /run-link/copied\nWORKDIR /run-link/wd\nRUN cat /run-link/copied ${S}/copied && echo && pwd -P`, { files: { f: 'copied' } });
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r).join('\n')).toContain('later-layer');
    expect(runOutput(r)).toEqual(expect.arrayContaining(['copiedcopied', `${S}/wd`]));
    await sentinel.check();
  });

  it('item 3: hard links to absolute or ".." targets are refused; a link to a symlink never carries chmod/chown out', async () => {
    for (const linkname of [`${S}/file`, `../../../../../../../../../..${S}/file`, 'esc/file']) {
      const { err } = await apply([{ name: 'esc', type: 'symlink', linkname: S }, { name: 'h', type: 'link', linkname }]);
      expect(err, linkname).toBeInstanceOf(UnsafeArchiveError);
      expect(String((err as Error).message)).toMatch(/hard link target .* does not exist/);
    }
    const chmodThrough: E[] = [
      { name: 's', type: 'symlink', linkname: `${S}/file` },
      { name: 'h', type: 'link', linkname: 's', mode: 0o4777, uid: 1234 },
      { name: 'h2', type: 'link', linkname: 'h', mode: 0o777 },
      { name: 'h', type: 'directory', mode: 0o777, uid: 1234 },
      { name: 's', type: 'directory', mode: 0o777, uid: 4321 },
    ];
    const { dir, err } = await apply(chmodThrough);
    expect(err).toBeUndefined();
    expect((await fs.lstat(path.join(dir, 'h2'))).isSymbolicLink()).toBe(true);
    const st = statSync(path.join(S, 'file'));
    expect([st.mode & 0o7777, st.uid, st.nlink]).toEqual([0o600, 0, 1]);
    await sentinel.check();

    const r = await buildOn([chmodThrough], 'RUN ls -ld /h /s && readlink /h2');
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toContain(`${S}/file`);
    await sentinel.check();
  });

  it('item 4: invalid whiteouts are refused; duplicates resolve to the last; an opaque marker only hides lower layers', async () => {
    for (const name of ['.wh.', '.wh..', 'etc/.wh...', 'etc/.wh.', '.wh.x/y']) {
      const { err } = await apply([{ name, data: '' }]);
      expect(err, name).toBeInstanceOf(UnsafeArchiveError);
      expect((err as MbuildError).message).toMatch(/invalid whiteout/);
    }
    const lower: E[] = [
      { name: 'd/', type: 'directory' },
      { name: 'd/from-lower', data: 'lower' },
      { name: 'gone', data: 'lower' },
    ];
    const upper: E[] = [
      { name: 'd/own-1', data: 'mine' },
      { name: 'd/.wh..wh..opq', data: '' },
      { name: 'd/own-2', data: 'mine' },
      { name: 'dup', data: 'first' },
      { name: 'dup', data: 'second' },
      { name: '.wh.gone', data: '' },
    ];
    const r = await buildOn([lower, upper], 'RUN ls /d && cat /dup && echo && (ls /gone 2>/dev/null || echo gone-is-gone)');
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toEqual(['own-1', 'own-2', 'second', 'gone-is-gone']);

    const bad = await buildOn([[{ name: 'etc/.wh..', data: '' }]], 'RUN true');
    expect(bad.code).not.toBe(0);
    expect(errorLines(bad)).toHaveLength(1);
    expect(errorLines(bad)[0]).toMatch(/invalid whiteout/);
  });

  it('item 5: trusted.* and security.capability xattrs from PAX records are dropped', async () => {
    const lower: E[] = [{ name: 'd/lower-file', data: 'still here' }];
    const upper: E[] = [
      { name: 'd/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } },
      { name: 'r/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.redirect': '/etc' } },
      { name: 'capped', data: '#!/bin/sh\n', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': 'AQAAAgAgAAAAAAAAAAAAAAAAAAA=' } },
      { name: 'user', data: 'u', pax: { 'SCHILY.xattr.trusted.evil': 'x', 'SCHILY.xattr.user.note': 'n' } },
    ];
    const r = await buildOn([lower, upper], 'RUN ls /d /r');
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toContain('lower-file'); // the opaque xattr was not applied
    // nothing under the unpacked snapshots carries a trusted.* or security.* xattr
    const py = `
import os, sys
bad = []
for d, dirs, files in os.walk(sys.argv[1]):
    for n in dirs + files:
        p = os.path.join(d, n)
        for x in os.listxattr(p, follow_symlinks=False):
            if x.startswith(('trusted.', 'security.')): bad.append(p + ' ' + x)
print('\\n'.join(bad))`;
    const { busyboxLayer, sha256 } = await import('./helpers.js');
    const ids = imageSnapshotNames([(await busyboxLayer()).diffId, sha256(await tarOf(lower)), sha256(await tarOf(upper))]);
    for (const id of ids.slice(1)) {
      const snap = path.join(root, 'snapshots', id);
      expect(await exists(snap), id).toBe(true);
      expect(execFileSync('python3', ['-c', py, snap], { encoding: 'utf8' }).trim()).toBe('');
    }
  });

  it('item 6: device nodes and FIFOs from an image give no device access in RUN', async () => {
    const rootDev = statSync('/').dev;
    const layer: E[] = [
      { name: 'mem', type: 'character-device', devmajor: 1, devminor: 1, mode: 0o666 },
      { name: 'kmsg', type: 'character-device', devmajor: 1, devminor: 11, mode: 0o666 },
      { name: 'disk', type: 'block-device', devmajor: Math.floor(rootDev / 256) & 0xfff, devminor: rootDev & 0xff, mode: 0o666 },
      { name: 'fifo', type: 'fifo', mode: 0o666 },
    ];
    const r = await buildOn(
      [layer],
      'RUN (head -c 1 /mem > /dev/null 2>&1 && echo MEM-READ || echo mem-denied); (head -c 1 /disk > /dev/null 2>&1 && echo DISK-READ || echo disk-denied); ' +
        '(echo x 2>/dev/null > /kmsg && echo KMSG-WRITTEN || echo kmsg-denied); (test -p /fifo && echo fifo-kept)',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toEqual(['mem-denied', 'disk-denied', 'kmsg-denied', 'fifo-kept']);
  });

  it('item 7: tar/gzip bombs and huge sparse entries hit a size or entry budget with a clear error', async () => {
    // a gzip bomb: 64 MiB of zeros in ~64 KiB; refused at its header, before any data is written
    const bombTar = await tarOf([{ name: 'zeros', data: Buffer.alloc(64 << 20) }]);
    const bomb = gzipSync(bombTar, { level: 9 });
    expect(bomb.length).toBeLessThan(1 << 20);
    const dir = path.join(tmp, 'bomb');
    const err = await applyLayerTar(await decompressStream(Readable.from([bomb])), dir, { maxBytes: 16 << 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeArchiveError);
    expect((err as Error).message).toMatch(/larger than the size budget of 16 MiB/);
    expect(await fs.readdir(dir)).toEqual([]);
    // an inode bomb
    const many = Array.from({ length: 3000 }, (_, i) => ({ name: `f${i}`, data: '' }));
    const { err: tooMany } = await apply(many, { maxEntries: 1000 });
    expect((tooMany as Error).message).toMatch(/more than 1000 entries/);
    // a GNU sparse entry claiming 8 GiB
    const hdr = Buffer.from((await tarOf([{ name: 'sparse', data: 'x' }])).subarray(0, 512));
    hdr.write('77777777777\0', 124, 'latin1');
    hdr[156] = 'S'.charCodeAt(0);
    hdr.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of hdr) sum += b;
    hdr.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const sparse = await applyLayerTar(Readable.from([hdr]), path.join(tmp, 'sparse'), { maxBytes: 1 << 30 }).catch((e: unknown) => e);
    expect(sparse).toBeInstanceOf(MbuildError);
    expect((sparse as Error).message).toMatch(/size budget|unsupported tar entry type/);

    // end to end, the budget is set with MBUILD_LAYER_MAX_BYTES / MBUILD_LAYER_MAX_ENTRIES
    const big: E[] = [{ name: 'big', data: Buffer.alloc(4 << 20, 1) }];
    const r = await buildOn([big], 'RUN true', { env: { MBUILD_LAYER_MAX_BYTES: '3m' } });
    expect(r.code).not.toBe(0);
    expect(errorLines(r)).toHaveLength(1);
    // the base image's layers are unpacked when a step first mounts them (as BuildKit): that step is named
    expect(errorLines(r)[0]).toMatch(/^error: Dockerfile:2: layer tar is larger than the size budget of 3\.0 MiB/);
    const r2 = await buildOn([many.slice(0, 50)], 'RUN true', { env: { MBUILD_LAYER_MAX_ENTRIES: '20' } });
    expect(errorLines(r2)).toEqual([expect.stringMatching(/more than 20 entries/)]);
    const snaps = await fs.readdir(path.join(root, 'snapshots'));
    expect(snaps.filter((s) => s.startsWith('tmp-'))).toEqual([]); // the refused unpack left nothing
  });

  it('item 8: case and Unicode look-alikes and a directory replaced by a symlink are lstat-ed again, never cached', async () => {
    const entries: E[] = [
      { name: 'dir/', type: 'directory' },
      { name: 'dir/a', data: 'in dir' },
      { name: 'DIR', type: 'symlink', linkname: S }, // same name on a case-insensitive filesystem
      { name: 'DIR/pwned', data: 'x' },
      { name: 'caf\u00e9/', type: 'directory' },
      { name: 'cafe\u0301', type: 'symlink', linkname: S }, // same name after NFC normalisation
      { name: 'cafe\u0301/pwned', data: 'x' },
      { name: 'dir', type: 'symlink', linkname: `${S}/dir` }, // the directory seen above is now a link
      { name: 'dir/pwned', data: 'through a stale "is a directory" decision' },
    ];
    const { dir, err } = await apply(entries);
    expect(err).toBeUndefined();
    expect(await fs.readFile(path.join(dir, S, 'dir', 'pwned'), 'utf8')).toMatch(/stale/);
    expect(await exists(path.join(S, 'pwned'))).toBe(false);
    await sentinel.check();
    const r = await buildOn([entries], 'RUN cat /dir/pwned');
    expect(r.code, r.stderr).toBe(0);
    await sentinel.check();
  });

  it('item 9: legitimate oddities still work: deep "..", self links, absolute links inside the image', async () => {
    const entries: E[] = [
      { name: 'usr/lib/real.so', data: 'real library' },
      { name: 'lib/deep/x.so', type: 'symlink', linkname: '../../../../../../../usr/lib/real.so' },
      { name: 'self', type: 'symlink', linkname: 'self' },
      { name: 'dot', type: 'symlink', linkname: '.' },
      { name: 'abs', type: 'symlink', linkname: '/usr/lib/real.so' },
      { name: 'hard', type: 'link', linkname: 'usr/lib/real.so' },
      { name: 'hard', type: 'link', linkname: 'hard' },
    ];
    const r = await buildOn([entries], 'RUN cat /lib/deep/x.so && echo && cat /abs && echo && cat /dot/dot/hard && echo && readlink /self');
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toEqual(['real library', 'real library', 'real library', 'self']);
  });
});
