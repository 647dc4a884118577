/** Instruction semantics that the conformance cases do not pin, checked on real builds. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, imageTree, mbuild, mountsUnder, run, writeContext } from '../helpers/cli.js';

let tmp: string;
let root: string;

const context = (files: Record<string, string>): Promise<string> => writeContext(tmp, files);

async function build(ctx: string, extra: string[] = []) {
  const out = path.join(tmp, `out-${Math.random().toString(36).slice(2)}.tar`);
  const r = await mbuild(['--root', root, 'build', '--output', `type=oci,dest=${out}`, ...extra, ctx]);
  if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stderr}`);
  return { ...(await imageTree(out)), stderr: r.stderr, out };
}


beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-features-'));
  root = path.join(tmp, 'root');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('instructions', () => {
  it('runs ONBUILD triggers in the child build and does not keep them', async () => {
    const parent = await context({ Dockerfile: 'FROM busybox\nONBUILD RUN echo triggered > /onbuild.txt\nONBUILD ENV FROM_TRIGGER=yes\n' });
    const p = await mbuild(['--root', root, 'build', '-t', 'onbuild-parent', parent]);
    expect(p.code, p.stderr).toBe(0);
    const child = await context({ Dockerfile: 'FROM onbuild-parent\nRUN cat /onbuild.txt > /seen.txt\n' });
    const img = await build(child);
    expect(img.tree['onbuild.txt']).toMatchObject({ size: 10 });
    expect(img.tree['seen.txt']).toMatchObject({ size: 10 });
    expect(img.config.OnBuild).toBeUndefined();
    expect(img.config.Env).toContain('FROM_TRIGGER=yes');
  });

  it('gives RUN the ARG values but never records them, and lets a later ENV win', async () => {
    const ctx = await context({
      Dockerfile: `FROM busybox
ARG SECRET=s3cret
ARG SHARED=from-arg
ENV SHARED=from-env
RUN echo "$SECRET $SHARED" > /seen.txt
`,
    });
    const img = await build(ctx);
    expect(img.tree['seen.txt']).toMatchObject({ size: 's3cret from-env\n'.length });
    expect(JSON.stringify(img.config)).not.toContain('s3cret');
    expect(img.config.Env).toContain('SHARED=from-env');
  });

  it('runs RUN here-documents as scripts and writes COPY here-documents as files', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nENV W=world\nRUN <<EOF\necho a > /a\necho bb > /b\nEOF\nCOPY <<EOT /greet.txt\nhello $W\nEOT\n' });
    const img = await build(ctx);
    expect(img.tree['a']).toMatchObject({ size: 2 });
    expect(img.tree['b']).toMatchObject({ size: 3 });
    expect(img.tree['greet.txt']).toMatchObject({ size: 'hello world\n'.length, mode: '0o644' });
  });

  it('honours the escape directive', async () => {
    const ctx = await context({ Dockerfile: '# escape=`\nFROM busybox\nRUN echo one `\n    two > /w.txt\n' });
    const img = await build(ctx);
    expect(img.tree['w.txt']).toMatchObject({ size: 8 });
  });

  it('runs RUN --network=none with only a loopback interface', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --network=none ls /sys/class/net > /nets.txt\nRUN hostname > /host.txt && echo $$ > /pid.txt\n' });
    const img = await build(ctx);
    expect(img.tree['nets.txt']).toMatchObject({ size: 3 }); // "lo\n"
    expect(img.tree['pid.txt']).toMatchObject({ size: 2 }); // "1\n": the step is pid 1 of its namespace
    expect(img.tree['etc/hosts']).toBeUndefined();
    expect(img.tree['etc/resolv.conf']).toBeUndefined();
  });

  it('keeps hard links of a copied directory as hard links', async () => {
    const ctx = await context({ Dockerfile: 'FROM scratch\nCOPY tree /t/\n', 'tree/a': 'same' });
    await fs.link(path.join(ctx, 'tree/a'), path.join(ctx, 'tree/b'));
    const img = await build(ctx);
    expect(img.tree['t/a']).toMatchObject({ size: 4 });
    expect(img.tree['t/b']).toMatchObject({ size: 4 });
    const listing = await run('tar', ['-xOf', img.out, 'index.json']);
    expect(listing.code).toBe(0);
  });
});

describe('ADD <url>', () => {
  let server: Server;
  let base: string;
  const body = 'downloaded over http\n';
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/files/hello.txt') res.writeHead(200, { 'last-modified': 'Tue, 03 Mar 2020 10:00:00 GMT' }).end(body);
      else if (req.url === '/old') res.writeHead(301, { location: '/files/hello.txt' }).end('moved');
      else res.writeHead(404).end('no such file');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('downloads into a directory under the URL\'s name, follows redirects, mode 0600, time from Last-Modified', async () => {
    const ctx = await context({ Dockerfile: `FROM busybox\nADD ${base}/files/hello.txt /dl/\nADD ${base}/old /moved.txt\n` });
    const img = await build(ctx);
    const sha256 = createHash('sha256').update(body).digest('hex');
    expect(img.tree['dl/hello.txt']).toMatchObject({ size: body.length, mode: '0o600', sha256 });
    expect(img.tree['moved.txt']).toMatchObject({ size: body.length, sha256 }); // the file, not the redirect's page
    const rootfs = path.join(tmp, 'add-url-rootfs.tar');
    expect((await mbuild(['--root', root, 'build', '-q', '-o', `type=tar,dest=${rootfs}`, ctx])).code).toBe(0);
    const listing = (await run('tar', ['--full-time', '-tvf', rootfs, 'dl/hello.txt'])).stdout;
    expect(listing).toContain('2020-03-03 10:00:00');
  });

  it('fails on an HTTP error, naming the URL and the status', async () => {
    const ctx = await context({ Dockerfile: `FROM busybox\nADD ${base}/nothing-here /x\n` });
    const r = await mbuild(['--root', root, 'build', ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/error: .*ADD http:\/\/127\.0\.0\.1:\d+\/nothing-here: the server answered 404/);
  });
});

describe('outputs', () => {
  it('writes a docker archive, a root filesystem tar and a local directory', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN echo hi > /hi.txt\n' });
    const docker = path.join(tmp, 'img-docker.tar');
    const fsTar = path.join(tmp, 'rootfs.tar');
    const local = path.join(tmp, 'rootfs');
    const r = await mbuild(['--root', root, 'build', '-t', 'outs', '-o', `type=docker,dest=${docker}`, '-o', `type=tar,dest=${fsTar}`, '-o', `type=local,dest=${local}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const d = await imageTree(docker);
    expect(d.tree['hi.txt']).toMatchObject({ size: 3 });
    const manifest = JSON.parse((await run('tar', ['-xOf', docker, 'manifest.json'])).stdout);
    expect(manifest[0].RepoTags).toEqual(['outs:latest']);
    const t = await run('tar', ['-tf', fsTar]);
    expect(t.stdout.split('\n')).toContain('hi.txt');
    expect(t.stdout).not.toContain('.wh.');
    expect(await fs.readFile(path.join(local, 'hi.txt'), 'utf8')).toBe('hi\n');
    expect((await fs.lstat(path.join(local, 'bin/sh'))).isSymbolicLink()).toBe(true);
  });
});
