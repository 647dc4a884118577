import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Readable } from 'node:stream';
import { ContentStore } from '../../../store/content.js';
import { rememberGzip } from '../../../store/compress.js';
import { hasLayerBlob, keepLayerTar, openLayerBlob, openLayerTar } from '../../../store/layer-blobs.js';

let work: string;
const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');
const read = async (s: Readable) => {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};

/** A store holding only the gzip twin of `tar`, recorded as the form of `diffId` (a lazy layer). */
async function lazyStore(name: string, tar: Buffer, diffId = sha(tar)) {
  const root = path.join(work, name);
  const store = { root, content: new ContentStore(root) };
  const gz = gzipSync(tar);
  const info = await store.content.ingest(gz);
  await rememberGzip(store, diffId, info);
  return { store, diffId, gz: info.digest };
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-layer-blobs-'));
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a layer kept only as its gzip twin', () => {
  const tar = Buffer.concat([randomBytes(100_000), Buffer.alloc(1024)]);

  it('is there, reads as its tar byte for byte, and as its compressed blob for readers that decompress', async () => {
    const { store, diffId, gz } = await lazyStore('ok', tar);
    expect(existsSync(store.content.path(diffId))).toBe(false);
    expect(await hasLayerBlob(store, diffId)).toBe(true);
    expect((await read(await openLayerTar(store, diffId, tar.length))).equals(tar)).toBe(true);
    expect(sha(await read(await openLayerBlob(store, diffId)))).toBe(gz);
    await keepLayerTar(store, diffId);
    expect(sha(await fs.readFile(store.content.path(diffId)))).toBe(diffId);
  });

  it('a twin whose content is not the diff_id ends its tar stream in an error, and writes no tar', async () => {
    const wrong = sha(Buffer.from('another layer'));
    const { store } = await lazyStore('wrong', tar, wrong);
    await expect(read(await openLayerTar(store, wrong))).rejects.toThrow(/does not match diff_id/);
    await expect(keepLayerTar(store, wrong)).rejects.toThrow();
    expect(existsSync(store.content.path(wrong))).toBe(false);
  });

  it('a declared size that does not match is an error too', async () => {
    const { store, diffId } = await lazyStore('size', tar);
    await expect(read(await openLayerTar(store, diffId, tar.length + 1))).rejects.toThrow(/expected/);
  });

  it('without its twin blob, the layer is not there', async () => {
    const { store, diffId, gz } = await lazyStore('gone', tar);
    await store.content.remove(gz);
    expect(await hasLayerBlob(store, diffId)).toBe(false);
    await expect(openLayerTar(store, diffId)).rejects.toThrow(/missing from the local store/);
  });
});
