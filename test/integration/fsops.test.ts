import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findOpaqueDirs, fsOps, helperPath } from '../../util/native-helper.js';
import { FsOpError } from '../../util/errors.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('native fs ops (root)', () => {
  let base: string;

  beforeAll(() => {
    if (!existsSync(helperPath())) execFileSync('node', ['scripts/build-native.mjs'], { stdio: 'inherit' });
    base = mkdtempSync(join(tmpdir(), 'mbuild-fsops-'));
  });
  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  function fresh(name: string): string {
    const d = join(base, name);
    mkdirSync(d);
    return d;
  }

  it('creates a whiteout: char device 0:0 with mode 0', async () => {
    const d = fresh('wh');
    await fsOps([{ op: 'whiteout', path: join(d, 'gone') }]);
    const st = lstatSync(join(d, 'gone'));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(0);
    expect(st.mode & 0o7777).toBe(0);
  });

  it('refuses to replace an existing path and names it in the error', async () => {
    const d = fresh('wh-exists');
    writeFileSync(join(d, 'f'), 'keep');
    const err = await fsOps([{ op: 'whiteout', path: join(d, 'f') }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FsOpError);
    expect((err as FsOpError).path).toBe(join(d, 'f'));
    expect((err as FsOpError).errno).toBe('EEXIST');
    expect((err as Error).message).toContain(join(d, 'f'));
    expect(readFileSync(join(d, 'f'), 'utf8')).toBe('keep');
  });

  it('runs a batch in order and stops at the first failure', async () => {
    const d = fresh('batch');
    const err = await fsOps([
      { op: 'whiteout', path: join(d, 'a') },
      { op: 'opaque', path: join(d, 'missing-dir') },
      { op: 'whiteout', path: join(d, 'b') },
    ]).catch((e: unknown) => e);
    expect((err as FsOpError).path).toBe(join(d, 'missing-dir'));
    expect((err as FsOpError).errno).toBe('ENOENT');
    expect(readdirSync(d)).toEqual(['a']);
  });

  it('creates device nodes and FIFOs with exact modes', async () => {
    const d = fresh('nodes');
    const nullRdev = lstatSync('/dev/null').rdev;
    await fsOps([
      { op: 'mknod', path: join(d, 'null'), type: 'c', mode: 0o666, major: 1, minor: 3 },
      { op: 'mknod', path: join(d, 'loop'), type: 'b', mode: 0o600, major: 7, minor: 0 },
      { op: 'mknod', path: join(d, 'fifo'), type: 'p', mode: 0o640, major: 0, minor: 0 },
    ]);
    const c = lstatSync(join(d, 'null'));
    expect(c.isCharacterDevice()).toBe(true);
    expect(c.rdev).toBe(nullRdev);
    expect(c.mode & 0o7777).toBe(0o666);
    const b = lstatSync(join(d, 'loop'));
    expect(b.isBlockDevice()).toBe(true);
    expect(b.mode & 0o7777).toBe(0o600);
    const p = lstatSync(join(d, 'fifo'));
    expect(p.isFIFO()).toBe(true);
    expect(p.mode & 0o7777).toBe(0o640);
  });

  it('rejects bad input before starting the helper', async () => {
    await expect(fsOps([{ op: 'whiteout', path: 'relative' }])).rejects.toThrow(/absolute/);
    await expect(
      fsOps([{ op: 'mknod', path: join(base, 'x'), type: 'c', mode: 0o10000, major: 1, minor: 3 }]),
    ).rejects.toThrow(/mode/);
    await expect(fsOps([])).resolves.toBeUndefined();
  });

  it('marks directories opaque and finds them without following symlinks', async () => {
    const d = fresh('opaque');
    mkdirSync(join(d, 'a/b/c'), { recursive: true });
    mkdirSync(join(d, 'plain'));
    symlinkSync('a/b', join(d, 'link'));
    await fsOps([
      { op: 'opaque', path: join(d, 'a/b') },
      { op: 'opaque', path: join(d, 'a/b/c') },
    ]);
    expect(await findOpaqueDirs(d)).toEqual(['a/b', 'a/b/c']);
    // a symlink to a directory is not a directory to mark
    const err = await fsOps([{ op: 'opaque', path: join(d, 'link') }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FsOpError);
    // the root itself is reported as '.'
    await fsOps([{ op: 'opaque', path: d }]);
    expect(await findOpaqueDirs(d)).toEqual(['.', 'a/b', 'a/b/c']);
    expect(await findOpaqueDirs(join(d, 'plain'))).toEqual([]);
  });

  it('a real overlay mount honours the whiteout and the opaque marker', async () => {
    const d = fresh('overlay');
    const lower = join(d, 'lower');
    const upper = join(d, 'upper');
    const work = join(d, 'work');
    const merged = join(d, 'merged');
    for (const p of [lower, upper, work, merged, join(lower, 'dir'), join(upper, 'dir')]) mkdirSync(p, { recursive: true });
    writeFileSync(join(lower, 'hidden'), 'lower');
    writeFileSync(join(lower, 'visible'), 'lower');
    writeFileSync(join(lower, 'dir/old1'), 'lower');
    writeFileSync(join(lower, 'dir/old2'), 'lower');
    writeFileSync(join(upper, 'dir/new'), 'upper');
    await fsOps([
      { op: 'whiteout', path: join(upper, 'hidden') },
      { op: 'opaque', path: join(upper, 'dir') },
    ]);
    expect(await findOpaqueDirs(upper)).toEqual(['dir']);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);
    try {
      expect(readdirSync(merged).sort()).toEqual(['dir', 'visible']);
      expect(existsSync(join(merged, 'hidden'))).toBe(false);
      expect(readdirSync(join(merged, 'dir'))).toEqual(['new']);
    } finally {
      execFileSync('umount', [merged]);
    }
  });
});
