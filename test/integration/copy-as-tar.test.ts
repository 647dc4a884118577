/**
 * A COPY that is the last change of its stage is written straight to a layer tar
 * (builder/steps/copy-tar.ts). It must give what copying real files gives (MBUILD_COPY_AS_TAR=0):
 * the same image tree, the same layer entries (directory times aside, they are the build's time
 * in both), the same hard links, and the same errors.
 */
import { gunzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_TAR, imageTree, mbuild, run } from '../helpers/cli.js';
import { readTar } from '../helpers/tar.js';

const isRoot = process.getuid?.() === 0;
let tmp: string;
let root: string;

beforeAll(async () => {
  if (!isRoot) return;
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-copytar-'));
  root = path.join(tmp, 'store');
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

type Files = Record<string, string | { link: string } | { hardlink: string } | { dir: true } | { mode: number; data: string }>;

async function makeContext(name: string, dockerfile: string, files: Files): Promise<string> {
  const ctx = path.join(tmp, name);
  await fs.mkdir(ctx, { recursive: true });
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  for (const [rel, v] of Object.entries(files)) {
    const p = path.join(ctx, rel);
    await fs.mkdir(path.dirname(p), { recursive: true });
    if (typeof v === 'string') await fs.writeFile(p, v);
    else if ('link' in v) await fs.symlink(v.link, p);
    else if ('hardlink' in v) await fs.link(path.join(ctx, v.hardlink), p);
    else if ('dir' in v) await fs.mkdir(p, { recursive: true });
    else {
      await fs.writeFile(p, v.data);
      await fs.chmod(p, v.mode);
    }
  }
  return ctx;
}

interface LayerEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname?: string;
  sha?: string;
  mtime?: number;
}

/** The entries of the image's last layer (file mtimes kept, directory mtimes left out). */
async function lastLayer(archive: string): Promise<LayerEntry[]> {
  const files = new Map((await readTar(await fs.readFile(archive))).map((e) => [e.header.name, e.data]));
  const blob = (d: string) => files.get(`blobs/sha256/${d.slice(7)}`)!;
  const index = JSON.parse(files.get('index.json')!.toString()) as { manifests: { digest: string }[] };
  const manifest = JSON.parse(blob(index.manifests[0]!.digest).toString()) as { layers: { digest: string }[] };
  let data = blob(manifest.layers[manifest.layers.length - 1]!.digest);
  if (data[0] === 0x1f && data[1] === 0x8b) data = gunzipSync(data);
  return (await readTar(data)).map(({ header: h, data: d }) => ({
    name: h.name, type: h.type ?? 'file', mode: h.mode ?? 0, uid: h.uid ?? 0, gid: h.gid ?? 0, size: h.size ?? 0,
    linkname: h.linkname ?? undefined,
    sha: h.type === 'file' ? createHash('sha256').update(d).digest('hex') : undefined,
    mtime: h.type === 'directory' ? undefined : h.mtime?.getTime(),
  }));
}

async function buildBoth(ctx: string, extra: string[] = []) {
  const results = [];
  for (const asTar of ['0', '1']) {
    const out = path.join(tmp, `${path.basename(ctx)}-${asTar}.tar`);
    const r = await mbuild(['--root', root, 'build', '--no-cache', '--progress', 'plain', ...extra, '--output', `type=oci,dest=${out}`, ctx], { env: { MBUILD_COPY_AS_TAR: asTar } });
    results.push({ r, out });
  }
  return results;
}

async function expectSame(ctx: string, extra: string[] = []): Promise<LayerEntry[]> {
  const [files, tar] = await buildBoth(ctx, extra);
  expect(files!.r.code, files!.r.stderr).toBe(0);
  expect(tar!.r.code, tar!.r.stderr).toBe(0);
  expect((await imageTree(tar!.out)).tree).toEqual((await imageTree(files!.out)).tree);
  const layer = await lastLayer(tar!.out);
  expect(layer).toEqual(await lastLayer(files!.out));
  return layer;
}

describe.skipIf(!isRoot)('COPY written as a tar', () => {
  it('a whole context: subdirectories, modes, symlinks, hard links, an empty directory, .dockerignore', async () => {
    const ctx = await makeContext('tree', 'FROM busybox\nCOPY . /app\n', {
      '.dockerignore': 'secret\n*.log\n',
      'a.txt': 'a\n',
      'run.sh': { mode: 0o755, data: '#!/bin/sh\n' },
      'private': { mode: 0o600, data: 'p\n' },
      'sub/deep/f': 'deep\n',
      'sub/link': { link: 'deep/f' },
      'sub/abs': { link: '/etc/passwd' },
      'h1': 'same inode\n',
      'sub/h2': { hardlink: 'h1' },
      'empty': { dir: true },
      'secret': 'no\n',
      'x.log': 'no\n',
    });
    const layer = await expectSame(ctx);
    const names = layer.map((e) => e.name);
    expect(names).toEqual(expect.arrayContaining(['app/', 'app/a.txt', 'app/sub/deep/f', 'app/empty/']));
    expect(names).not.toContain('app/secret');
    expect(layer.find((e) => e.name === 'app/sub/h2')).toMatchObject({ type: 'link', linkname: 'app/h1' });
    expect(layer.find((e) => e.name === 'app/run.sh')).toMatchObject({ mode: 0o755 });
  });

  it('into directories of the base image, with --chown and --chmod, replacing a file', async () => {
    const ctx = await makeContext('existing', 'FROM busybox\nCOPY --chown=1:2 --chmod=0640 motd /etc/\nCOPY hostname /etc/passwd\n', {
      motd: 'hello\n',
      hostname: 'root:x:0:0:root:/root:/bin/sh\n',
    });
    const layer = await expectSame(ctx);
    expect(layer.map((e) => e.name)).toEqual(['etc/', 'etc/passwd']);
    const first = await expectSame(await makeContext('existing2', 'FROM busybox\nCOPY --chown=1:2 --chmod=0640 motd /etc/\n', { motd: 'hi\n' }));
    expect(first.find((e) => e.name === 'etc/motd')).toMatchObject({ uid: 1, gid: 2, mode: 0o640 });
  });

  it('several sources merging into one directory, a later file replacing an earlier one', async () => {
    const ctx = await makeContext('merge', 'FROM busybox\nCOPY a b single /dst/\n', {
      'a/x/f': 'from a\n',
      'a/only-a': 'a\n',
      'b/x/f': 'from b\n',
      'b/x/g': 'g\n',
      single: 's\n',
    });
    const layer = await expectSame(ctx);
    expect(layer.find((e) => e.name === 'dst/x/f')?.sha).toBe(createHash('sha256').update('from b\n').digest('hex'));
  });

  it('a file to a new deep path, wildcards, and COPY --from a stage', async () => {
    await expectSame(await makeContext('deep', 'FROM busybox\nCOPY f /new/deep/name\n', { f: 'f\n' }));
    await expectSame(await makeContext('wild', 'FROM busybox\nCOPY *.txt /w/\n', { '1.txt': '1', '2.txt': '2', 'n.md': 'n' }));
    // (the link comes from the context: a RUN would make it anew, with a new time, in each build)
    await expectSame(await makeContext('from', 'FROM busybox AS src\nCOPY . /src\nRUN chmod 0700 /src/d\nFROM scratch\nCOPY --from=src /src /out\n', { a: 'a\n', 'd/b': 'b\n', l: { link: 'a' } }));
  });

  it('falls back to real files through a symlink in the image, with the same result', async () => {
    const ctx = await makeContext('symlinked', 'FROM busybox AS base\nRUN mkdir /real && ln -s /real /link\nFROM base\nCOPY f /link/f\nCOPY d /link/\n', { f: 'f\n', 'd/e': 'e\n' });
    const layer = await expectSame(ctx);
    expect(layer.map((e) => e.name)).toEqual(['real/', 'real/e']);
  });

  it('gives the same error for a file that would replace a directory', async () => {
    const ctx = await makeContext('conflict', 'FROM busybox\nCOPY bin /\n', { bin: 'not a directory\n' });
    const [files, tar] = await buildBoth(ctx);
    expect(files!.r.code).not.toBe(0);
    expect(tar!.r.code).not.toBe(0);
    const msg = (s: string) => s.split('\n').find((l) => /cannot replace/.test(l));
    expect(msg(tar!.r.stderr)).toBeDefined();
    expect(msg(tar!.r.stderr)).toBe(msg(files!.r.stderr));
  });

  it('is unpacked when something reads it later: mbuild run of the image', async () => {
    const ctx = await makeContext('runit', 'FROM busybox\nCOPY msg /msg\nCMD ["cat", "/msg"]\n', { msg: 'read back from a tar-only layer\n' });
    const b = await mbuild(['--root', root, 'build', '-t', 'copytar-run', ctx]);
    expect(b.code, b.stderr).toBe(0);
    const r = await mbuild(['--root', root, 'run', '--rm', '--network', 'none', 'copytar-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('read back from a tar-only layer\n');
    // and a build on top of it mounts the cached, blob-only layer
    const ctx2 = await makeContext('runit2', 'FROM busybox\nCOPY msg /msg\nRUN cat /msg > /copy\n', { msg: 'read back from a tar-only layer\n' });
    const out = path.join(tmp, 'runit2.tar');
    const b2 = await mbuild(['--root', root, 'build', '--progress', 'plain', '--output', `type=oci,dest=${out}`, ctx2]);
    expect(b2.code, b2.stderr).toBe(0);
    expect(b2.stderr).toMatch(/COPY msg \/msg\n#\d+ CACHED/);
    expect((await imageTree(out)).tree['copy']).toMatchObject({ type: 'file', size: 32 });
  });
  it('is clamped by SOURCE_DATE_EPOCH like any layer the build makes (unpacked from its blob first)', async () => {
    const ctx = await makeContext('sde', 'FROM busybox\nCOPY a.txt /data/\n', { 'a.txt': 'a\n' });
    const out = path.join(tmp, 'sde.tar');
    const b = await mbuild(['--root', root, 'build', '-q', '--output', `type=oci,dest=${out}`, ctx], { env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(b.code, b.stderr).toBe(0);
    const dir = path.join(tmp, 'sde-oci');
    await fs.mkdir(dir, { recursive: true });
    const x = await run('tar', ['-xf', out, '-C', dir]);
    expect(x.code, x.stderr).toBe(0);
    const blob = async (d: string) => fs.readFile(path.join(dir, 'blobs/sha256', d.slice('sha256:'.length)));
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    const manifest = JSON.parse((await blob(index.manifests[0].digest)).toString());
    const top = manifest.layers[manifest.layers.length - 1];
    const raw = await blob(top.digest);
    const entries = await readTar(top.mediaType.endsWith('gzip') ? gunzipSync(raw) : raw);
    const file = entries.find((e) => e.header.name === 'data/a.txt');
    expect(file?.header.mtime?.getTime()).toBe(1700000000 * 1000);
  });
});
