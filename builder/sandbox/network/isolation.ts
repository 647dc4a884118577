/**
 * Sandboxes on the bridge see the gateway, never each other, and cannot pretend to be someone else
 * (Docker's docker0 allows both; issue 15 asked for better):
 *
 * - every sandbox's port is an isolated bridge port (no frame goes from one to another), and an
 *   iptables FORWARD DROP for bridge-to-bridge traffic stops the way round through the host;
 * - an nftables table of the bridge family, `mbuild_<bridge>`, lets a port send only IPv4 and ARP
 *   with the MAC and address mbuild gave it (sets `ifaces` and `ports`), so no ARP poisoning of the
 *   host's neighbour table and no spoofed source address. Without nft this part is missing and a
 *   warning says so.
 *
 * An nft transaction costs 100-200 ms here, too much per RUN step. So the port of address A is
 * always the veth `vethFor(A)` with MAC `macFor(A)`, and the entries of a window of addresses
 * (allocation stays inside it) are made once per bridge, in one transaction: a step adds nothing.
 */
import { findTool, runTool } from './cmd.js';

export function tableName(bridge: string): string {
  return `mbuild_${bridge.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** The MAC a sandbox's eth0 gets: 02:42 and its IPv4 address, as Docker does. */
export function macFor(address: string): string {
  return ['02', '42', ...address.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
}

function nftAvailable(): boolean {
  return findTool('nft') !== undefined;
}

async function nft(script: string): Promise<string | undefined> {
  const r = await runTool('nft', ['-f', '-'], script);
  return r.code === 0 ? undefined : r.stderr.trim() || `nft exited with ${r.code}`;
}

/**
 * The bridge's table, created when it is missing or not whole: `created` says its port entries are
 * gone (to be added again); `error` why it could not be made.
 */
export async function ensureAntiSpoofing(bridge: string): Promise<{ error?: string; created: boolean }> {
  if (!nftAvailable()) return { error: 'nft (nftables) is not installed', created: false };
  const t = tableName(bridge);
  // terse (-t): without the sets' 2,000 entries, which take nft most of its time to print; an nft
  // without -t fails and is asked again without it
  let now = await runTool('nft', ['-t', 'list', 'table', 'bridge', t]);
  if (now.code !== 0) now = await runTool('nft', ['list', 'table', 'bridge', t]);
  if (now.code === 0 && /set ifaces/.test(now.stdout) && /set ports/.test(now.stdout) && /^\s*drop$/m.test(now.stdout)) return { created: false };
  await nft(`delete table bridge ${t}`); // a partial one (its entries cannot be trusted)
  const error = await nft(
    [
      `add table bridge ${t}`,
      `add set bridge ${t} ifaces { type ifname ; }`,
      `add set bridge ${t} ports { type ifname . ether_addr . ipv4_addr ; }`,
      // before anything else sees the frame (the bridge family's dstnat priority)
      `add chain bridge ${t} prerouting { type filter hook prerouting priority -300 ; policy accept ; }`,
      `flush chain bridge ${t} prerouting`,
      `add rule bridge ${t} prerouting iifname != @ifaces accept`,
      `add rule bridge ${t} prerouting ether type arp iifname . ether saddr . arp saddr ip @ports iifname . arp saddr ether . arp saddr ip @ports accept`,
      `add rule bridge ${t} prerouting ether type ip iifname . ether saddr . ip saddr @ports accept`,
      `add rule bridge ${t} prerouting drop`,
      '',
    ].join('\n'),
  );
  return { error, created: !error };
}

/** The host end of the veth of the sandbox holding `address`: `mbv` and the address in hex. */
export function vethFor(address: string): string {
  return `mbv${address.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('')}`;
}

/** How many addresses (from index 2 up) get ports: allocation stays below 2 + PORT_WINDOW. */
export const PORT_WINDOW = 1024;

/** The last address index a sandbox gets in a subnet of `size` addresses (2 is the first). */
export function lastPortIndex(size: number): number {
  return Math.min(size - 2, 2 + PORT_WINDOW - 1);
}

/**
 * Lets the port of each of `addresses` send as its own MAC and address only, in one transaction.
 * The table must exist (ensureAntiSpoofing); adding an entry that is there already is no error.
 */
export async function addPorts(bridge: string, addresses: string[]): Promise<string | undefined> {
  if (!nftAvailable()) return 'nft (nftables) is not installed';
  if (addresses.length === 0) return undefined;
  const t = tableName(bridge);
  const ports = addresses.map((a) => `"${vethFor(a)}" . ${macFor(a)} . ${a}`).join(', ');
  const ifaces = addresses.map((a) => `"${vethFor(a)}"`).join(', ');
  return nft(`add element bridge ${t} ports { ${ports} }\nadd element bridge ${t} ifaces { ${ifaces} }\n`);
}

export async function removeAntiSpoofing(bridge: string): Promise<void> {
  if (!nftAvailable()) return;
  await nft(`delete table bridge ${tableName(bridge)}`);
}
