/**
 * Bridge networking of the RUN sandbox, on a bridge of the test's own (MBUILD_BRIDGE) that is torn
 * down at the end: addresses, routes, reaching the gateway but not each other, no spoofing, none/host, cleanup after
 * every step, after interruption, after 50 builds, and of what dead processes left behind.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { helperPath } from '../../util/native-helper.js';
import { runSandboxed, type SandboxSpec } from '../../builder/sandbox/run.js';
import { ensureBridge, teardownBridge, type Bridge } from '../../builder/sandbox/network/index.js';
import { contains, intToIp, ipToInt } from '../../builder/sandbox/network/cidr.js';
import { macFor } from '../../builder/sandbox/network/isolation.js';
import { readState } from '../../builder/sandbox/network/state.js';
import { detectCgroups } from '../../builder/sandbox/cgroups.js';
import { BUSYBOX_TAR, REPO, mbuild, mountsUnder } from '../helpers/cli.js';

const isRoot = process.getuid?.() === 0;
const BRIDGE = `mbt${randomBytes(3).toString('hex')}`;

function sh(cmd: string): string {
  return execFileSync('sh', ['-c', cmd], { encoding: 'utf8' });
}

function ensureTools(): void {
  if (!existsSync('/usr/sbin/iptables') && !existsSync('/sbin/iptables')) {
    try {
      execFileSync('apt-get', ['install', '-y', '-qq', 'iptables'], { stdio: 'ignore' });
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
      execFileSync('apt-get', ['install', '-y', '-qq', 'iptables'], { stdio: 'ignore' });
    }
  }
}

/** What this test's bridge adds to the host: its links, rules and cgroups left by dead processes. */
function vethsOnBridge(): string[] {
  const out = sh(`ip -j link show master ${BRIDGE} 2>/dev/null || echo '[]'`);
  return (JSON.parse(out || '[]') as { ifname: string }[]).map((l) => l.ifname);
}

function rulesMentioning(word: string): string[] {
  return sh('iptables-save 2>/dev/null || true')
    .split('\n')
    .filter((l) => l.startsWith('-A') && l.includes(word));
}

/** mbuild cgroups whose owner process is gone, where this test's builds make theirs (they inherit our cgroups). */
function staleCgroups(): string[] {
  const lay = detectCgroups();
  const parents = lay?.version === 2 ? [lay.root] : [...new Set(lay?.v1?.values() ?? [])];
  const out: string[] = [];
  for (const dir of parents) {
    for (const e of readdirSync(dir)) {
      const m = /^mbuild-\d+-(\d+)-[0-9a-f]+$/.exec(e);
      if (!m) continue;
      try {
        process.kill(Number(m[1]), 0);
      } catch {
        out.push(join(dir, e));
      }
    }
  }
  return out;
}

describe.skipIf(!isRoot)('RUN sandbox networking (root)', () => {
  let base: string;
  let busybox: string;
  let root: string;
  let bridge: Bridge;
  let counter = 0;
  let forwardBefore: string;

  beforeAll(async () => {
    ensureTools();
    if (!existsSync(helperPath())) execFileSync('node', ['scripts/build-native.mjs'], { cwd: REPO, stdio: 'inherit' });
    forwardBefore = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
    process.env.MBUILD_BRIDGE = BRIDGE;
    base = mkdtempSync(join(tmpdir(), 'mbuild-net-test-'));
    const oci = join(base, 'oci');
    mkdirSync(oci);
    execFileSync('tar', ['-xf', BUSYBOX_TAR, '-C', oci]);
    const index = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const blob = (d: string) => join(oci, 'blobs', ...d.split(':'));
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { layers: { digest: string }[] };
    busybox = join(base, 'busybox');
    mkdirSync(busybox);
    execFileSync('tar', ['-xzf', blob(manifest.layers[0]!.digest), '-C', busybox]);
    root = join(base, 'root');
    expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
    bridge = await ensureBridge();
  });

  afterAll(async () => {
    await teardownBridge(BRIDGE);
    // the host's network is as it was: no link, rule or state of the test's bridge, forwarding restored
    expect(sh('ip -o link show').includes(BRIDGE)).toBe(false);
    expect(rulesMentioning(BRIDGE)).toEqual([]);
    expect(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8')).toBe(forwardBefore);
    expect(existsSync(`/run/mbuild/net/${BRIDGE}.json`)).toBe(false);
    if (base) {
      expect(await mountsUnder(base)).toEqual([]);
      rmSync(base, { recursive: true, force: true });
    }
    delete process.env.MBUILD_BRIDGE;
  });

  function spec(script: string, over: Partial<SandboxSpec> = {}): SandboxSpec {
    const d = join(base, `step-${++counter}`);
    mkdirSync(join(d, 'upper'), { recursive: true });
    mkdirSync(join(d, 'work'));
    return {
      lowerDirs: [busybox],
      upperDir: join(d, 'upper'),
      workDir: join(d, 'work'),
      args: ['/bin/sh', '-c', script],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      uid: 0,
      gid: 0,
      groups: [],
      hostname: 'nettest',
      network: 'bridge',
      hosts: '127.0.0.1\tlocalhost\n',
      ...over,
    };
  }

  async function run(script: string, over: Partial<SandboxSpec> = {}) {
    let out = '';
    const r = await runSandboxed({ ...spec(script, over), onOutput: (c) => (out += c.toString()) });
    return { ...r, out };
  }

  it('bridge: eth0 with an address in the subnet, a default route via the gateway, hosts and resolv.conf', async () => {
    const r = await run('ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf');
    expect(r.exitCode, r.out).toBe(0);
    expect(r.network).toBe('bridge');
    const addr = /inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(r.out);
    expect(addr, r.out).not.toBeNull();
    expect(contains(bridge.subnet, ipToInt(addr![1])!)).toBe(true);
    expect(Number(addr![2])).toBe(bridge.subnet.prefix);
    expect(addr![1]).toBe(r.address);
    expect(r.out).toMatch(new RegExp(`default via ${bridge.gateway.replace(/\./g, '\\.')} dev eth0`));
    expect(r.out).toContain(`${r.address}\tnettest`);
    expect(r.out).not.toMatch(/nameserver\s+127\./);
    expect(vethsOnBridge()).toEqual([]);
    // the helper's control descriptor (fd 3, the network configuration) does not leak into the step
    const fds = await run('ls /proc/self/fd | tr "\\n" " "');
    expect(fds.out).toBe('0 1 2 3 '); // 3 is ls's own directory handle
  });

  it('the bridge subnet clashes with no host route', () => {
    const routes = sh('ip -4 route').split('\n').filter((l) => l && !l.startsWith('default') && !l.includes(BRIDGE));
    for (const r of routes) {
      const dst = r.split(' ')[0]!;
      const ip = ipToInt(dst.split('/')[0]!)!;
      expect(contains(bridge.subnet, ip), `${dst} is inside ${BRIDGE}'s subnet`).toBe(false);
    }
  });

  it('none has only lo; host sees the host interfaces', async () => {
    const none = await run('ls /sys/class/net', { network: 'none' });
    expect(none.out.split(/\s+/).filter(Boolean)).toEqual(['lo']);
    const host = await run('ls /sys/class/net', { network: 'host' });
    expect(host.out).toContain('eth0');
    expect(host.out).toContain(BRIDGE);
  });

  it('a step reaches a TCP server on the gateway address', async () => {
    let got = '';
    let from = '';
    const server = net.createServer((c) => {
      from = c.remoteAddress ?? '';
      c.on('data', (d) => (got += d.toString()));
    });
    await new Promise<void>((r) => server.listen(0, bridge.gateway, r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await run(`echo hello-gateway | nc ${bridge.gateway} ${port}`);
      expect(r.exitCode, r.out).toBe(0);
      expect(got.trim()).toBe('hello-gateway');
      expect(from.replace(/^::ffff:/, '')).toBe(r.address);
    } finally {
      server.close();
    }
  });

  /** a coordination server on the gateway: /set/K/V stores, /get/K answers V (empty until set) */
  async function board() {
    const kv = new Map<string, string>();
    const server = http.createServer((req, res) => {
      const [, cmd, k, v] = (req.url ?? '').split('/');
      if (cmd === 'set') kv.set(k ?? '', decodeURIComponent(v ?? ''));
      res.end(cmd === 'get' ? (kv.get(k ?? '') ?? '') : 'ok');
    });
    await new Promise<void>((r) => server.listen(0, bridge.gateway, r));
    const url = `http://${bridge.gateway}:${(server.address() as net.AddressInfo).port}`;
    return { kv, url, close: () => server.close() };
  }
  const myIp = `ip -o -4 addr show eth0 | sed 's/.* inet \\([0-9.]*\\).*/\\1/'`;
  const waitFor = (url: string) => `until r=$(wget -qO- ${url}) && [ -n "$r" ]; do sleep 0.05; done`;

  it('two concurrent steps get different addresses and reach the gateway, but not each other: not across the bridge, not routed through the host', async () => {
    const b0 = await board();
    const gw = b0.url;
    try {
      const [a, b] = await Promise.all([
        run(`ip=$(${myIp}); mkdir /w && echo hello-from-A > /w/index.html && httpd -p 7000 -h /w && wget -qO- ${gw}/set/a/$ip && ${waitFor(`${gw}/get/bdone`)}; echo A=$ip`),
        // insecure (NET_ADMIN): B also tries a host route to A through the gateway
        run(
          `ip=$(${myIp}); ${waitFor(`${gw}/get/a`)}; a=$r; d=$(wget -T 2 -qO- http://$a:7000/ 2>/dev/null || echo blocked); ` +
            `ip route add $a/32 via ${bridge.gateway} dev eth0 && g=$(wget -T 2 -qO- http://$a:7000/ 2>/dev/null || echo blocked); ` +
            `wget -qO- ${gw}/set/bdone/1 >/dev/null; echo B=$ip direct=$d routed=$g`,
          { security: 'insecure' },
        ),
      ]);
      expect(a.exitCode, a.out).toBe(0);
      expect(b.exitCode, b.out).toBe(0);
      expect(a.address).toBeDefined();
      expect(b.address).toBeDefined();
      expect(a.address).not.toBe(b.address);
      expect(a.out).toContain(`A=${a.address}`);
      expect(b0.kv.get('a')).toBe(a.address);
      expect(b.out).toContain(`B=${b.address} direct=blocked routed=blocked`);
    } finally {
      b0.close();
    }
    expect(vethsOnBridge()).toEqual([]);
    expect((await readState(BRIDGE))?.allocs).toEqual({});
  });

  it('a step cannot spoof: a source address not its own is dropped, and ARP claiming another sandbox\'s address does not reach the host', async () => {
    const b0 = await board();
    const gw = b0.url;
    const spoof = intToIp(bridge.subnet.base + 2 ** (32 - bridge.subnet.prefix) - 2);
    try {
      const victim = run(`ip=$(${myIp}); wget -qO- ${gw}/set/v/$ip >/dev/null; ${waitFor(`${gw}/get/done`)}; echo V=$ip`);
      await vi.waitFor(() => expect(b0.kv.get('v')).toBeTruthy(), { timeout: 20_000, interval: 50 });
      const v = b0.kv.get('v')!;
      // the host knows the victim's MAC; after the 1 s lock time an ARP claiming its address would replace it
      await new Promise<void>((r) => {
        const c = net.connect(7, v); // any answer (a reset) resolves the victim's MAC
        c.on('error', () => r());
        c.on('connect', () => (c.destroy(), r()));
      });
      expect(sh(`ip neigh show ${v} dev ${BRIDGE}`)).toContain(`lladdr ${macFor(v)}`);
      await new Promise((r) => setTimeout(r, 1200));
      const attacker = await run(
        `ping -c 1 -W 2 ${bridge.gateway} >/dev/null && echo own-ok; ip addr add ${spoof}/32 dev eth0 && ` +
          `(ping -c 1 -W 2 -I ${spoof} ${bridge.gateway} >/dev/null && echo spoofed-ip-ok || echo spoofed-ip-dropped); ` +
          // arping binds to the address it claims: the attacker takes it on its own eth0 first
          `ip addr add ${v}/32 dev eth0 && arping -U -c 3 -w 3 -s ${v} -I eth0 ${bridge.gateway} >/dev/null && echo arp-sent`,
        { security: 'insecure' },
      );
      expect(attacker.out.trim().split('\n')).toEqual(['own-ok', 'spoofed-ip-dropped', 'arp-sent']);
      const neigh = sh(`ip neigh show ${v} dev ${BRIDGE}`);
      expect(neigh).toContain(`lladdr ${macFor(v)}`);
      b0.kv.set('done', '1');
      expect((await victim).out).toContain(`V=${v}`);
    } finally {
      b0.close();
    }
  });

  it('sweeps what a dead process left: its address record and its veth', async () => {
    const dead = spawn('true');
    await new Promise((r) => dead.on('close', r));
    const st = (await readState(BRIDGE))!;
    st.allocs['10.0.0.1'] = { pid: dead.pid!, start: '1', veth: 'mbvdead0001' };
    const { writeState } = await import('../../builder/sandbox/network/state.js');
    await writeState(BRIDGE, st);
    sh(`ip link add mbvdead0001 master ${BRIDGE} type veth peer name mbvdead0002`);
    expect(vethsOnBridge()).toContain('mbvdead0001');
    // a new mbuild process sets the bridge up and sweeps
    const ctx = join(base, 'ctx-sweep');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM busybox\nRUN true\n');
    const r = await mbuild(['--root', root, 'build', '--no-cache', ctx], { env: { MBUILD_BRIDGE: BRIDGE } });
    expect(r.code, r.stderr).toBe(0);
    expect(vethsOnBridge()).toEqual([]);
    expect(sh('ip -o link show').includes('mbvdead000')).toBe(false);
    expect((await readState(BRIDGE))!.allocs).toEqual({});
  });

  it('an interrupted build leaves no veth, cgroup or mount behind', async () => {
    const ctx = join(base, 'ctx-int');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo step-$((40+2)); sleep 30\n');
    const child = spawn(process.execPath, [join(REPO, 'bin/mbuild.js'), '--root', root, 'build', '--no-cache', '--memory', '64m', ctx], {
      env: { ...process.env, MBUILD_BRIDGE: BRIDGE },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const end = Date.now() + 20_000;
    // (the marker is computed, so the progress line naming the step does not contain it)
    while (!err.includes('step-42') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(err).toContain('step-42');
    expect(vethsOnBridge()).toHaveLength(1);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', (c, s) => r(c ?? (s ? 128 : null))));
    expect(code).not.toBe(0);
    expect(vethsOnBridge()).toEqual([]);
    expect(staleCgroups()).toEqual([]);
    expect(await mountsUnder(root)).toEqual([]);
  });

  it('after 50 builds in a row nothing is left: no veth, address, extra rule, mount or cgroup', async () => {
    const ctx = join(base, 'ctx-50');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'Dockerfile'), 'FROM busybox\nRUN ip -o -4 addr show eth0\nRUN --network=none true\n');
    const rulesBefore = rulesMentioning(BRIDGE);
    expect(rulesBefore).toHaveLength(4); // MASQUERADE, two FORWARD accepts and the bridge-to-bridge DROP: the bridge's own
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const r = await mbuild(['--root', root, 'build', '--no-cache', '--memory', '64m', '--progress', 'plain', ctx], { env: { MBUILD_BRIDGE: BRIDGE } });
      expect(r.code, r.stderr).toBe(0);
      const m = /inet (\d+\.\d+\.\d+\.\d+)/.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      seen.add(m![1]);
    }
    expect(seen.size).toBeGreaterThan(1); // addresses are handed out round-robin
    expect(vethsOnBridge()).toEqual([]);
    expect((await readState(BRIDGE))!.allocs).toEqual({});
    expect(sh(`ip -o -4 addr show dev ${BRIDGE}`).trim().split('\n')).toHaveLength(1); // only the gateway address
    expect(rulesMentioning(BRIDGE)).toEqual(rulesBefore);
    expect(rulesMentioning(`mbuild-port:${BRIDGE}:`)).toEqual([]);
    expect(await mountsUnder(root)).toEqual([]);
    expect(staleCgroups()).toEqual([]);
  }, 240_000);
});

describe('network fallback', () => {
  afterEach(() => {
    vi.doUnmock('../../builder/sandbox/network/bridge.js');
    vi.restoreAllMocks();
    vi.resetModules();
  });

  async function planWith(ensure: () => Promise<Bridge>) {
    vi.resetModules();
    vi.doMock('../../builder/sandbox/network/bridge.js', async (importOriginal) => ({ ...(await importOriginal<object>()), ensureBridge: ensure }));
    const warnings: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (warnings.push(String(s)), true));
    const { planNetwork } = await import('../../builder/sandbox/network/index.js');
    return { planNetwork, warnings };
  }

  it('without NAT (no iptables) the default stays on the bridge: never the host network', async () => {
    const { planNetwork, warnings } = await planWith(async () => ({ name: 'mbx0', subnet: { base: 0x0a580000, prefix: 16 }, gateway: '10.88.0.1', nat: false }));
    expect((await planNetwork('default')).mode).toBe('bridge');
    expect((await planNetwork('bridge')).mode).toBe('bridge');
    expect((await planNetwork('none')).mode).toBe('none');
    expect(warnings).toEqual([]);
  });

  it('when the bridge cannot be made, the default fails with one clear line instead of using the host network', async () => {
    const { planNetwork, warnings } = await planWith(async () => {
      throw new Error('ip (iproute2) is not installed');
    });
    await expect(planNetwork('default')).rejects.toThrow(
      'cannot set up the bridge network for RUN steps (ip (iproute2) is not installed); fix that, or choose --network none (no network) or --network host (the host\'s) explicitly',
    );
    await expect(planNetwork('bridge')).rejects.toThrow(/iproute2/);
    expect((await planNetwork('none')).mode).toBe('none');
    expect((await planNetwork('host')).mode).toBe('host');
    expect(warnings).toEqual([]);
  });
});
