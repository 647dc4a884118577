/** Real builds as root: the CLI, a store in a temp dir, the conformance busybox base. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, imageTree, mbuild, mountsUnder, run } from '../helpers/cli.js';

let tmp: string;
let root: string;

async function context(files: Record<string, string>, modes: Record<string, number> = {}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(tmp, 'ctx-'));
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
    await fs.chmod(path.join(dir, name), modes[name] ?? 0o644);
  }
  return dir;
}

async function buildTree(ctx: string, extra: string[] = []) {
  const out = path.join(tmp, `out-${Math.random().toString(36).slice(2)}.tar`);
  const r = await mbuild(['--root', root, 'build', '--output', `type=oci,dest=${out}`, ...extra, ctx]);
  if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stderr}`);
  return imageTree(out);
}

async function snapshotsLeft(): Promise<string[]> {
  return (await fs.readdir(path.join(root, 'snapshots')).catch(() => [] as string[])).filter((n) => /^(b|tmp)-/.test(n));
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-build-'));
  root = path.join(tmp, 'root');
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.stdout).toContain('Loaded image: busybox:latest');
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('build', () => {
  it('records deletions and replacements of lower-layer files as whiteouts', async () => {
    const ctx = await context({
      Dockerfile: `FROM busybox
RUN mkdir -p /data/dir && echo one > /data/dir/a && echo two > /data/dir/b && echo keep > /data/keep
RUN rm /etc/shadow && rm -rf /data/dir && mkdir /data/dir && echo new > /data/dir/c && echo changed > /data/keep
RUN rm /bin/vi && ln -s /bin/busybox /bin/vi2
`,
    });
    const img = await buildTree(ctx);
    expect(img.tree['etc/shadow']).toBeUndefined();
    expect(img.tree['data/dir/a']).toBeUndefined();
    expect(img.tree['data/dir/b']).toBeUndefined();
    expect(img.tree['data/dir/c']).toMatchObject({ type: 'file', size: 4, uid: 0, mode: '0o644' });
    expect(img.tree['data/keep']).toMatchObject({ type: 'file', size: 8 });
    expect(img.tree['bin/vi']).toBeUndefined();
    expect(img.tree['bin/vi2']).toMatchObject({ type: 'symlink', link: '/bin/busybox' });
    expect(img.tree['etc/passwd']).toMatchObject({ type: 'file' });
    expect(await snapshotsLeft()).toEqual([]);
  });

  it('tags, lists, inspects, saves and removes images', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nLABEL a=b\nCMD ["echo", "hi"]\n' });
    const b = await mbuild(['--root', root, 'build', '-t', 'demo:1', '-t', 'localhost:5000/demo', ctx]);
    expect(b.code, b.stderr).toBe(0);
    const images = await mbuild(['--root', root, 'images']);
    expect(images.stdout).toMatch(/^demo\s+1\s+[0-9a-f]{12}/m);
    expect(images.stdout).toMatch(/^localhost:5000\/demo\s+latest/m);
    const inspect = JSON.parse((await mbuild(['--root', root, 'inspect', 'demo:1'])).stdout);
    expect(inspect[0].Config.Labels).toEqual({ a: 'b' });
    expect(inspect[0].Config.Cmd).toEqual(['echo', 'hi']);
    expect(inspect[0].History.at(-1).empty_layer).toBe(true);
    const saved = path.join(tmp, 'demo.tar');
    expect((await mbuild(['--root', root, 'save', '-o', saved, 'demo:1'])).code).toBe(0);
    const t = await run('tar', ['tf', saved]);
    expect(t.stdout).toContain('manifest.json');
    const other = path.join(tmp, 'other-root');
    const l = await mbuild(['--root', other, 'load', '-i', saved]);
    expect(l.stdout).toContain('Loaded image: demo:1');
    expect((await mbuild(['--root', root, 'rmi', 'demo:1'])).stdout).toContain('Untagged: demo:1');
    expect((await mbuild(['--root', root, 'inspect', 'demo:1'])).code).not.toBe(0);
  });

  it('resolves COPY destinations and --chown names inside the image', async () => {
    const ctx = await context({
      Dockerfile: `FROM busybox
RUN mkdir /real && ln -s /real /linked && echo "app:x:2000:2001::/home/app:/bin/sh" >> /etc/passwd && echo "appgrp:x:2001:" >> /etc/group
COPY a.txt /linked/
COPY --chown=app a.txt /owned/by-name
COPY --chown=app:root --chmod=0600 a.txt /owned/by-both
`,
      'a.txt': 'hello\n',
    });
    const img = await buildTree(ctx);
    expect(img.tree['real/a.txt']).toMatchObject({ type: 'file', size: 6 });
    expect(img.tree['linked']).toMatchObject({ type: 'symlink', link: '/real' });
    expect(img.tree['owned']).toMatchObject({ uid: 2000, gid: 2001, mode: '0o755' });
    expect(img.tree['owned/by-name']).toMatchObject({ uid: 2000, gid: 2001, mode: '0o644' });
    expect(img.tree['owned/by-both']).toMatchObject({ uid: 2000, gid: 0, mode: '0o600' });
  });

  it('never follows a context symlink out of the context', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nCOPY evil/passwd /stolen\n' });
    await fs.symlink('/etc', path.join(ctx, 'evil'));
    const r = await mbuild(['--root', root, 'build', ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:2: .*evil\/passwd.*not found/);
  });

  it('extracts archives with ADD by content, not by name', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nADD bundle /opt/\n' });
    const src = path.join(tmp, 'bundle-src');
    await fs.mkdir(path.join(src, 'pkg'), { recursive: true });
    await fs.writeFile(path.join(src, 'pkg/file'), 'x');
    expect((await run('tar', ['-cJf', path.join(ctx, 'bundle'), '-C', src, 'pkg'])).code).toBe(0);
    const img = await buildTree(ctx);
    expect(img.tree['opt/pkg/file']).toMatchObject({ type: 'file', size: 1 });
  });
});

describe('build errors', () => {
  const cases: [string, string, RegExp][] = [
    ['bad instruction', 'FROM busybox\nRUN true\nFROBNICATE /x\n', /^error: Dockerfile:3: .*unknown instruction/im],
    ['missing COPY source', 'FROM busybox\nCOPY nothere.txt /\n', /^error: Dockerfile:2: .*nothere\.txt.*not found/im],
    ['unknown stage', 'FROM busybox AS a\nRUN true\n', /^error: .*target stage "nope" could not be found/im],
    ['failing RUN', 'FROM busybox\nRUN echo first-line && echo last-words && exit 3\n', /^error: Dockerfile:2: RUN .* exited with code 3/im],
    ['unknown user', 'FROM busybox\nUSER ghost\nRUN true\n', /^error: Dockerfile:3: unable to find user ghost/im],
  ];
  for (const [what, text, message] of cases) {
    it(`${what}: exits non-zero with one clear line and leaves the store as it was`, async () => {
      const ctx = await context({ Dockerfile: text });
      const names = async () => (await mbuild(['--root', root, 'images'])).stdout.split('\n').map((l) => l.split(/\s+/).slice(0, 3).join(' '));
      const before = await names();
      const r = await mbuild(['--root', root, 'build', '-t', 'should-not-exist', ...(what === 'unknown stage' ? ['--target', 'nope'] : []), ctx]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.split('\n').filter((l) => l.startsWith('error:'))).toHaveLength(1);
      if (what === 'failing RUN') expect(r.stderr).toContain('| last-words');
      expect(await names()).toEqual(before);
      expect(await mountsUnder(tmp)).toEqual([]);
      expect(await snapshotsLeft()).toEqual([]);
    });
  }
});
