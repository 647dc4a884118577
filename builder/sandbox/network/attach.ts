/**
 * One sandbox on the bridge: an address from the IPAM record (never one a live sandbox holds), and a
 * veth pair whose host end `mbv<hex>` is a port of the bridge and whose other end is created as
 * `eth0` directly inside the sandbox's network namespace. The helper sets the address and routes.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { intToIp, size } from './cidr.js';
import { NetworkError } from '../../../util/errors.js';
import { ip, runToolSync } from './cmd.js';
import { VETH_PREFIX, type Bridge } from './bridge.js';
import { ownerAlive, ownerOf, readState, withNetLock, writeState, type Owner } from './state.js';

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

/** Hands out the next free address (round-robin over the subnet, skipping network, gateway, broadcast). */
async function allocate(bridge: Bridge, owner: Owner, veth: string): Promise<string> {
  return withNetLock(bridge.name, async () => {
    const st = (await readState(bridge.name)) ?? { subnet: '', gateway: bridge.gateway, allocs: {} };
    for (const [addr, a] of Object.entries(st.allocs)) if (!ownerAlive(a)) delete st.allocs[addr];
    const first = 2;
    const last = size(bridge.subnet) - 2;
    let i = st.next ?? first;
    for (let tries = 0; tries <= last - first; tries++, i++) {
      if (i > last || i < first) i = first;
      const addr = intToIp(bridge.subnet.base + i);
      if (st.allocs[addr]) continue;
      st.allocs[addr] = { ...owner, veth };
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
  const veth = `${VETH_PREFIX}${randomBytes(4).toString('hex')}`;
  const address = await allocate(bridge, owner, veth);
  try {
    await ip([`link add ${veth} master ${bridge.name} up type veth peer name eth0 netns ${pid}`], `connecting the sandbox to ${bridge.name}`);
  } catch (err) {
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
