/**
 * `mbuild run -p [IP:]HOST:CONTAINER`: as Docker with its userland proxy, a DNAT rule in nat PREROUTING
 * sends traffic from other hosts to the container's address, and a small TCP proxy listening on the
 * host port serves what DNAT cannot see (connections from this host, 127.0.0.1 included, which do not
 * pass PREROUTING). Rules are tagged `mbuild-port:<bridge>:<pid>:<start>` (the sandbox's helper), so a
 * killed `mbuild run` leaves nothing the next bridge setup does not sweep.
 */
import net from 'node:net';
import { NetworkError, UsageError } from '../../../util/errors.js';
import { ipToInt } from './cidr.js';
import { deleteRule, ensureRule, warnOnce, type Bridge } from './bridge.js';
import type { Owner } from './state.js';

export interface PortSpec {
  hostIp: string;
  /** 0: any free port */
  hostPort: number;
  containerPort: number;
}

function port(s: string, what: string, spec: string, allowZero = false): number {
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
  if (!(n >= (allowZero ? 0 : 1) && n <= 65535)) throw new UsageError(`invalid ${what} "${s}" in -p ${spec}`);
  return n;
}

/** `8080:80`, `127.0.0.1:8080:80`, `80` (any free host port), with an optional `/tcp`. */
export function parsePublish(spec: string): PortSpec {
  let s = spec;
  const slash = s.lastIndexOf('/');
  if (slash >= 0) {
    const proto = s.slice(slash + 1).toLowerCase();
    if (proto !== 'tcp') throw new UsageError(`-p ${spec}: only tcp ports can be published`);
    s = s.slice(0, slash);
  }
  const parts = s.split(':');
  if (parts.length === 1) return { hostIp: '0.0.0.0', hostPort: 0, containerPort: port(parts[0], 'container port', spec) };
  if (parts.length === 2) return { hostIp: '0.0.0.0', hostPort: port(parts[0] || '0', 'host port', spec, true), containerPort: port(parts[1], 'container port', spec) };
  if (parts.length === 3) {
    if (ipToInt(parts[0]) === undefined) throw new UsageError(`invalid host address "${parts[0]}" in -p ${spec} (an IPv4 address)`);
    return { hostIp: parts[0], hostPort: port(parts[1] || '0', 'host port', spec, true), containerPort: port(parts[2], 'container port', spec) };
  }
  throw new UsageError(`invalid -p ${spec}: use [IP:]HOST_PORT:CONTAINER_PORT`);
}

interface Listener {
  spec: PortSpec;
  server: net.Server;
  sockets: Set<net.Socket>;
}

export class PublishedPorts {
  /** where a connection to a listener's port goes */
  private target?: (spec: PortSpec) => { host: string; port: number };
  private rules: Parameters<typeof ensureRule>[0][] = [];

  private constructor(private readonly listeners: Listener[]) {}

  /** Binds every host port now, so a port in use fails before the container starts. */
  static async open(specs: PortSpec[]): Promise<PublishedPorts> {
    const pp = new PublishedPorts([]);
    try {
      for (const spec of specs) pp.listeners.push(await pp.listen(spec));
    } catch (err) {
      await pp.close();
      throw err;
    }
    return pp;
  }

  private listen(spec: PortSpec): Promise<Listener> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((client) => this.proxy(client, spec, sockets));
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new NetworkError(`cannot publish ${spec.hostIp}:${spec.hostPort}: ${e.code === 'EADDRINUSE' ? 'the port is already in use' : e.message}`, e)),
      );
      server.listen({ host: spec.hostIp, port: spec.hostPort, exclusive: true }, () => {
        spec.hostPort = (server.address() as net.AddressInfo).port;
        resolve({ spec, server, sockets });
      });
    });
  }

  private proxy(client: net.Socket, spec: PortSpec, sockets: Set<net.Socket>): void {
    if (!this.target) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target(spec));
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** "0.0.0.0:18080->80/tcp" for each port (host ports chosen by the system filled in). */
  describe(): string[] {
    return this.listeners.map((l) => `${l.spec.hostIp}:${l.spec.hostPort}->${l.spec.containerPort}/tcp`);
  }

  /** Points the ports at the container: proxy target, plus DNAT for other hosts when iptables works. */
  async connect(bridge: Bridge, address: string, owner: Owner): Promise<void> {
    this.target = (spec) => ({ host: address, port: spec.containerPort });
    if (!bridge.nat) return;
    const tag = ['-m', 'comment', '--comment', `mbuild-port:${bridge.name}:${owner.pid}:${owner.start}`];
    for (const { spec } of this.listeners) {
      const dport = ['-p', 'tcp', '--dport', String(spec.hostPort)];
      // 127.0.0.0/8 never passes PREROUTING from outside: the proxy alone serves it
      if (spec.hostIp.startsWith('127.')) continue;
      const dst = spec.hostIp === '0.0.0.0' ? [] : ['-d', `${spec.hostIp}/32`];
      this.rules.push(
        { table: 'nat', chain: 'PREROUTING', spec: [...dst, ...dport, '-m', 'addrtype', '--dst-type', 'LOCAL', '!', '-i', bridge.name, ...tag, '-j', 'DNAT', '--to-destination', `${address}:${spec.containerPort}`] },
        { table: 'filter', chain: 'FORWARD', insert: true, spec: ['-d', `${address}/32`, '!', '-i', bridge.name, '-o', bridge.name, '-p', 'tcp', '--dport', String(spec.containerPort), ...tag, '-j', 'ACCEPT'] },
      );
    }
    for (const r of this.rules) {
      const err = await ensureRule(r);
      if (err) {
        warnOnce('dnat', `cannot add the DNAT rule for a published port (${err}); only the proxy serves it`);
        break;
      }
    }
  }

  /**
   * Rootless (slirp network): the sandbox's address is not reachable from here, so each port is
   * forwarded by slirp4netns from a free port on 127.0.0.1 (`forward`), where the proxy sends it.
   */
  async connectForwarded(forward: (hostIp: string, hostPort: number, containerPort: number) => Promise<void>): Promise<void> {
    const local = new Map<number, number>();
    for (const { spec } of this.listeners) {
      if (local.has(spec.containerPort)) continue;
      const port = await freeLoopbackPort();
      await forward('127.0.0.1', port, spec.containerPort);
      local.set(spec.containerPort, port);
    }
    this.target = (spec) => ({ host: '127.0.0.1', port: local.get(spec.containerPort)! });
  }

  async close(): Promise<void> {
    this.target = undefined;
    for (const r of this.rules.splice(0)) await deleteRule(r);
    await Promise.all(
      this.listeners.map(
        (l) =>
          new Promise<void>((resolve) => {
            for (const s of l.sockets) s.destroy();
            l.server.close(() => resolve());
          }),
      ),
    );
  }
}

/** A TCP port on 127.0.0.1 that is free now (the system's choice). */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
