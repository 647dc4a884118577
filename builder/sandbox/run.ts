/**
 * The RUN executor: runs one command in a fresh set of namespaces over an overlay of the image layers,
 * via `mbuild-helper run` (native/mbuild-helper.c). See docs/security.md items 19-24 and 28.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { SandboxError } from '../../util/errors.js';
import { encodeFields, helperPath, spawnError } from './native.js';

export interface SandboxSpec {
  /** overlay lowerdirs, top-most first; empty = scratch (an empty dir is used as the single lower) */
  lowerDirs: string[];
  /** empty dir; becomes the layer */
  upperDir: string;
  /** empty overlay workdir on the same filesystem as upperDir */
  workDir: string;
  /** argv[0] is looked up in PATH from `env` (inside the rootfs) when it has no '/' */
  args: string[];
  /** ["K=V", ...] */
  env: string[];
  /** inside the container; created (mode 0755, owned by root) if missing */
  cwd: string;
  uid: number;
  gid: number;
  groups: number[];
  hostname: string;
  /** none = a new network namespace with only `lo` (up) */
  network: 'host' | 'none';
  /** content of /etc/hosts */
  hosts: string;
  /** content of /etc/resolv.conf */
  resolvConf: string;
  onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
}

export interface SandboxResult {
  /** the command's exit code; 128+n when killed by signal n */
  exitCode: number;
  /** e.g. 'SIGKILL' when the command was killed by a signal */
  signal?: string;
}

type Status = { kind: 'exit' | 'signal' | 'error'; payload: string };

/**
 * Splits the helper's stderr into the command's output and the helper's status record
 * ("\0MBUILD-HELPER:<nonce>:<kind>:<payload>\n"), holding back bytes that might start a record.
 */
class StatusFilter {
  private readonly header: Buffer;
  private pending = Buffer.alloc(0);
  status?: Status;

  constructor(
    nonce: string,
    private readonly emit: (b: Buffer) => void,
  ) {
    this.header = Buffer.from(`\0MBUILD-HELPER:${nonce}:`, 'latin1');
  }

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    for (;;) {
      const at = buf.indexOf(this.header);
      if (at < 0) break;
      if (at > 0) this.emit(buf.subarray(0, at));
      const nl = buf.indexOf(0x0a, at + this.header.length);
      if (nl < 0) {
        this.pending = Buffer.from(buf.subarray(at));
        return;
      }
      const rec = buf.subarray(at + this.header.length, nl).toString('utf8');
      const colon = rec.indexOf(':');
      const kind = rec.slice(0, colon);
      if (kind === 'exit' || kind === 'signal' || kind === 'error') this.status = { kind, payload: rec.slice(colon + 1) };
      buf = buf.subarray(nl + 1);
    }
    // keep a tail that could be the beginning of a header
    let keep = Math.min(this.header.length - 1, buf.length);
    while (keep > 0 && !buf.subarray(buf.length - keep).equals(this.header.subarray(0, keep))) keep--;
    if (buf.length - keep > 0) this.emit(buf.subarray(0, buf.length - keep));
    if (keep > 0) this.pending = Buffer.from(buf.subarray(buf.length - keep));
  }

  end(): void {
    if (this.pending.length) this.emit(this.pending);
    this.pending = Buffer.alloc(0);
  }
}

function signalName(n: number): string | undefined {
  for (const [name, v] of Object.entries(osConstants.signals)) if (v === n) return name;
  return undefined;
}

function checkId(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xfffffffe) throw new SandboxError(`invalid ${what} ${v}`);
}

function validate(spec: SandboxSpec): void {
  if (spec.args.length === 0) throw new SandboxError('RUN has no command');
  for (const [what, p] of [
    ['upperDir', spec.upperDir],
    ['workDir', spec.workDir],
    ...spec.lowerDirs.map((d) => ['lowerDir', d] as const),
  ] as const) {
    if (!isAbsolute(p)) throw new SandboxError(`${what} must be an absolute path: ${p}`);
  }
  if (!spec.cwd.startsWith('/')) throw new SandboxError(`working directory must be absolute: ${spec.cwd}`);
  checkId(spec.uid, 'uid');
  checkId(spec.gid, 'gid');
  for (const g of spec.groups) checkId(g, 'group id');
  if (Buffer.byteLength(spec.hostname) > 64 || /[\0\n]/.test(spec.hostname)) {
    throw new SandboxError(`invalid hostname ${JSON.stringify(spec.hostname)}`);
  }
  if (spec.network !== 'host' && spec.network !== 'none') throw new SandboxError(`unsupported network mode ${String(spec.network)}`);
  for (const e of spec.env) if (!e.includes('=')) throw new SandboxError(`environment entry without '=': ${e}`);
}

/** Runs spec.args in the sandbox; resolves with its exit code. Throws SandboxError when the sandbox itself fails. */
export async function runSandboxed(spec: SandboxSpec): Promise<SandboxResult> {
  validate(spec);
  const bin = helperPath();
  const state = await mkdtemp(join(tmpdir(), 'mbuild-run-'));
  try {
    await Promise.all([
      writeFile(join(state, 'hosts'), spec.hosts, { mode: 0o644 }),
      writeFile(join(state, 'resolv.conf'), spec.resolvConf, { mode: 0o644 }),
      writeFile(join(state, 'hostname'), `${spec.hostname}\n`, { mode: 0o644 }),
      mkdir(join(state, 'rootfs')),
      mkdir(join(state, 'empty')),
    ]);
    const nonce = randomBytes(16).toString('hex');
    const fields: string[] = [
      'nonce', nonce,
      'ppid', String(process.pid),
      'state', state,
      'upper', resolve(spec.upperDir),
      'work', resolve(spec.workDir),
      'cwd', spec.cwd,
      'uid', String(spec.uid),
      'gid', String(spec.gid),
      'hostname', spec.hostname,
      'network', spec.network,
    ];
    for (const d of spec.lowerDirs) fields.push('lower', resolve(d));
    for (const g of spec.groups) fields.push('group', String(g));
    for (const e of spec.env) fields.push('env', e);
    for (const a of spec.args) fields.push('arg', a);
    const input = encodeFields(fields);
    return await runHelperProcess(bin, input, nonce, spec.onOutput);
  } finally {
    await rm(state, { recursive: true, force: true });
  }
}

function runHelperProcess(
  bin: string,
  input: Buffer,
  nonce: string,
  onOutput: SandboxSpec['onOutput'],
): Promise<SandboxResult> {
  return new Promise((resolvePromise, reject) => {
    let callbackError: unknown;
    const deliver = (chunk: Buffer, stream: 'stdout' | 'stderr'): void => {
      if (!onOutput || callbackError !== undefined || chunk.length === 0) return;
      try {
        onOutput(chunk, stream);
      } catch (e) {
        callbackError = e;
      }
    };
    // last stderr lines, for the error message when the helper dies without a status
    let stderrTail = '';
    const filter = new StatusFilter(nonce, (b) => {
      stderrTail = (stderrTail + b.toString('utf8')).slice(-2000);
      deliver(b, 'stderr');
    });
    const child = spawn(bin, ['run'], { stdio: ['pipe', 'pipe', 'pipe'], env: {} });
    child.stdout.on('data', (c: Buffer) => deliver(c, 'stdout'));
    child.stderr.on('data', (c: Buffer) => filter.push(c));
    child.stdin.on('error', () => {
      // EPIPE if the helper exits before reading the spec: reported through its status
    });
    child.on('error', (e: NodeJS.ErrnoException) => reject(spawnError(bin, e)));
    child.on('close', (code, signal) => {
      filter.end();
      if (callbackError !== undefined) return reject(callbackError);
      const st = filter.status;
      if (!st) {
        const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
        const tail = stderrTail.trim();
        return reject(new SandboxError(`mbuild-helper ${how} without reporting a status${tail ? `: ${tail}` : ''}`));
      }
      if (st.kind === 'error') return reject(new SandboxError(`sandbox: ${st.payload}`));
      const n = Number(st.payload);
      if (st.kind === 'signal') return resolvePromise({ exitCode: 128 + n, signal: signalName(n) ?? `signal ${n}` });
      resolvePromise({ exitCode: n });
    });
    child.stdin.end(input);
  });
}
