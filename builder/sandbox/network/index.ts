/**
 * Network modes of a sandbox, as Docker's: bridge (own namespace, eth0 on the mbuild0 bridge, NAT out),
 * host (the host's namespace), none (own namespace with only lo), join (the namespace of a running
 * container, `--network container:NAME`). 'default' is bridge, falling back to host with one warning
 * when the bridge cannot be made or has no NAT (no iptables), so builds that need the outside work.
 */
import { readFile } from 'node:fs/promises';
import { ensureBridge, warnOnce, type Bridge } from './bridge.js';

export { attachToBridge, type Attachment } from './attach.js';
export { ensureBridge, teardownBridge, bridgeConfig, warnOnce, type Bridge } from './bridge.js';

export type NetworkRequest = 'default' | 'bridge' | 'host' | 'none' | { join: string };

export interface NetworkPlan {
  mode: 'bridge' | 'host' | 'none' | 'join';
  bridge?: Bridge;
  /** join: the namespace file, e.g. /proc/123/ns/net */
  netns?: string;
}

export async function planNetwork(req: NetworkRequest): Promise<NetworkPlan> {
  if (typeof req === 'object') return { mode: 'join', netns: req.join };
  if (req === 'host' || req === 'none') return { mode: req };
  let bridge: Bridge;
  try {
    bridge = await ensureBridge();
  } catch (err) {
    if (req === 'bridge') throw err;
    warnOnce('bridge-fallback', `cannot set up the bridge network (${(err as Error).message}); RUN steps use the host network instead (--network none isolates them)`);
    return { mode: 'host' };
  }
  if (!bridge.nat && req === 'default') {
    warnOnce('nat-fallback', `no NAT for the ${bridge.name} bridge (see above); RUN steps use the host network instead (--network bridge forces the bridge, --network none isolates)`);
    return { mode: 'host' };
  }
  return { mode: 'bridge', bridge };
}

let hostResolv: Promise<string> | undefined;

/**
 * /etc/resolv.conf for a mode: the host's for host; for a namespace of its own, the host's without
 * loopback name servers (unreachable from there), or Google's public resolvers when none is left, as
 * Docker does; empty for none.
 */
export async function resolvConfFor(mode: NetworkPlan['mode']): Promise<string> {
  if (mode === 'none') return '';
  hostResolv ??= readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const text = await hostResolv;
  if (mode === 'host') return text;
  const lines = text.split('\n');
  const isLoopback = (l: string) => /^\s*nameserver\s+(127\.|::1\s*$|0\.0\.0\.0)/.test(l);
  const kept = lines.filter((l) => !isLoopback(l));
  if (!kept.some((l) => /^\s*nameserver\s/.test(l))) {
    const rest = kept.filter((l) => l.trim() !== '').join('\n');
    return `${rest ? rest + '\n' : ''}nameserver 8.8.8.8\nnameserver 8.8.4.4\n`;
  }
  return kept.join('\n');
}
