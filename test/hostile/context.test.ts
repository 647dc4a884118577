/**
 * docs/security.md items 16–18: build contexts that try to reach host files through symlinks and
 * "..", to get past .dockerignore, or to mount host paths into RUN. Every build's root filesystem
 * is exported and searched for the secrets' bytes.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, Sentinel, errorLines, isRoot, mbuild, mountsAnywhere, runOutput } from './helpers.js';

let tmp: string;
let root: string;
let sentinel: Sentinel;
let S: string;
const SECRET = 'SENTINEL-SECRET';
const IGNORED = 'IGNORED-SECRET';

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-context-'));
  root = path.join(tmp, 'root');
  sentinel = await Sentinel.make(tmp);
  S = sentinel.dir;
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  expect(mountsAnywhere(root)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(async () => {
  await sentinel.check();
});

let n = 0;
/** Build `dockerfile` in `ctx`; on success the exported root filesystem must hold none of `secrets`. */
async function buildChecked(ctx: string, dockerfile: string, secrets: string[]) {
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  const out = path.join(tmp, `rootfs-${++n}.tar`);
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-o', `type=tar,dest=${out}`, ctx]);
  if (r.code === 0) {
    const bytes = await fs.readFile(out);
    for (const s of secrets) expect(bytes.includes(Buffer.from(s)), `${s} leaked into the image built from:\n${dockerfile}`).toBe(false);
  } else {
    expect(errorLines(r), r.stderr).toHaveLength(1);
  }
  await sentinel.check();
  return r;
}

describe.skipIf(!isRoot)('hostile build contexts', () => {
  it('item 16: a context symlink out of the context, as a source or a parent, resolves inside the context', async () => {
    const ctx = await fs.mkdtemp(path.join(tmp, 'ctx16-'));
    // where the links lead when resolved in the context's scope: a decoy, not the host's file
    await fs.mkdir(path.join(ctx, S), { recursive: true });
    await fs.writeFile(path.join(ctx, S, 'file'), 'decoy-in-context\n');
    await fs.symlink(S, path.join(ctx, 'abs')); // absolute link to the host directory
    await fs.symlink(`../../../../../../../../..${S}`, path.join(ctx, 'rel')); // more ".." than its depth
    await fs.symlink(`${S}/file`, path.join(ctx, 'file-link'));
    await fs.mkdir(path.join(ctx, 'sub'));
    await fs.symlink('../abs', path.join(ctx, 'sub', 'chain'));
    const r = await buildChecked(
      ctx,
      [
        'FROM busybox',
        'COPY abs/file /a',
        'COPY rel/file /b',
        'COPY file-link /c',
        'COPY sub/chain/file /d',
        `COPY ../../../../../..${S}/file /e`,
        `ADD ${S}/file /f`,
        'COPY abs /g/',
        'RUN cat /a /b /c /d /e /f /g/file',
      ].join('\n'),
      [SECRET],
    );
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toEqual(Array(7).fill('decoy-in-context'));

    // with no decoy, the same names are missing: a clear error, never the host's file
    await fs.rm(path.join(ctx, S.split('/')[1]!), { recursive: true });
    for (const src of ['abs/file', 'rel/file', 'file-link', 'sub/chain/file', `../../..${S}/file`]) {
      const miss = await buildChecked(ctx, `FROM busybox\nCOPY ${src} /x\n`, [SECRET]);
      expect(miss.code, src).not.toBe(0);
      expect(errorLines(miss)[0]).toMatch(/not found/);
    }
  });

  it('item 17: .dockerignore cannot be bypassed with "..", absolute paths, symlinks or wildcards', async () => {
    const ctx = await fs.mkdtemp(path.join(tmp, 'ctx17-'));
    await fs.writeFile(path.join(ctx, 'secret.txt'), `${IGNORED}-1\n`);
    await fs.mkdir(path.join(ctx, 'sub'));
    await fs.writeFile(path.join(ctx, 'sub', 'secret2.txt'), `${IGNORED}-2\n`);
    await fs.writeFile(path.join(ctx, 'sub', 'ok.txt'), 'ok\n');
    await fs.writeFile(path.join(ctx, 'a.key'), `${IGNORED}-3\n`);
    await fs.writeFile(path.join(ctx, '.dockerignore'), 'secret.txt\nsub/secret2.txt\n**/*.key\n');
    await fs.symlink('secret.txt', path.join(ctx, 'lnk'));
    await fs.symlink('/secret.txt', path.join(ctx, 'abslnk'));
    await fs.symlink('sub', path.join(ctx, 'dirlnk'));
    await fs.symlink('.', path.join(ctx, 'self'));
    const attempts = [
      'COPY . /all/',
      'COPY secret.txt /x',
      'COPY ./sub/../secret.txt /x',
      'COPY /secret.txt /x',
      'COPY ../../secret.txt /x',
      'COPY lnk /x',
      'COPY abslnk /x',
      'COPY dirlnk/secret2.txt /x',
      'COPY dirlnk /x/',
      'COPY self/self/secret.txt /x',
      'COPY secr* *.key sub/secr* /x/',
      'COPY sub/ /x/',
      'ADD secret.txt /x',
    ];
    let built = 0;
    for (const line of attempts) {
      const r = await buildChecked(ctx, `FROM busybox\n${line}\n`, [IGNORED]);
      if (r.code === 0) built++;
      else expect(errorLines(r)[0], line).toMatch(/not found|no source files/);
    }
    expect(built).toBeGreaterThanOrEqual(3); // "COPY . /all/", "COPY dirlnk /x/", "COPY sub/ /x/" copy what is not ignored
  });

  it('item 18: RUN --mount sources and ids with ".." or symlinks never reach the host', async () => {
    const ctx = await fs.mkdtemp(path.join(tmp, 'ctx18-'));
    await fs.symlink(S, path.join(ctx, 'evil'));
    const outside = path.join(root, '..', 'mount-escape');
    const mounts = [
      `RUN --mount=type=bind,source=../../../../../../..${S},target=/m cat /m/file`,
      'RUN --mount=type=bind,source=evil,target=/m cat /m/file',
      `RUN --mount=type=bind,from=busybox,source=../../../../../..${S},target=/m cat /m/file`,
      `RUN --mount=type=cache,id=../../../../../../..${S}/dir,target=/c touch /c/pwned`,
      'RUN --mount=type=cache,id=../mount-escape,target=/c touch /c/pwned',
      `RUN --mount=type=cache,id=x,source=../../../../../..${S},target=/c touch /c/pwned`,
    ];
    for (const line of mounts) {
      const r = await buildChecked(ctx, `FROM busybox\n${line}\n`, [SECRET]);
      expect(r.stderr, line).not.toContain(SECRET);
      expect(await fs.lstat(outside).then(() => true, () => false), line).toBe(false);
    }
  });
});
