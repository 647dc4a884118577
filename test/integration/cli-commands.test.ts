/**
 * The commands a docker user reaches for, driven as a user does: --help everywhere, version, tag,
 * history, inspect --format, images with a filter and --digests, rmi/run/save by image ID or a
 * prefix, load from stdin, save refusing a terminal, unknown commands, a closed pipe, a normal
 * user; contexts from stdin, a tarball URL and a git URL; proxy build args; a failing stage
 * cancelling its siblings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, REPO, mbuild, run, type CliResult, writeContext } from '../helpers/cli.js';
import { COMMANDS } from '../../cli/main.js';

let work: string;
let root: string;
const MB = path.join(REPO, 'bin/mbuild');
const mb = (args: string[], input?: string): Promise<CliResult> => mbuild(['--root', root, ...args], { input });

const ctxWith = (dockerfile: string, files: Record<string, string> = {}): Promise<string> => writeContext(work, { Dockerfile: dockerfile, ...files });

/** a tiny static file server on 127.0.0.1 (tarball and dumb-http git contexts) */
async function serve(dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const srv = http.createServer(async (req, res) => {
    try {
      const body = await fs.readFile(path.join(dir, decodeURIComponent(new URL(req.url!, 'http://x').pathname)));
      res.writeHead(200).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`, close: () => new Promise((r) => srv.close(() => r())) };
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-cli-commands-'));
  root = path.join(work, 'store');
  expect((await mb(['load', '-i', BUSYBOX_TAR])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('help and unknown commands', () => {
  it('every command answers --help with its usage on stdout, exit 0', async () => {
    for (const name of Object.keys(COMMANDS)) {
      const r = await mb([name, '--help']);
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      expect(r.stdout, name).toContain(`Usage: mbuild ${name}`);
    }
    expect((await mb(['build', '--help'])).stdout).toContain('--metadata-file FILE');
    expect((await mb(['help', 'images'])).stdout).toContain('--digests');
  });
  it('"mbuild imagse" is an unknown command with a suggestion, unless a directory of that name exists', async () => {
    const r = await mbuild(['--root', root, 'imagse'], { cwd: work });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: unknown command "imagse" for "mbuild" (did you mean "images"?); run "mbuild --help" for the commands\n');
    await fs.mkdir(path.join(work, 'imagse'));
    await fs.writeFile(path.join(work, 'imagse', 'Dockerfile'), 'FROM busybox\n');
    const b = await mbuild(['--root', root, 'imagse', '-q'], { cwd: work });
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/^sha256:/);
  });
  it('version', async () => {
    const r = await mb(['version']);
    expect(r.stdout).toMatch(/^mbuild version \d+\.\d+\.\d+\n Node: +v\d+/);
    expect((await mb(['--version'])).stdout).toBe(r.stdout);
    expect((await mb(['version', '--format', '{{.Client.Platform}}'])).stdout).toMatch(/^linux\/\w+\n$/);
  });
});

describe('images by ID', () => {
  it('id=$(mbuild build -q .); mbuild run $id; save and rmi by the ID images shows', async () => {
    const dir = await ctxWith('FROM busybox\nRUN echo by-id > /f\nCMD ["cat", "/f"]\n');
    const b = await mb(['build', '-q', dir]);
    expect(b.code, b.stderr).toBe(0);
    const id = b.stdout.trim();
    const r = await mb(['run', id]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('by-id\n');
    // an unnamed build is listed as <none>, with the short ID docker shows
    const short = id.slice(7, 19);
    expect((await mb(['images'])).stdout).toMatch(new RegExp(`<none> +<none> +${short}`));
    expect((await mb(['run', short.slice(0, 6)])).stdout).toBe('by-id\n');
    const tarFile = path.join(work, 'by-id.tar');
    expect((await mb(['save', '-o', tarFile, short])).code).toBe(0);
    expect((await fs.stat(tarFile)).size).toBeGreaterThan(1000);
    expect((await mb(['tag', short, 'byid/named:1'])).code).toBe(0);
    expect(JSON.parse((await mb(['inspect', 'byid/named:1'])).stdout)[0].Id).toBe(id);
    const rm = await mb(['rmi', short]);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toBe(`Untagged: byid/named:1\nDeleted: ${id}\n`);
    expect((await mb(['images'])).stdout).not.toContain(short);
    // load from stdin brings it back, named
    const load = await run('sh', ['-c', `"${MB}" --root "${root}" load < "${tarFile}"`]);
    expect(load.code, load.stderr).toBe(0);
  });
  it('rmi of an ID with several names needs -f; an ambiguous prefix is refused', async () => {
    const dir = await ctxWith('FROM busybox\nRUN echo two-names\n');
    const id = (await mb(['build', '-q', '-t', 'two/a', '-t', 'two/b', dir])).stdout.trim();
    const r = await mb(['rmi', id.slice(7, 19)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/must be forced/);
    expect((await mb(['rmi', '-f', id.slice(7, 19)])).stdout).toBe(`Untagged: two/a:latest\nUntagged: two/b:latest\nDeleted: ${id}\n`);
  });
});

describe('listing and inspecting', () => {
  it('images with a name filter and --digests; inspect --format; history', async () => {
    const dir = await ctxWith('FROM busybox\nENV A=1\nRUN echo layer > /l\nLABEL k=v\n');
    expect((await mb(['build', '-q', '-t', 'list/app:1', '-t', 'list/app:2', '-t', 'other/x', dir])).code).toBe(0);
    const all = await mb(['images', 'list/app']);
    expect(all.stdout.trim().split('\n').map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual(['REPOSITORY TAG', 'list/app 1', 'list/app 2']);
    expect((await mb(['images', 'list/app:2'])).stdout.trim().split('\n')).toHaveLength(2);
    const digest = JSON.parse((await mb(['inspect', 'list/app:1'])).stdout)[0].Digest;
    const d = await mb(['images', '--digests', 'other/x']);
    expect(d.stdout.split('\n')[0]).toMatch(/^REPOSITORY +TAG +DIGEST +IMAGE ID/);
    expect(d.stdout).toContain(digest);
    const f = await mb(['inspect', '--format', '{{.Config.Env}} {{index .Config.Labels "k"}} {{join .RepoTags ","}} {{.Os}}', 'list/app:1']);
    expect(f.stdout).toBe('[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin A=1] v list/app:1,list/app:2,other/x:latest linux\n');
    const h = await mb(['history', 'list/app:1']);
    const lines = h.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^IMAGE +CREATED +CREATED BY +SIZE +COMMENT$/);
    expect(lines[1]).toMatch(/^[a-f0-9]{12} .*LABEL k=v/);
    expect(lines[2]).toMatch(/^<missing> .*RUN \/bin\/sh -c echo layer/);
    expect(lines).toHaveLength(5);
  });
  it('a closed pipe ends the command quietly (mbuild images | true)', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await run('bash', ['-c', `"${MB}" --root "${root}" images --no-trunc 2>"${work}/epipe.err" | true; echo "\${PIPESTATUS[0]}"`]);
      expect(r.stdout.trim()).toBe('0');
      expect(await fs.readFile(path.join(work, 'epipe.err'), 'utf8')).toBe('');
    }
  });
  it('save refuses a terminal on stdout (driven through a pseudo-terminal)', async () => {
    const r = await run('script', ['-qec', `"${MB}" --root "${root}" save busybox`, '/dev/null']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain('cowardly refusing to save to a terminal');
  });
});

describe('as a normal user', () => {
  // rootless mode itself: test/integration/rootless.test.ts (a user with a range)
  it('build and run without a /etc/subuid range say in one line what to add; serve says root is needed', async () => {
    const asNobody = (cmd: string[]) => run('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'node', path.join(REPO, 'bin/mbuild.js'), '--root', '/tmp/nonexistent-mbuild', ...cmd], { cwd: '/tmp' });
    for (const cmd of [['build', '.'], ['run', 'busybox']]) {
      const r = await asNobody(cmd);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('error: mbuild without root needs a range of nobody in /etc/subuid (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody)\n');
    }
    const r = await asNobody(['serve']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: mbuild serve needs root (mounts and namespaces): run it with sudo\n');
  });
});

describe('contexts', () => {
  it('"-" reads a tar (or a Dockerfile alone) from stdin', async () => {
    const dir = await ctxWith('FROM busybox\nCOPY hello.txt /\nRUN cat /hello.txt\n', { 'hello.txt': 'from a tar on stdin\n' });
    const tarFile = path.join(work, 'ctx.tar.gz');
    expect((await run('tar', ['-czf', tarFile, '-C', dir, '.'])).code).toBe(0);
    const t = await run('sh', ['-c', `"${MB}" --root "${root}" build --progress plain --no-cache - < "${tarFile}"`]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).toContain('from a tar on stdin');
    const d = await mb(['build', '--progress', 'plain', '--no-cache', '-'], 'FROM busybox\nRUN echo dockerfile-alone\n');
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain('dockerfile-alone');
    const both = await mb(['build', '-f', '-', '-'], 'FROM busybox\n');
    expect(both.stderr).toMatch(/"-f -" and the context "-" both read stdin/);
  });
  it('a tarball URL and a git URL (with #ref:subdir) are contexts', async () => {
    const site = path.join(work, 'site');
    await fs.mkdir(site);
    const src = await ctxWith('FROM busybox\nCOPY a.txt /\nRUN cat /a.txt\n', { 'a.txt': 'from a tarball url\n' });
    expect((await run('tar', ['-czf', path.join(site, 'ctx.tar.gz'), '-C', src, '.'])).code).toBe(0);
    // a bare repository served over "dumb" http: branch dev, the context in sub/
    const wt = path.join(work, 'gitwt');
    await fs.mkdir(path.join(wt, 'sub'), { recursive: true });
    await fs.writeFile(path.join(wt, 'sub', 'Dockerfile'), 'FROM busybox\nCOPY g.txt /\nRUN cat /g.txt\n');
    await fs.writeFile(path.join(wt, 'sub', 'g.txt'), 'from a git url\n');
    const git = (args: string[], cwd = wt) => run('git', ['-c', 'user.email=t@e', '-c', 'user.name=t', ...args], { cwd });
    for (const a of [['init', '-q', '-b', 'dev'], ['add', '.'], ['commit', '-qm', 'ctx']]) expect((await git(a)).code).toBe(0);
    expect((await git(['clone', '-q', '--bare', wt, path.join(site, 'repo.git')], work)).code).toBe(0);
    expect((await git(['update-server-info'], path.join(site, 'repo.git'))).code).toBe(0);
    const s = await serve(site);
    try {
      const t = await mb(['build', '--progress', 'plain', `${s.url}/ctx.tar.gz`]);
      expect(t.code, t.stderr).toBe(0);
      expect(t.stderr).toContain('from a tarball url');
      const g = await mb(['build', '--progress', 'plain', `${s.url}/repo.git#dev:sub`]);
      expect(g.code, g.stderr).toBe(0);
      expect(g.stderr).toContain('from a git url');
      const missing = await mb(['build', `${s.url}/nope.tar.gz`]);
      expect(missing.stderr).toMatch(/cannot download the context .*HTTP 404/);
    } finally {
      await s.close();
    }
  });
});

describe('build behaviour', () => {
  it('proxy build args reach RUN without an ARG, and stay out of the config and the history', async () => {
    const dir = await ctxWith('FROM busybox\nRUN echo "p=$HTTP_PROXY n=$no_proxy" > /proxy\n');
    const r = await mb(['build', '-q', '-t', 'proxy/x', '--build-arg', 'HTTP_PROXY=http://proxy.example:3128', '--build-arg', 'no_proxy=.internal', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect((await mb(['run', 'proxy/x', 'cat', '/proxy'])).stdout).toBe('p=http://proxy.example:3128 n=.internal\n');
    const img = JSON.parse((await mb(['inspect', 'proxy/x'])).stdout)[0];
    expect(JSON.stringify(img.Config)).not.toContain('proxy.example');
    expect(JSON.stringify(img.History)).not.toContain('proxy.example');
    // and no "not consumed" warning for them
    const w = await mb(['build', '--progress', 'plain', '--build-arg', 'HTTPS_PROXY=http://p:1', dir]);
    expect(w.stderr).not.toContain('was not consumed');
  });
  it('the first failing stage cancels its siblings at once, and its error is the one shown', async () => {
    const dir = await ctxWith(
      'FROM busybox AS slow\nRUN sleep 60\nFROM busybox AS bad\nRUN echo about to fail; echo last words; exit 3\nFROM busybox\nCOPY --from=slow /bin/true /a\nCOPY --from=bad /bin/true /b\n',
    );
    const t0 = Date.now();
    const r = await mb(['build', '--progress', 'plain', '--no-cache', dir]);
    const secs = (Date.now() - t0) / 1000;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: Dockerfile:4: RUN echo about to fail; echo last words; exit 3 exited with code 3\n {2}\| about to fail\n {2}\| last words\n$/);
    expect(r.stderr).toMatch(/#\d+ CANCELED/);
    expect(r.stderr).not.toContain('canceled: another stage failed');
    expect(secs).toBeLessThan(50); // the 60 s sleep was killed, not waited for
  });
  it('mbuild run --name web -p PORT:8080 busybox true', async () => {
    const port = 20000 + (process.pid % 20000);
    for (let i = 0; i < 3; i++) {
      const r = await mb(['run', '--name', 'web', '-p', `${port}:8080`, 'busybox', 'true']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
    }
  });
});
