// The daemons a benchmark run starts for itself: dockerd (temp data-root, exec-root and socket, in a
// private mount namespace so its mounts die with it) and Debian's docker-registry on 127.0.0.1.
// Both run inside the benchmark's private network namespace (see run.mjs), so docker0, its
// iptables rules and the registry's port never exist on the host.
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { sh, sleep, which, tail } from './proc.mjs';

function startDetached(cmd, args, log, env = process.env) {
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  return child;
}

async function stopChild(child, graceMs) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timeout = sleep(graceMs).then(() => 'timeout');
  if ((await Promise.race([exited, timeout])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

export async function startDockerd(dir, dockerCli) {
  const dockerd = which('dockerd') ?? '/usr/sbin/dockerd';
  mkdirSync(join(dir, 'data'), { recursive: true });
  mkdirSync(join(dir, 'exec'), { recursive: true });
  const sock = join(dir, 'docker.sock');
  const log = join(dir, 'dockerd.log');
  const child = startDetached('unshare', [
    '--mount', '--propagation', 'private', '--', dockerd,
    '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'docker.pid'), '-H', `unix://${sock}`,
    '--userland-proxy=false', '--log-level=warn',
  ], log);
  const host = `unix://${sock}`;
  for (let i = 0; i < 120; i++) {
    if (child.exitCode !== null) break;
    if (sh(dockerCli, ['-H', host, 'version', '--format', '{{.Server.Version}}']).code === 0) {
      return { host, log, stop: () => stopChild(child, 30_000).then(() => rmSync(dir, { recursive: true, force: true })) };
    }
    await sleep(500);
  }
  await stopChild(child, 5000);
  throw new Error(`dockerd did not start; its log ends:\n${tail(log)}`);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** An open distribution 2.8 registry on 127.0.0.1:PORT with its storage under DIR. */
export async function startRegistry(dir, port) {
  const bin = which('docker-registry') ?? '/usr/bin/docker-registry';
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'storage'), { recursive: true });
  const config = join(dir, 'config.yml');
  writeFileSync(config, [
    'version: 0.1',
    'log:', '  level: error', '  accesslog:', '    disabled: true',
    'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'storage')}`, '  delete:', '    enabled: true',
    'http:', `  addr: 127.0.0.1:${port}`, '',
  ].join('\n'));
  const log = join(dir, 'registry.log');
  const child = startDetached(bin, ['serve', config], log);
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (res.status === 200) return { port, stop: () => stopChild(child, 5000).then(() => rmSync(dir, { recursive: true, force: true })) };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  await stopChild(child, 2000);
  throw new Error(`docker-registry did not start; its log ends:\n${tail(log)}`);
}
