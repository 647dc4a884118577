/**
 * `mbuild serve` and the remote CLI: many clients at once, Ctrl-C of a client, kill -9 and SIGTERM
 * of the server, mutual TLS on TCP, and a context sent by content.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, REPO, mbuild, mountsUnder, run } from '../helpers/cli.js';

let tmp: string;
let root: string;
let sock: string;
let env: NodeJS.ProcessEnv;

interface Server {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

async function startServer(args: string[], storeRoot = root, extraEnv: NodeJS.ProcessEnv = {}): Promise<Server> {
  const child = spawn(path.join(REPO, 'bin/mbuild'), ['--root', storeRoot, 'serve', ...args], { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const want = args.filter((a, i) => args[i - 1] === '--addr').length || 1;
  await until(() => (log.match(/listening on/g) ?? []).length >= want || child.exitCode !== null, 30_000);
  if (child.exitCode !== null) throw new Error(`server did not start: ${log}`);
  return { child, log: () => log, exited };
}

async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `mbuild --host ADDR ...` as a user runs it; the client may be sent signals. */
function client(args: string[], host = `unix://${sock}`): { child: ChildProcess; out: () => string; err: () => string; done: Promise<number> } {
  const child = spawn(path.join(REPO, 'bin/mbuild'), ['--host', host, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<number>((resolve) => child.on('close', (code, sig) => resolve(code ?? (sig ? 128 : -1))));
  return { child, out: () => out, err: () => err, done };
}

async function remote(args: string[], host?: string) {
  const c = client(args, host);
  const code = await c.done;
  return { code, stdout: c.out(), stderr: c.err() };
}

async function context(name: string, dockerfile: string, files: Record<string, string> = {}): Promise<string> {
  const dir = path.join(tmp, name);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'Dockerfile'), dockerfile);
  for (const [f, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, f)), { recursive: true });
    await fs.writeFile(path.join(dir, f), text);
  }
  return dir;
}

function processesMatching(text: string): string[] {
  try {
    return execFileSync('pgrep', ['-a', '-f', text], { encoding: 'utf8' }).split('\n').filter((l) => l && !l.includes('pgrep'));
  } catch {
    return [];
  }
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-serve-'));
  root = path.join(tmp, 'root');
  sock = path.join(tmp, 'mbuild.sock');
  // the client's hash cache, away from the user's
  env = { XDG_CACHE_HOME: path.join(tmp, 'client-cache') };
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('mbuild serve on a unix socket', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startServer(['--addr', `unix://${sock}`, '--max-builds', '3']);
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it('makes the socket 0660, and answers info, images, inspect and system df as the local commands do', async () => {
    const st = await fs.stat(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    const info = await remote(['info']);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toContain(`Store: ${root}`);
    for (const args of [['images'], ['inspect', 'busybox'], ['system', 'df']]) {
      const r = await remote(args);
      const local = await mbuild(['--root', root, ...args]);
      expect(r.code, r.stderr).toBe(0);
      // the CREATED column ("N seconds ago") may tick between the two
      expect(r.stdout.replace(/\d+ \w+ ago/g, 'ago')).toBe(local.stdout.replace(/\d+ \w+ ago/g, 'ago'));
    }
    const bad = await remote(['inspect', 'no-such-image']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^error: .*no-such-image/m);
  });

  it('builds six clients at once; every image lands in the server store and -o comes back to the client', async () => {
    const dirs = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((i) => context(`six-${i}`, `FROM busybox\nCOPY n.txt /n.txt\nRUN cat /n.txt > /copy && echo built-${i}\n`, { 'n.txt': `client ${i}\n` })),
    );
    const runs = await Promise.all(dirs.map((d, i) => remote(['build', '--progress', 'plain', '-t', `six:${i}`, '-o', `type=local,dest=${path.join(tmp, `six-out-${i}`)}`, d])));
    for (const [i, r] of runs.entries()) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`built-${i}`);
      expect(r.stderr).toMatch(/^#1 transferring context: \d+(\.\d+)?[kMG]?B done$/m);
      expect(r.stderr).toContain(`naming to docker.io/library/six:${i}`);
      expect(await fs.readFile(path.join(tmp, `six-out-${i}`, 'copy'), 'utf8')).toBe(`client ${i}\n`);
    }
    const images = await remote(['images']);
    for (const i of [0, 1, 2, 3, 4, 5]) expect(images.stdout).toMatch(new RegExp(`^six +${i} `, 'm'));
    // the server's copies of the contexts are gone
    expect(await fs.readdir(path.join(root, 'server', 'builds'))).toEqual([]);
  });

  it('sends no file content for a fresh copy of an unchanged context (new mtimes), and only the changed file after an edit', async () => {
    const big = 'x'.repeat(200_000);
    const a = await context('ctx-a', 'FROM busybox\nCOPY . /src\nRUN wc -c /src/big.txt\n', { 'big.txt': big, 'src/one.go': 'package one\n', 'src/two.go': 'package two\n' });
    const first = await remote(['build', '--progress', 'plain', a]);
    expect(first.code, first.stderr).toBe(0);
    // the server copies the files a local build copies: names, modes, sizes, mtimes, contents
    const localRoot = path.join(tmp, 'local-root');
    expect((await mbuild(['--root', localRoot, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
    const remoteFs = path.join(tmp, 'remote-fs.tar');
    const localFs = path.join(tmp, 'local-fs.tar');
    expect((await remote(['build', '-q', '-o', `type=tar,dest=${remoteFs}`, a])).code).toBe(0);
    expect((await mbuild(['--root', localRoot, 'build', '-q', '-o', `type=tar,dest=${localFs}`, a])).code).toBe(0);
    // (folders COPY creates get the time of the build, locally too: files only)
    const listing = async (tar: string) => (await run('tar', ['-tvf', tar, '--full-time', 'src'])).stdout.split('\n').filter((l) => l.startsWith('-')).sort();
    expect((await listing(remoteFs)).length).toBe(4);
    expect(await listing(remoteFs)).toEqual(await listing(localFs));
    // a fresh checkout elsewhere: same bytes, new inodes and mtimes
    const b = path.join(tmp, 'ctx-b');
    await run('cp', ['-r', a, b]);
    const later = new Date(Date.now() + 120_000);
    for (const f of ['big.txt', 'src/one.go', 'src/two.go', 'Dockerfile']) await fs.utimes(path.join(b, f), later, later);
    const second = await remote(['build', '--progress', 'plain', '-o', `type=oci,dest=${path.join(tmp, 'b.tar')}`, b]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('#1 transferring context: 0B done');
    expect(second.stderr).toContain(`exporting to oci ${path.join(tmp, 'b.tar')}`);
    expect((await fs.stat(path.join(tmp, 'b.tar'))).size).toBeGreaterThan(1000);
    await fs.writeFile(path.join(b, 'src/two.go'), 'package two // edited\n');
    const third = await remote(['build', '--progress', 'plain', b]);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stderr).toContain(`#1 transferring context: ${'package two // edited\n'.length}B done`);
  });

  it('cancels the build on the server when the client gets Ctrl-C (SIGINT)', async () => {
    const dir = await context('cancel', 'FROM busybox\nRUN echo started && sleep 301\n');
    const c = client(['build', '--progress', 'plain', dir]);
    await until(() => /^#\d+ [\d.]+ started$/m.test(c.err()), 60_000);
    expect(processesMatching('sleep 301').length).toBeGreaterThan(0);
    c.child.kill('SIGINT');
    expect(await c.done).toBe(130);
    expect(c.err()).toContain('canceled');
    await until(() => server.log().includes('cancelled by the client'), 30_000);
    await until(() => processesMatching('sleep 301').length === 0, 30_000);
    // the server goes on serving
    expect((await remote(['info'])).code).toBe(0);
  });

  it('prunes the server store as the local prune does; --all also drops the context content and folders', async () => {
    const dir = path.join(tmp, 'ctx-a');
    const r = await remote(['prune', '--all']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Deleted build cache entries: \d+/m);
    expect(r.stdout).toMatch(/^Deleted context files: [1-9]\d* /m);
    expect(r.stdout).toMatch(/^Total reclaimed space: /m);
    expect(await fs.readdir(path.join(root, 'server', 'contexts'))).toEqual([]);
    // the content is gone from the server: the next build sends it again
    const again = await remote(['build', '--progress', 'plain', dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/transferring context: 2\d\d\.\dkB done/);
  });

  it('forwards --secret from the client (file and environment); the value never reaches the server store', async () => {
    const dir = await context('secret', 'FROM busybox\nRUN --mount=type=secret,id=tok --mount=type=secret,id=envtok test "$(cat /run/secrets/tok)" = "$(echo ZQ-FILE-7731 | tr A-Z a-z)" && test "$(cat /run/secrets/envtok)" = "$(echo ZQ-ENV-7731 | tr A-Z a-z)" && echo secret-ok\n');
    await fs.writeFile(path.join(tmp, 'tok.txt'), 'zq-file-7731');
    env.MYTOK = 'zq-env-7731';
    const r = await remote(['build', '--progress', 'plain', '-t', 'with-secret', '--secret', `id=tok,src=${path.join(tmp, 'tok.txt')}`, '--secret', 'id=envtok,env=MYTOK', dir]);
    delete env.MYTOK;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^#\d+ [\d.]+ secret-ok$/m);
    // (the Dockerfile holds the values in capitals only)
    const grep = await run('grep', ['-r', '-l', '-e', 'zq-file-7731', '-e', 'zq-env-7731', root]);
    expect(grep.stdout).toBe('');
    const ssh = await remote(['build', '--ssh', 'default=/nonexistent', dir]);
    expect(ssh.code).toBe(2);
  });

  it('refuses what a remote build cannot do, in one line', async () => {
    const r = await remote(['build', '--no-such-flag', '.']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: unknown flag: --no-such-flag/m);
    const run1 = await remote(['run', 'busybox']);
    expect(run1.code).toBe(2);
    expect(run1.stderr).toMatch(/^error: "mbuild run" does not work with a server/m);
  });
});

describe('what the server finds out once for its build workers', () => {
  const bridge = process.env.MBUILD_BRIDGE || 'mbuild0';
  let server: Server;
  let tsock: string;
  beforeAll(async () => {
    tsock = path.join(tmp, 'facts.sock');
    // MBUILD_TRACE: each worker prints its phases, so the test sees which checks a worker ran
    server = await startServer(['--addr', `unix://${tsock}`], root, { MBUILD_TRACE: '1' });
  });
  afterAll(async () => {
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });
  const gatewayOf = (out: string) => /^#\d+ [\d.]+ gw=(\S+)$/m.exec(out)?.[1];

  it('a worker uses the bridge the server checked (no bridge check of its own) and reaches the gateway', async () => {
    const dir = await context('facts-gw', 'FROM busybox\nRUN ip route | awk \'/default/ {print "gw=" $3}\'\n');
    const first = await remote(['build', '--progress', 'plain', '--no-cache', dir], `unix://${tsock}`);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/mbuild-trace .* sandbox\.network-plan /);
    expect(first.stderr).not.toMatch(/mbuild-trace .* net\.(iptables-save|anti-spoofing|addr) /);
    const gw = gatewayOf(first.stderr);
    expect(gw).toBeDefined();
    let data = '';
    const srv = net.createServer((c) => {
      c.on('data', (d) => (data += d));
      c.on('end', () => c.end());
    });
    await new Promise<void>((r) => srv.listen(0, gw, r));
    try {
      const port = (srv.address() as net.AddressInfo).port;
      const second = await remote(['build', '--progress', 'plain', '--no-cache', await context('facts-nc', `FROM busybox\nRUN echo hello-gateway | nc ${gw} ${port}\n`)], `unix://${tsock}`);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).not.toMatch(/mbuild-trace .* net\.(iptables-save|anti-spoofing|addr) /);
      expect(data.trim()).toBe('hello-gateway');
    } finally {
      srv.close();
    }
  });

  it('a worker checks and makes the bridge itself when it was deleted after the server\'s check', async () => {
    execFileSync('ip', ['link', 'del', bridge]);
    const dir = await context('facts-gone', 'FROM busybox\nRUN ip route | awk \'/default/ {print "gw=" $3}\'\n');
    const r = await remote(['build', '--progress', 'plain', '--no-cache', dir], `unix://${tsock}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/mbuild-trace .* net\.addr /);
    expect(gatewayOf(r.stderr)).toBeDefined();
    expect(await fs.stat(`/sys/class/net/${bridge}/bridge`).then(() => true, () => false)).toBe(true);
  });
});

describe('server restarts', () => {
  const sock2 = () => path.join(tmp, 'restart.sock');

  it('kill -9 of the server mid-RUN leaves a store the restarted server builds with', async () => {
    const first = await startServer(['--addr', `unix://${sock2()}`]);
    const dir = await context('killed', 'FROM busybox\nARG N=1\nRUN echo running-$N && sleep 302 && echo $N > /n\n');
    const c = client(['build', '--progress', 'plain', dir], `unix://${sock2()}`);
    await until(() => /^#\d+ [\d.]+ running-1$/m.test(c.err()), 60_000);
    first.child.kill('SIGKILL');
    await first.exited;
    expect(await c.done).not.toBe(0);
    expect(c.err()).toMatch(/^error: .*mbuild server/m);
    // the worker dies with its server (parent-death signal), and its RUN with it
    await until(() => processesMatching('sleep 302').length === 0, 30_000);
    const second = await startServer(['--addr', `unix://${sock2()}`]);
    try {
      const df = await context('killed-2', 'FROM busybox\nRUN echo again > /n\n');
      const r = await remote(['build', '--progress', 'plain', '-t', 'after-kill', df], `unix://${sock2()}`);
      expect(r.code, r.stderr).toBe(0);
      expect((await remote(['images'], `unix://${sock2()}`)).stdout).toMatch(/^after-kill +latest/m);
      expect((await mbuild(['--root', root, 'system', 'df'])).code).toBe(0);
    } finally {
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    }
  });

  it('SIGTERM lets a running build finish, then the server exits and the socket is gone', async () => {
    const server = await startServer(['--addr', `unix://${sock2()}`]);
    const dir = await context('drain', 'FROM busybox\nRUN echo draining && sleep 2 && echo finished-drain\n');
    const c = client(['build', '--progress', 'plain', '--no-cache', dir], `unix://${sock2()}`);
    await until(() => /^#\d+ [\d.]+ draining$/m.test(c.err()), 60_000);
    server.child.kill('SIGTERM');
    expect(await c.done).toBe(0);
    expect(c.err()).toContain('finished-drain');
    expect(await server.exited).toBe(0);
    await expect(fs.stat(sock2())).rejects.toThrow();
  });
});

describe('TCP', () => {
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: path.join(tmp, 'pki'), stdio: 'pipe' });
  let port: number;
  let server: Server;
  const pki = (f: string) => path.join(tmp, 'pki', f);

  function makeCa(name: string) {
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`]);
  }
  function makeCert(ca: string, name: string, ext: string) {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    execFileSync('sh', ['-c', `printf '%s\\n' '${ext}' > ${name}.ext`], { cwd: path.join(tmp, 'pki') });
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}-key.pem`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
  }

  beforeAll(async () => {
    await fs.mkdir(path.join(tmp, 'pki'));
    makeCa('ca');
    makeCa('other-ca');
    makeCert('ca', 'server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth');
    makeCert('ca', 'client', 'extendedKeyUsage=clientAuth');
    makeCert('other-ca', 'stranger', 'extendedKeyUsage=clientAuth');
    port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    server = await startServer(['--addr', `tcp://127.0.0.1:${port}`, '--tlscacert', pki('ca.pem'), '--tlscert', pki('server.pem'), '--tlskey', pki('server-key.pem')]);
  });
  afterAll(async () => {
    server?.child.kill('SIGTERM');
    if (server) expect(await server.exited).toBe(0);
  });

  it('serves a client with a certificate of its CA', async () => {
    const r = await mbuild(['--host', `tcp://127.0.0.1:${port}`, '--tlscacert', pki('ca.pem'), '--tlscert', pki('client.pem'), '--tlskey', pki('client-key.pem'), 'info'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Server: tcp://127.0.0.1:${port}`);
  });

  it('refuses a client without a certificate, with one of another CA, and plain TCP', async () => {
    // TLS without a client certificate: the handshake fails, nothing is served
    const noCert = await new Promise<string>((resolve) => {
      const { connect } = require('node:tls') as typeof import('node:tls');
      const s = connect({ host: '127.0.0.1', port, ca: require('node:fs').readFileSync(pki('ca.pem')), ALPNProtocols: ['h2'] });
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('data', () => undefined);
      s.on('close', () => resolve('closed'));
    });
    expect(noCert).toMatch(/certificate|closed|alert/i);
    const stranger = await mbuild(['--host', `tcp://127.0.0.1:${port}`, '--tlscacert', pki('ca.pem'), '--tlscert', pki('stranger.pem'), '--tlskey', pki('stranger-key.pem'), 'info'], { env });
    expect(stranger.code).not.toBe(0);
    expect(stranger.stderr).toMatch(/^error: cannot reach the mbuild server at tcp:\/\/127\.0\.0\.1/m);
    const plain = await mbuild(['--host', `tcp://127.0.0.1:${port}`, 'info'], { env });
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/^error: cannot reach the mbuild server/m);
  });

  it('will not serve plain TCP, except with --insecure on a loopback address', async () => {
    const r = await mbuild(['--root', root, 'serve', '--addr', 'tcp://0.0.0.0:1'], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: --addr tcp:\/\/0\.0\.0\.0:1: TCP needs mutual TLS/m);
    const r2 = await mbuild(['--root', root, 'serve', '--insecure', '--addr', 'tcp://10.1.2.3:1'], { env });
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/--insecure is allowed on a loopback address only/);
    const nc = await mbuild(['--host', 'tcp://10.1.2.3:1', 'info'], { env });
    expect(nc.code).toBe(2);
    expect(nc.stderr).toMatch(/needs mutual TLS/);
  });
});
