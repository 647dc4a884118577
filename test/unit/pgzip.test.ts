/** Parallel gzip: a valid gzip file, the same bytes for the same input however it arrives. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { compresses, createParallelGzip, GZIP_BLOCK } from '../../store/pgzip.js';

/** `data` fed in chunks of the given sizes (cycled), compressed. */
async function compress(data: Buffer, chunkSizes: number[], opts = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = Math.max(1, chunkSizes[i % chunkSizes.length]!);
    chunks.push(data.subarray(at, at + n));
    at += n;
  }
  return buffer(Readable.from(chunks, { objectMode: false }).pipe(createParallelGzip(opts)));
}

function text(n: number): Buffer {
  const line = Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n');
  return Buffer.concat(Array.from({ length: Math.ceil(n / line.length) }, () => line)).subarray(0, n);
}

describe('parallel gzip', () => {
  const sizes = [0, 1, 1000, GZIP_BLOCK - 1, GZIP_BLOCK, GZIP_BLOCK + 1, Math.floor(3.5 * GZIP_BLOCK)];

  it.each(sizes)('%i bytes: gunzip (node and gzip -dc) gives the input back', async (n) => {
    for (const data of [randomBytes(n), text(n)]) {
      const gz = await compress(data, [65536]);
      expect(gz.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
      expect(gunzipSync(gz).equals(data)).toBe(true);
      expect(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 << 20 }).equals(data)).toBe(true);
    }
  });

  it('gives the same bytes whatever the chunking and the concurrency', async () => {
    const data = Buffer.concat([text(GZIP_BLOCK + 12345), randomBytes(2 * GZIP_BLOCK + 7)]);
    const a = await compress(data, [65536], { concurrency: 4 });
    const b = await compress(data, [1, 77777, 3 * GZIP_BLOCK, 4096], { concurrency: 1 });
    const c = await compress(data, [GZIP_BLOCK], { concurrency: 2 });
    expect(b.equals(a)).toBe(true);
    expect(c.equals(a)).toBe(true);
  });

  it('compresses about as well as one gzip stream', async () => {
    const data = text(4 * GZIP_BLOCK);
    const members = await compress(data, [65536]);
    const single = (await import('node:zlib')).gzipSync(data);
    expect(members.length).toBeLessThan(single.length * 1.05 + 200);
  });

  it('stores blocks that do not compress (no bigger than their input), and still compresses the others', async () => {
    expect(compresses(randomBytes(GZIP_BLOCK))).toBe(false);
    expect(compresses(text(GZIP_BLOCK))).toBe(true);
    // one compressible quarter is enough to compress the block
    expect(compresses(Buffer.concat([randomBytes(GZIP_BLOCK - 100_000), text(100_000)]))).toBe(true);
    const data = Buffer.concat([randomBytes(2 * GZIP_BLOCK), text(GZIP_BLOCK)]);
    const gz = await compress(data, [65536]);
    expect(gunzipSync(gz).equals(data)).toBe(true);
    // stored: 5 bytes per 64 KiB deflate block plus the member headers; the text block still shrinks
    expect(gz.length).toBeLessThan(2 * GZIP_BLOCK + 1024 + GZIP_BLOCK / 10);
  });

  it('passes a source error on', async () => {
    const src = new Readable({
      read() {
        this.destroy(new Error('disk on fire'));
      },
    });
    const gz = createParallelGzip();
    src.on('error', (e) => gz.destroy(e));
    await expect(buffer(src.pipe(gz))).rejects.toThrow('disk on fire');
  });
});
