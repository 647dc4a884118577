/**
 * Rootless networking (util/rootless.ts): no bridge can be made without root, so a sandbox's own
 * network namespace gets a `tap0` from slirp4netns (Debian's `slirp4netns`), as rootless Docker,
 * BuildKit and podman do: a user-mode TCP/IP stack that turns the step's connections into the
 * host's own sockets. Fixed addresses, slirp's defaults: the step is 10.0.2.100/24, the gateway
 * 10.0.2.2, the DNS forwarder 10.0.2.3. `--disable-host-loopback`: the gateway does not lead to
 * the host's 127.0.0.1 services (rootlesskit's default for Docker), so a step reaches what the
 * host reaches, but not the host's loopback-only services. slirp4netns runs with its own sandbox
 * and seccomp filter, and ends when its exit fd closes (or with us).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants, existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { NetworkError } from '../../../util/errors.js';

export const SLIRP = { address: '10.0.2.100', prefix: 24, gateway: '10.0.2.2', dns: '10.0.2.3', ifname: 'tap0' } as const;

export function slirpPath(): string | undefined {
  return ['/usr/bin/slirp4netns', '/bin/slirp4netns', '/usr/local/bin/slirp4netns'].find((p) => existsSync(p));
}

/** Fails with one line naming what to install or fix when slirp4netns cannot work here. */
export async function checkSlirp(): Promise<void> {
  const why = 'choose --network none (no network) or --network host (the host\'s) explicitly';
  if (!slirpPath()) throw new NetworkError(`RUN networking without root needs slirp4netns (Debian: apt-get install slirp4netns); or ${why}`);
  try {
    await fs.access('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    throw new NetworkError(`RUN networking without root needs /dev/net/tun readable and writable by this user (mode 0666, Debian's default; as root: chmod 0666 /dev/net/tun); or ${why}`);
  }
}

export interface SlirpAttachment {
  address: string;
  prefix: number;
  gateway: string;
  ifname: string;
  /** forwards host hostIp:hostPort (TCP) to the sandbox's containerPort, through slirp4netns's API */
  forward(hostIp: string, hostPort: number, containerPort: number): Promise<void>;
  release(): Promise<void>;
  releaseSync(): void;
}

/**
 * Starts slirp4netns for the network namespace of process `pid`; resolves once tap0 exists. `api`:
 * a unix socket path (under 108 bytes) for forward(); without it forward() fails.
 */
export async function attachSlirp(pid: number, api?: string): Promise<SlirpAttachment> {
  const bin = slirpPath();
  if (!bin) throw new NetworkError('slirp4netns is missing (Debian: apt-get install slirp4netns)');
  const args = ['--disable-host-loopback', '--enable-sandbox', '--enable-seccomp', '--ready-fd', '3', '--exit-fd', '4', ...(api ? ['--api-socket', api] : []), String(pid), SLIRP.ifname];
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const ready = child.stdio[3] as Readable;
  const exitFd = child.stdio[4] as NodeJS.WritableStream & { destroy(): void };
  (exitFd as unknown as Readable).on('error', () => undefined);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      ready.once('data', () => resolve());
      child.once('error', (e) => reject(e));
      child.once('close', (code) => reject(new Error(`slirp4netns exited with ${code}: ${stderr.trim().split('\n').pop() ?? ''}`)));
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw new NetworkError(`cannot start slirp4netns for the RUN network: ${(err as Error).message}`, err);
  }
  ready.destroy();
  let released = false;
  return {
    address: SLIRP.address,
    prefix: SLIRP.prefix,
    gateway: SLIRP.gateway,
    ifname: SLIRP.ifname,
    forward: async (hostIp, hostPort, containerPort) => {
      if (!api) throw new NetworkError('slirp4netns was started without its API socket');
      await slirpApi(api, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: hostIp, host_port: hostPort, guest_addr: SLIRP.address, guest_port: containerPort } });
    },
    async release() {
      if (released) return;
      released = true;
      exitFd.destroy();
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(t);
    },
    releaseSync() {
      if (released) return;
      released = true;
      child.kill('SIGKILL');
    },
  };
}

/** One request to slirp4netns's API socket (JSON, QMP-like); rejects when it answers with an error. */
function slirpApi(socket: string, request: object): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let answer = '';
    c.on('connect', () => c.end(JSON.stringify(request)));
    c.on('data', (d) => (answer += d.toString()));
    c.on('error', (e) => reject(new NetworkError(`slirp4netns API: ${e.message}`, e)));
    c.on('close', () => {
      let parsed: { error?: { desc?: string } } | undefined;
      try {
        parsed = JSON.parse(answer) as { error?: { desc?: string } };
      } catch {
        parsed = undefined;
      }
      if (!parsed) reject(new NetworkError(`slirp4netns API: no answer to ${JSON.stringify(request)}`));
      else if (parsed.error) reject(new NetworkError(`slirp4netns API: ${parsed.error.desc ?? JSON.stringify(parsed.error)}`));
      else resolve();
    });
  });
}
