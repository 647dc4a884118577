/**
 * The `mbuild0` bridge, as Docker's docker0: a Linux bridge holding the gateway address of a private
 * subnet (default: the first of CANDIDATE_SUBNETS that clashes with no host route), MASQUERADE for
 * the subnet's way out, FORWARD rules so sandboxes get out and get replies even when the host's
 * FORWARD policy is DROP, and (unlike docker0) isolation between sandboxes: see isolation.ts. The bridge and these rules stay (they are "the bridge's own");
 * everything per sandbox is removed with the sandbox, and what dead processes left is swept here.
 *
 * MBUILD_BRIDGE and MBUILD_SUBNET choose another bridge name / subnet (tests use their own).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { NetworkError, UsageError } from '../../../util/errors.js';
import { CANDIDATE_SUBNETS, formatSubnet, gatewayOf, intToIp, ipToInt, overlaps, parseSubnet, size, tryParseCidr, type Subnet } from './cidr.js';
import { findTool, ip, ipJson, iptables, runTool } from './cmd.js';
import { ownerAlive, readState, removeState, stateDir, withNetLock, writeState, type NetState } from './state.js';
import { addPorts, ensureAntiSpoofing, lastPortIndex, removeAntiSpoofing } from './isolation.js';
import { span } from '../../../util/trace.js';

export const VETH_PREFIX = 'mbv';

export interface BridgeConfig {
  name: string;
  /** CIDR; undefined = pick a free one */
  subnet?: string;
}

export interface Bridge {
  name: string;
  subnet: Subnet;
  gateway: string;
  /** MASQUERADE is in place (iptables works): sandboxes can reach beyond the host */
  nat: boolean;
}

export function bridgeConfig(): BridgeConfig {
  const name = process.env.MBUILD_BRIDGE || 'mbuild0';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(name)) throw new UsageError(`invalid bridge name "${name}" (MBUILD_BRIDGE): at most 15 letters, digits, _ . -`);
  const subnet = process.env.MBUILD_SUBNET || undefined;
  if (subnet) parseSubnet(subnet);
  return { name, subnet };
}

const warned = new Set<string>();
export function warnOnce(key: string, message: string): void {
  if (warned.has(key)) return;
  warned.add(key);
  process.stderr.write(`warning: ${message}\n`);
}

interface IpAddr {
  ifname?: string;
  flags?: string[];
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

const ensured = new Map<string, Promise<Bridge>>();

/**
 * A bridge `mbuild serve` has just checked, handed to its build workers in the environment
 * (server/worker-facts.ts): a worker trusts it instead of checking the bridge again.
 */
export const BRIDGE_READY_ENV = 'MBUILD_BRIDGE_READY';

export function serializeBridge(b: Bridge): string {
  return JSON.stringify({ name: b.name, subnet: formatSubnet(b.subnet), gateway: b.gateway, nat: b.nat });
}

function handedDown(cfg: BridgeConfig): Bridge | undefined {
  const raw = process.env[BRIDGE_READY_ENV];
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as { name?: unknown; subnet?: unknown; gateway?: unknown; nat?: unknown };
    if (v.name !== cfg.name || typeof v.subnet !== 'string' || typeof v.gateway !== 'string' || typeof v.nat !== 'boolean') return undefined;
    const subnet = tryParseCidr(v.subnet);
    if (!subnet || (cfg.subnet && formatSubnet(parseSubnet(cfg.subnet)) !== v.subnet)) return undefined;
    // deleted since the server's check (a stat, not a tool run): check and make it again here
    if (!existsSync(`/sys/class/net/${cfg.name}/bridge`)) return undefined;
    return { name: v.name, subnet, gateway: v.gateway, nat: v.nat };
  } catch {
    return undefined;
  }
}

/** Forget this process's check of a bridge: the next ensureBridge checks it again. */
export function forgetBridge(name: string): void {
  ensured.delete(name);
}

/** The bridge, created (or checked) once per process. */
export function ensureBridge(cfg: BridgeConfig = bridgeConfig()): Promise<Bridge> {
  let p = ensured.get(cfg.name);
  if (!p) {
    const given = handedDown(cfg);
    if (given) {
      p = Promise.resolve(given);
      ensured.set(cfg.name, p);
      return p;
    }
    p = withNetLock(cfg.name, () => setUp(cfg));
    ensured.set(cfg.name, p);
    p.catch(() => ensured.delete(cfg.name));
  }
  return p;
}

async function hostSubnets(exclude: string): Promise<Subnet[]> {
  const routes = (await ipJson<{ dst?: string; dev?: string }[]>(['-4', 'route', 'show'])) ?? [];
  const addrs = (await ipJson<IpAddr[]>(['-4', 'addr', 'show'])) ?? [];
  const out: Subnet[] = [];
  for (const r of routes) {
    if (!r.dst || r.dst === 'default' || r.dev === exclude) continue;
    const s = tryParseCidr(r.dst);
    if (s) out.push(s);
  }
  for (const a of addrs) {
    if (a.ifname === exclude) continue;
    for (const i of a.addr_info ?? []) {
      const s = i.local ? tryParseCidr(`${i.local}/${i.prefixlen ?? 32}`) : undefined;
      if (s) out.push(s);
    }
  }
  return out;
}

async function chooseSubnet(cfg: BridgeConfig): Promise<Subnet> {
  const taken = await hostSubnets(cfg.name);
  if (cfg.subnet) {
    const want = parseSubnet(cfg.subnet);
    const clash = taken.find((t) => overlaps(t, want));
    if (clash) throw new NetworkError(`subnet ${cfg.subnet} for ${cfg.name} overlaps the host's ${formatSubnet(clash)}: choose another with MBUILD_SUBNET`);
    return want;
  }
  for (const c of CANDIDATE_SUBNETS) {
    const s = parseSubnet(c);
    if (!taken.some((t) => overlaps(t, s))) return s;
  }
  throw new NetworkError(`every candidate subnet for ${cfg.name} clashes with a host route: set one with MBUILD_SUBNET`);
}

/** `p`, with a rejection counted as handled until someone awaits it (it may never be, on an early throw). */
function early<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/**
 * Once per process, so once per build: each check is a tool run (10-100 ms each under load, nft
 * and iptables-nft the slowest), so the independent ones run at the same time, and one
 * iptables-save stands for the per-rule `iptables -C` and `-S` runs.
 */
async function setUp(cfg: BridgeConfig): Promise<Bridge> {
  const name = cfg.name;
  if (!findTool('ip')) throw new NetworkError('ip (iproute2) is not installed: it is needed for the bridge network');
  // the nft table does not need the bridge; the port entries (which need the subnet) come later
  const spoofP = early(span('net.anti-spoofing', () => ensureAntiSpoofing(name)));
  const rulesP = early(findTool('iptables') ? span('net.iptables-save', () => ruleSnapshot()) : Promise.resolve(undefined));
  const portsP = early(span('net.ports', () => ipJson<{ ifname: string }[]>(['link', 'show', 'master', name])));
  const [stored, links] = await Promise.all([readState(name), span('net.addr', () => ipJson<IpAddr[]>(['-4', 'addr', 'show', 'dev', name]))]);
  const st: NetState = stored ?? { subnet: '', gateway: '', allocs: {} };
  const link = links?.[0];
  let subnet: Subnet;
  let gw: number;
  const inet = link?.addr_info?.find((a) => a.family === 'inet' && a.local);
  if (link && inet) {
    // an existing bridge keeps its subnet
    subnet = tryParseCidr(`${inet.local}/${inet.prefixlen ?? 32}`)!;
    gw = ipToInt(inet.local!)!;
    if (cfg.subnet && formatSubnet(parseSubnet(cfg.subnet)) !== formatSubnet(subnet)) {
      warnOnce(`subnet-${name}`, `bridge ${name} already exists with subnet ${formatSubnet(subnet)}; MBUILD_SUBNET=${cfg.subnet} is ignored`);
    }
    if (!link.flags?.includes('UP')) await ip([`link set ${name} up`], `bringing up ${name}`);
  } else {
    subnet = await chooseSubnet(cfg);
    gw = gatewayOf(subnet);
    const mac = ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
    const lines = link ? [] : [`link add ${name} address ${mac} type bridge`];
    lines.push(`addr add ${intToIp(gw)}/${subnet.prefix} dev ${name}`, `link set ${name} up`);
    await ip(lines, `creating the bridge ${name}`);
  }
  if (st.subnet && st.subnet !== formatSubnet(subnet)) {
    st.allocs = {}; // the record of an older bridge
    st.portsUpTo = undefined;
  }
  st.subnet = formatSubnet(subnet);
  st.gateway = intToIp(gw);
  const nat = await span('net.nat', async () => setUpNat(name, subnet, st, await rulesP));
  const spoof = await spoofP;
  let spoofError = spoof.error;
  if (!spoofError && (spoof.created || st.portsUpTo === undefined)) {
    // every port the allocation can hand out, once (a step then adds nothing)
    const last = lastPortIndex(size(subnet));
    const addrs: string[] = [];
    for (let i = 2; i <= last; i++) addrs.push(intToIp(subnet.base + i));
    spoofError = await addPorts(name, addrs);
    st.portsUpTo = spoofError ? undefined : last;
  }
  if (spoofError) warnOnce('anti-spoofing', `cannot filter ARP/IP spoofing on the ${name} bridge (${spoofError}): a sandbox could pose as another on it (install nftables)`);
  await span('net.sweep', async () => sweep(name, st, (await portsP) ?? [], await rulesP));
  await writeState(name, st);
  return { name, subnet, gateway: intToIp(gw), nat };
}

export interface Rule {
  table: 'nat' | 'filter';
  chain: string;
  insert?: boolean;
  spec: string[];
}

function bridgeRules(name: string, subnet: Subnet): Rule[] {
  const tag = ['-m', 'comment', '--comment', `mbuild:${name}`];
  return [
    { table: 'nat', chain: 'POSTROUTING', spec: ['-s', formatSubnet(subnet), '!', '-o', name, ...tag, '-j', 'MASQUERADE'] },
    { table: 'filter', chain: 'FORWARD', insert: true, spec: ['-i', name, ...tag, '-j', 'ACCEPT'] },
    { table: 'filter', chain: 'FORWARD', insert: true, spec: ['-o', name, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...tag, '-j', 'ACCEPT'] },
    // sandboxes do not reach each other through the host either (inserted last: it comes first)
    { table: 'filter', chain: 'FORWARD', insert: true, spec: ['-i', name, '-o', name, ...tag, '-j', 'DROP'] },
  ];
}

/**
 * The iptables rules now, from one iptables-save: the tables that exist (it lists only those; -S
 * would not tell) and each table's rules as `-A CHAIN ...` lines, quotes removed. Undefined when it
 * cannot be run.
 */
interface RuleSnapshot {
  tables: Set<string>;
  rules: Map<string, string[]>;
}

async function ruleSnapshot(): Promise<RuleSnapshot | undefined> {
  const r = await runTool('iptables-save', []).catch(() => undefined);
  if (!r) return undefined;
  const snap: RuleSnapshot = { tables: new Set(), rules: new Map() };
  let table: string[] | undefined;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('*')) {
      const t = line.slice(1).trim();
      snap.tables.add(t);
      snap.rules.set(t, (table = []));
    } else if (line.startsWith('-A ') && table) table.push(line.replace(/"/g, ''));
  }
  return snap;
}

/** A rule as iptables-save prints it (quotes removed). */
function savedForm(r: Rule): string {
  return ['-A', r.chain, ...r.spec].join(' ');
}

async function isNftBackend(): Promise<boolean> {
  const r = await iptables(['--version']).catch(() => undefined);
  return Boolean(r?.stdout.includes('nf_tables'));
}

/**
 * Adds a rule unless it is there; returns false (with iptables' message) when it cannot. A rule
 * found in `snap` (exactly as iptables-save prints it) needs no `iptables -C`; one not found there
 * is checked with -C all the same (iptables may print it differently).
 */
export async function ensureRule(r: Rule, st?: NetState, snap?: RuleSnapshot): Promise<string | undefined> {
  if (snap?.rules.get(r.table)?.includes(savedForm(r))) return undefined;
  const check = await iptables(['-t', r.table, '-C', r.chain, ...r.spec]);
  if (check.code === 0) return undefined;
  const add = await iptables(['-t', r.table, r.insert ? '-I' : '-A', r.chain, ...r.spec]);
  if (add.code !== 0) return add.stderr.trim() || `iptables exited with ${add.code}`;
  if (st && snap && !snap.tables.has(r.table) && (await isNftBackend())) {
    st.tablesCreated = [...new Set([...(st.tablesCreated ?? []), r.table])];
    snap.tables.add(r.table);
  }
  return undefined;
}

export async function deleteRule(r: Rule): Promise<void> {
  await iptables(['-t', r.table, '-D', r.chain, ...r.spec]).catch(() => undefined);
}

async function setUpNat(name: string, subnet: Subnet, st: NetState, snap: RuleSnapshot | undefined): Promise<boolean> {
  if (!findTool('iptables')) {
    warnOnce('no-iptables', `iptables is not installed: the ${name} bridge has no NAT, so sandboxes on it cannot reach beyond this host (install iptables)`);
    return false;
  }
  const known = snap ?? { tables: new Set<string>(), rules: new Map<string, string[]>() };
  for (const r of bridgeRules(name, subnet)) {
    const err = await ensureRule(r, st, known);
    if (err) {
      warnOnce('iptables-failed', `cannot add the iptables rules of the ${name} bridge (${err}): sandboxes on it cannot reach beyond this host`);
      return false;
    }
  }
  const fwd = (await fs.readFile('/proc/sys/net/ipv4/ip_forward', 'utf8').catch(() => '')).trim();
  if (fwd === '0') {
    await fs.writeFile('/proc/sys/net/ipv4/ip_forward', '1').catch(() => undefined);
    st.ipForwardWas ??= '0';
  }
  return true;
}

/** Our rules in a table as `iptables -S` (or iptables-save) prints them, with the comment that tags them. */
async function taggedRules(table: 'nat' | 'filter', snap?: RuleSnapshot): Promise<{ args: string[]; comment: string }[]> {
  const lines = snap ? snap.rules.get(table) ?? [] : ((await iptables(['-t', table, '-S']).catch(() => undefined))?.stdout ?? '').split('\n');
  const out: { args: string[]; comment: string }[] = [];
  for (const line of lines) {
    const m = / --comment "?(mbuild[^ "]*)"?/.exec(line);
    if (line.startsWith('-A ') && m) out.push({ args: line.slice(3).replace(/"/g, '').split(' '), comment: m[1] });
  }
  return out;
}

/**
 * Port rules carry `mbuild-port:<bridge>:<pid>:<start>`: the owner is the `mbuild run` helper. `snap`:
 * the rules as they were a moment ago (a dead owner's rules were there already).
 */
async function sweepPortRules(name: string, all: boolean, snap?: RuleSnapshot): Promise<void> {
  if (!findTool('iptables')) return;
  for (const table of ['nat', 'filter'] as const) {
    for (const r of await taggedRules(table, snap)) {
      const m = /^mbuild-port:([^:]+):(\d+):(\d+)$/.exec(r.comment);
      const mine = r.comment === `mbuild:${name}`;
      if (m && m[1] === name && (all || !ownerAlive({ pid: Number(m[2]), start: m[3] }))) await iptables(['-t', table, '-D', ...r.args]);
      else if (mine && all) await iptables(['-t', table, '-D', ...r.args]);
    }
  }
}

/** Under the lock: forget dead owners' addresses, delete veths nobody owns, drop dead owners' port rules. */
async function sweep(name: string, st: NetState, links: { ifname: string }[], snap: RuleSnapshot | undefined): Promise<void> {
  for (const [addr, a] of Object.entries(st.allocs)) if (!ownerAlive(a)) delete st.allocs[addr];
  const live = new Set(Object.values(st.allocs).map((a) => a.veth));
  const stale = links.map((l) => l.ifname).filter((n) => n.startsWith(VETH_PREFIX) && !live.has(n));
  for (const n of stale) await ip([`link del ${n}`], `removing ${n}`).catch(() => undefined);
  await sweepPortRules(name, false, snap);
}

/**
 * Removes the bridge, its rules, its record, and what mbuild changed for it (ip_forward, iptables
 * tables it created). For tests and for uninstalling; running sandboxes on it lose their network.
 */
export async function teardownBridge(name: string = bridgeConfig().name): Promise<void> {
  ensured.delete(name);
  await withNetLock(name, async () => {
    const st = await readState(name);
    const links = (await ipJson<{ ifname: string }[]>(['link', 'show', 'master', name])) ?? [];
    for (const l of links) await ip([`link del ${l.ifname}`], `removing ${l.ifname}`).catch(() => undefined);
    if (await ipJson(['link', 'show', 'dev', name])) await ip([`link del ${name}`], `removing the bridge ${name}`);
    await sweepPortRules(name, true);
    await removeAntiSpoofing(name);
    if (st?.tablesCreated?.length && findTool('nft')) {
      for (const t of st.tablesCreated) {
        const rules = await iptables(['-t', t, '-S']).catch(() => undefined);
        const empty = rules && !rules.stdout.split('\n').some((l) => l.startsWith('-A ') || l.startsWith('-N '));
        if (empty) await runTool('nft', ['delete', 'table', 'ip', t]).catch(() => undefined);
      }
    }
    if (st?.ipForwardWas !== undefined) {
      // another mbuild bridge still needs forwarding: hand the original value over to it
      const others = (await fs.readdir(stateDir()).catch(() => [] as string[])).filter((f) => f.endsWith('.json') && f !== `${name}.json`);
      const heir = others.length ? await readState(others[0].slice(0, -5)) : undefined;
      if (heir) {
        heir.ipForwardWas ??= st.ipForwardWas;
        await writeState(others[0].slice(0, -5), heir);
      } else {
        await fs.writeFile('/proc/sys/net/ipv4/ip_forward', st.ipForwardWas).catch(() => undefined);
      }
    }
    await removeState(name);
  });
}
