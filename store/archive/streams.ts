/** Stream helpers for archives: hashing pass-throughs, compression sniffing, and reading the first bytes. */
import { createHash, type Hash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { MbuildError } from '../../util/errors.js';

/** A pass-through that counts and sha256-hashes what flows through it. */
export class HashMeter extends Transform {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  private result?: string;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    cb(null, chunk);
  }
  /** The digest, once the stream has finished. */
  digest(): string {
    this.result ??= 'sha256:' + this.hash.digest('hex');
    return this.result;
  }
}

export type Compression = 'gzip' | 'zstd' | 'xz' | 'bzip2' | 'none';

/** Recognise a compressed stream by its magic bytes (anything else is taken as uncompressed). */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  return 'none';
}

/** Refuse compressions this Node cannot decompress, with a clear message. */
export function assertSupportedCompression(c: Compression, what: string): void {
  if (c === 'zstd' || c === 'xz' || c === 'bzip2') {
    throw new MbuildError('MBUILD_UNSUPPORTED_COMPRESSION', `${what} is ${c}-compressed, which mbuild cannot read (use an uncompressed or gzip archive)`);
  }
}

/** The first `n` bytes of a file (fewer if the file is shorter). */
export async function readHead(file: string, n = 8): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Look at the first chunk of `src` without losing it: returns that chunk (possibly short) and a
 * stream that yields everything, first chunk included.
 */
export async function peekStream(src: Readable): Promise<{ head: Buffer; stream: Readable }> {
  const it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await it.next();
  const head = first.done ? Buffer.alloc(0) : Buffer.from(first.value);
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (head.length) yield head;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    } finally {
      await it.return?.();
    }
  }
  return { head, stream: Readable.from(all(), { objectMode: false }) };
}
