// Deterministic inputs: the same bytes on every machine and every run.
import { createCipheriv } from 'node:crypto';
import { mkdirSync, openSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** mulberry32: a tiny seeded PRNG, enough to pick words and offsets reproducibly. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ('const let return function import export from async await if else for while switch case ' +
  'break continue class extends new this null undefined true false string number buffer stream layer ' +
  'digest manifest config image build stage context copy run env user workdir label entrypoint cmd ' +
  'error result value index length push map filter reduce promise resolve reject path file dir mode').split(' ');

/** About 1 MiB of source-like text (compresses 3-4x, like real code). */
function textPool(rand) {
  const lines = [];
  let size = 0;
  while (size < 1 << 20) {
    const n = 3 + Math.floor(rand() * 10);
    const words = [];
    for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(rand() * WORDS.length)]);
    const line = '  '.repeat(Math.floor(rand() * 4)) + words.join(' ') + (rand() < 0.5 ? ';' : ' {');
    lines.push(line);
    size += line.length + 1;
  }
  return Buffer.from(lines.join('\n') + '\n');
}

/**
 * A build context of FILES text files in DIRS folders, TOTAL bytes in all (d00/f0000.txt ...).
 * Each file: a header line naming it, then a slice of the text pool at a seeded offset.
 */
export function makeFileTree(root, { files = 5000, dirs = 50, total = 100_000_000, seed = 6 } = {}) {
  const rand = prng(seed);
  const pool = textPool(rand);
  const per = Math.floor(total / files);
  for (let d = 0; d < dirs; d++) mkdirSync(join(root, `d${String(d).padStart(2, '0')}`), { recursive: true });
  for (let i = 0; i < files; i++) {
    const rel = fileName(i, dirs);
    const header = Buffer.from(`// ${rel}\n`);
    const body = per - header.length;
    const off = Math.floor(rand() * (pool.length - body));
    const fd = openSync(join(root, rel), 'w');
    writeSync(fd, header);
    writeSync(fd, pool, off, body);
    closeSync(fd);
  }
}

export function fileName(i, dirs = 50) {
  return `d${String(i % dirs).padStart(2, '0')}/f${String(i).padStart(4, '0')}.txt`;
}

/** BYTES of incompressible, reproducible data (AES-128-CTR over zeros with a fixed key). */
export function writeRandomFile(file, bytes, seed = 'mbuild-bench') {
  const key = Buffer.alloc(16);
  key.write(seed.slice(0, 16));
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(1 << 20);
  const fd = openSync(file, 'w');
  for (let left = bytes; left > 0; left -= zeros.length) {
    const chunk = cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    writeSync(fd, chunk);
  }
  closeSync(fd);
}

export function writeText(file, text) {
  writeFileSync(file, text);
}
