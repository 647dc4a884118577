/**
 * `mbuild run`: images from the store run with their ENTRYPOINT/CMD/Env/WorkingDir/User, published
 * ports served on 127.0.0.1, live output, signals, exit codes, `--network container:NAME`, and nothing
 * left afterwards. Uses a bridge of its own (MBUILD_BRIDGE), torn down at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { teardownBridge } from '../../builder/sandbox/network/index.js';
import { BUSYBOX_TAR, REPO, mbuild, mountsUnder } from '../helpers/cli.js';

const isRoot = process.getuid?.() === 0;
const BRIDGE = `mbr${randomBytes(3).toString('hex')}`;
const ENV = { MBUILD_BRIDGE: BRIDGE };

interface Running {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exit: Promise<number>;
}

function sh(cmd: string): string {
  return execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });
}

async function waitFor(what: string, fn: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function get(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', () => resolve(undefined));
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
  });
}

describe.skipIf(!isRoot)('mbuild run (root)', () => {
  let tmp: string;
  let root: string;

  function start(args: string[]): Running {
    const child = spawn(process.execPath, [path.join(REPO, 'bin/mbuild.js'), '--root', root, 'run', ...args], {
      env: { ...process.env, ...ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const r: Running = { child, stdout: '', stderr: '', exit: Promise.resolve(0) };
    child.stdout!.on('data', (d) => (r.stdout += d));
    child.stderr!.on('data', (d) => (r.stderr += d));
    r.exit = new Promise((resolve) => child.on('close', (code, sig) => resolve(code ?? 128 + (sig ? 9 : 0))));
    return r;
  }

  const runCli = (args: string[], env: NodeJS.ProcessEnv = {}) => mbuild(['--root', root, 'run', ...args], { env: { ...ENV, ...env } });

  async function image(name: string, dockerfile: string): Promise<void> {
    const ctx = mkdtempSync(path.join(tmp, 'ctx-'));
    writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile);
    const r = await mbuild(['--root', root, 'build', '--network', 'none', '-t', name, ctx]);
    expect(r.code, r.stderr).toBe(0);
  }

  function leftovers() {
    return {
      veths: sh(`ip -o link show master ${BRIDGE} 2>/dev/null || true`).trim(),
      portRules: sh('iptables-save 2>/dev/null || true').split('\n').filter((l) => l.includes(`mbuild-port:${BRIDGE}:`)),
      containers: existsSync(path.join(root, 'containers')) ? readdirSync(path.join(root, 'containers')).filter((f) => f.endsWith('.json')) : [],
      stepDirs: readdirSync(path.join(root, 'snapshots')).filter((f) => f.startsWith('b-')),
    };
  }

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mbuild-run-test-'));
    root = path.join(tmp, 'root');
    expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
    await image('web', 'FROM busybox\nRUN mkdir /www && echo hello-from-httpd > /www/index.html\nCMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n');
    // the seed's web server, in busybox terms: an ENTRYPOINT that says it started, then listens on all addresses
    await image(
      'seedweb',
      'FROM busybox\nWORKDIR /root/\nRUN mkdir /www && echo "Welcome to this website!" > /www/index.html\nEXPOSE 1111\n' +
        'ENTRYPOINT ["sh", "-c", "echo Webserver start; echo \\"  -> listen on port:1111\\"; exec httpd -f -p 1111 -h /www"]\n',
    );
    await image(
      'cfg',
      "FROM busybox\nENV A=1 B=2\nRUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd\nWORKDIR /work\nUSER app\n" +
        'ENTRYPOINT ["sh", "-c", "echo \\"args=$* user=$(id -u) cwd=$(pwd) A=$A B=$B C=$C HOME=$HOME host=$(hostname)\\"", "sh"]\nCMD ["default-cmd"]\n',
    );
  });

  afterAll(async () => {
    await teardownBridge(BRIDGE);
    expect(sh('ip -o link show').includes(BRIDGE)).toBe(false);
    expect(sh('iptables-save 2>/dev/null || true').includes(BRIDGE)).toBe(false);
    if (tmp) {
      expect(await mountsUnder(tmp)).toEqual([]);
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('mbuild run --rm -p 18080:80 serves on 127.0.0.1:18080, and stops cleanly on SIGTERM', async () => {
    const r = start(['--rm', '-p', '18080:80', '--stop-timeout', '1', 'web']);
    let body: string | undefined;
    await waitFor('the published port', async () => (body = await get(18080)) !== undefined || r.child.exitCode !== null);
    expect(body, r.stderr).toBe('hello-from-httpd\n');
    // published with DNAT for other hosts too, tagged with the sandbox's owner
    expect(leftovers().portRules.some((l) => l.includes('--dport 18080') && l.includes('DNAT'))).toBe(true);
    r.child.kill('SIGTERM');
    const code = await r.exit;
    // busybox httpd as pid 1 ignores SIGTERM: killed after --stop-timeout, as docker stop does
    expect(code).toBe(137);
    expect(await get(18080)).toBeUndefined();
    expect(leftovers()).toEqual({ veths: '', portRules: [], containers: [], stepDirs: [] });
  });

  it('an ENTRYPOINT server listening on all addresses is reachable, and its stdout streams live', async () => {
    const r = start(['--rm', '-p', '18113:1111', '--stop-timeout', '1', 'seedweb']);
    await waitFor('"Webserver start" on stdout', () => r.stdout.includes('Webserver start') || r.child.exitCode !== null);
    expect(r.child.exitCode, r.stderr).toBeNull(); // still running: the line came while it serves
    expect(r.stdout).toBe('Webserver start\n  -> listen on port:1111\n');
    let body: string | undefined;
    await waitFor('the server', async () => (body = await get(18113)) !== undefined);
    expect(body).toBe('Welcome to this website!\n');
    r.child.kill('SIGINT');
    expect([130, 137]).toContain(await r.exit);
    expect(leftovers().veths).toBe('');
  });

  it("uses the image's ENTRYPOINT, CMD, Env, WorkingDir and User, with overrides", async () => {
    const dflt = await runCli(['--rm', '--network', 'none', 'cfg']);
    expect(dflt.code, dflt.stderr).toBe(0);
    expect(dflt.stdout).toMatch(/^args=default-cmd user=1234 cwd=\/work A=1 B=2 C= HOME=\/home\/app host=[0-9a-f]{12}\n$/);
    const over = await runCli(['--rm', '--network=none', '-e', 'B=3', '-e', 'C', '-u', '0', '-w', '/tmp', '-h', 'box', 'cfg', 'x', '--debug'], { C: 'from-env' });
    expect(over.code, over.stderr).toBe(0);
    expect(over.stdout).toBe('args=x --debug user=0 cwd=/tmp A=1 B=3 C=from-env HOME=/root host=box\n');
    const ep = await runCli(['--rm', '--network', 'none', '--entrypoint', 'echo', 'cfg', 'hi']);
    expect(ep.stdout).toBe('hi\n');
  });

  it('returns the exit code, and 127 for a missing command', async () => {
    expect((await runCli(['--rm', '--network', 'none', 'busybox', 'sh', '-c', 'exit 3'])).code).toBe(3);
    const missing = await runCli(['--rm', '--network', 'none', 'busybox', 'no-such-cmd']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain('executable file not found');
  });

  it('forwards SIGINT to the command', async () => {
    const r = start(['--rm', '--network', 'none', 'busybox', 'sh', '-c', 'trap "echo got-INT; exit 7" INT; echo ready; while :; do sleep 0.1; done']);
    await waitFor('ready', () => r.stdout.includes('ready') || r.child.exitCode !== null);
    r.child.kill('SIGINT');
    expect(await r.exit).toBe(7);
    expect(r.stdout).toBe('ready\ngot-INT\n');
  });

  it('--network container:NAME shares the network namespace of a running container', async () => {
    const name = `web-${randomBytes(3).toString('hex')}`;
    const first = start(['--rm', '--name', name, '--stop-timeout', '0', 'web']);
    try {
      const recFile = () => (existsSync(path.join(root, 'containers')) ? readdirSync(path.join(root, 'containers')).find((f) => f.endsWith('.json')) : undefined);
      await waitFor('the container record', () => {
        const f = recFile();
        return (f !== undefined && JSON.parse(readFileSync(path.join(root, 'containers', f), 'utf8')).sandbox !== undefined) || first.child.exitCode !== null;
      });
      const rec = JSON.parse(readFileSync(path.join(root, 'containers', recFile()!), 'utf8')) as { name: string; address: string };
      expect(rec.name).toBe(name);
      const joined = await runCli(['--rm', '--network', `container:${name}`, 'busybox', 'sh', '-c', 'ip -o -4 addr show eth0; wget -qO- http://127.0.0.1:80/']);
      expect(joined.code, joined.stderr).toBe(0);
      expect(joined.stdout).toContain(`inet ${rec.address}/`);
      expect(joined.stdout).toContain('hello-from-httpd');
      const dup = await runCli(['--rm', '--name', name, '--network', 'none', 'busybox', 'true']);
      expect(dup.code).not.toBe(0);
      expect(dup.stderr).toContain(`the container name "${name}" is already in use`);
      const conflict = await runCli(['--rm', '-p', '18114:80', '--network', `container:${name}`, 'busybox', 'true']);
      expect(conflict.stderr).toContain('conflicting options');
    } finally {
      first.child.kill('SIGTERM');
      await first.exit;
    }
    const gone = await runCli(['--rm', '--network', `container:${name}`, 'busybox', 'true']);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain(`no running container "${name}"`);
    expect(leftovers()).toEqual({ veths: '', portRules: [], containers: [], stepDirs: [] });
  });

  it('--memory: the OOM killer is reported', async () => {
    const r = await runCli(['--rm', '--network', 'none', '-m', '64m', 'busybox', 'sh', '-c', 'head -c 300m /dev/zero | tail']);
    expect(r.code).toBe(137);
    expect(r.stderr).toContain('killed by the OOM killer (memory limit 64MB)');
  });

  it('refuses bad usage with one clear line', async () => {
    const none = await runCli([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('requires at least 1 argument');
    const missing = await runCli(['--rm', 'no-such-image']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: image no-such-image is not in the local store/);
    const badPort = await runCli(['-p', '99999:80', 'web']);
    expect(badPort.stderr).toContain('invalid host port');
    expect(leftovers().containers).toEqual([]);
  });
});
