/**
 * Wrapper around native/mbuild-helper (native/*.c): filesystem operations Node cannot do
 * (overlayfs whiteouts, opaque xattrs, device nodes), and the helper's location and protocol for the RUN
 * sandbox (builder/sandbox/run.ts). Here, below every layer, because the snapshotter and the differ use it too.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FsOpError, MbuildError, SandboxError } from './errors.js';

let cachedHelper: string | undefined;

/**
 * Absolute path of native/mbuild-helper. Found by walking up from this module (util/ in the sources,
 * dist/util/ when compiled) to mbuild's package root.
 */
export function helperPath(): string {
  if (cachedHelper) return cachedHelper;
  let dir = dirname(fileURLToPath(import.meta.url));
  let fallback: string | undefined;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      fallback ??= dir;
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'mbuild') {
          fallback = dir;
          break;
        }
      } catch {
        // not our package.json: keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  if (!fallback) throw new SandboxError('cannot locate the mbuild package root (no package.json above the helper module)');
  cachedHelper = join(fallback, 'native', 'mbuild-helper');
  return cachedHelper;
}

export type FsOp =
  /** Overlayfs whiteout: char device 0:0, mode 0. Fails if the path exists. */
  | { op: 'whiteout'; path: string }
  /** trusted.overlay.opaque = "y" on an existing directory (not followed if a symlink). */
  | { op: 'opaque'; path: string }
  /** Device node or FIFO; mode = permission bits (umask not applied). Fails if the path exists. */
  | { op: 'mknod'; path: string; type: 'c' | 'b' | 'p'; mode: number; major: number; minor: number };

export interface HelperOutput {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** Runs the helper with `input` on stdin and collects its output (for the short-lived subcommands). */
export function runHelper(args: string[], input: Buffer): Promise<HelperOutput> {
  return new Promise((resolve, reject) => {
    const bin = helperPath();
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], env: {} });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {
      // EPIPE when the helper fails early: its exit status tells the story
    });
    child.on('error', (e: NodeJS.ErrnoException) => reject(spawnError(bin, e)));
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }),
    );
    child.stdin.end(input);
  });
}

export function spawnError(bin: string, e: NodeJS.ErrnoException): SandboxError {
  if (e.code === 'ENOENT') {
    return new SandboxError(`${bin} is missing: build it with "npm run build" (needs a C compiler)`, e);
  }
  return new SandboxError(`cannot run ${bin}: ${e.message}`, e);
}

/** NUL-separated fields; rejects values Node or the helper could not pass through. */
export function encodeFields(fields: string[]): Buffer {
  for (const f of fields) {
    if (f.includes('\0')) throw new SandboxError(`value contains a NUL byte: ${JSON.stringify(f.slice(0, 80))}`);
  }
  return Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8');
}

function errnoName(n: number): string {
  for (const [name, v] of Object.entries(osConstants.errno)) if (v === n) return name;
  return `errno ${n}`;
}

function checkPath(p: string): void {
  if (!isAbsolute(p)) throw new MbuildError('MBUILD_FSOP', `fs op path must be absolute: ${p}`);
}

function checkInt(v: number, max: number, what: string, path: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new MbuildError('MBUILD_FSOP', `bad ${what} ${v} for ${path}`);
}

/** Applies ops in order with one helper process; stops at the first failure (FsOpError names the path). */
export async function fsOps(ops: FsOp[]): Promise<void> {
  if (ops.length === 0) return;
  const fields: string[] = [];
  for (const o of ops) {
    checkPath(o.path);
    switch (o.op) {
      case 'whiteout':
      case 'opaque':
        fields.push(o.op, o.path);
        break;
      case 'mknod':
        if (o.type !== 'c' && o.type !== 'b' && o.type !== 'p') throw new MbuildError('MBUILD_FSOP', `bad node type ${String(o.type)} for ${o.path}`);
        checkInt(o.mode, 0o7777, 'mode', o.path);
        checkInt(o.major, 0xfffff, 'major', o.path);
        checkInt(o.minor, 0xfffff, 'minor', o.path);
        fields.push('mknod', o.path, o.type, String(o.mode), String(o.major), String(o.minor));
        break;
      default:
        throw new MbuildError('MBUILD_FSOP', `unknown fs op ${JSON.stringify((o as { op?: unknown }).op)}`);
    }
  }
  const r = await runHelper(['fsops'], encodeFields(fields));
  if (r.code === 0) return;
  const rec = r.stdout.toString('utf8').split('\0');
  if (r.code === 1 && rec.length >= 4) {
    const n = Number(rec[2]);
    throw new FsOpError(rec[0]!, rec[1]!, errnoName(n), rec[3]!);
  }
  throw new MbuildError(
    'MBUILD_FSOP',
    `mbuild-helper fsops failed (${r.signal ?? `exit ${r.code}`}): ${r.stderr.toString('utf8').trim()}`,
  );
}

/**
 * Directories below `root` (relative paths, sorted) carrying trusted.overlay.opaque=y; '.' when `root`
 * itself is opaque. Symlinks are never followed.
 */
export async function findOpaqueDirs(root: string): Promise<string[]> {
  if (!isAbsolute(root)) throw new MbuildError('MBUILD_FSOP', `findOpaqueDirs needs an absolute path: ${root}`);
  const r = await runHelper(['find-opaque', root], Buffer.alloc(0));
  if (r.code !== 0) {
    throw new MbuildError(
      'MBUILD_FSOP',
      `scanning ${root} for opaque directories failed: ${r.stderr.toString('utf8').trim() || (r.signal ?? `exit ${r.code}`)}`,
    );
  }
  const out = r.stdout.toString('utf8');
  if (out === '') return [];
  return out
    .split('\0')
    .filter((s) => s !== '')
    .sort();
}
