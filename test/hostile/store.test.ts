/**
 * docs/security.md items 26 and 27, and the store's housekeeping: concurrent writers, a full disk,
 * `mbuild prune [--all]` / `mbuild system df`, and the sweep of half-finished work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { REPO } from '../helpers/cli.js';
import { recoverStore } from '../../store/recovery.js';
import { BUSYBOX_TAR, buildText, errorLines, exists, isRoot, mbuild, mountsAnywhere, tarOf } from './helpers.js';

let tmp: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-store-'));
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function newRoot(name: string): Promise<string> {
  const root = path.join(tmp, name);
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.code, r.stderr).toBe(0);
  return root;
}

async function names(root: string): Promise<string[]> {
  const doc = JSON.parse(await fs.readFile(path.join(root, 'images.json'), 'utf8')) as { images: { name: string }[] };
  return doc.images.map((r) => r.name).sort();
}

async function verifyBlobs(root: string): Promise<void> {
  const dir = path.join(root, 'blobs', 'sha256');
  for (const n of await fs.readdir(dir)) {
    expect(n, 'a temp file in blobs/').toMatch(/^[a-f0-9]{64}$/);
    expect(createHash('sha256').update(await fs.readFile(path.join(dir, n))).digest('hex')).toBe(n);
  }
}

/** A pid that certainly belongs to no running process. */
async function deadPid(): Promise<number> {
  const c = spawn('true');
  await once(c, 'exit');
  return c.pid!;
}

const df = async (root: string) => JSON.parse((await mbuild(['--root', root, 'system', 'df', '--format', 'json'])).stdout) as Record<string, { count: number; bytes: number; reclaimableCount: number; reclaimableBytes: number }>;

describe.skipIf(!isRoot)('store robustness', () => {
  it('item 26: two builds (and a load) on one store at once all succeed; images.json stays valid with every name', async () => {
    const root = await newRoot('concurrent');
    const [a, b, l] = await Promise.all([
      buildText(root, tmp, 'FROM busybox\nCOPY f /f\nRUN cat /f > /g && sleep 0.3\n', ['-t', 'one'], { f: 'one' }),
      buildText(root, tmp, 'FROM busybox\nCOPY f /f\nRUN cat /f > /g && sleep 0.3\n', ['-t', 'two'], { f: 'two' }),
      mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]),
    ]);
    expect([a.code, b.code, l.code], a.stderr + b.stderr + l.stderr).toEqual([0, 0, 0]);
    expect(await names(root)).toEqual(['docker.io/library/busybox:latest', 'docker.io/library/one:latest', 'docker.io/library/two:latest']);
    await verifyBlobs(root);
  });

  it('item 26: concurrent writers of images.json never lose a name (the cross-process index lock)', async () => {
    const root = await newRoot('writers');
    const script = `
      const { ImageIndex } = await import(${JSON.stringify(path.join(REPO, 'dist/store/images.js'))});
      const idx = new ImageIndex(process.argv[1]);
      for (let i = 0; i < 25; i++) await idx.put({ name: 'docker.io/library/w' + process.argv[2] + '-' + i + ':latest', digest: 'sha256:' + '0'.repeat(64), created: '' });`;
    const writers = Array.from({ length: 6 }, (_, k) => spawn(process.execPath, ['--input-type=module', '-e', script, root, String(k)], { stdio: 'inherit' }));
    const codes = await Promise.all(writers.map(async (w) => (await once(w, 'exit'))[0]));
    expect(codes).toEqual(Array(6).fill(0));
    expect((await names(root)).length).toBe(1 + 6 * 25);
    expect((await fs.readdir(root)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  });

  it('item 27: a full disk gives one clear error line, commits nothing, and the store keeps working', async () => {
    const mnt = path.join(tmp, 'full');
    await fs.mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mnt]);
    try {
      const root = await newRoot('full/root');
      const before = await names(root);
      // the RUN fits, storing its 12 MB layer as a blob does not
      const big = await buildText(root, tmp, 'FROM busybox\nRUN head -c 12m /dev/urandom > /big\n', ['-t', 'too-big']);
      expect(big.code).not.toBe(0);
      expect(errorLines(big)).toEqual([expect.stringMatching(/^error: .*no space left on device.*nothing was committed to the store/)]);
      // a RUN that fills the disk itself fails like any failing command, with its own message shown
      const fill = await buildText(root, tmp, 'FROM busybox\nRUN head -c 40m /dev/zero > /fill\n', ['-t', 'too-big']);
      expect(errorLines(fill)).toEqual([expect.stringMatching(/RUN head -c 40m .* exited with code 1/)]);
      expect(fill.stderr).toMatch(/\| .*(No space left on device|I\/O error)/i); // overlayfs on a full tmpfs says EIO
      // a load that does not fit
      const archive = path.join(tmp, 'large.tar');
      await fs.writeFile(archive, await tarOf([{ name: 'blobs/sha256/' + 'f'.repeat(64), data: Buffer.alloc(30 << 20, 1) }]));
      const load = await mbuild(['--root', root, 'load', '-i', archive]);
      expect(errorLines(load)).toEqual([expect.stringMatching(/^error: no space left on device/)]);

      expect(await names(root)).toEqual(before);
      await verifyBlobs(root);
      expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
      const images = await mbuild(['--root', root, 'images']);
      expect(images.code, images.stderr).toBe(0);
      expect(images.stdout).toMatch(/^busybox\s+latest/m);
      // prune frees the cached layer; then a build fits again
      expect((await mbuild(['--root', root, 'prune', '--all'])).code).toBe(0);
      const small = await buildText(root, tmp, 'FROM busybox\nRUN echo small > /s\n', ['-t', 'small']);
      expect(small.code, small.stderr).toBe(0);
      expect(mountsAnywhere(root)).toEqual([]);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('prune removes unused blobs, snapshots and stale temp work, keeps what names use; --all also empties the build cache', async () => {
    const root = await newRoot('prune');
    expect((await buildText(root, tmp, 'FROM busybox\nRUN echo keep > /k\n', ['-t', 'keep'])).code).toBe(0);
    expect((await buildText(root, tmp, 'FROM busybox\nRUN echo drop > /d\n', ['-t', 'drop'])).code).toBe(0);
    expect((await buildText(root, tmp, 'FROM drop\nRUN true\n')).code).toBe(0); // unpacks drop's layers as c-* snapshots
    const snapsWithDrop = (await fs.readdir(path.join(root, 'snapshots'))).filter((s) => s.startsWith('c-'));
    expect(snapsWithDrop.length).toBeGreaterThanOrEqual(2);
    const keep = JSON.parse((await mbuild(['--root', root, 'inspect', 'keep'])).stdout)[0];
    const drop = JSON.parse((await mbuild(['--root', root, 'inspect', 'drop'])).stdout)[0];
    expect((await mbuild(['--root', root, 'rmi', 'drop'])).code).toBe(0);

    const usage = await df(root);
    expect(usage.blobs!.reclaimableCount).toBeGreaterThanOrEqual(2); // drop's manifest and config (its layer may be cached)
    expect(usage.snapshots!.reclaimableCount).toBeGreaterThanOrEqual(1);
    // half-finished work of a dead process (swept when prune opens the store, and counted)
    const dead = await deadPid();
    await fs.mkdir(path.join(root, 'tmp', `load-${dead}-abcdef`));
    await fs.writeFile(path.join(root, 'tmp', `load-${dead}-abcdef`, 'e1'), Buffer.alloc(1000));
    await fs.writeFile(path.join(root, 'blobs', 'sha256', `.tmp-ingest-${dead}-0123abcd`), 'partial');
    await fs.mkdir(path.join(root, 'snapshots', `b-${dead}-feed`, 'fs'), { recursive: true });

    const r = await mbuild(['--root', root, 'prune']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Deleted blobs: [1-9]/m);
    expect(r.stdout).toMatch(/^Deleted snapshots: [1-9]/m);
    expect(r.stdout).toMatch(/^Deleted temp entries: 3 /m);
    expect(await exists(path.join(root, 'blobs', 'sha256', drop.Digest.slice(7)))).toBe(false);
    expect(await exists(path.join(root, 'blobs', 'sha256', drop.Id.slice(7)))).toBe(false);
    for (const d of [keep.Digest, keep.Id, ...keep.Manifest.layers.map((l: { digest: string }) => l.digest)]) {
      expect(await exists(path.join(root, 'blobs', 'sha256', d.slice(7))), d).toBe(true);
    }
    const after = await df(root);
    expect([after.blobs!.reclaimableCount, after.snapshots!.reclaimableCount, after.temp!.count]).toEqual([0, 0, 0]);
    expect(after.cache!.count).toBeGreaterThan(0); // kept without --all
    expect((await fs.readdir(path.join(root, 'snapshots'))).filter((s) => s.startsWith('c-')).length).toBeLessThan(snapsWithDrop.length);

    const all = await mbuild(['--root', root, 'prune', '--all']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/^Deleted build cache entries: [1-9]/m);
    expect((await fs.readdir(path.join(root, 'snapshots'))).filter((s) => s.startsWith('k-'))).toEqual([]);
    expect((await df(root)).cache!.count).toBe(0);
    // what is named still works: a build on it, and a save of it
    expect((await buildText(root, tmp, 'FROM keep\nRUN cat /k\n')).code).toBe(0);
    expect((await mbuild(['--root', root, 'save', '-o', path.join(tmp, 'keep.tar'), 'keep'])).code).toBe(0);
    await verifyBlobs(root);
  });

  it('prune refuses while another process has the store open; opening waits while a prune runs', async () => {
    const root = await newRoot('busy');
    const ctx = await fs.mkdtemp(path.join(tmp, 'ctx-'));
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo go-$((1+1)) && sleep 3\n');
    const b = spawn(process.execPath, [path.join(REPO, 'bin/mbuild.js'), '--root', root, 'build', '--no-cache', ctx], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    b.stderr!.on('data', (d) => (err += d));
    const done = once(b, 'exit');
    while (!err.includes('go-2')) await new Promise((r) => setTimeout(r, 50));
    const refused = await mbuild(['--root', root, 'prune']);
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused)).toEqual([expect.stringMatching(/is in use by process \d+; run prune again when it has finished/)]);
    expect((await done)[0]).toBe(0);
    expect((await mbuild(['--root', root, 'prune'])).code).toBe(0);

    // a prune in progress (the gc lock of a live process) makes `images` wait for it
    const holder = spawn('sleep', ['1.5']);
    await fs.symlink(String(holder.pid), path.join(root, 'locks', 'gc.lock'));
    const t0 = Date.now();
    const images = await mbuild(['--root', root, 'images']);
    expect(images.code).toBe(0);
    expect(Date.now() - t0).toBeGreaterThan(1000);
    await fs.rm(path.join(root, 'locks', 'gc.lock'), { force: true });
  });

  it('item 25: the sweep on open removes only dead processes\' temp work, never through a mount', async () => {
    const root = path.join(tmp, 'sweep');
    const dead = await deadPid();
    const live = process.pid;
    const mk = async (rel: string, file = true) => {
      const p = path.join(root, rel);
      await fs.mkdir(path.dirname(p), { recursive: true });
      if (file) await fs.writeFile(p, 'x');
      else await fs.mkdir(p, { recursive: true });
      return p;
    };
    const gone = [
      await mk(`blobs/sha256/.tmp-ingest-${dead}-0123abcd`),
      await mk(`.tmp-images.json-${dead}-89abcdef`),
      await mk(`cache/.tmp-x.json-${dead}-00000000`),
      await mk(`tmp/load-${dead}-AbC123`, false),
      await mk(`snapshots/tmp-${dead}-0a0b0c`, false),
      await mk(`snapshots/b-${dead}-0a0b0c/fs/f`),
      await mk(`run/${dead}`),
    ];
    const kept = [
      await mk(`blobs/sha256/.tmp-ingest-${live}-0123abcd`),
      await mk(`tmp/load-${live}-AbC123`, false),
      await mk(`snapshots/b-${live}-0a0b0c/fs/f`),
      await mk('snapshots/c-0123456789abcdef0123456789abcdef/fs/f'),
    ];
    // a dead run's temp dir with something mounted inside: left alone, the mounted files untouched
    const mounted = await mk(`tmp/add-${dead}-Mnt123/m`, false);
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mounted]);
    await fs.writeFile(path.join(mounted, 'precious'), 'keep me');
    try {
      const report = await recoverStore(root);
      for (const p of gone) expect(await exists(p), p).toBe(false);
      for (const p of kept) expect(await exists(p), p).toBe(true);
      expect(report.skipped).toEqual([path.dirname(mounted)]);
      expect(await fs.readFile(path.join(mounted, 'precious'), 'utf8')).toBe('keep me');
    } finally {
      execFileSync('umount', [mounted]);
    }
    expect((await recoverStore(root)).removed).toEqual([path.dirname(mounted)]);
  });

  it('finished layers go to snapshots/trash-*: a detached rm deletes them; a killed deleter\'s trash is swept after a grace time', async () => {
    const root = await newRoot('trash');
    const ctx = path.join(tmp, 'trash-ctx');
    await fs.mkdir(ctx, { recursive: true });
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo 1 > /one\nRUN echo 2 > /two\n');
    const b = await mbuild(['--root', root, 'build', '--no-cache', '-t', 'trash', ctx]);
    expect(b.code, b.stderr).toBe(0);
    // the command returned; its private layers are renamed away at once and deleted in the background
    const snaps = () => fs.readdir(path.join(root, 'snapshots'));
    expect((await snaps()).filter((n) => /^(b|tmp)-/.test(n))).toEqual([]);
    for (let i = 0; i < 100 && (await snaps()).some((n) => n.startsWith('trash-')); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await snaps()).filter((n) => n.startsWith('trash-'))).toEqual([]);

    // a deleter that died: its trash stays while it may still be running, then the sweep takes it
    const dead = await deadPid();
    const trash = path.join(root, 'snapshots', `trash-${dead}-0a0b0c0d0e0f`);
    await fs.mkdir(path.join(trash, 'fs', 'd'), { recursive: true });
    await fs.writeFile(path.join(trash, 'fs', 'd', 'f'), 'x');
    expect((await recoverStore(root)).removed).toEqual([]);
    expect(await exists(trash)).toBe(true);
    expect((await recoverStore(root, false, Date.now() + 120_000)).removed).toEqual([trash]);
    for (let i = 0; i < 100 && (await exists(trash)); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await exists(trash)).toBe(false);
  });
});
