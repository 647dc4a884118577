/**
 * Decompression by content: layer blobs and ADD sources are recognised by their magic bytes, never
 * by media type or file name. gzip is handled in-process (zlib); bzip2, xz and zstd by the system
 * tools (`bzip2 -dc`, `xz -dc`, `zstd -dc`). Anything else is passed through unchanged (plain tar).
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { Readable, Transform, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { MbuildError } from '../../util/errors.js';

export type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'none';

const MAGIC: Array<[Compression, number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['bzip2', [0x42, 0x5a, 0x68]], // "BZh"
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
];

/** Which compression the first bytes of a stream announce ('none' when no magic matches). */
export function detectCompression(head: Uint8Array): Compression {
  for (const [kind, magic] of MAGIC) {
    if (head.length >= magic.length && magic.every((b, i) => head[i] === b)) return kind;
  }
  return 'none';
}

/**
 * Read at least `n` bytes (fewer only at end of stream) from `input` and return them together with
 * a stream that yields the same bytes followed by the rest of `input`. Backpressure is kept: the rest
 * is pulled from `input` only as the returned stream is read. Destroying the returned stream
 * destroys `input`; an error of `input` is an error of the returned stream.
 */
export async function peekStream(input: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const chunks: Buffer[] = [];
  let len = 0;
  let ended = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    const b = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    chunks.push(b);
    len += b.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      if (head.length) yield head;
      if (ended) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      }
    } finally {
      // Early destroy of the replay stream: release (destroy) the input as well.
      if (!ended) await it.return?.();
    }
  }
  return { head, stream: Readable.from(replay(), { objectMode: false }) };
}

/** Is `cmd` runnable? (cached) */
const toolCache = new Map<string, Promise<boolean>>();
export function haveTool(cmd: string): Promise<boolean> {
  let p = toolCache.get(cmd);
  if (!p) {
    p = new Promise<boolean>((resolve) => {
      const child = spawn(cmd, ['--version'], { stdio: 'ignore' });
      child.on('error', () => resolve(false));
      child.on('close', () => resolve(true));
    });
    toolCache.set(cmd, p);
  }
  return p;
}

/**
 * Decompress `src` with an external tool reading stdin and writing stdout. The returned stream ends
 * only after the tool exited successfully, so a corrupt or truncated input is an error of the
 * returned stream, never a silently shortened output.
 */
function spawnDecompressor(cmd: string, args: string[], src: Readable): Readable {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let finished = false;
  const exited = new Promise<Error | null>((resolve) => {
    child.on('error', (err) => resolve(new MbuildError('MBUILD_DECOMPRESS', `cannot run ${cmd}: ${err.message}`, { cause: err })));
    child.on('close', (code, signal) => {
      if (code === 0) resolve(null);
      else {
        const why = signal ? `killed by ${signal}` : `exit status ${code}`;
        const msg = stderr.trim().split('\n').pop() ?? '';
        resolve(new MbuildError('MBUILD_DECOMPRESS', `${cmd} failed to decompress the data (${why})${msg ? `: ${msg}` : ''}`));
      }
    });
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const out = new Transform({
    transform(chunk, _enc, cb) {
      cb(null, chunk);
    },
    flush(cb) {
      exited.then((err) => {
        finished = true;
        cb(err);
      }, cb);
    },
  });
  pipeline(src, child.stdin!, (err) => {
    // EPIPE: the tool stopped reading (corrupt data or it is done); its exit status tells.
    if (err && (err as NodeJS.ErrnoException).code !== 'EPIPE' && (err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') {
      out.destroy(err);
    }
  });
  src.on('error', (err) => out.destroy(err));
  pipeline(child.stdout!, out, () => {
    /* errors surface on `out` itself */
  });
  out.on('close', () => {
    if (!finished && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return out;
}

/**
 * Return a stream of the decompressed content of `input`, recognising gzip, bzip2, xz and zstd by
 * their magic bytes; anything else is returned unchanged.
 */
export async function decompressStream(input: Readable): Promise<Readable> {
  const { head, stream } = await peekStream(input, 6);
  const kind = detectCompression(head);
  switch (kind) {
    case 'none':
      return stream;
    case 'gzip': {
      const gunzip = createGunzip();
      pipeline(stream, gunzip, () => {
        /* errors surface on gunzip */
      });
      return gunzip;
    }
    case 'bzip2':
      return spawnDecompressor('bzip2', ['-dc'], stream);
    case 'xz':
      return spawnDecompressor('xz', ['-dc'], stream);
    case 'zstd':
      if (!(await haveTool('zstd'))) {
        stream.destroy();
        throw new MbuildError('MBUILD_DECOMPRESS', 'the data is zstd-compressed but the "zstd" tool is not installed');
      }
      return spawnDecompressor('zstd', ['-dcq'], stream);
  }
}

/** Does this 512-byte block carry a valid tar header checksum (unsigned or signed sum, as Go's archive/tar)? */
export function tarChecksumValid(block: Uint8Array): boolean {
  if (block.length < 512) return false;
  const field = Buffer.from(block.subarray(148, 156)).toString('latin1');
  const m = /^[ \0]*([0-7]+)[ \0]*$/.exec(field);
  if (!m) return false;
  const want = parseInt(m[1]!, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

/** Does the first block of a (decompressed) stream look like a tar header? */
export function looksLikeTarHeader(block: Uint8Array): boolean {
  if (block.length < 512) return false;
  if (block.subarray(0, 512).every((b) => b === 0)) return false; // end-of-archive or empty
  return tarChecksumValid(block);
}

/** Read up to `n` bytes from a stream, then destroy it. */
async function readHead(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let len = 0;
  try {
    for await (const c of stream) {
      const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
      chunks.push(b);
      len += b.length;
      if (len >= n) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/**
 * Is the file at `path` a tar archive (possibly gzip/bzip2/xz/zstd-compressed)? Decided by content,
 * like Docker's ADD: the first block after decompression must be a tar header with a valid checksum
 * (ustar, GNU and v7 headers all qualify). Corrupt compressed data or a short file is "not an archive".
 */
export async function isArchive(path: string): Promise<boolean> {
  const file = createReadStream(path);
  try {
    const plain = await decompressStream(file);
    const head = await readHead(plain, 512);
    return looksLikeTarHeader(head);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EISDIR') throw err;
    return false;
  } finally {
    file.destroy();
  }
}
