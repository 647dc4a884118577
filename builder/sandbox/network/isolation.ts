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
 */
import { existsSync } from 'node:fs';
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

/** Creates (or refreshes) the bridge's table; returns why it could not, or undefined. */
export async function ensureAntiSpoofing(bridge: string): Promise<string | undefined> {
  if (!nftAvailable()) return 'nft (nftables) is not installed';
  const t = tableName(bridge);
  return nft(
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
}

const element = (veth: string, mac: string, address: string) => `"${veth}" . ${mac} . ${address}`;

/** Lets `veth` send as (mac, address) only; every other frame from it is dropped. */
export async function addPort(bridge: string, veth: string, mac: string, address: string): Promise<string | undefined> {
  if (!nftAvailable()) return 'nft (nftables) is not installed';
  const t = tableName(bridge);
  return nft(`add element bridge ${t} ports { ${element(veth, mac, address)} }\nadd element bridge ${t} ifaces { "${veth}" }\n`);
}

export async function removePort(bridge: string, veth: string, mac: string, address: string): Promise<void> {
  if (!nftAvailable()) return;
  const t = tableName(bridge);
  await nft(`delete element bridge ${t} ports { ${element(veth, mac, address)} }`);
  await nft(`delete element bridge ${t} ifaces { "${veth}" }`);
}

interface NftSetElem {
  elem?: { val?: unknown; concat?: unknown[] } | string;
  concat?: unknown[];
}

/** Removes the entries of interfaces that are gone (a killed mbuild left them). */
export async function sweepPorts(bridge: string): Promise<void> {
  if (!nftAvailable()) return;
  const t = tableName(bridge);
  const r = await runTool('nft', ['-j', 'list', 'table', 'bridge', t]);
  if (r.code !== 0) return;
  let doc: { nftables?: { set?: { name: string; elem?: (string | NftSetElem)[] } }[] };
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    return;
  }
  const lines: string[] = [];
  for (const item of doc.nftables ?? []) {
    const set = item.set;
    if (!set?.elem) continue;
    for (const e of set.elem) {
      const parts = typeof e === 'string' ? [e] : (e.concat ?? (typeof e.elem === 'object' ? e.elem?.concat : undefined) ?? [e.elem]);
      const veth = parts[0];
      if (typeof veth !== 'string' || existsSync(`/sys/class/net/${veth}`)) continue;
      const value = parts.map((p, i) => (i === 0 ? `"${String(p)}"` : String(p))).join(' . ');
      lines.push(`delete element bridge ${t} ${set.name} { ${value} }`);
    }
  }
  for (const l of lines) await nft(l);
}

export async function removeAntiSpoofing(bridge: string): Promise<void> {
  if (!nftAvailable()) return;
  await nft(`delete table bridge ${tableName(bridge)}`);
}
