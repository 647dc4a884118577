/**
 * `--secret` and `--ssh` of `mbuild build`, in docker's syntax (buildx build/secrets.go, build/ssh.go):
 *
 *   --secret id=X,src=FILE      --secret id=X,env=VAR      --secret type=env,id=X[,src=VAR]
 *   --secret id=X               (the environment variable X, as buildx falls back to)
 *   --ssh default               ($SSH_AUTH_SOCK)     --ssh ID=SOCKET|KEYFILE[,SOCKET|KEYFILE...]
 *
 * Only where a value comes from is kept here; it is read when a step mounts it, and never printed.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../../util/errors.js';
import { csvFields } from '../dockerfile/run-mount.js';

export interface SecretSource {
  id: string;
  file?: string;
  env?: string;
}

export interface SshSource {
  id: string;
  /** agent sockets and private key files */
  paths: string[];
}

export function parseSecretFlag(spec: string, env: NodeJS.ProcessEnv = process.env): SecretSource {
  let fields: string[];
  try {
    fields = csvFields(spec);
  } catch (err) {
    throw new UsageError(`--secret ${spec}: ${(err as Error).message}`);
  }
  let type = 'file';
  let id: string | undefined;
  let src: string | undefined;
  let envName: string | undefined;
  for (const f of fields) {
    const eq = f.indexOf('=');
    if (eq < 0) throw new UsageError(`--secret: invalid field '${f}' must be a key=value pair`);
    const key = f.slice(0, eq).toLowerCase();
    const value = f.slice(eq + 1);
    if (key === 'type') {
      if (value !== 'file' && value !== 'env') throw new UsageError(`--secret: unsupported secret type "${value}" (file or env)`);
      type = value;
    } else if (key === 'id') id = value;
    else if (key === 'source' || key === 'src') src = value;
    else if (key === 'env') envName = value;
    else throw new UsageError(`--secret: unexpected key '${key}' in '${f}'`);
  }
  if (!id) throw new UsageError(`--secret ${spec}: id is required (id=NAME,src=FILE or id=NAME,env=VAR)`);
  if (type === 'env' && envName === undefined) [envName, src] = [src ?? id, undefined];
  if (src !== undefined && envName !== undefined) throw new UsageError(`--secret id=${id}: src and env cannot both be set`);
  if (src === undefined && envName === undefined) {
    // buildx: a bare id names an environment variable, else a file
    if (env[id] !== undefined) envName = id;
    else src = id;
  }
  if (src !== undefined) {
    const file = path.resolve(src);
    const st = statOrUndefined(file);
    if (!st?.isFile()) throw new UsageError(`--secret id=${id}: ${src} is not a readable file`);
    return { id, file };
  }
  return { id, env: envName };
}

export function parseSshFlag(spec: string, env: NodeJS.ProcessEnv = process.env): SshSource {
  const eq = spec.indexOf('=');
  const id = eq < 0 ? spec : spec.slice(0, eq);
  if (!id) throw new UsageError(`--ssh ${spec}: an id is required (default or ID=SOCKET|KEYFILE)`);
  let paths = eq < 0 ? [] : spec.slice(eq + 1).split(',').filter((p) => p !== '');
  if (paths.length === 0) {
    if (id !== 'default') throw new UsageError(`--ssh ${id}: give a socket or key file (${id}=PATH); only "default" reads $SSH_AUTH_SOCK`);
    const sock = env.SSH_AUTH_SOCK;
    if (!sock) throw new UsageError('--ssh default: SSH_AUTH_SOCK is not set (start an ssh-agent or give default=PATH)');
    paths = [sock];
  }
  paths = paths.map((p) => path.resolve(p.startsWith('~/') && env.HOME ? path.join(env.HOME, p.slice(2)) : p));
  for (const p of paths) {
    const st = statOrUndefined(p);
    if (!st || (!st.isSocket() && !st.isFile())) throw new UsageError(`--ssh ${id}: ${p} is neither an agent socket nor a key file`);
  }
  return { id, paths };
}

function statOrUndefined(p: string) {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}
