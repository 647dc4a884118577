/**
 * Parallel gzip, for layers on their way out of the store (exports, pushes): one gzip stream on one
 * core made 25 MB/s here, most of a first push. The input is cut into fixed 1 MiB blocks, each
 * compressed as a gzip member of its own on libuv's thread pool, several at once; the members are
 * written in input order. Concatenated members are one valid gzip file (RFC 1952 2.2), which every
 * gzip reader we push to decompresses whole (Go's compress/gzip, containerd, zlib's gunzip); the
 * same input always gives the same bytes, whatever the timing and the source's chunk sizes.
 *
 * A block that does not compress (already compressed files: jars, images, archives, encrypted
 * data) is stored (deflate level 0) instead: zlib spends ~28 ms per MiB at level 6 looking for
 * matches in such data and then writes stored blocks anyway, while level 0 takes ~1 ms and comes
 * out no bigger. Whether a block compresses is judged from four 16 KiB samples at level 1 (~1 ms
 * per MiB); a decision made from the block's own bytes keeps the output a function of the input.
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { constants as zc, deflateRawSync, gzip, type ZlibOptions } from 'node:zlib';

const gzipAsync = promisify<Buffer, ZlibOptions, Buffer>(gzip);

export const GZIP_BLOCK = 1 << 20;

export interface ParallelGzipOptions {
  level?: number;
  /** bytes of input per gzip member (default 1 MiB); part of what the output is */
  blockSize?: number;
  /** members compressed at once (default: the number of cores) */
  concurrency?: number;
}

export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private members = 0;
  /** compressions under way, oldest first (so output order is input order) */
  private readonly inFlight: Promise<Buffer>[] = [];

  constructor(opts: ParallelGzipOptions = {}) {
    super();
    this.level = opts.level ?? zc.Z_DEFAULT_COMPRESSION;
    this.blockSize = opts.blockSize ?? GZIP_BLOCK;
    this.concurrency = Math.max(1, opts.concurrency ?? availableParallelism());
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.compressFullBlocks(false).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    (async () => {
      await this.compressFullBlocks(true);
      // an empty input is still a gzip file: one empty member
      if (this.members === 0) this.start(Buffer.alloc(0));
      while (this.inFlight.length) this.push(await this.inFlight.shift()!);
    })().then(() => cb(), cb);
  }

  private async compressFullBlocks(final: boolean): Promise<void> {
    while (this.buffered >= this.blockSize || (final && this.buffered > 0)) {
      this.start(this.takeBuffered(Math.min(this.blockSize, this.buffered)));
      // keep at most `concurrency` members under way: wait for the oldest, in order
      while (this.inFlight.length >= this.concurrency) this.push(await this.inFlight.shift()!);
    }
  }

  private start(block: Buffer): void {
    const level = this.level !== 0 && !compresses(block) ? 0 : this.level;
    const p = gzipAsync(block, { level, chunkSize: 1 << 16 });
    p.catch(() => undefined); // awaited in order; an early failure must not be an unhandled rejection
    this.inFlight.push(p);
    this.members++;
  }

  /** The first n buffered bytes as one buffer. */
  private takeBuffered(n: number): Buffer {
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const c = this.chunks[0]!;
      if (c.length <= need) {
        parts.push(c);
        this.chunks.shift();
        need -= c.length;
      } else {
        parts.push(c.subarray(0, need));
        this.chunks[0] = c.subarray(need);
        need = 0;
      }
    }
    this.buffered -= n;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }
}

const SAMPLE = 16 << 10;
/** at least this much smaller at level 1, in one of the samples, to be worth compressing */
const WORTH = 0.98;

/**
 * Whether deflate gains anything on `block`: any of four samples spread over it shrinks by 2% or
 * more at level 1. Blocks under four samples' size are always compressed (cheap either way).
 */
export function compresses(block: Buffer): boolean {
  if (block.length < 4 * SAMPLE) return true;
  const step = Math.floor((block.length - SAMPLE) / 3);
  for (let k = 0; k < 4; k++) {
    const sample = block.subarray(k * step, k * step + SAMPLE);
    if (deflateRawSync(sample, { level: 1 }).length < sample.length * WORTH) return true;
  }
  return false;
}

export function createParallelGzip(opts?: ParallelGzipOptions): ParallelGzip {
  return new ParallelGzip(opts);
}
