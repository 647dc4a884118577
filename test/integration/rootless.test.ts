/**
 * Rootless mbuild (cli/rootless.ts): a test user with a /etc/subuid + /etc/subgid range builds and
 * runs without root. Made and removed here, as root: the user, its ranges, and a copy of the built
 * CLI it can read (the checkout itself may sit under a 0700 home).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_TAR, REPO, SHARED, imageTree, mbuild, run, type CliResult } from '../helpers/cli.js';

const USER = `mbrl${randomBytes(3).toString('hex')}`;
let home = '';
let cli = ''; // the copy of the CLI the user runs: CLI/bin/mbuild
let work = ''; // root's scratch (root stores, servers' files)
let addedRanges = false;
let server: http.Server | undefined;
let loopbackServer: http.Server | undefined;
let hostAddress = '';
let port = 0;
let loopbackPort = 0;

/** Runs the CLI as the test user, with the environment a login would give it (no MBUILD_ROOT). */
function asUser(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<CliResult> {
  const env = Object.entries({ HOME: home, USER, LOGNAME: USER, PATH: process.env.PATH ?? '/usr/bin:/bin', MBUILD_BRIDGE: process.env.MBUILD_BRIDGE ?? '', ...opts.env }).map(([k, v]) => `${k}=${v}`);
  return run('runuser', ['-u', USER, '--', 'env', '-i', ...env, path.join(cli, 'bin/mbuild'), ...args], { cwd: opts.cwd ?? home });
}

/** The next free range above every range in the file (at least 200000), 65536 ids. */
async function freeRange(): Promise<number> {
  let top = 200000;
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    for (const m of text.matchAll(/^[^:\n]+:(\d+):(\d+)$/gm)) top = Math.max(top, Number(m[1]) + Number(m[2]));
  }
  return top;
}

async function writeFiles(dir: string, files: Record<string, string>): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
  execFileSync('chown', ['-R', `${USER}:${USER}`, dir]);
  return dir;
}

function listen(s: http.Server, host: string): Promise<number> {
  return new Promise((resolve) => s.listen(0, host, () => resolve((s.address() as net.AddressInfo).port)));
}

/** The manifest digest of an OCI layout tar (index.json's only manifest). */
async function manifestDigest(tar: string): Promise<string> {
  const r = await run('tar', ['-xOf', tar, 'index.json']);
  return (JSON.parse(r.stdout) as { manifests: { digest: string }[] }).manifests[0]!.digest;
}

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/sh', USER]);
  home = execFileSync('getent', ['passwd', USER], { encoding: 'utf8' }).split(':')[5]!;
  // Debian's useradd gives a new user a range when /etc/subuid exists; otherwise add one
  const subuid = await fs.readFile('/etc/subuid', 'utf8').catch(() => '');
  if (!new RegExp(`^${USER}:`, 'm').test(subuid)) {
    const start = await freeRange();
    for (const f of ['/etc/subuid', '/etc/subgid']) await fs.appendFile(f, `${USER}:${start}:65536\n`);
    addedRanges = true;
  }
  // slirp4netns opens /dev/net/tun as the user: Debian's udev makes it 0666 (scripts/setup.sh too)
  await fs.chmod('/dev/net/tun', 0o666);
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-rootless-'));
  cli = path.join(work, 'cli');
  for (const p of ['bin', 'dist/bundle', 'native/mbuild-helper', 'native/seccomp-default.bpf', 'package.json']) await fs.cp(path.join(REPO, p), path.join(cli, p), { recursive: true });
  await fs.chmod(work, 0o755);
  // a server on an address of the host other than loopback (what a RUN step must reach), and one on
  // 127.0.0.1 only (what it must not: slirp4netns runs with --disable-host-loopback)
  hostAddress = Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address ?? '';
  expect(hostAddress, 'the host needs a non-loopback IPv4 address').not.toBe('');
  server = http.createServer((_req, res) => res.end('hello from the host\n'));
  port = await listen(server, hostAddress);
  loopbackServer = http.createServer((_req, res) => res.end('for loopback only\n'));
  loopbackPort = await listen(loopbackServer, '127.0.0.1');
  const r = await asUser(['load', '-i', BUSYBOX_TAR]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
});

afterAll(async () => {
  server?.close();
  loopbackServer?.close();
  try {
    execFileSync('pkill', ['-KILL', '-u', USER], { stdio: 'ignore' });
  } catch {
    // nothing of the user's left running
  }
  execFileSync('userdel', ['-r', '-f', USER], { stdio: 'ignore' });
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    const text = await fs.readFile(f, 'utf8').catch(() => '');
    if (addedRanges || text.includes(`${USER}:`)) await fs.writeFile(f, text.split('\n').filter((l) => !l.startsWith(`${USER}:`)).join('\n'));
  }
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('rootless build', () => {
  it('builds with the image owners a root build gives (RUN chown, COPY --chown) and a RUN network; the store is 0700 in ~/.local/share/mbuild', async () => {
    const ctx = await writeFiles(path.join(home, 'ctx-owners'), {
      Dockerfile: [
        'FROM busybox',
        'RUN mkdir -p /home/app && echo data > /home/app/f && chown -R 1000:1000 /home/app && chown 65534:65534 /home/app/f',
        'COPY --chown=123:456 a.txt /a.txt',
        `RUN wget -q -O /got http://${hostAddress}:${port}/ && cat /got`,
        `RUN wget -q -T 5 -O - http://10.0.2.2:${loopbackPort}/ || echo loopback-refused-$((40 + 2))`, // (the step's name shows the command, not 42)
        'RUN grep gw.internal /etc/hosts', // --add-host HOST:host-gateway: slirp4netns's gateway
        '',
      ].join('\n'),
      'a.txt': 'a\n',
    });
    const out = path.join(home, 'owners.tar');
    const r = await asUser(['build', '--progress', 'plain', '--add-host', 'gw.internal:host-gateway', '-o', `type=oci,dest=${out}`, ctx]);
    expect(r.stderr).toContain('hello from the host');
    expect(r.stderr).toContain('10.0.2.2\tgw.internal');
    expect(r.stderr).toContain('loopback-refused-42');
    expect(r.stderr).not.toContain('for loopback only');
    expect(r.code).toBe(0);
    const { tree } = await imageTree(out);
    expect(tree['home/app']).toMatchObject({ uid: 1000, gid: 1000 });
    expect(tree['home/app/f']).toMatchObject({ uid: 65534, gid: 65534 });
    expect(tree['a.txt']).toMatchObject({ uid: 123, gid: 456, mode: '0o644' });
    expect(tree['got']).toMatchObject({ uid: 0, gid: 0 });
    const store = path.join(home, '.local/share/mbuild');
    const st = await fs.stat(store);
    expect(st.mode & 0o777).toBe(0o700);
    expect(st.uid).toBe(Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' })));
  });

  it('gives the image a root build gives (SOURCE_DATE_EPOCH): the same manifest digest, with and without RUN', async () => {
    const noRun = await writeFiles(path.join(home, 'ctx-same'), {
      // (no directory made: a new directory's mtime is the build's time, as in BuildKit)
      Dockerfile: 'FROM busybox\nCOPY --chown=1000:1000 a.txt /a.txt\nCOPY --chmod=0750 b.sh /b.sh\nENV A=1\nWORKDIR /tmp\n',
      'a.txt': 'a\n',
      'b.sh': 'echo b\n',
    });
    const withRun = await writeFiles(path.join(home, 'ctx-same-run'), {
      // a whiteout (rm /bin/vi) and an opaque directory (/opq made again): user.overlay.* rootless
      Dockerfile: 'FROM busybox\nRUN echo app:x:1234:1234::/data:/bin/sh >> /etc/passwd && mkdir /data /opq && touch /data/x /opq/old && chown -R app /data && rm /bin/vi\nCOPY --chown=app a.txt /data/\nRUN rm -rf /opq && mkdir /opq && touch /opq/new\n',
      'a.txt': 'a\n',
    });
    const env = { SOURCE_DATE_EPOCH: '1700000000' };
    const rootStore = path.join(work, 'root-store');
    expect((await mbuild(['--root', rootStore, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
    for (const [ctx, name] of [[noRun, 'same'], [withRun, 'same-run']] as const) {
      const mine = path.join(home, `${name}.tar`);
      const roots = path.join(work, `${name}-root.tar`);
      const a = await asUser(['build', '-q', '-o', `type=oci,dest=${mine}`, ctx], { env });
      expect(a.stderr).toBe('');
      expect(a.code).toBe(0);
      const b = await mbuild(['--root', rootStore, 'build', '-q', '-o', `type=oci,dest=${roots}`, ctx], { env });
      expect(b.code).toBe(0);
      // SOURCE_DATE_EPOCH clamps the layers' file times too: bit for bit the same image
      expect(await manifestDigest(mine)).toBe(await manifestDigest(roots));
      expect(await imageTree(mine)).toEqual(await imageTree(roots));
    }
  });

  it('--network host is the host network seen without privilege (loopback included, /sys read-only); none has only lo', async () => {
    const ctx = await writeFiles(path.join(home, 'ctx-netmodes'), {
      Dockerfile: `FROM busybox\nRUN wget -q -O - http://127.0.0.1:${loopbackPort}/ && grep -w sysfs /proc/mounts | grep -c ro, && (ip link add x type dummy 2>&1 || true)\n`,
    });
    const host = await asUser(['build', '--no-cache', '--progress', 'plain', '--network', 'host', ctx]);
    expect(host.stderr).toContain('for loopback only');
    expect(host.stderr).toMatch(/ip: RTNETLINK answers: Operation not permitted/);
    expect(host.code).toBe(0);
    const none = await writeFiles(path.join(home, 'ctx-none'), { Dockerfile: 'FROM busybox\nRUN ip -o link | cut -d: -f2 | tr -d " \\n"; echo "<-links"\n' });
    const r = await asUser(['build', '--no-cache', '--progress', 'plain', '--network', 'none', none]);
    expect(r.stderr).toMatch(/ lo<-links/);
    expect(r.code).toBe(0);
  });

  it('RUN mknod fails as under rootless BuildKit; -m/--cpus/--pids-limit are refused in one line', async () => {
    const ctx = await writeFiles(path.join(home, 'ctx-mknod'), { Dockerfile: 'FROM busybox\nRUN mknod /tmp/null c 1 3\n' });
    const r = await asUser(['build', '--progress', 'plain', ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mknod: \/tmp\/null: Operation not permitted/);
    const l = await asUser(['build', '-m', '64m', '--pids-limit', '10', ctx]);
    expect(l.code).toBe(1);
    expect(l.stderr).toBe(
      'error: --memory, --pids-limit: resource limits cannot be enforced without root (cgroup v1, or no cgroup delegated to this user); run mbuild build as root for limits, or leave the flag out\n',
    );
  });

  it('passes the conformance suite (28 cases) as the user', async () => {
    const r = await run('runuser', ['-u', USER, '--', 'env', '-i', `HOME=${home}`, `PATH=${process.env.PATH}`, 'KEEP=1', `MBUILD=node ${path.join(cli, 'bin/mbuild.js')}`, 'bash', path.join(SHARED, 'conformance/run.sh')], { cwd: home });
    // the kept work folder holds files of the user's subordinate ids: removed here, as root
    const kept = /work folder kept: (\S+)/.exec(r.stdout)?.[1];
    if (kept) await fs.rm(kept, { recursive: true, force: true });
    expect(r.stdout).toMatch(/^28 passed, 0 failed$/m);
    expect(r.code).toBe(0);
  }, 600_000);
});

describe('rootless run', () => {
  it('runs an image as uid 0 of the user namespace, with a network and a published port', async () => {
    const r = await asUser(['run', '--rm', 'busybox', 'sh', '-c', `id -u; cat /proc/self/uid_map | wc -l; wget -q -O - http://${hostAddress}:${port}/`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('0\n2\nhello from the host\n');
    expect(r.code).toBe(0);

    const probe = http.createServer();
    const hostPort = await listen(probe, '127.0.0.1'); // a free port
    await new Promise((resolve) => probe.close(resolve));
    const child = spawn('runuser', ['-u', USER, '--', 'env', '-i', `HOME=${home}`, `PATH=${process.env.PATH}`, path.join(cli, 'bin/mbuild'), 'run', '--rm', '-p', `127.0.0.1:${hostPort}:80`, 'busybox', 'sh', '-c', 'mkdir /w && echo published > /w/i && exec httpd -f -p 80 -h /w'], {
      cwd: home,
      stdio: 'ignore',
    });
    try {
      let got = '';
      for (let i = 0; i < 100 && got !== 'published\n'; i++) {
        got = await new Promise<string>((resolve) => {
          http.get({ host: '127.0.0.1', port: hostPort, path: '/i' }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve(body));
          }).on('error', () => setTimeout(() => resolve(''), 100));
        });
      }
      expect(got).toBe('published\n');
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('close', resolve));
    }
  });
});
