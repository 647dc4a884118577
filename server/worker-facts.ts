/**
 * What every build worker would otherwise find out again for itself, found once by the server and
 * handed down in the worker's environment: which snapshotter this store's filesystem takes (a
 * probe mount: two tool runs) and that the bridge, its NAT and its isolation rules are in place
 * (five tool runs and an iptables-save). A build worker lives for one build, so without this each
 * build paid for both; with eight builds at once on two cores that was CPU every build waited for.
 *
 * The bridge is checked again when the last check is older than BRIDGE_RECHECK_MS, so rules someone
 * flushed come back within that time (dockerd sets its rules up once, at start). A failed check
 * hands nothing down: the worker checks for itself and reports the failure where it matters.
 */
import { layout } from '../store/layout.js';
import { chooseSnapshotter, forcedSnapshotter } from '../snapshotter/probe.js';
import { BRIDGE_READY_ENV, bridgeConfig, ensureBridge, forgetBridge, serializeBridge } from '../builder/sandbox/network/bridge.js';
import { isRootless } from '../util/rootless.js';

const BRIDGE_RECHECK_MS = 60_000;

export class WorkerFacts {
  private snapshotter?: Promise<string | undefined>;
  private bridge?: { at: number; ready: Promise<string | undefined> };

  constructor(
    private readonly root: string,
    private readonly log: (line: string) => void,
  ) {}

  /** Environment entries for a build worker (each fact only when the server could establish it). */
  async env(): Promise<NodeJS.ProcessEnv> {
    // never rejects (a failure hands nothing down): the service starts it unawaited, early
    const [snapshotter, bridge] = await Promise.resolve()
      .then(() => Promise.all([this.snapshotterKind(), this.bridgeReady()]))
      .catch(() => [undefined, undefined]);
    return { ...(snapshotter ? { MBUILD_SNAPSHOTTER: snapshotter } : {}), ...(bridge ? { [BRIDGE_READY_ENV]: bridge } : {}) };
  }

  private snapshotterKind(): Promise<string | undefined> {
    if (forcedSnapshotter()) return Promise.resolve(undefined); // the worker inherits the setting
    this.snapshotter ??= chooseSnapshotter(layout.snapshots(this.root)).then(
      ({ kind, why }) => {
        if (why) this.log(`${why}; builds use the copy snapshotter (slower)`);
        return kind;
      },
      () => undefined,
    );
    return this.snapshotter;
  }

  private bridgeReady(): Promise<string | undefined> {
    // rootless builds use slirp4netns, not the bridge
    if (isRootless()) return Promise.resolve(undefined);
    const now = Date.now();
    if (!this.bridge || now - this.bridge.at > BRIDGE_RECHECK_MS) {
      let cfg: ReturnType<typeof bridgeConfig>;
      try {
        cfg = bridgeConfig();
      } catch {
        return Promise.resolve(undefined); // a bad MBUILD_BRIDGE: each worker says so
      }
      forgetBridge(cfg.name);
      const ready = ensureBridge(cfg).then(serializeBridge, () => undefined);
      this.bridge = { at: now, ready };
    }
    return this.bridge.ready;
  }
}
