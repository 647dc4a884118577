/** The local store under --root: content (blobs), image names, snapshots and build cache. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ContentStore } from './content.js';
import { ImageIndex } from './images.js';
import type { Descriptor, ImageConfig, Index, Manifest } from './oci.js';
import { isHostPlatform, pickPlatformEntry, platformMatches, targetPlatform, type TargetPlatform } from '../util/platform.js';
import { normalizeName } from './reference.js';
import { ImageNotFoundError } from '../util/errors.js';
import { isDigest } from './digest.js';
import { layout } from './layout.js';
import { defaultRoot } from './default-root.js';
import { recoverStore, registerUse, waitForPrune, type RecoveryReport } from './recovery.js';

export { defaultRoot };

/**
 * ROOT is its owner's alone (0700), also when an older mbuild made it 0755: layers hold whatever RUN
 * steps and images put there (setuid-root copies, device nodes), which must not be reachable by the
 * host's other users through ROOT/snapshots/.../fs. Nothing below needs another user's access: the
 * sandbox reaches its layers through mounts made as root.
 */
async function makePrivate(root: string): Promise<void> {
  await fs.mkdir(path.dirname(root), { recursive: true });
  await fs.mkdir(root, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  const st = await fs.stat(root);
  if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) await fs.chmod(root, st.mode & 0o7700);
}

export interface ResolvedImage {
  name?: string;
  manifestDigest: string;
  manifest: Manifest;
  config: ImageConfig;
  configDigest: string;
  /** the image index (multi-platform image) the manifest was picked from, when the name holds one */
  indexDigest?: string;
}

/** Is this parsed blob an image index / manifest list (rather than a manifest)? */
export function isIndexJson(json: unknown): json is Index {
  return typeof json === 'object' && json !== null && Array.isArray((json as Index).manifests);
}

export class Store {
  readonly content: ContentStore;
  readonly images: ImageIndex;
  readonly tmpDir: string;
  /** what Store.open swept: half-finished work of killed runs (store/recovery.ts) */
  recovered?: RecoveryReport;
  private constructor(readonly root: string) {
    this.content = new ContentStore(root);
    this.images = new ImageIndex(root);
    this.tmpDir = layout.tmp(root);
  }

  static async open(root = defaultRoot()): Promise<Store> {
    const store = new Store(path.resolve(root));
    await makePrivate(store.root);
    await fs.mkdir(store.tmpDir, { recursive: true });
    await fs.mkdir(store.content.dir, { recursive: true });
    // announce this process (prune waits for it), wait out a running prune, sweep what killed runs left
    await registerUse(store.root);
    await waitForPrune(store.root);
    store.recovered = await recoverStore(store.root).catch(() => undefined);
    return store;
  }

  /** A fresh private temp dir inside the store (same filesystem as blobs and snapshots). */
  async mkTemp(prefix: string): Promise<string> {
    return fs.mkdtemp(path.join(this.tmpDir, `${prefix}-${process.pid}-`));
  }

  /**
   * Find an image by name (any docker-style spelling) or by manifest digest. A name (or digest) of
   * a multi-platform image index gives its manifest for `platform` (default: this machine's), when
   * the store has that one.
   */
  async resolveImage(nameOrDigest: string, wanted?: TargetPlatform): Promise<ResolvedImage | undefined> {
    const platform = wanted ?? targetPlatform();
    let digest: string | undefined;
    let name: string | undefined;
    if (isDigest(nameOrDigest)) {
      digest = nameOrDigest;
    } else {
      name = normalizeName(nameOrDigest);
      digest = (await this.images.get(name))?.digest;
      if (!digest) {
        // an id prefix as `mbuild images` shows it
        if (/^[a-f0-9]{12,64}$/.test(nameOrDigest)) {
          for (const r of await this.images.list()) if (r.digest.slice(7).startsWith(nameOrDigest)) digest = r.digest;
        }
      }
    }
    if (!digest || !(await this.content.has(digest))) return undefined;
    let indexDigest: string | undefined;
    let top = await this.content.readJson<Manifest | Index>(digest);
    for (let depth = 0; isIndexJson(top); depth++) {
      const entry = depth < 2 ? pickPlatformEntry(top.manifests, platform) : undefined;
      if (!entry || !(await this.content.has(entry.digest))) return undefined;
      indexDigest ??= digest;
      digest = entry.digest;
      top = await this.content.readJson<Manifest | Index>(digest);
    }
    const manifest = top;
    const config = await this.content.readJson<ImageConfig>(manifest.config.digest);
    // a single-platform image of another platform than a foreign one asked for is not it (a build
    // for linux/arm64 pulls the arm64 image rather than take the amd64 one it has); for this
    // machine's platform any single image is taken, as before (with the pull's warning, if any)
    if (wanted && !indexDigest && !isHostPlatform(wanted) && !platformMatches({ os: config.os, architecture: config.architecture, variant: config.variant }, wanted)) return undefined;
    return { name, manifestDigest: digest, manifest, config, configDigest: manifest.config.digest, ...(indexDigest ? { indexDigest } : {}) };
  }

  /** The platform entries of an image index in the store (attestation manifests left out). */
  async indexEntries(indexDigest: string): Promise<Descriptor[]> {
    const idx = await this.content.readJson<Index>(indexDigest);
    return (idx.manifests ?? []).filter((d) => d.platform && d.platform.os !== 'unknown');
  }

  async requireImage(nameOrDigest: string, platform?: TargetPlatform): Promise<ResolvedImage> {
    const img = await this.resolveImage(nameOrDigest, platform);
    if (!img) throw new ImageNotFoundError(nameOrDigest);
    return img;
  }
}
