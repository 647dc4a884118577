/**
 * COPY/ADD flags as BuildKit implements them (frontend/dockerfile/*_test.go are the reference:
 * testExcludedFilesOnCopy, testCopyParents, testCopyRelativeParents, ...), on real builds.
 * Where docker 20.10 has the feature its result is a fixture in test/fixtures/buildkit-20.10.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, imageTree, mbuild, mountsUnder, REPO } from '../helpers/cli.js';

/** docker 20.10 BuildKit's results for these cases, recorded on this machine (see _about). */
const RECORDED = JSON.parse(await fs.readFile(path.join(REPO, 'test/fixtures/buildkit-20.10/copy-add.json'), 'utf8')) as Record<string, { entries: { path: string; type: string; mode: string; uid: number; gid: number; link?: string; size?: number }[] }>;
const recorded = (name: string, prefix: string) =>
  Object.fromEntries(RECORDED[name]!.entries.filter((e) => e.path === prefix || e.path.startsWith(`${prefix}/`)).map((e) => [e.path, { type: e.type, uid: e.uid, gid: e.gid, mode: `0o${(Number(e.mode) & 0o7777).toString(8)}` }]));
const mine = (tree: Tree, prefix: string) =>
  Object.fromEntries(Object.entries(tree).filter(([k]) => k === prefix || k.startsWith(`${prefix}/`)).map(([k, v]) => [k, { type: v.type, uid: v.uid, gid: v.gid, mode: v.mode }]));

let tmp: string;
let root: string;

type Tree = Record<string, Record<string, unknown>>;

async function context(files: Record<string, string | { link: string }>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(tmp, 'ctx-'));
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    if (typeof content === 'string') await fs.writeFile(path.join(dir, name), content);
    else await fs.symlink(content.link, path.join(dir, name));
  }
  return dir;
}

async function build(ctx: string, extra: string[] = []) {
  const out = path.join(tmp, `out-${Math.random().toString(36).slice(2)}.tar`);
  const r = await mbuild(['--root', root, 'build', '--output', `type=oci,dest=${out}`, ...extra, ctx]);
  if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stderr}`);
  return { ...(await imageTree(out)), stderr: r.stderr, out };
}

async function buildFails(ctx: string, extra: string[] = []) {
  const r = await mbuild(['--root', root, 'build', ...extra, ctx]);
  expect(r.code, r.stderr).not.toBe(0);
  return r.stderr.trim().split('\n').pop()!;
}

/** The paths below `dir/` in a tree (files with their size, links with their target). */
function under(tree: Tree, dir: string): string[] {
  return Object.keys(tree)
    .filter((k) => k.startsWith(`${dir}/`))
    .map((k) => k.slice(dir.length + 1) + (tree[k].type === 'dir' ? '/' : tree[k].type === 'symlink' ? ` -> ${tree[k].link}` : ''))
    .sort();
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-copyflags-'));
  root = path.join(tmp, 'root');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

const EXCLUDE_CONTEXT = {
  'dir1/file-101.png': '2', 'dir1/file-102.txt': '3', 'dir1/file-103.jpeg': '4',
  'dir2/file-201.pdf': '6', 'dir2/file-202.jpeg': '7', 'dir2/file-203.png': '8',
  'dir3/file-301.mp3': '9', 'dir3/file-302.mpeg': '10',
  'dir4/file-401.txt': '11', 'dir4/file-402.txt': { link: 'file-401.txt' }, 'dir4/file-403.txt': { link: 'file-404.txt' },
};

describe('COPY --exclude', () => {
  it('leaves out what the patterns match, relative to each source (BuildKit testExcludedFilesOnCopy)', async () => {
    const ctx = await context({
      ...EXCLUDE_CONTEXT,
      Dockerfile: `FROM scratch AS b1
COPY --exclude=*/*.png --exclude=*/*.jpeg . /1
FROM scratch AS b2
COPY --exclude=*/*.pdf --exclude=*/*.txt . /2
FROM scratch AS b3
ADD --exclude=*.mp3 dir3/ /3/
FROM scratch AS b4
COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/
FROM scratch AS b5
ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5
FROM scratch AS b6
ADD --exclude=* dir* /6
FROM scratch
COPY --from=b1 / /b1
COPY --from=b2 / /b2
COPY --from=b3 / /b3
COPY --from=b4 / /b4
COPY --from=b5 / /b5
COPY --from=b6 / /b6
`,
    });
    const { tree } = await build(ctx);
    expect(under(tree, 'b1/1')).toEqual(['Dockerfile', 'dir1/', 'dir1/file-102.txt', 'dir2/', 'dir2/file-201.pdf', 'dir3/', 'dir3/file-301.mp3', 'dir3/file-302.mpeg', 'dir4/', 'dir4/file-401.txt', 'dir4/file-402.txt -> file-401.txt', 'dir4/file-403.txt -> file-404.txt']);
    expect(under(tree, 'b2/2')).toEqual(['Dockerfile', 'dir1/', 'dir1/file-101.png', 'dir1/file-103.jpeg', 'dir2/', 'dir2/file-202.jpeg', 'dir2/file-203.png', 'dir3/', 'dir3/file-301.mp3', 'dir3/file-302.mpeg', 'dir4/']);
    expect(under(tree, 'b3/3')).toEqual(['file-302.mpeg']);
    expect(under(tree, 'b4/4')).toEqual(['file-302.mpeg']);
    expect(under(tree, 'b5/5')).toEqual(['file-102.txt', 'file-401.txt', 'file-402.txt -> file-401.txt', 'file-403.txt -> file-404.txt']);
    expect(tree['b6/6']).toMatchObject({ type: 'dir' });
    expect(under(tree, 'b6/6')).toEqual([]);
  });

  it('takes .dockerignore rules: a ! pattern re-includes below an excluded directory, from a stage too', async () => {
    const ctx = await context({
      'app/a.log': 'x', 'app/keep.txt': 'k', 'app/logs/old.log': 'o', 'app/logs/important.log': 'i', 'app/logs/sub/x.log': 's', 'app/src/main.c': 'c',
      Dockerfile: `FROM busybox AS s
COPY app /app
FROM busybox
COPY --exclude=**/*.log --exclude=!logs/important.log app /ctx/
COPY --from=s --exclude=logs --exclude=src/ /app /stage/
`,
    });
    const { tree } = await build(ctx);
    expect(under(tree, 'ctx')).toEqual(['keep.txt', 'logs/', 'logs/important.log', 'logs/sub/', 'src/', 'src/main.c']);
    expect(under(tree, 'stage')).toEqual(['a.log', 'keep.txt']);
  });

  it('keys the cache on the patterns', async () => {
    const ctx = await context({ 'd/a.txt': 'a', 'd/b.log': 'b', Dockerfile: 'FROM busybox\nCOPY --exclude=*.log d /d/\n' });
    expect(under((await build(ctx)).tree, 'd')).toEqual(['a.txt']);
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY --exclude=*.txt d /d/\n');
    expect(under((await build(ctx)).tree, 'd')).toEqual(['b.log']);
  });

  it('refuses a malformed pattern naming the line', async () => {
    const ctx = await context({ a: 'a', Dockerfile: 'FROM busybox\nCOPY --exclude=[ a /a\n' });
    expect(await buildFails(ctx)).toMatch(/Dockerfile:2: .*--exclude.*syntax error in pattern/);
  });
});

describe('COPY --parents', () => {
  it('keeps the source path below the context root (BuildKit testCopyParents)', async () => {
    const ctx = await context({
      'foo1/foo2/bar': 'testing', 'foo1/foo2/baz': 'testing2', 'foo1/other': 'o',
      Dockerfile: 'FROM scratch\nCOPY --parents foo1/foo2/bar /\nWORKDIR /test\nCOPY --parents foo1/foo2/ba* .\n',
    });
    const { tree } = await build(ctx);
    expect(tree['foo1/foo2/bar']).toMatchObject({ type: 'file', size: 7 });
    expect(tree['foo1/other']).toBeUndefined();
    expect(under(tree, 'test')).toEqual(['foo1/', 'foo1/foo2/', 'foo1/foo2/bar', 'foo1/foo2/baz']);
  });

  it('pivots at /./, takes wildcards and ** (BuildKit testCopyRelativeParents)', async () => {
    const ctx = await context({
      Dockerfile: `FROM busybox AS base
WORKDIR /test
RUN mkdir -p a/b/c/d/e a/b2/c/d/e a/b/c2/d/e a/b/c2/d/e2 && touch a/b/c/d/foo a/b/c/d/e/bay a/b2/c/d/e/bar a/b/c2/d/e/baz a/b/c2/d/e2/baz
FROM scratch
COPY --from=base --parents /test/a/b/./c/d /middle/
COPY --from=base --parents /test/a/b/c/d/. /end/
COPY --from=base --parents ./test/a/b/c/d /start/
COPY --from=base --parents /test/a/./b/./c /double/
COPY --from=base --parents /test/a/./*/c /wildcard/
COPY --from=base --parents /test/a/b*/./c/**/e /doublewildcard/
COPY --from=base --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /doubleinputs/
COPY --from=base --parents /test/a/b3*/c /wildcard-nonexistent/
`,
    });
    const { tree } = await build(ctx);
    expect(under(tree, 'middle')).toEqual(['c/', 'c/d/', 'c/d/e/', 'c/d/e/bay', 'c/d/foo']);
    expect(under(tree, 'end')).toContain('test/a/b/c/d/foo');
    expect(under(tree, 'start')).toContain('test/a/b/c/d/e/bay');
    expect(under(tree, 'double')).toEqual(['b/', 'b/c/', 'b/c/d/', 'b/c/d/e/', 'b/c/d/e/bay', 'b/c/d/foo']);
    expect(under(tree, 'wildcard')).toEqual(['b/', 'b/c/', 'b/c/d/', 'b/c/d/e/', 'b/c/d/e/bay', 'b/c/d/foo', 'b2/', 'b2/c/', 'b2/c/d/', 'b2/c/d/e/', 'b2/c/d/e/bar']);
    expect(under(tree, 'doublewildcard')).toEqual(['c/', 'c/d/', 'c/d/e/', 'c/d/e/bar', 'c/d/e/bay']);
    expect(under(tree, 'doubleinputs')).toEqual(['c/', 'c/d/', 'c/d/e/', 'c/d/e/bar', 'd/', 'd/e/', 'd/e/baz', 'd/e2/', 'd/e2/baz']);
    expect(under(tree, 'wildcard-nonexistent')).toEqual([]);
  });

  it('refuses a path that does not exist (BuildKit testCopyParentsMissingDirectory)', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nCOPY --parents test/nonexistent-file /out/\n' });
    expect(await buildFails(ctx)).toMatch(/Dockerfile:2: .*"\/test\/nonexistent-file": not found/);
  });
});

describe('ADD <url>', () => {
  let server: Server;
  let base: string;
  const hits: { url: string; conditional: boolean; status: number }[] = [];
  let body = 'version one\n';
  const etag = () => `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const conditional = req.headers['if-none-match'] !== undefined;
      const status = req.url === '/missing' ? 404 : conditional && req.headers['if-none-match'] === etag() ? 304 : 200;
      hits.push({ url: req.url!, conditional, status });
      res.writeHead(status, status === 200 ? { etag: etag(), 'last-modified': 'Wed, 01 Jan 2020 00:00:00 GMT' } : {});
      res.end(status === 200 ? body : undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('is keyed by the content: an unchanged resource (304) keeps the step and the next ones cached', async () => {
    body = 'version one\n';
    const ctx = await context({ Dockerfile: `FROM busybox\nADD ${base}/f.txt /f.txt\nRUN cat /f.txt > /copy.txt\n` });
    const first = await build(ctx);
    expect(first.tree['copy.txt']).toMatchObject({ size: 12 });
    hits.length = 0;
    const second = await build(ctx);
    expect(second.stderr).toMatch(/ADD .*f\.txt[\s\S]*CACHED/);
    expect(second.stderr).toMatch(/RUN cat[^\n]*\n[^\n]*CACHED/);
    expect(hits).toEqual([{ url: '/f.txt', conditional: true, status: 304 }]);
    body = 'version two, longer\n';
    const third = await build(ctx);
    expect(third.tree['copy.txt']).toMatchObject({ size: body.length });
  });

  it('names a file after the URL path, __unnamed__ when it has none', async () => {
    const ctx = await context({ Dockerfile: `FROM busybox\nADD ${base}/ /dest/\nADD ${base}/dir/name%20x /dest/\n` });
    const { tree } = await build(ctx);
    expect(under(tree, 'dest')).toEqual(['__unnamed__', 'name x']);
    expect(tree['dest/__unnamed__']).toMatchObject({ mode: '0o600' });
  });

  it('verifies --checksum: a match builds, a mismatch fails naming the line and the URL and commits nothing', async () => {
    body = 'checked content\n';
    const good = await context({ Dockerfile: `FROM busybox\nADD --checksum=${sha(body)} ${base}/c.txt /c.txt\n` });
    expect((await build(good)).tree['c.txt']).toMatchObject({ size: body.length });
    const wrong = sha('something else');
    const bad = await context({ Dockerfile: `FROM busybox\nADD --checksum=${wrong} ${base}/c2.txt /c.txt\nRUN echo never\n` });
    const err = await buildFails(bad, ['-t', 'never-built']);
    expect(err).toBe(`error: Dockerfile:2: ADD ${base}/c2.txt: checksum mismatch: expected ${wrong}, got ${sha(body)}`);
    const images = await mbuild(['--root', root, 'images']);
    expect(images.stdout).not.toContain('never-built');
  });

  it('refuses --checksum for a local source or several sources, and a malformed one', async () => {
    const ctx = await context({ a: 'a', Dockerfile: `FROM busybox\nADD --checksum=${sha('a')} a /a\n` });
    expect(await buildFails(ctx)).toBe('error: Dockerfile:2: ADD --checksum requires HTTP(S) or Git sources');
    await fs.writeFile(path.join(ctx, 'Dockerfile'), `FROM busybox\nADD --checksum=${sha('a')} ${base}/x ${base}/y /d/\n`);
    expect(await buildFails(ctx)).toBe("error: Dockerfile:2: ADD --checksum can't be specified for multiple sources");
    await fs.writeFile(path.join(ctx, 'Dockerfile'), `FROM busybox\nADD --checksum=md5:abc ${base}/x /d/\n`);
    expect(await buildFails(ctx)).toMatch(/Dockerfile:2: invalid ADD --checksum "md5:abc"/);
  });
});

describe('image differences with BuildKit', () => {
  it('COPY --from keeps the owners of the source stage unless --chown (recorded from docker 20.10)', async () => {
    const ctx = await context({ Dockerfile: `FROM busybox AS src
RUN mkdir -p /d/sub && echo hi > /d/f && echo x > /d/sub/g && chown -R 100:200 /d && chmod 0750 /d/sub
FROM busybox
COPY --from=src /d /out/
COPY --from=src /d/f /single
COPY --from=src --chown=7:8 /d /chowned/
` });
    const { tree } = await build(ctx);
    for (const p of ['out', 'single', 'chowned']) expect(mine(tree, p), p).toEqual(recorded('owner', p));
    // the last step is written straight to a tar: the same owners there
    const last = await context({ Dockerfile: 'FROM busybox AS src\nRUN mkdir /d && echo a > /d/a && chown -R 100:200 /d\nFROM scratch\nCOPY --from=src /d /out/\n' });
    expect((await build(last)).tree['out/a']).toMatchObject({ uid: 100, gid: 200 });
  });

  it('COPY into a dangling relative symlink makes its target directory (BuildKit testCopyToSymlinkDest, recorded)', async () => {
    const { tarOf } = await import('../helpers/tar.js');
    const ctx = await context({ foo: 'content0\n', Dockerfile: 'FROM scratch\nADD t.tar /\nCOPY foo /symlink/\n' });
    await fs.writeFile(path.join(ctx, 't.tar'), await tarOf([{ name: 'symlink', type: 'symlink', linkname: '../tmp/symlink-target', mode: 0o755 }]));
    const { tree } = await build(ctx);
    expect(mine(tree, 'tmp')).toEqual(recorded('dangling', 'tmp'));
    expect(tree['tmp/symlink-target/foo']).toMatchObject({ size: 9 });
    expect(tree['symlink']).toMatchObject({ type: 'symlink', link: '../tmp/symlink-target' });
  });

  it('copies a socket in the context as an empty regular file, as BuildKit does (testCopySocket, recorded)', async () => {
    const net = await import('node:net');
    const ctx = await context({ Dockerfile: 'FROM scratch\nCOPY . /\n' });
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(path.join(ctx, 'socket.sock'), r));
    try {
      await fs.chmod(path.join(ctx, 'socket.sock'), 0o600);
      const { tree } = await build(ctx);
      expect(mine(tree, 'socket.sock')).toEqual(recorded('socket', 'socket.sock'));
      expect(tree['socket.sock']).toMatchObject({ size: 0 });
    } finally {
      srv.close();
    }
  });

  it('refuses COPY --from a stage defined later, as BuildKit does', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox AS a\nCOPY --from=b /etc/passwd /p\nFROM busybox AS b\nRUN true\n' });
    expect(await buildFails(ctx)).toBe('error: Dockerfile:2: cannot copy from stage "b", it needs to be defined before current stage "a"');
  });

  it('--build-arg SOURCE_DATE_EPOCH dates what WORKDIR creates: two builds, one digest (testWorkdirSourceDateEpochReproducible)', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nWORKDIR /mydir\n' });
    const digests: string[] = [];
    for (const n of [1, 2]) {
      const r = path.join(tmp, `sde-root-${n}`);
      expect((await mbuild(['--root', r, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
      const out = path.join(tmp, `sde-${n}.tar`);
      const b = await mbuild(['--root', r, 'build', '--output', `type=oci,dest=${out}`, '--build-arg', 'SOURCE_DATE_EPOCH=1673364896', ctx]);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stderr).not.toContain('SOURCE_DATE_EPOCH');
      const { readTar } = await import('../helpers/tar.js');
      const index = (await readTar(await fs.readFile(out))).find((e) => e.header.name === 'index.json')!;
      digests.push(JSON.parse(index.data.toString()).manifests[0].digest);
      if (n === 1) await new Promise((r) => setTimeout(r, 1100)); // a second apart, so the build time would differ
    }
    expect(digests[0]).toMatch(/^sha256:/);
    expect(digests[1]).toBe(digests[0]);
  });
});

describe('ADD --unpack, --chown of archives, --chmod', () => {
  async function archiveContext(dockerfile: string): Promise<string> {
    const { tarOf } = await import('../helpers/tar.js');
    const { gzipSync } = await import('node:zlib');
    const ctx = await context({ Dockerfile: dockerfile });
    const tar = await tarOf([
      { name: 'dir/', type: 'directory', mode: 0o755, uid: 5, gid: 6 },
      { name: 'dir/f', data: 'a\n', mode: 0o644, uid: 5, gid: 6 },
      { name: 'top', data: 'b\n', mode: 0o600, uid: 5, gid: 6 },
    ]);
    await fs.writeFile(path.join(ctx, 'a.tar'), tar);
    await fs.writeFile(path.join(ctx, 'a.tar.gz'), gzipSync(tar));
    return ctx;
  }

  it('applies --chown to the extracted files, as BuildKit passes ChownOpts to Untar', async () => {
    const ctx = await archiveContext('FROM busybox\nADD --chown=100:200 a.tar /x/\nADD --chown=100:200 a.tar.gz /y/\nADD a.tar /z/\n');
    const { tree } = await build(ctx);
    for (const d of ['x', 'y']) {
      expect(mine(tree, d), d).toEqual({
        [d]: { type: 'dir', uid: 100, gid: 200, mode: '0o755' },
        [`${d}/dir`]: { type: 'dir', uid: 100, gid: 200, mode: '0o755' },
        [`${d}/dir/f`]: { type: 'file', uid: 100, gid: 200, mode: '0o644' },
        [`${d}/top`]: { type: 'file', uid: 100, gid: 200, mode: '0o600' },
      });
    }
    // without --chown the archive's owners stay
    expect(tree['z/top']).toMatchObject({ uid: 5, gid: 6 });
  });

  it('--unpack=false copies a local archive as a file; --unpack=true extracts a downloaded one', async () => {
    const ctx = await archiveContext('FROM busybox\nADD --unpack=false a.tar.gz /kept/\nADD --unpack=true a.tar /unpacked/\n');
    const { createServer: serve } = await import('node:http');
    const tarBytes = await fs.readFile(path.join(ctx, 'a.tar.gz'));
    const server = serve((_req, res) => res.end(tarBytes));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/remote.tar.gz`;
      await fs.appendFile(path.join(ctx, 'Dockerfile'), `ADD ${url} /remote-file/\nADD --unpack=true ${url} /remote-unpacked/\n`);
      const { tree } = await build(ctx);
      expect(under(tree, 'kept')).toEqual(['a.tar.gz']);
      expect(under(tree, 'unpacked')).toEqual(['dir/', 'dir/f', 'top']);
      expect(under(tree, 'remote-file')).toEqual(['remote.tar.gz']);
      expect(under(tree, 'remote-unpacked')).toEqual(['dir/', 'dir/f', 'top']);
    } finally {
      server.close();
    }
  });

  it('takes --chmod octal (parents made with it), expanded from an ARG, and symbolic (BuildKit testCopyChmod)', async () => {
    const ctx = await context({
      foo: 'foo-contents', bar: 'bar-contents', 'd/x': 'x', 'd/sub/y': 'y',
      Dockerfile: `FROM busybox
COPY --chmod=0644 foo /
COPY --chmod=777 bar /baz
COPY --chmod=0 foo /foobis
COPY --chmod=777 foo /parent/foo
COPY --chmod=770 foo /parent/sub/foo
ARG mode
COPY --chmod=\${mode} foo /footer
COPY --chmod=u+x foo /ux
COPY --chmod=a=rX d /sym/
ADD --chmod=go-rwx bar /added
`,
    });
    await fs.chmod(path.join(ctx, 'foo'), 0o600);
    await fs.chmod(path.join(ctx, 'bar'), 0o700);
    await fs.chmod(path.join(ctx, 'd/x'), 0o640);
    const { tree } = await build(ctx, ['--build-arg', 'mode=755']);
    const modes = Object.fromEntries(['foo', 'baz', 'foobis', 'parent', 'parent/sub', 'footer', 'ux', 'sym/x', 'sym/sub', 'sym/sub/y', 'added'].map((p) => [p, tree[p]?.mode]));
    expect(modes).toEqual({
      foo: '0o644', baz: '0o777', foobis: '0o0', parent: '0o777', 'parent/sub': '0o770', footer: '0o755',
      ux: '0o700', 'sym/x': '0o444', 'sym/sub': '0o555', 'sym/sub/y': '0o444', added: '0o700',
    });
  });

  it('refuses a --chmod that is neither octal nor symbolic, naming the line (testCopyInvalidChmod)', async () => {
    const ctx = await context({ foo: 'f', Dockerfile: 'FROM scratch\nCOPY --chmod=64a foo /\n' });
    expect(await buildFails(ctx)).toBe("error: Dockerfile:2: COPY --chmod: invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777");
  });
});

describe('COPY --link', () => {
  it('does not depend on the layers below: a changed base reuses the layer without running it, stacked on the new base', async () => {
    const ctx = await context({ 'app/f': 'linked\n', Dockerfile: 'FROM busybox\nRUN echo one > /base\nCOPY --link app /app/\nRUN cat /base /app/f > /seen\n' });
    const first = await build(ctx);
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo two, longer > /base\nCOPY --link app /app/\nRUN cat /base /app/f > /seen\n');
    const second = await build(ctx);
    expect(second.stderr).toMatch(/COPY --link app \/app\/[^\n]*\n[^\n]*CACHED/);
    expect(second.stderr).not.toMatch(/RUN cat[^\n]*\n[^\n]*CACHED/);
    expect(second.tree['seen']).toMatchObject({ size: 'two, longer\nlinked\n'.length });
    expect(second.tree['app/f']).toMatchObject({ size: 7, uid: 0 });
    // the very same layer blob sits on both bases
    const layerDigests = async (out: string) => {
      const { readTar } = await import('../helpers/tar.js');
      const files = await readTar(await fs.readFile(out));
      const index = JSON.parse(files.find((e) => e.header.name === 'index.json')!.data.toString());
      const manifest = JSON.parse(files.find((e) => e.header.name === `blobs/sha256/${index.manifests[0].digest.slice(7)}`)!.data.toString());
      return (manifest.layers as { digest: string }[]).map((l) => l.digest);
    };
    const [a, b] = [await layerDigests(first.out), await layerDigests(second.out)];
    expect(b[2]).toBe(a[2]);
    expect(b[1]).not.toBe(a[1]);
  });

  it('copies into an empty tree: a symlink of the base on the way is not followed', async () => {
    const ctx = await context({ f: 'f', Dockerfile: 'FROM busybox\nRUN mkdir /real && ln -s /real /via\nCOPY --link f /via/\n' });
    const { tree } = await build(ctx);
    expect(tree['real/f']).toBeUndefined();
    expect(tree['via']).toMatchObject({ type: 'dir' });
    expect(tree['via/f']).toMatchObject({ type: 'file' });
  });
});

describe('ADD <git repository>', () => {
  let server: Server;
  let base: string;
  let repoDir: string;
  let first: string;
  let second: string;
  const requests: string[] = [];
  const sh = async (cmd: string, cwd: string) => {
    const { run } = await import('../helpers/cli.js');
    const r = await run('sh', ['-c', cmd], { cwd, env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
    if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
    return r.stdout.trim();
  };

  beforeAll(async () => {
    const { spawn } = await import('node:child_process');
    const projects = await fs.mkdtemp(path.join(tmp, 'git-'));
    repoDir = path.join(projects, 'repo.git');
    const work = path.join(projects, 'work');
    await fs.mkdir(path.join(work, 'sub/deep'), { recursive: true });
    await fs.writeFile(path.join(work, 'README'), 'v1\n');
    await fs.writeFile(path.join(work, 'sub/deep/file'), 'deep\n');
    await fs.writeFile(path.join(work, 'run.sh'), '#!/bin/sh\n');
    await fs.chmod(path.join(work, 'run.sh'), 0o755);
    await sh('git init -q -b main . && git add -A && git commit -qm one && git tag -a v1 -m v1', work);
    first = await sh('git rev-parse HEAD', work);
    await fs.writeFile(path.join(work, 'README'), 'v2, on main\n');
    await sh('git commit -qam two', work);
    second = await sh('git rev-parse HEAD', work);
    await sh(`git clone -q --bare . ${repoDir}`, work);
    // git's own smart-HTTP server, run as a CGI program
    server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      const u = new URL(req.url!, 'http://x');
      const cgi = spawn('git', ['http-backend'], {
        env: {
          ...process.env, GIT_PROJECT_ROOT: projects, GIT_HTTP_EXPORT_ALL: '1', PATH_INFO: u.pathname, QUERY_STRING: u.search.slice(1),
          REQUEST_METHOD: req.method!, CONTENT_TYPE: req.headers['content-type'] ?? '', GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
          REMOTE_ADDR: '127.0.0.1', CONTENT_LENGTH: String(req.headers['content-length'] ?? ''),
        },
      });
      req.pipe(cgi.stdin);
      let head = Buffer.alloc(0);
      let headersDone = false;
      cgi.stdout.on('data', (chunk: Buffer) => {
        if (headersDone) return void res.write(chunk);
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        headersDone = true;
        let status = 200;
        for (const line of head.subarray(0, end).toString().split('\r\n')) {
          const [k, ...v] = line.split(':');
          if (k!.toLowerCase() === 'status') status = Number.parseInt(v.join(':').trim(), 10);
          else res.setHeader(k!, v.join(':').trim());
        }
        res.writeHead(status);
        res.write(head.subarray(end + 4));
      });
      cgi.stdout.on('end', () => res.end());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('clones the ref (default branch, tag, commit), without .git, a subdir with #ref:subdir', async () => {
    const ctx = await context({
      Dockerfile: `FROM busybox
ADD ${base}/repo.git /head/
ADD ${base}/repo.git#v1 /tag/
ADD ${base}/repo.git#${first}:sub /commit-sub/
ADD ${base}/repo.git?ref=main&subdir=sub/deep /query/
`,
    });
    const { tree } = await build(ctx);
    expect(under(tree, 'head')).toEqual(['README', 'run.sh', 'sub/', 'sub/deep/', 'sub/deep/file']);
    expect(tree['head/README']).toMatchObject({ size: 'v2, on main\n'.length, uid: 0, gid: 0, mode: '0o644' });
    expect(tree['head/run.sh']).toMatchObject({ mode: '0o755' });
    expect(tree['tag/README']).toMatchObject({ size: 3 });
    expect(under(tree, 'commit-sub')).toEqual(['deep/', 'deep/file']);
    expect(under(tree, 'query')).toEqual(['file']);
  });

  it('keeps .git with --keep-git-dir, and checks --checksum against the commit', async () => {
    const ctx = await context({ Dockerfile: `FROM busybox\nADD --keep-git-dir --checksum=${second.slice(0, 12)} ${base}/repo.git#main /kept/\nRUN git_head=$(cat /kept/.git/HEAD) && echo "$git_head" > /head.txt\n` });
    const { tree } = await build(ctx);
    expect(tree['kept/.git']).toMatchObject({ type: 'dir' });
    expect(tree['kept/README']).toMatchObject({ type: 'file' });
    const bad = await context({ Dockerfile: `FROM busybox\nADD --checksum=${first} ${base}/repo.git#main /x/\n` });
    expect(await buildFails(bad)).toBe(`error: Dockerfile:2: ADD ${base}/repo.git#main: checksum mismatch: expected commit ${first}, got ${second}`);
  });

  it('is keyed by the commit: an unchanged ref is CACHED without fetching', async () => {
    const ctx = await context({ Dockerfile: `FROM busybox\nADD ${base}/repo.git#main /src/\nRUN ls /src > /ls.txt\n` });
    const posts = () => requests.filter((r) => r.startsWith('POST') && r.includes('git-upload-pack')).length;
    requests.length = 0;
    await build(ctx);
    const cold = posts(); // ls-remote, then the fetch
    requests.length = 0;
    const again = await build(ctx);
    expect(again.stderr).toMatch(/ADD [^\n]*repo\.git#main[^\n]*\n[^\n]*CACHED/);
    // only the ls-remote that resolves the ref: nothing is fetched
    expect(posts()).toBe(1);
    expect(cold).toBeGreaterThan(1);
  });

  it('refuses a git source for COPY and a missing ref, naming the line', async () => {
    const ctx = await context({ Dockerfile: `FROM busybox\nCOPY ${base}/repo.git /x/\n` });
    expect(await buildFails(ctx)).toBe("error: Dockerfile:2: COPY: source can't be a git ref for COPY (use ADD)");
    await fs.writeFile(path.join(ctx, 'Dockerfile'), `FROM busybox\nADD ${base}/repo.git#nope /x/\n`);
    expect(await buildFails(ctx)).toBe(`error: Dockerfile:2: ADD ${base}/repo.git#nope: the repository has no ref "nope"`);
  });
});
