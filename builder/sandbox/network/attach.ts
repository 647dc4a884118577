/**
 * One sandbox on the bridge: an address from the IPAM record (never one a live sandbox holds), and a
 * veth pair whose host end `mbv<hex>` is a port of the bridge and whose other end is created as
 * `eth0` directly inside the sandbox's network namespace. The helper sets the address and routes.
 */
import { existsSync } from 'node:fs';
import { intToIp, size } from './cidr.js';
import { NetworkError } from '../../../util/errors.js';
import { ip, runToolSync } from './cmd.js';
import type { Bridge } from './bridge.js';
import { ownerAlive, ownerOf, readState, withNetLock, writeState, type Owner } from './state.js';
import { lastPortIndex, macFor, vethFor } from './isolation.js';
import { span } from '../../../util/trace.js';

export interface Attachment {
  address: string;
  prefix: number;
  gateway: string;
  veth: string;
  owner: Owner;
  /** removes the veth pair and gives the address back */
  release(): Promise<void>;
  /** for signal handlers: removes the veth pair (the address is freed once its owner is gone) */
  releaseSync(): void;
}

/**
 * Hands out the next free address (round-robin over the first PORT_WINDOW addresses of the subnet,
 * skipping network and gateway); its veth is named after it (vethFor).
 */
async function allocate(bridge: Bridge, owner: Owner): Promise<string> {
  return withNetLock(bridge.name, async () => {
    const st = (await readState(bridge.name)) ?? { subnet: '', gateway: bridge.gateway, allocs: {} };
    for (const [addr, a] of Object.entries(st.allocs)) if (!ownerAlive(a)) delete st.allocs[addr];
    const first = 2;
    // the window whose anti-spoofing entries exist (isolation.ts)
    const last = lastPortIndex(size(bridge.subnet));
    let i = st.next ?? first;
    for (let tries = 0; tries <= last - first; tries++, i++) {
      if (i > last || i < first) i = first;
      const addr = intToIp(bridge.subnet.base + i);
      if (st.allocs[addr]) continue;
      st.allocs[addr] = { ...owner, veth: vethFor(addr) };
      st.next = i + 1;
      await writeState(bridge.name, st);
      return addr;
    }
    throw new NetworkError(`no free address left on ${bridge.name} (${Object.keys(st.allocs).length} sandboxes are running)`);
  });
}

async function free(bridge: Bridge, addr: string, owner: Owner): Promise<void> {
  await withNetLock(bridge.name, async () => {
    const st = await readState(bridge.name);
    const a = st?.allocs[addr];
    if (!st || !a || a.pid !== owner.pid || a.start !== owner.start) return;
    delete st.allocs[addr];
    await writeState(bridge.name, st);
  });
}

/** Plugs the network namespace of process `pid` into the bridge. */
export async function attachToBridge(bridge: Bridge, pid: number): Promise<Attachment> {
  let owner: Owner;
  try {
    owner = ownerOf(pid);
  } catch {
    throw new NetworkError('the sandbox ended before its network was set up');
  }
  const address = await span('net.allocate', () => allocate(bridge, owner));
  const veth = vethFor(address);
  const mac = macFor(address);
  try {
    // a dead owner's veth can outlive it while something holds its namespace: the address is ours now
    if (existsSync(`/sys/class/net/${veth}`)) await ip([`link del ${veth}`], `removing ${veth}`).catch(() => undefined);
    // an isolated port: frames go between it and the bridge (the host), never to another sandbox
    await span('net.veth', () => ip(
      [`link add ${veth} master ${bridge.name} type veth peer name eth0 address ${mac} netns ${pid}`, `link set dev ${veth} type bridge_slave isolated on`, `link set dev ${veth} up`],
      `connecting the sandbox to ${bridge.name}`,
    ));
  } catch (err) {
    if (existsSync(`/sys/class/net/${veth}`)) await ip([`link del ${veth}`], `removing ${veth}`).catch(() => undefined);
    await free(bridge, address, owner);
    throw err;
  }
  let released = false;
  return {
    address,
    prefix: bridge.subnet.prefix,
    gateway: bridge.gateway,
    veth,
    owner,
    async release() {
      if (released) return;
      released = true;
      // deleting one end removes both; usually gone already, with the namespace (then no `ip` to run)
      if (existsSync(`/sys/class/net/${veth}`)) await ip([`link del ${veth}`], `removing ${veth}`).catch(() => undefined);
      await free(bridge, address, owner);
    },
    releaseSync() {
      if (released) return;
      released = true;
      runToolSync('ip', ['link', 'del', veth]);
    },
  };
}
