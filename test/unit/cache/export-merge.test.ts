/**
 * Concurrent exports to one registry ref (builder/cache/remote-export.ts mergeAndWrite), with the
 * interleaving forced: another writer that read the cache before our write lands its write, without
 * our steps, after our first read-back. The registry has no compare-and-swap; the second read-back
 * must see our steps gone, merge with the other writer's, and write both.
 */
import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import type { CacheBackend } from '../../../registry/cache-backend.js';
import type { Descriptor } from '../../../store/oci.js';
import { mergeAndWrite, readBackDelay } from '../../../builder/cache/remote-export.js';
import { decodeCache, encodeCache, type CachedStep } from '../../../builder/cache/remote-format.js';
import { DEFAULT_MAX_AGE_MS } from '../../../builder/cache/remote-spec.js';

const sha = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** A registry tag in memory; `onPut` runs after each manifest write, `onRead` after each manifest read. */
class FakeRegistry implements CacheBackend {
  readonly id = 'fake';
  readonly label = 'fake/cache:main';
  manifest?: Buffer;
  readonly blobs = new Map<string, Buffer>();
  onRead?: (n: number) => void;
  reads = 0;
  puts = 0;
  async readManifest() {
    const m = this.manifest;
    this.onRead?.(++this.reads);
    return m ? { bytes: m, digest: sha(m), mediaType: 'application/vnd.oci.image.manifest.v1+json' } : undefined;
  }
  async readSmallBlob(desc: Descriptor) {
    const b = this.blobs.get(desc.digest);
    if (!b) throw new Error(`no blob ${desc.digest}`);
    return b;
  }
  openBlob(desc: Descriptor) {
    return Readable.from([this.blobs.get(desc.digest)!]);
  }
  async hasBlob(digest: string) {
    return this.blobs.has(digest);
  }
  async putBlob(desc: Descriptor, open: () => Readable) {
    const chunks: Buffer[] = [];
    for await (const c of open()) chunks.push(c as Buffer);
    this.blobs.set(desc.digest, Buffer.concat(chunks));
  }
  async putManifest(bytes: Buffer) {
    this.puts++;
    this.manifest = bytes;
  }
  exclusive<T>(fn: () => Promise<T>) {
    return fn();
  }
  /** what another writer's export would put: its steps and what it read (`base`) */
  writeAsOther(steps: CachedStep[], base: Map<string, CachedStep>) {
    const enc = encodeCache([...base.values(), ...steps], undefined);
    this.blobs.set(sha(enc.config), enc.config);
    this.manifest = enc.manifest;
  }
  keys(): string[] {
    const m = JSON.parse(this.manifest!.toString());
    return [...decodeCache(m, this.blobs.get(m.config.digest)!).steps.keys()].sort();
  }
}

const now = new Date().toISOString();
const step = (name: string): CachedStep & { upload: boolean } => ({ key: sha(name), parent: 'scratch', created: now, used: now, upload: false });
const spec = { type: 'registry' as const, ref: 'fake/cache:main', mode: 'min' as const, ignoreError: false, maxAgeMs: DEFAULT_MAX_AGE_MS };
const explain = { scopes: {} };

describe('merging exports to one registry ref', () => {
  it('a write that replaced ours after our first read-back is seen at the second, merged and written again', async () => {
    const reg = new FakeRegistry();
    const theirs = [step('theirs-1'), step('theirs-2')];
    const ours = [step('ours-1'), step('ours-2')];
    // reads of our export: 1 the merge base, 2 the check before writing, 3 the first read-back;
    // right after it, the other writer (which read the empty tag) lands its write
    reg.onRead = (n) => {
      if (n === 3) reg.writeAsOther(theirs, new Map());
    };
    await mergeAndWrite(reg, spec, ours, explain, undefined as never, now);
    expect(reg.keys()).toEqual([...ours, ...theirs].map((s) => s.key).sort());
    expect(reg.puts).toBe(2); // the clobbered write, then the merged one
  });

  it('a write that landed between our merge and our check makes us merge with it before writing', async () => {
    const reg = new FakeRegistry();
    const theirs = [step('theirs-3')];
    const ours = [step('ours-3')];
    reg.onRead = (n) => {
      if (n === 1) reg.writeAsOther(theirs, new Map());
    };
    await mergeAndWrite(reg, spec, ours, explain, undefined as never, now);
    expect(reg.keys()).toEqual([...ours, ...theirs].map((s) => s.key).sort());
    expect(reg.puts).toBe(1);
  });

  it('waits longer before the second read-back on a slower registry', () => {
    expect(readBackDelay(10)).toBeGreaterThanOrEqual(150);
    expect(readBackDelay(10)).toBeLessThan(300);
    expect(readBackDelay(400)).toBeGreaterThanOrEqual(1200);
  });
});
