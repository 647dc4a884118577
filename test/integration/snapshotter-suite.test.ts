/**
 * One snapshotter suite for both implementations (containerd's core/snapshots/testsuite idea, our
 * own cases): the overlay and the copy snapshotter behind the one Snapshotter interface, driven only
 * through it, the one mounter (snapshotter/mount.ts) and the differ. Root: real overlay mounts,
 * whiteout devices.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { OverlaySnapshotter } from '../../snapshotter/overlay.js';
import { CopySnapshotter } from '../../snapshotter/copy.js';
import { withMounted } from '../../snapshotter/mount.js';
import { apply, compare } from '../../snapshotter/differ.js';
import type { Layer, Snapshotter, SnapshotInfo } from '../../snapshotter/snapshotter.js';
import { SnapshotError, SnapshotExistsError } from '../../util/errors.js';
import { mountsUnder } from '../helpers/cli.js';
import { readTar, tarOf } from '../helpers/tar.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-snapsuite-'));
});
afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

const impls = {
  overlay: (dir: string) => OverlaySnapshotter.open(dir),
  copy: (dir: string) => CopySnapshotter.open(dir),
};

/** The merged tree of what a mount shows: path → 'dir' | file content | '-> target'. */
async function treeOf(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(path.join(root, r));
      if (st.isDirectory()) {
        out[r] = 'dir';
        await walk(r);
      } else if (st.isSymbolicLink()) out[r] = '-> ' + (await fs.readlink(path.join(root, r)));
      else if (st.isFile()) out[r] = await fs.readFile(path.join(root, r), 'utf8');
      else out[r] = 'other';
    }
  };
  await walk('');
  return out;
}

async function tarNames(layer: Layer): Promise<string[]> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise((r) => out.on('end', r));
  await compare(layer, out);
  await ended;
  return (await readTar(Buffer.concat(chunks))).map((e) => e.header.name).sort();
}

for (const [kind, open] of Object.entries(impls)) {
  describe(`the ${kind} snapshotter`, () => {
    let dir: string;
    let snap: Snapshotter;
    let n = 0;
    const key = (what: string) => `b-${process.pid}-${what}${++n}`;

    /** prepare over `parent`, let fn change the mounted root, commit as `name` */
    async function layer(name: string, parent: Layer[], fn: (root: string) => Promise<void>): Promise<Layer> {
      const k = key('a');
      const mounts = await snap.prepare(k, parent);
      await withMounted(mounts, dir, fn);
      return snap.commit(name, k);
    }
    async function viewTree(parent: Layer[]): Promise<Record<string, string>> {
      const k = `tmp-${process.pid}-view-${++n}`;
      try {
        return await withMounted(await snap.view(k, parent), dir, treeOf);
      } finally {
        await snap.remove(k);
      }
    }

    beforeAll(async () => {
      dir = path.join(tmp, kind, 'snapshots');
      await fs.mkdir(dir, { recursive: true });
      snap = await open(dir);
    });

    it('prepare, commit, view: a chain of layers reads as one tree', async () => {
      const a = await layer(`c-${kind}a`, [], async (root) => {
        await fs.mkdir(path.join(root, 'etc'));
        await fs.writeFile(path.join(root, 'etc/one'), '1');
        await fs.writeFile(path.join(root, 'keep'), 'k');
      });
      const b = await layer(`c-${kind}b`, [a], async (root) => {
        expect(await fs.readFile(path.join(root, 'etc/one'), 'utf8')).toBe('1');
        await fs.writeFile(path.join(root, 'etc/one'), 'one');
        await fs.symlink('etc/one', path.join(root, 'link'));
      });
      const c = await layer(`c-${kind}c`, [a, b], async (root) => {
        await fs.writeFile(path.join(root, 'etc/two'), '2');
      });
      expect(await viewTree([a, b, c])).toEqual({ etc: 'dir', 'etc/one': 'one', 'etc/two': '2', keep: 'k', link: '-> etc/one' });
      expect(await viewTree([a])).toEqual({ etc: 'dir', 'etc/one': '1', keep: 'k' });
      expect(await viewTree([])).toEqual({});
      // each committed layer holds only its own change
      expect(await tarNames(b)).toEqual(['etc/', 'etc/one', 'link']);
      expect(await tarNames(c)).toEqual(['etc/', 'etc/two']);
    });

    it('a step that changes nothing commits an empty layer, left out of mounts', async () => {
      const a = await layer(`k-${kind}base`, [], async (root) => fs.writeFile(path.join(root, 'x'), 'x'));
      const none = await layer(`k-${kind}none`, [a], async () => undefined);
      expect(none.empty).toBe(true);
      expect(a.empty).toBe(false);
      const k = key('over-empty');
      const mounts = await snap.prepare(k, [a, none]);
      expect(await withMounted(mounts, dir, treeOf)).toEqual({ x: 'x' });
      await snap.remove(k);
    });

    it('deletions and replaced directories go through the mounts as whiteouts and opaque dirs', async () => {
      const base = await layer(`c-${kind}wbase`, [], async (root) => {
        await fs.mkdir(path.join(root, 'd/sub'), { recursive: true });
        await fs.writeFile(path.join(root, 'd/x'), 'x');
        await fs.writeFile(path.join(root, 'd/sub/y'), 'y');
        await fs.writeFile(path.join(root, 'f'), 'f');
        await fs.writeFile(path.join(root, 'g'), 'g');
      });
      const del = await layer(`c-${kind}wdel`, [base], async (root) => {
        await fs.rm(path.join(root, 'f'));
        await fs.rm(path.join(root, 'd'), { recursive: true });
        await fs.mkdir(path.join(root, 'd'));
        await fs.writeFile(path.join(root, 'd/z'), 'z');
        await fs.rm(path.join(root, 'g'));
        await fs.mkdir(path.join(root, 'g'));
      });
      expect(await viewTree([base, del])).toEqual({ d: 'dir', 'd/z': 'z', g: 'dir' });
      const names = await tarNames(del);
      expect(names).toContain('.wh.f');
      expect(names).toContain('d/z');
      // overlay marks the new d opaque; the copy snapshotter names what went (both mean the same)
      expect(names.includes('d/.wh..wh..opq') || (names.includes('d/.wh.x') && names.includes('d/.wh.sub'))).toBe(true);
      // a layer over them sees the result, and deleting again in a later layer works
      const again = await layer(`c-${kind}wagain`, [base, del], async (root) => {
        expect(await treeOf(root)).toEqual({ d: 'dir', 'd/z': 'z', g: 'dir' });
        await fs.rm(path.join(root, 'd/z'));
      });
      expect(await viewTree([base, del, again])).toEqual({ d: 'dir', g: 'dir' });
    });

    it('apply (differ) fills a snapshot prepared over nothing; compare gives the tar back', async () => {
      const tar = await tarOf([
        { name: 'dir/', type: 'directory', mode: 0o755 },
        { name: 'dir/file', data: 'content' },
        { name: 'dir/.wh.gone', data: '' },
        { name: 'opq/', type: 'directory', mode: 0o755 },
        { name: 'opq/.wh..wh..opq', data: '' },
      ]);
      const k = key('unpack');
      await apply(await snap.prepare(k, []), Readable.from(tar));
      const l = await snap.commit(`c-${kind}applied`, k);
      expect(await tarNames(l)).toEqual(['dir/', 'dir/.wh.gone', 'dir/file', 'opq/', 'opq/.wh..wh..opq']);
      const below = await layer(`c-${kind}below`, [], async (root) => {
        await fs.mkdir(path.join(root, 'dir'));
        await fs.mkdir(path.join(root, 'opq'));
        await fs.writeFile(path.join(root, 'dir/gone'), 'g');
        await fs.writeFile(path.join(root, 'opq/old'), 'o');
      });
      expect(await viewTree([below, l])).toEqual({ dir: 'dir', 'dir/file': 'content', opq: 'dir' });
    });

    it('stat says what a snapshot is; walk lists them; mounts repeats prepare', async () => {
      const a = await layer(`k-${kind}stat`, [], async (root) => fs.writeFile(path.join(root, 's'), 's'));
      expect(await snap.stat(a.id)).toEqual({ name: a.id, kind: 'committed' });
      const k = key('active');
      const mounts = await snap.prepare(k, [a]);
      expect(await snap.mounts(k)).toEqual(mounts);
      expect(await snap.stat(k)).toEqual({ name: k, kind: 'active', parent: a.id });
      const v = `tmp-${process.pid}-view-stat`;
      const vm = await snap.view(v, [a]);
      expect(vm.every((m) => m.options.includes('ro') || !m.options.some((o) => o.startsWith('upperdir=')))).toBe(true);
      expect(await snap.stat(v)).toEqual({ name: v, kind: 'view', parent: a.id });
      const seen: SnapshotInfo[] = [];
      await snap.walk((i) => void seen.push(i));
      expect(seen).toContainEqual({ name: a.id, kind: 'committed' });
      expect(seen).toContainEqual({ name: k, kind: 'active', parent: a.id });
      expect(seen).toContainEqual({ name: v, kind: 'view', parent: a.id });
      const b = await snap.commit(`k-${kind}stat2`, k);
      expect(await snap.stat(b.id)).toEqual({ name: b.id, kind: 'committed', parent: a.id });
      await expect(snap.stat(k)).rejects.toBeInstanceOf(SnapshotError);
      await expect(snap.mounts(b.id)).rejects.toBeInstanceOf(SnapshotError);
      await snap.remove(v);
      await expect(snap.stat(v)).rejects.toBeInstanceOf(SnapshotError);
    });

    it('remove refuses a snapshot another one is over, active or committed', async () => {
      const p = await layer(`k-${kind}parent`, [], async (root) => fs.writeFile(path.join(root, 'p'), 'p'));
      const k = key('child');
      await snap.prepare(k, [p]);
      await expect(snap.remove(p.id)).rejects.toThrow(/cannot be removed: .* is over it/);
      const child = await snap.commit(`k-${kind}child`, k);
      await expect(snap.remove(p.id)).rejects.toThrow(new RegExp(`${child.id} is over it`));
      await snap.remove(child.id);
      await snap.remove(p.id);
      await expect(snap.stat(p.id)).rejects.toBeInstanceOf(SnapshotError);
      await expect(snap.remove(p.id)).rejects.toBeInstanceOf(SnapshotError);
    });

    it('commit to a name already taken fails and leaves the snapshot active for another name', async () => {
      const first = await layer(`k-${kind}taken`, [], async (root) => fs.writeFile(path.join(root, 'a'), 'first'));
      const k = key('second');
      await withMounted(await snap.prepare(k, []), dir, (root) => fs.writeFile(path.join(root, 'a'), 'second'));
      await expect(snap.commit(first.id, k)).rejects.toBeInstanceOf(SnapshotExistsError);
      expect((await snap.stat(k)).kind).toBe('active');
      const mine = await snap.commit(`b-${process.pid}-mine`, k);
      expect(await viewTree([mine])).toEqual({ a: 'second' });
      expect(await viewTree([first])).toEqual({ a: 'first' });
      await expect(snap.prepare(first.id, [])).rejects.toBeInstanceOf(SnapshotExistsError);
    });

    it('150 layers mount as one tree, for a writable snapshot and a view', async () => {
      const layers: Layer[] = [];
      for (let i = 0; i < 150; i++) {
        // each over the one before (enough to delete its file): the copy snapshotter copies a parent
        layers.push(await layer(`c-${kind}many${i}`, layers.slice(-1), async (root) => {
          await fs.writeFile(path.join(root, `f${i}`), String(i));
          if (i > 0) await fs.rm(path.join(root, `f${i - 1}`));
        }));
      }
      expect(await viewTree(layers)).toEqual({ f149: '149' });
      const k = key('top');
      await withMounted(await snap.prepare(k, layers), dir, async (root) => {
        expect(await treeOf(root)).toEqual({ f149: '149' });
        await fs.writeFile(path.join(root, 'top'), 't');
      });
      const top = await snap.commit(`c-${kind}manytop`, k);
      expect(await tarNames(top)).toEqual(['top']);
    }, 300_000);

    it('leaves no mount, no active snapshot and no view behind', async () => {
      expect(await mountsUnder(dir)).toEqual([]);
      const live: SnapshotInfo[] = [];
      await snap.walk((i) => void (i.kind !== 'committed' && live.push(i)));
      expect(live).toEqual([]);
    });
  });
}

describe('past the kernel\'s overlay stack', () => {
  it('overlay refuses more than 500 layers in one clear line; copy takes them', async () => {
    const dir = path.join(tmp, 'deep', 'snapshots');
    const layers: Layer[] = [];
    for (let i = 0; i < 501; i++) {
      const d = path.join(dir, `c-deep${i}`, 'fs');
      await fs.mkdir(d, { recursive: true });
      await fs.writeFile(path.join(d, `f${i}`), '');
      layers.push({ id: `c-deep${i}`, dir: d });
    }
    const overlay = await OverlaySnapshotter.open(dir);
    await expect(overlay.prepare(`b-${process.pid}-deep`, layers)).rejects.toThrow(/^501 layers are more than overlayfs can stack \(500, the kernel's limit\): combine some RUN, COPY or WORKDIR steps$/);
    await expect(overlay.view(`tmp-${process.pid}-deep`, layers)).rejects.toThrow(/501 layers/);
    expect(await fs.readdir(dir)).not.toContain(`b-${process.pid}-deep`);
    // 500 mount (lowerdir+ here, short links on older kernels: the same mounter)
    const v = `tmp-${process.pid}-deep500`;
    expect(Object.keys(await withMounted(await overlay.view(v, layers.slice(0, 500)), dir, treeOf))).toHaveLength(500);
    await overlay.remove(v);
    const copy = await CopySnapshotter.open(dir);
    const c = `tmp-${process.pid}-deepcopy`;
    expect(Object.keys(await withMounted(await copy.view(c, layers), dir, treeOf))).toHaveLength(501);
    await copy.remove(c);
  }, 300_000);
});
