/**
 * Shared pieces of the attack and fault suites (docs/security.md): evil tars and images built
 * here, a sentinel directory whose every byte and inode is checked, process trees and mounts.
 */
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { extract as tarExtract } from 'tar-stream';
import { Readable } from 'node:stream';
import { BUSYBOX_TAR, mbuild, type CliResult } from '../helpers/cli.js';
import { tarOf, type TarEntry } from '../helpers/tar.js';

export const isRoot = process.getuid?.() === 0;

export { tarOf };
export type E = TarEntry;

export const sha256 = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** A content hash of a tree: names, types, modes, owners, link counts, sizes, times and bytes. */
export async function treeHash(dir: string): Promise<string> {
  const h = createHash('sha256');
  async function walk(d: string): Promise<void> {
    for (const n of (await fs.readdir(d)).sort()) {
      const p = path.join(d, n);
      const st = await fs.lstat(p);
      h.update(`${path.relative(dir, p)} ${st.mode} ${st.uid} ${st.gid} ${st.nlink} ${st.size} ${st.mtimeMs}\n`);
      if (st.isDirectory()) await walk(p);
      else if (st.isFile()) h.update(await fs.readFile(p));
      else if (st.isSymbolicLink()) h.update(await fs.readlink(p));
    }
  }
  const st = await fs.lstat(dir);
  h.update(`. ${st.mode} ${st.uid} ${st.gid} ${st.nlink} ${st.mtimeMs}\n`);
  await walk(dir);
  return h.digest('hex');
}

/** A directory of host files an attack aims at; `check()` fails if anything in it changed. */
export class Sentinel {
  private hash = '';
  constructor(readonly dir: string) {}
  static async make(parent: string): Promise<Sentinel> {
    const s = new Sentinel(path.join(parent, 'sentinel'));
    await s.reset();
    return s;
  }
  /** (Re)create the files, e.g. after a detected escape damaged them. */
  async reset(): Promise<void> {
    const s = this as Sentinel;
    await fs.rm(s.dir, { recursive: true, force: true });
    await fs.mkdir(path.join(s.dir, 'etc'), { recursive: true });
    await fs.writeFile(path.join(s.dir, 'etc', 'passwd'), 'root:x:0:0:sentinel:/root:/bin/sh\n');
    await fs.writeFile(path.join(s.dir, 'file'), 'SENTINEL-SECRET do not touch\n', { mode: 0o600 });
    await fs.chmod(path.join(s.dir, 'file'), 0o600);
    await fs.mkdir(path.join(s.dir, 'proc'));
    await fs.mkdir(path.join(s.dir, 'dir'));
    s.hash = await treeHash(s.dir);
  }
  async check(): Promise<void> {
    const now = await treeHash(this.dir);
    if (now !== this.hash) throw new Error(`the sentinel ${this.dir} changed:\n${(await listTree(this.dir)).join('\n')}`);
  }
}

export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string): Promise<void> {
    for (const n of (await fs.readdir(d)).sort()) {
      const p = path.join(d, n);
      const st = await fs.lstat(p);
      out.push(`${path.relative(dir, p)} ${st.mode.toString(8)} nlink=${st.nlink}`);
      if (st.isDirectory()) await walk(p);
    }
  }
  await walk(dir);
  return out;
}

export async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

// ------------------------------------------------------------------------------- evil images

interface Blob {
  digest: string;
  bytes: Buffer;
}

let busyboxCache: { layer: Blob; diffId: string } | undefined;

/** The conformance busybox base's layer (gzip) and its diff_id, read from the OCI tar. */
export async function busyboxLayer(): Promise<{ layer: Blob; diffId: string }> {
  if (busyboxCache) return busyboxCache;
  const files = new Map<string, Buffer>();
  const ex = tarExtract();
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      files.set(entry.header.name.replace(/^\.\//, ''), Buffer.concat(chunks));
    }
  })();
  Readable.from([readFileSync(BUSYBOX_TAR)]).pipe(ex);
  await done;
  const blob = (d: string) => files.get(`blobs/sha256/${d.slice(7)}`)!;
  const index = JSON.parse(files.get('index.json')!.toString());
  const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
  const config = JSON.parse(blob(manifest.config.digest).toString());
  const l = manifest.layers[0];
  busyboxCache = { layer: { digest: l.digest, bytes: blob(l.digest) }, diffId: config.rootfs.diff_ids[0] };
  return busyboxCache;
}

export interface EvilImageOptions {
  /** put busybox's layer first (so RUN works); default true */
  busybox?: boolean;
  /** extra top-level fields in the manifest (e.g. padding to make it giant) */
  manifestExtra?: Record<string, unknown>;
  /** rewrite a blob's bytes after its digest was computed (corruption) */
  corrupt?: (digest: string, bytes: Buffer) => Buffer;
  /** replace a descriptor's digest in the manifest */
  layerDigestOverride?: string;
}

/**
 * An OCI image layout tar named `name` whose layers are the given (uncompressed) tars; returns
 * the archive path.
 */
export async function evilImageTar(file: string, name: string, layers: Buffer[], opts: EvilImageOptions = {}): Promise<string> {
  const blobs: Blob[] = [];
  const layerDescs: unknown[] = [];
  const diffIds: string[] = [];
  if (opts.busybox ?? true) {
    const bb = await busyboxLayer();
    blobs.push(bb.layer);
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: bb.layer.digest, size: bb.layer.bytes.length });
    diffIds.push(bb.diffId);
  }
  for (const t of layers) {
    const digest = sha256(t);
    blobs.push({ digest, bytes: t });
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: opts.layerDigestOverride ?? digest, size: t.length });
    diffIds.push(digest);
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map(() => ({ created_by: 'evil' })),
    }),
  );
  blobs.push({ digest: sha256(config), bytes: config });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: layerDescs,
      ...opts.manifestExtra,
    }),
  );
  blobs.push({ digest: sha256(manifest), bytes: manifest });
  const index = {
    schemaVersion: 2,
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: sha256(manifest),
        size: manifest.length,
        annotations: { 'io.containerd.image.name': `docker.io/library/${name}:latest`, 'org.opencontainers.image.ref.name': 'latest' },
      },
    ],
  };
  const entries: E[] = [
    { name: 'oci-layout', data: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    { name: 'index.json', data: JSON.stringify(index) },
  ];
  const seen = new Set<string>();
  for (const b of blobs) {
    if (seen.has(b.digest)) continue;
    seen.add(b.digest);
    entries.push({ name: `blobs/sha256/${b.digest.slice(7)}`, data: opts.corrupt ? opts.corrupt(b.digest, b.bytes) : b.bytes });
  }
  await fs.writeFile(file, await tarOf(entries));
  return file;
}

/** Load an evil image into `root` (the load must succeed: layers are only looked at when unpacked). */
export async function loadEvil(root: string, dir: string, name: string, layers: Buffer[], opts: EvilImageOptions = {}): Promise<CliResult> {
  const file = await evilImageTar(path.join(dir, `${name}.tar`), name, layers, opts);
  return mbuild(['--root', root, 'load', '-i', file]);
}

/** Build `dockerfile` (text) in a fresh context below `dir`. */
export async function buildText(
  root: string,
  dir: string,
  dockerfile: string,
  extra: string[] = [],
  files: Record<string, string> = {},
  env: Record<string, string> = {},
): Promise<CliResult & { ctx: string }> {
  const ctx = await fs.mkdtemp(path.join(dir, 'ctx-'));
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  for (const [n, c] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(ctx, n)), { recursive: true });
    await fs.writeFile(path.join(ctx, n), c);
  }
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', ...extra, ctx], { env });
  return { ...r, ctx };
}

/** The `error:` lines of a CLI run. */
export function errorLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l) => l.startsWith('error:'));
}

/** What RUN steps printed (progress lines "#N 0.123 text" → "text"). */
export function runOutput(r: CliResult): string[] {
  return r.stderr
    .split('\n')
    .map((l) => /^#\d+ \d+\.\d+ (.*)$/.exec(l)?.[1])
    .filter((l): l is string => l !== undefined);
}

// ------------------------------------------------------------------------ processes and mounts

export interface Proc {
  pid: number;
  start: string;
  cmd: string;
}

function stat(pid: number): { ppid: number; start: string; state: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, ppid: Number(f[1]), start: f[19]! };
  } catch {
    return undefined;
  }
}

/** `pid` and every process below it. */
export function processTree(pid: number): Proc[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const st = stat(Number(e));
    if (st) children.set(st.ppid, [...(children.get(st.ppid) ?? []), Number(e)]);
  }
  const out: Proc[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    const st = stat(p);
    if (!st) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      /* gone */
    }
    out.push({ pid: p, start: st.start, cmd });
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** Those of `procs` still running (same pid and start time, not a zombie). */
export function survivors(procs: Proc[]): Proc[] {
  return procs.filter((p) => {
    const st = stat(p.pid);
    return st !== undefined && st.start === p.start && st.state !== 'Z';
  });
}

export async function waitUntil(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Mounts anywhere on the host that mention `dir` (as mount point, source or overlay option), in
 * the mount namespace of every process: a mount in a leaked private namespace is found too.
 */
export function mountsAnywhere(dir: string): string[] {
  const out = new Set<string>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let text = '';
    try {
      text = readFileSync(`/proc/${e}/mountinfo`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) if (line.includes(dir)) out.add(`pid ${e}: ${line}`);
  }
  return [...out];
}

export { BUSYBOX_TAR, mbuild };
