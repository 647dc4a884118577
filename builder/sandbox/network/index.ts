/**
 * Network modes of a sandbox, as Docker's: bridge (own namespace, eth0 on the mbuild0 bridge, NAT out),
 * host (the host's namespace), none (own namespace with only lo), join (the namespace of a running
 * container, `--network container:NAME`). 'default' is bridge: when the bridge cannot be made the
 * step fails; it never falls back to the host's network.
 */
import { readFile } from 'node:fs/promises';
import { ensureBridge, type Bridge } from './bridge.js';
import { NetworkError } from '../../../util/errors.js';
import { isRootless } from '../../../util/rootless.js';
import { checkSlirp, SLIRP } from './slirp.js';
import { readlinkSync } from 'node:fs';

export { attachToBridge, type Attachment } from './attach.js';
export { attachSlirp, type SlirpAttachment } from './slirp.js';
export { ensureBridge, teardownBridge, bridgeConfig, warnOnce, type Bridge } from './bridge.js';

export type NetworkRequest = 'default' | 'bridge' | 'host' | 'none' | { join: string };

export interface NetworkPlan {
  /** slirp: rootless, in place of bridge (slirp.ts) */
  mode: 'bridge' | 'slirp' | 'host' | 'none' | 'join';
  bridge?: Bridge;
  /** join: the namespace file, e.g. /proc/123/ns/net */
  netns?: string;
}

export async function planNetwork(req: NetworkRequest): Promise<NetworkPlan> {
  if (typeof req === 'object') {
    if (isRootless()) checkSameUserNamespace(req.join);
    return { mode: 'join', netns: req.join };
  }
  if (req === 'host' || req === 'none') return { mode: req };
  if (isRootless()) {
    await checkSlirp();
    return { mode: 'slirp' };
  }
  // never the host's network in place of the bridge: that would hand a step the host's loopback
  // services and addresses without anyone asking for them. Without NAT the bridge still isolates
  // (ensureBridge has warned that it reaches only this host).
  try {
    return { mode: 'bridge', bridge: await ensureBridge() };
  } catch (err) {
    const why = (err as Error).message;
    throw new NetworkError(`cannot set up the bridge network for RUN steps (${why}); fix that, or choose --network none (no network) or --network host (the host's) explicitly`, err);
  }
}

/**
 * Starts what planNetwork(req) will need (the bridge's first check in this process, ~0.1-0.9 s)
 * without waiting for it, so a step that is about to run overlaps it with its own set-up. A failure
 * is reported by the planNetwork call that follows, which tries again.
 */
export function warmNetwork(req: NetworkRequest): void {
  if (typeof req === 'object' || req === 'host' || req === 'none') return;
  try {
    ensureBridge().catch(() => undefined);
  } catch {
    // a bad MBUILD_BRIDGE: planNetwork says so
  }
}

let hostResolv: Promise<string> | undefined;

/**
 * /etc/resolv.conf for a mode: the host's for host; for a namespace of its own, the host's without
 * loopback name servers (unreachable from there), or Google's public resolvers when none is left, as
 * Docker does; empty for none.
 */
export async function resolvConfFor(mode: NetworkPlan['mode']): Promise<string> {
  if (mode === 'none') return '';
  if (mode === 'slirp') {
    // slirp4netns's DNS forwarder, with the host's search and options lines
    hostResolv ??= readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    const rest = (await hostResolv).split('\n').filter((l) => /^\s*(search|domain|options)\s/.test(l));
    return [...rest, `nameserver ${SLIRP.dns}`, ''].join('\n');
  }
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

/**
 * Rootless: every mbuild command has a user namespace of its own, and a network namespace made in
 * another one cannot be joined (setns needs CAP_SYS_ADMIN over its owner).
 */
function checkSameUserNamespace(netns: string): void {
  const m = /^\/proc\/(\d+)\/ns\/net$/.exec(netns);
  let theirs: string | undefined;
  try {
    theirs = m ? readlinkSync(`/proc/${m[1]}/ns/user`) : undefined;
  } catch {
    theirs = undefined;
  }
  if (theirs !== undefined && theirs === readlinkSync('/proc/self/ns/user')) return;
  throw new NetworkError('--network container:NAME does not work without root: each mbuild command runs in a user namespace of its own, and one cannot join the network of another');
}
