/**
 * The copy snapshotter (snapshotter/copy.ts, MBUILD_SNAPSHOTTER=copy): the conformance
 * suite passes with it, diffTree writes overlay-format layers that become the right `.wh.` entries,
 * and a RUN that deletes and replaces lower files gives the same image as the overlay snapshotter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { extract as tarExtract } from 'tar-stream';
import { diffTree, materialize, recordTree } from '../../snapshotter/copy-tree.js';
import { chooseSnapshotter } from '../../snapshotter/probe.js';
import { writeLayerTar } from '../../snapshotter/diff/layer-tar.js';
import { fsOps } from '../../util/native-helper.js';
import { BUSYBOX_TAR, imageTree, mbuild, mountsUnder } from '../helpers/cli.js';
import { runConformance } from '../helpers/conformance.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-copysnap-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function tarEntries(dir: string): Promise<Map<string, { type: string; mode: number; linkname?: string | null }>> {
  const out = new PassThrough();
  const entries = new Map<string, { type: string; mode: number; linkname?: string | null }>();
  const ex = tarExtract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      entries.set(h.name, { type: h.type ?? 'file', mode: h.mode ?? 0, linkname: h.linkname });
      stream.on('end', next);
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  out.pipe(ex);
  await writeLayerTar(dir, out);
  await done;
  return entries;
}

describe('copy snapshotter', () => {
  it('diffTree: deletions become whiteouts, replacements and changes become entries', async () => {
    // a lower layer in overlay format, with a whiteout of its own (nothing below it: no effect)
    const lower = path.join(tmp, 'lower');
    await fs.mkdir(path.join(lower, 'd/sub'), { recursive: true });
    await fs.mkdir(path.join(lower, 'keep'), { recursive: true });
    await fs.writeFile(path.join(lower, 'd/sub/x'), 'x');
    await fs.writeFile(path.join(lower, 'gone'), 'gone');
    await fs.writeFile(path.join(lower, 'keep/mode'), 'm', { mode: 0o644 });
    await fs.writeFile(path.join(lower, 'keep/same'), 's');
    await fs.writeFile(path.join(lower, 'keep/orig'), 'o');
    await fsOps([{ op: 'whiteout', path: path.join(lower, 'keep/nothing') }]);
    const root = path.join(tmp, 'root');
    await materialize([lower], root);
    expect(await fs.readFile(path.join(root, 'd/sub/x'), 'utf8')).toBe('x');
    await expect(fs.lstat(path.join(root, 'keep/nothing'))).rejects.toThrow(/ENOENT/);

    const before = await recordTree(root);
    await new Promise((r) => setTimeout(r, 20));
    await fs.rm(path.join(root, 'gone'));
    await fs.rm(path.join(root, 'd'), { recursive: true });
    await fs.writeFile(path.join(root, 'd'), 'now a file');
    await fs.chmod(path.join(root, 'keep/mode'), 0o600);
    await fs.link(path.join(root, 'keep/orig'), path.join(root, 'keep/link'));
    const layer = path.join(tmp, 'layer');
    await fs.mkdir(layer);
    await diffTree(root, before, layer);

    const wh = await fs.lstat(path.join(layer, 'gone'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect((await fs.lstat(path.join(layer, 'd'))).isFile()).toBe(true);
    await expect(fs.lstat(path.join(layer, 'd/sub'))).rejects.toThrow(/ENOTDIR|ENOENT/);
    expect((await fs.lstat(path.join(layer, 'keep/mode'))).mode & 0o7777).toBe(0o600);
    await expect(fs.lstat(path.join(layer, 'keep/same'))).rejects.toThrow(/ENOENT/);
    const [o, l] = await Promise.all([fs.lstat(path.join(layer, 'keep/orig')), fs.lstat(path.join(layer, 'keep/link'))]);
    expect(o.ino).toBe(l.ino);

    const tar = await tarEntries(layer);
    expect([...tar.keys()].sort()).toEqual(['.wh.gone', 'd', 'keep/', 'keep/link', 'keep/mode', 'keep/orig']);
    expect(tar.get('d')!.type).toBe('file');
    expect(tar.get('keep/mode')!.mode & 0o7777).toBe(0o600);
    const links = ['keep/link', 'keep/orig'].map((n) => tar.get(n)!);
    expect(links.map((e) => e.type).sort()).toEqual(['file', 'link']);

    // applying the lower and the new layer again gives the changed root
    const again = path.join(tmp, 'again');
    await materialize([lower, layer], again);
    expect((await recordTree(again)).size).toBe((await recordTree(root)).size);
    expect(await fs.readFile(path.join(again, 'd'), 'utf8')).toBe('now a file');
    await expect(fs.lstat(path.join(again, 'gone'))).rejects.toThrow(/ENOENT/);
  });

  it('a RUN that deletes and replaces lower files gives the same image as overlay', async () => {
    const root = path.join(tmp, 'store');
    expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
    const ctx = path.join(tmp, 'ctx');
    await fs.mkdir(ctx);
    await fs.writeFile(
      path.join(ctx, 'Dockerfile'),
      [
        'FROM busybox',
        'RUN mkdir -p /data/dir/sub && echo a > /data/a && echo b > /data/dir/sub/b && ln /data/a /data/hard && ln -s a /data/sym',
        'RUN rm /data/a && rm -r /data/dir && echo dir > /data/dir && rm /data/sym && mkdir /data/sym && touch /data/sym/f && chmod 700 /data && rm /bin/ls && echo new > /etc/motd',
        'RUN rm -rf /data/sym && ln -s /nowhere /data/sym && chown 12:34 /data/hard',
        'COPY Dockerfile /data/copied',
        '',
      ].join('\n'),
    );
    const trees = [];
    for (const kind of ['overlay', 'copy']) {
      const out = path.join(tmp, `${kind}.tar`);
      const r = await mbuild(['--root', root, 'build', '--no-cache', '--output', `type=oci,dest=${out}`, ctx], { env: { MBUILD_SNAPSHOTTER: kind } });
      expect(r.stderr + r.stdout).not.toMatch(/error/);
      expect(r.code).toBe(0);
      trees.push(await imageTree(out));
    }
    expect(trees[1]).toEqual(trees[0]);
    expect(trees[1].tree['data/dir']).toMatchObject({ type: 'file' });
    expect(trees[1].tree['data/a']).toBeUndefined();
    expect(trees[1].tree['bin/ls']).toBeUndefined();
    expect(trees[1].tree['data/sym/f']).toBeUndefined();
    expect(trees[1].tree['data/hard']).toMatchObject({ uid: 12, gid: 34 });
    expect(await mountsUnder(root)).toEqual([]);
  }, 120_000);

  it('mbuild run works on a materialized copy and leaves nothing behind', async () => {
    const root = path.join(tmp, 'store');
    const r = await mbuild(['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'rm /bin/ls && echo hi > /tmp/x && cat /tmp/x && cat /etc/hostname'], { env: { MBUILD_SNAPSHOTTER: 'copy' } });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')[0]).toBe('hi');
    expect(r.code).toBe(0);
    const again = await mbuild(['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'ls', '/bin/ls'], { env: { MBUILD_SNAPSHOTTER: 'copy' } });
    expect(again.stdout.trim()).toBe('/bin/ls');
    const left = (await fs.readdir(path.join(root, 'snapshots'))).filter((n) => n.startsWith('b-') || n.startsWith('tmp-'));
    expect(left).toEqual([]);
  }, 60_000);

  it('chooses copy when the kernel has no overlayfs, overlay when it has, and obeys MBUILD_SNAPSHOTTER', async () => {
    const probe = path.join(tmp, 'probe');
    const noOverlay = path.join(tmp, 'filesystems-without-overlay');
    await fs.writeFile(noOverlay, 'nodev\tsysfs\nnodev\ttmpfs\n\text4\n');
    expect(await chooseSnapshotter(probe, {}, noOverlay)).toEqual({ kind: 'copy', why: 'overlayfs is not in /proc/filesystems' });
    expect(await chooseSnapshotter(probe, { MBUILD_SNAPSHOTTER: 'overlay' }, noOverlay)).toEqual({ kind: 'overlay' });
    expect(await chooseSnapshotter(probe, { MBUILD_SNAPSHOTTER: 'copy' })).toEqual({ kind: 'copy' });
    // this host (the rest of the suite mounts overlays): the probe mount works and is gone afterwards
    expect(await chooseSnapshotter(probe, {})).toEqual({ kind: 'overlay' });
    expect(await fs.readdir(probe)).toEqual([]);
    expect(await mountsUnder(probe)).toEqual([]);
    await expect(chooseSnapshotter(probe, { MBUILD_SNAPSHOTTER: 'zfs' })).rejects.toThrow(/expected overlay or copy/);
  });

  it('rejects an unknown MBUILD_SNAPSHOTTER', async () => {
    const root = path.join(tmp, 'store');
    const r = await mbuild(['--root', root, 'run', '--rm', '--network', 'none', 'busybox', 'true'], { env: { MBUILD_SNAPSHOTTER: 'zfs' } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/MBUILD_SNAPSHOTTER=zfs: expected overlay or copy/);
  }, 60_000);

  it('passes the conformance suite with MBUILD_SNAPSHOTTER=copy', async () => {
    const r = await runConformance({ MBUILD_SNAPSHOTTER: 'copy' });
    process.stdout.write(r.stdout + `copy snapshotter: conformance suite in ${r.seconds.toFixed(1)}s\n`);
    expect(r.summary).toBe(`${r.total} passed, 0 failed`);
    expect(r.code).toBe(0);
  }, 900_000);
});
