/**
 * The image a build names (FROM, COPY --from=<image>): from the store, or pulled when the store
 * lacks it (always checked against the registry with `pull: true`, as `--pull` asks).
 */
import type { Store, ResolvedImage } from '../store/store.js';
import type { ProgressReporter } from '../util/progress.js';
import type { Platform } from '../store/oci.js';
import { isDigest } from '../store/digest.js';
import { ImageNotFoundError } from '../util/errors.js';
import { parseRemote, storeName } from './reference.js';
import { pullImage } from './pull.js';

export interface EnsureOptions {
  /** check the registry even when the store has the image */
  pull?: boolean;
  progress?: ProgressReporter;
  platform?: Platform;
  /**
   * a single-platform image of another platform is an error (`mbuild pull --platform`); a build
   * takes it with a warning instead, as BuildKit does (InvalidBaseImagePlatform)
   */
  strictPlatform?: boolean;
}

const inflight = new Map<string, Promise<ResolvedImage>>();

export async function ensureImage(store: Store, ref: string, opts: EnsureOptions = {}): Promise<ResolvedImage> {
  // an image id or digest names local content only
  if (isDigest(ref) || /^[a-f0-9]{12,64}$/.test(ref)) {
    const local = await store.resolveImage(ref, opts.platform);
    if (local) return local;
    if (isDigest(ref)) throw new ImageNotFoundError(ref);
  }
  let name: string;
  let pinned: boolean;
  try {
    const remote = parseRemote(ref);
    name = storeName(remote);
    pinned = remote.digest !== undefined;
  } catch (err) {
    const local = await store.resolveImage(ref, opts.platform).catch(() => undefined);
    if (local) return local;
    throw err;
  }
  // content-addressed: a pinned image found locally needs no check
  if (!opts.pull || pinned) {
    const local = (await store.resolveImage(ref, opts.platform).catch(() => undefined)) ?? (await store.resolveImage(name, opts.platform));
    if (local) return local;
  }
  const key = `${store.root}|${name}|${opts.platform ? JSON.stringify(opts.platform) : ''}`;
  let p = inflight.get(key);
  if (!p) {
    p = (async () => {
      const res = await pullImage(store, ref, { progress: opts.progress, platform: opts.platform, explicitPlatform: opts.strictPlatform ?? opts.platform !== undefined });
      return { ...(await store.requireImage(res.manifestDigest)), name: res.name, ...(res.indexDigest ? { indexDigest: res.indexDigest } : {}) };
    })();
    inflight.set(key, p);
    p.then(
      () => inflight.delete(key),
      () => inflight.delete(key),
    );
  }
  return p;
}
