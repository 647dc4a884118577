/**
 * `type=local` caches: an OCI image layout directory (oci-layout, index.json, blobs/sha256/),
 * the cache manifest tagged `latest`, as BuildKit writes it. `skopeo inspect oci:DIR:latest`
 * reads it. Exports hold DIR/.mbuild-lock, so two builds writing one directory merge in turn.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CacheBackend } from '../../registry/cache-backend.js';
import type { FetchedManifest } from '../../registry/client.js';
import { MediaType, type Descriptor, type Index } from '../../store/oci.js';
import { assertDigest, hex, sha256 } from '../../store/digest.js';
import { tempSibling, writeFileAtomic } from '../../store/fsutil.js';
import { withLock } from '../../store/lock.js';
import { DigestMismatchError } from '../../util/errors.js';

const TAG = 'latest';
const REF_NAME = 'org.opencontainers.image.ref.name';
const MAX_SMALL = 4 << 20;

export class LocalCacheBackend implements CacheBackend {
  readonly id: string;
  readonly label: string;
  constructor(readonly dir: string) {
    this.dir = path.resolve(dir);
    this.id = `local:${this.dir}`;
    this.label = this.dir;
  }

  blobPath(digest: string): string {
    return path.join(this.dir, 'blobs', 'sha256', hex(assertDigest(digest)));
  }

  private async readIndex(): Promise<Index | undefined> {
    try {
      return JSON.parse(await fs.readFile(path.join(this.dir, 'index.json'), 'utf8')) as Index;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new DigestMismatchError(`${this.dir}/index.json is not a readable OCI index: ${(err as Error).message}`);
    }
  }

  async readManifest(reference?: string): Promise<FetchedManifest | undefined> {
    let desc: Descriptor | undefined;
    if (reference?.startsWith('sha256:')) desc = { mediaType: MediaType.manifest, digest: reference, size: -1 };
    else {
      const index = await this.readIndex();
      if (!index) return undefined;
      const all = Array.isArray(index.manifests) ? index.manifests : [];
      desc = all.find((m) => m.annotations?.[REF_NAME] === TAG) ?? (all.length === 1 ? all[0] : undefined);
      if (!desc) return undefined;
    }
    const bytes = await this.readSmall(desc.digest, desc.size);
    return { bytes, digest: desc.digest, mediaType: desc.mediaType };
  }

  private async readSmall(digest: string, size: number): Promise<Buffer> {
    const p = this.blobPath(digest);
    const st = await fs.stat(p);
    if (st.size > MAX_SMALL) throw new DigestMismatchError(`${p} is ${st.size} bytes, more than the ${MAX_SMALL} allowed for it`);
    const bytes = await fs.readFile(p);
    if ((size >= 0 && bytes.length !== size) || sha256(bytes) !== digest) throw new DigestMismatchError(`${p} does not match its digest`);
    return bytes;
  }

  readSmallBlob(desc: Descriptor): Promise<Buffer> {
    return this.readSmall(desc.digest, desc.size);
  }

  openBlob(desc: Descriptor): Readable {
    return createReadStream(this.blobPath(desc.digest));
  }

  async hasBlob(digest: string): Promise<boolean> {
    return fs.access(this.blobPath(digest)).then(
      () => true,
      () => false,
    );
  }

  async putBlob(desc: Descriptor, open: () => Readable): Promise<void> {
    const dest = this.blobPath(desc.digest);
    if (await this.hasBlob(desc.digest)) return;
    await fs.mkdir(path.dirname(dest), { recursive: true });
    const tmp = tempSibling(dest);
    const hash = createHash('sha256');
    let size = 0;
    try {
      const src = open();
      src.on('data', (c: Buffer) => {
        hash.update(c);
        size += c.length;
      });
      await pipeline(src, createWriteStream(tmp));
      const got = 'sha256:' + hash.digest('hex');
      if (got !== desc.digest || size !== desc.size) throw new DigestMismatchError(`cache blob ${desc.digest}: wrote ${got} (${size} bytes)`);
      await fs.rename(tmp, dest);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  async putManifest(bytes: Buffer): Promise<void> {
    const digest = sha256(bytes);
    await writeFileAtomic(this.blobPath(digest), bytes);
    await writeFileAtomic(path.join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const index: Index = {
      schemaVersion: 2,
      mediaType: MediaType.index,
      manifests: [{ mediaType: MediaType.manifest, digest, size: bytes.length, annotations: { [REF_NAME]: TAG } }],
    };
    await writeFileAtomic(path.join(this.dir, 'index.json'), JSON.stringify(index));
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(path.join(this.dir, '.mbuild-lock'), fn);
  }

  /** Remove blobs the current manifest does not name (eviction's second half; under exclusive()). */
  async removeUnreferenced(keep: Set<string>): Promise<number> {
    let freed = 0;
    const dir = path.join(this.dir, 'blobs', 'sha256');
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      if (keep.has(`sha256:${name}`) || !/^[a-f0-9]{64}$/.test(name)) continue;
      const p = path.join(dir, name);
      freed += (await fs.stat(p).catch(() => ({ size: 0 }))).size;
      await fs.rm(p, { force: true });
    }
    return freed;
  }
}
