/**
 * `mbuild run --mount`, in docker's syntax (docker/cli opts/mount.go): type=bind|volume|tmpfs
 * (default volume), source/src, target/destination/dst, readonly/ro, volume-nocopy, tmpfs-size,
 * tmpfs-mode. Options docker has that mbuild does not implement are refused by name.
 */
import { promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { csvFields, ramInBytes } from '../dockerfile/run-mount.js';
import type { SandboxMount } from '../sandbox/run.js';
import { UsageError } from '../../util/errors.js';
import { layout } from '../../store/layout.js';

export interface DockerMount {
  type: 'bind' | 'volume' | 'tmpfs';
  source?: string;
  target: string;
  readonly: boolean;
  volumeNocopy?: boolean;
  tmpfsSize?: number;
  tmpfsMode?: number;
}

const UNSUPPORTED = ['bind-propagation', 'bind-nonrecursive', 'bind-recursive', 'bind-create-mountpoint', 'volume-subpath', 'volume-label', 'volume-driver', 'volume-opt', 'consistency'];

function bool(key: string, v: string | undefined): boolean {
  if (v === undefined) return true;
  if (['1', 'true', 't', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'false', 'f', 'FALSE', 'False'].includes(v)) return false;
  throw new UsageError(`--mount: invalid value for ${key}: ${v}`);
}

export function parseDockerMount(spec: string): DockerMount {
  let fields: string[];
  try {
    fields = csvFields(spec);
  } catch (err) {
    throw new UsageError(`--mount ${spec}: ${(err as Error).message}`);
  }
  const m: Partial<DockerMount> & { readonly: boolean } = { readonly: false };
  let type = 'volume';
  for (const f of fields) {
    const eq = f.indexOf('=');
    const key = (eq < 0 ? f : f.slice(0, eq)).toLowerCase();
    const value = eq < 0 ? undefined : f.slice(eq + 1);
    if (value === undefined && !['readonly', 'ro', 'volume-nocopy'].includes(key)) throw new UsageError(`--mount: invalid field '${f}' must be a key=value pair`);
    switch (key) {
      case 'type':
        if (value !== 'bind' && value !== 'volume' && value !== 'tmpfs') throw new UsageError(`--mount: type ${value} is not supported (bind, volume or tmpfs)`);
        type = value;
        break;
      case 'source':
      case 'src':
        m.source = value;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = value;
        break;
      case 'readonly':
      case 'ro':
        m.readonly = bool(key, value);
        break;
      case 'volume-nocopy':
        m.volumeNocopy = bool(key, value);
        break;
      case 'tmpfs-size': {
        const n = ramInBytes(value!);
        if (n === undefined) throw new UsageError(`--mount: invalid value for tmpfs-size: ${value}`);
        m.tmpfsSize = n;
        break;
      }
      case 'tmpfs-mode':
        if (!/^[0-7]{1,4}$/.test(value!)) throw new UsageError(`--mount: invalid value for tmpfs-mode: ${value}`);
        m.tmpfsMode = Number.parseInt(value!, 8);
        break;
      default:
        if (UNSUPPORTED.includes(key)) throw new UsageError(`--mount: ${key} is not supported by mbuild`);
        throw new UsageError(`--mount: unexpected key '${key}' in '${f}'`);
    }
  }
  const out = { ...m, type } as DockerMount;
  if (!out.target) throw new UsageError('--mount: target is required');
  if (!out.target.startsWith('/') || path.posix.normalize(out.target) === '/') throw new UsageError(`--mount: invalid mount target "${out.target}": an absolute path other than /`);
  out.target = path.posix.normalize(out.target).replace(/\/$/, '');
  if (type === 'bind') {
    if (!out.source) throw new UsageError('--mount: source is required when specifying bind mount');
    if (!path.isAbsolute(out.source)) throw new UsageError(`--mount: invalid mount config for type "bind": invalid mount path: '${out.source}' mount path must be absolute`);
  }
  if (type === 'tmpfs' && out.source) throw new UsageError('--mount: invalid mount config for type "tmpfs": source must not be specified');
  if (type !== 'tmpfs' && (out.tmpfsSize !== undefined || out.tmpfsMode !== undefined)) throw new UsageError(`--mount: tmpfs options are not allowed with type=${type}`);
  if (type !== 'volume' && out.volumeNocopy !== undefined) throw new UsageError(`--mount: volume-nocopy is not allowed with type=${type}`);
  if (type === 'volume' && out.source && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(out.source)) {
    throw new UsageError(`--mount: "${out.source}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed`);
  }
  return out;
}

/**
 * The sandbox mounts for a run. Volumes live in ROOT/volumes/NAME/_data (an anonymous one gets a
 * random name and goes after the run, as `docker run --rm` removes it); a new, empty volume first
 * gets a copy of what the image has at the target (unless volume-nocopy), as Docker does.
 */
export async function prepareRunMounts(
  storeRoot: string,
  mounts: DockerMount[],
  imageRoot: (fn: (root: string) => Promise<void>) => Promise<void>,
): Promise<{ mounts: SandboxMount[]; cleanup: () => Promise<void> }> {
  const out: SandboxMount[] = [];
  const anonymous: string[] = [];
  for (const m of mounts) {
    if (m.type === 'tmpfs') {
      out.push({ kind: 'tmpfs', target: m.target, size: m.tmpfsSize, mode: m.tmpfsMode });
      continue;
    }
    if (m.type === 'bind') {
      try {
        statSync(m.source!);
      } catch {
        throw new UsageError(`--mount: invalid mount config for type "bind": bind source path does not exist: ${m.source}`);
      }
      out.push({ kind: 'bind', source: path.resolve(m.source!), target: m.target, readonly: m.readonly });
      continue;
    }
    const name = m.source ?? randomBytes(32).toString('hex');
    const base = path.join(layout.volumes(storeRoot), name);
    if (!m.source) anonymous.push(base);
    const data = path.join(base, '_data');
    await fs.mkdir(data, { recursive: true, mode: 0o755 });
    if (!m.volumeNocopy && (await fs.readdir(data)).length === 0) {
      await imageRoot(async (root) => {
        const from = path.join(root, m.target);
        const st = await fs.lstat(from).catch(() => undefined);
        if (!st?.isDirectory()) return;
        await copyInto(from, data);
      });
    }
    out.push({ kind: 'bind', source: data, target: m.target, readonly: m.readonly });
  }
  return {
    mounts: out,
    cleanup: async () => {
      for (const a of anonymous) await fs.rm(a, { recursive: true, force: true });
    },
  };
}

/** cp -a of a directory's contents and its own owner/mode into an existing dir. */
function copyInto(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('cp', ['-a', '--', `${from}/.`, to], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new UsageError(`--mount: copying the image's ${from} into the volume failed: ${err.trim()}`))));
  });
}
