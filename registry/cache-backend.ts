/**
 * Where a build cache lives: a repository:tag on a registry (this file) or an OCI layout
 * directory (builder/cache/local-backend.ts). The cache itself is an OCI image manifest whose
 * config is the cache config (builder/cache/remote-format.ts); a backend only moves bytes.
 */
import type { Readable } from 'node:stream';
import type { Descriptor } from '../store/oci.js';
import { MediaType } from '../store/oci.js';
import { RegistryClient, MAX_MANIFEST_BYTES, type FetchedManifest } from './client.js';
import { pushEndpoint } from './mirrors.js';
import { displayRef, parseRemote, type RemoteRef } from './reference.js';
import { DigestMismatchError, RegistryNotFoundError } from '../util/errors.js';
import { sha256 } from '../store/digest.js';

export interface CacheBackend {
  /** where the blobs live: two backends with the same id share them (no copy needed) */
  readonly id: string;
  /** for messages: the ref or the directory */
  readonly label: string;
  /** a registry's host and repository (a push to that host can mount the cache's blobs from there) */
  readonly blobSource?: { host: string; repository: string };
  /** The manifest under the cache's tag (or the digest given), undefined when there is none. */
  readManifest(reference?: string): Promise<FetchedManifest | undefined>;
  /** A small blob (a config), read whole and verified. */
  readSmallBlob(desc: Descriptor): Promise<Buffer>;
  /** A blob's bytes; the caller verifies digest and size while it reads. */
  openBlob(desc: Descriptor): Readable;
  hasBlob(digest: string): Promise<boolean>;
  /** Store a blob unless the backend has it. */
  putBlob(desc: Descriptor, open: () => Readable): Promise<void>;
  putManifest(bytes: Buffer): Promise<void>;
  /** Run the read-merge-write of an export under the backend's own lock, when it has one. */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
}

export class RegistryCacheBackend implements CacheBackend {
  readonly id: string;
  readonly label: string;
  private readonly ref: RemoteRef;
  private readonly client: RegistryClient;

  constructor(reference: string, push: boolean) {
    this.ref = parseRemote(reference);
    this.label = displayRef(this.ref);
    this.id = `registry:${this.ref.registry}/${this.ref.repository}`;
    // a cache ref is read and written where it is named: mirrors serve images, not caches
    this.client = new RegistryClient(pushEndpoint(this.ref.registry), this.ref.repository, push);
  }

  get blobSource(): { host: string; repository: string } {
    return { host: this.client.host, repository: this.ref.repository };
  }

  private get tag(): string {
    return this.ref.digest ?? this.ref.tag ?? 'latest';
  }

  async readManifest(reference = this.tag): Promise<FetchedManifest | undefined> {
    try {
      return await this.client.getManifest(reference);
    } catch (err) {
      if (err instanceof RegistryNotFoundError) return undefined;
      throw err;
    }
  }

  async readSmallBlob(desc: Descriptor): Promise<Buffer> {
    if (desc.size > MAX_MANIFEST_BYTES) throw new DigestMismatchError(`blob ${desc.digest} is ${desc.size} bytes, more than the ${MAX_MANIFEST_BYTES} allowed for it`);
    const chunks: Buffer[] = [];
    for await (const c of this.client.blobStream(desc.digest, desc.size)) chunks.push(c as Buffer);
    const bytes = Buffer.concat(chunks);
    if (bytes.length !== desc.size || sha256(bytes) !== desc.digest) throw new DigestMismatchError(`blob ${desc.digest} of ${this.label}: the registry sent other content`);
    return bytes;
  }

  openBlob(desc: Descriptor): Readable {
    return this.client.blobStream(desc.digest, desc.size);
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.client.blobExists(digest);
  }

  async putBlob(desc: Descriptor, open: () => Readable): Promise<void> {
    if (await this.client.blobExists(desc.digest)) return;
    const { location } = (await this.client.startUpload()) as { location: URL };
    await this.client.finishUpload(location, desc.digest, { size: desc.size, open });
  }

  async putManifest(bytes: Buffer): Promise<void> {
    await this.client.putManifest(this.tag, MediaType.manifest, bytes);
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return fn(); // a registry has no lock: the exporter re-reads and merges again when the tag moved
  }
}
