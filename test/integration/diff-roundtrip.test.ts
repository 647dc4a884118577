import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PassThrough, Readable } from 'node:stream';
import { extract as tarExtract } from 'tar-stream';
import { writeLayerTar } from '../../snapshotter/diff/layer-tar.js';
import { applyLayerTar } from '../../snapshotter/diff/apply.js';
import { findOpaqueDirs } from '../../util/native-helper.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const SAFE = 'redirect_dir=off,index=off,metacopy=off';

async function mountOverlay(target: string, lowers: string[], upper?: { upper: string; work: string }): Promise<void> {
  let o = `lowerdir=${lowers.join(':')},${SAFE}`;
  if (upper) o += `,upperdir=${upper.upper},workdir=${upper.work}`;
  await run('mount', ['-t', 'overlay', 'overlay', '-o', o, target]);
}

async function umount(target: string): Promise<void> {
  await run('umount', [target]).catch(async () => {
    await run('umount', ['-l', target]).catch(() => undefined);
  });
}

async function isMounted(target: string): Promise<boolean> {
  const mounts = await fs.readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[1] === target);
}

/** A comparable description of a tree: one line per path (the root itself is left out). */
async function describeTree(root: string): Promise<string[]> {
  const lines: string[] = [];
  const inodes = new Map<number, string>();
  async function walk(dir: string): Promise<void> {
    for (const name of (await fs.readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const rel = path.relative(root, p);
      const st = await fs.lstat(p);
      let what: string;
      if (st.isDirectory()) what = 'dir';
      else if (st.isFile()) what = `file ${st.size} ${createHash('sha256').update(await fs.readFile(p)).digest('hex').slice(0, 16)}`;
      else if (st.isSymbolicLink()) what = `symlink -> ${await fs.readlink(p)}`;
      else if (st.isCharacterDevice()) what = `chr ${st.rdev}`;
      else if (st.isBlockDevice()) what = `blk ${st.rdev}`;
      else if (st.isFIFO()) what = 'fifo';
      else what = 'other';
      let link = '';
      if (!st.isDirectory() && st.nlink > 1) {
        const first = inodes.get(st.ino);
        if (first) link = ` (same inode as ${first})`;
        else inodes.set(st.ino, rel);
        link += ` nlink=${st.nlink}`;
      }
      lines.push(`${rel}: ${what} mode=${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} mtime=${Math.floor(st.mtimeMs / 1000)}${link}`);
      if (st.isDirectory()) await walk(p);
    }
  }
  await walk(root);
  return lines;
}

async function tarBytes(dir: string): Promise<Buffer> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await writeLayerTar(dir, out);
  return Buffer.concat(chunks);
}

async function tarEntries(tar: Buffer): Promise<{ name: string; type: string; linkname: string | null; size: number }[]> {
  const ex = tarExtract();
  const out: { name: string; type: string; linkname: string | null; size: number }[] = [];
  Readable.from([tar]).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const e of ex) {
    out.push({ name: e.header.name, type: e.header.type, linkname: e.header.linkname ?? null, size: e.header.size });
    for await (const _ of e) {
      /* drain */
    }
  }
  return out;
}

let base: string;
const mounted: string[] = [];

beforeEach(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-roundtrip-'));
});

afterEach(async () => {
  for (const m of mounted.splice(0).reverse()) if (await isMounted(m)) await umount(m);
  await fs.rm(base, { recursive: true, force: true });
});

describe.skipIf(!isRoot)('overlay upper → layer tar → layer dir round trip', () => {
  it('reproduces the merged view, whiteouts, opaque dirs and hard links', async () => {
    const d = (...p: string[]) => path.join(base, ...p);
    for (const x of ['lower', 'upper', 'work', 'merged', 'applied', 'merged2']) await fs.mkdir(d(x));
    const L = d('lower');
    // ---- the lower layer
    const old = new Date('2019-06-01T12:00:00Z');
    await fs.writeFile(path.join(L, 'file'), 'delete me');
    await fs.mkdir(path.join(L, 'keep'));
    await fs.writeFile(path.join(L, 'keep', 'a'), 'aaa');
    await fs.writeFile(path.join(L, 'keep', 'b'), 'bbb');
    await fs.mkdir(path.join(L, 'dir', 'sub'), { recursive: true });
    await fs.writeFile(path.join(L, 'dir', 'old1'), 'old1');
    await fs.writeFile(path.join(L, 'dir', 'sub', 'old2'), 'old2');
    await fs.mkdir(path.join(L, 'gone', 'deep'), { recursive: true });
    await fs.writeFile(path.join(L, 'gone', 'deep', 'x'), 'x');
    await fs.mkdir(path.join(L, 'meta'));
    await fs.writeFile(path.join(L, 'meta', 'child'), 'child');
    await fs.writeFile(path.join(L, 'f2d'), 'file that becomes a dir');
    await fs.mkdir(path.join(L, 'd2f'));
    await fs.writeFile(path.join(L, 'd2f', 'inner'), 'inner');
    await fs.symlink('keep/a', path.join(L, 'link'));
    await fs.mkdir(path.join(L, 'bin'));
    await fs.writeFile(path.join(L, 'bin', 'su'), 'su v1');
    await fs.chmod(path.join(L, 'bin', 'su'), 0o4755);
    for (const p of ['file', 'keep/a', 'keep/b', 'dir/old1', 'meta/child', 'bin/su']) await fs.utimes(path.join(L, p), old, old);

    // ---- changes through the overlay
    const M = d('merged');
    await mountOverlay(M, [L], { upper: d('upper'), work: d('work') });
    mounted.push(M);
    await fs.rm(path.join(M, 'file'));
    await fs.rm(path.join(M, 'dir'), { recursive: true });
    await fs.mkdir(path.join(M, 'dir')); // → opaque
    await fs.writeFile(path.join(M, 'dir', 'new'), 'new');
    await fs.rm(path.join(M, 'gone'), { recursive: true });
    await fs.rm(path.join(M, 'keep', 'b'));
    await fs.link(path.join(M, 'keep', 'a'), path.join(M, 'keep', 'a-link')); // copy-up, then a hard link
    await fs.writeFile(path.join(M, 'keep', 'c'), 'ccc');
    await fs.link(path.join(M, 'keep', 'c'), path.join(M, 'c-link'));
    await fs.chmod(path.join(M, 'meta'), 0o700); // metadata-only change of a lower dir
    await fs.rm(path.join(M, 'f2d'));
    await fs.mkdir(path.join(M, 'f2d'));
    await fs.writeFile(path.join(M, 'f2d', 'x'), 'x');
    await fs.rm(path.join(M, 'd2f'), { recursive: true });
    await fs.writeFile(path.join(M, 'd2f'), 'now a file');
    await fs.rm(path.join(M, 'link'));
    await fs.symlink('/abs/target', path.join(M, 'link'));
    await fs.writeFile(path.join(M, 'bin', 'su'), 'su v2');
    await fs.chown(path.join(M, 'bin', 'su'), 0, 0);
    await fs.chmod(path.join(M, 'bin', 'su'), 0o4755);
    await fs.mkdir(path.join(M, 'new', 'deep'), { recursive: true });
    await fs.writeFile(path.join(M, 'new', 'deep', 'owned'), 'owned');
    await fs.chown(path.join(M, 'new', 'deep', 'owned'), 1000, 1001);
    await fs.chmod(path.join(M, 'new', 'deep', 'owned'), 0o640);
    await run('mkfifo', [path.join(M, 'new', 'fifo')]);
    await run('mknod', [path.join(M, 'new', 'null'), 'c', '1', '3']);
    // distinct times, so the applied layer must restore them (directories after their children)
    const t1 = new Date('2021-03-04T05:06:07Z');
    for (const p of ['keep', 'dir', 'new/deep', 'new/fifo', 'new/null', 'f2d', '.']) await fs.utimes(path.join(M, p), t1, t1);
    await fs.lutimes(path.join(M, 'link'), t1, t1);
    const want = await describeTree(M);
    expect(want.filter((l) => l.includes(`mtime=${t1.getTime() / 1000}`)).length).toBe(7);
    await umount(M);

    // ---- the upper dir as a layer tar
    const U = d('upper');
    const tar = await tarBytes(U);
    const entries = await tarEntries(tar);
    const names = entries.map((e) => e.name);
    expect(names).toContain('.wh.file');
    expect(names).toContain('.wh.gone');
    expect(names).toContain('keep/.wh.b');
    const iDir = names.indexOf('dir/');
    expect(iDir).toBeGreaterThanOrEqual(0);
    expect(names[iDir + 1]).toBe('dir/.wh..wh..opq');
    expect(names).toContain('f2d/.wh..wh..opq');
    expect(names).not.toContain('meta/.wh..wh..opq');
    expect(names).not.toContain('.wh.d2f');
    const links = entries.filter((e) => e.type === 'link').map((e) => [e.name, e.linkname]);
    expect(links).toEqual([
      ['keep/a-link', 'keep/a'],
      ['keep/c', 'c-link'],
    ]);
    for (const e of entries) if (e.name.includes('.wh.')) expect([e.type, e.size]).toEqual(['file', 0]);
    expect(tar.includes(Buffer.from('trusted.overlay'))).toBe(false);

    // ---- applied into a fresh layer dir and mounted over the same lower
    const A = d('applied');
    const res = await applyLayerTar(Readable.from([tar]), A);
    expect(res.entries).toBe(entries.length);
    const wh = await fs.lstat(path.join(A, 'file'));
    expect([wh.isCharacterDevice(), wh.rdev]).toEqual([true, 0]);
    expect((await findOpaqueDirs(A)).sort()).toEqual((await findOpaqueDirs(U)).sort());
    expect((await findOpaqueDirs(A)).sort()).toEqual(['dir', 'f2d']);
    // the applied layer dir gives back the very same tar
    expect((await tarBytes(A)).equals(tar)).toBe(true);

    const M2 = d('merged2');
    await mountOverlay(M2, [A, L]);
    mounted.push(M2);
    try {
      const got = await describeTree(M2);
      expect(got).toEqual(want);
      expect(await fs.readdir(path.join(M2, 'dir'))).toEqual(['new']);
      expect((await fs.readdir(path.join(M2, 'meta'))).sort()).toEqual(['child']);
    } finally {
      await umount(M2);
    }
  });
});
