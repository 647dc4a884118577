/**
 * The build flags a server takes from a client (cli/build-flags.ts REMOTE marks them `server`;
 * test/unit/server/remote-flags.test.ts keeps the two lists equal). Each reaches the worker as
 * `--name=value`, so no value can read as another flag; values that would reach for the server's
 * own files are refused here: an oci-layout:// named context, a type=local cache directory, an -o
 * with a dest (archives are written by the server into the build's folder and streamed back).
 */
import { UsageError } from '../util/errors.js';
import { remoteCacheSpecs } from '../builder/cache/remote-spec.js';
import { parseOutput } from '../builder/executor/output-spec.js';

type Kind = 'bool' | 'string' | 'list';

export const FORWARDED: Record<string, Kind> = {
  '--tag': 'list',
  '--build-context': 'list',
  '--target': 'string',
  '--label': 'list',
  '--annotation': 'list',
  '--network': 'string',
  '--add-host': 'list',
  '--shm-size': 'string',
  '--ulimit': 'list',
  '--memory': 'string',
  '--cpus': 'string',
  '--pids-limit': 'string',
  '--push': 'bool',
  '--load': 'bool',
  '--no-cache': 'bool',
  '--no-cache-filter': 'list',
  '--cache-from': 'list',
  '--cache-to': 'list',
  '--pull': 'bool',
  '--platform': 'list',
  '--provenance': 'string',
  '--sbom': 'string',
  '--attest': 'list',
  '--jobs': 'string',
  '--allow': 'list',
  '--check': 'bool',
  '--call': 'string',
  '--rm': 'bool',
  '--force-rm': 'bool',
  '--disable-content-trust': 'bool',
  '--isolation': 'string',
};

/** Only -o type=image|registry travel as a flag (they name and push in the server's store). */
export const FORWARDED_OUTPUT = '--output';

export interface ServerPolicy {
  /** `mbuild serve --allow-insecure-entitlement security.insecure` (buildkitd's flag) */
  allowInsecure: boolean;
}

/** The worker's arguments for a client's flags, or a UsageError naming the first one refused. */
export function forwardedArgs(flags: unknown, policy: ServerPolicy): string[] {
  if (!Array.isArray(flags)) throw new UsageError('build request: flags must be a list');
  const out: string[] = [];
  const cacheFrom: string[] = [];
  const cacheTo: string[] = [];
  for (const f of flags as unknown[]) {
    if (!Array.isArray(f) || f.length !== 2 || typeof f[0] !== 'string' || (typeof f[1] !== 'string' && typeof f[1] !== 'boolean')) throw new UsageError('build request: invalid flag');
    const [name, value] = f as [string, string | boolean];
    if (name === FORWARDED_OUTPUT) {
      const o = parseOutput(String(value));
      if (o.type !== 'image' && o.type !== 'registry') throw new UsageError(`build request: --output ${value}: only type=image|registry travel as a flag`);
      out.push(`${name}=${value}`);
      continue;
    }
    const kind = FORWARDED[name];
    if (!kind) throw new UsageError(`build request: ${name} is not taken from a client`);
    if ((kind === 'bool') !== (typeof value === 'boolean')) throw new UsageError(`build request: invalid value for ${name}`);
    if (name === '--build-context' && !/^[^=]+=docker-image:\/\//.test(value as string)) throw new UsageError(`--build-context ${value}: with --host only docker-image://REF (a path would be the server's)`);
    if (name === '--allow' && value === 'security.insecure' && !policy.allowInsecure) throw new UsageError('--allow security.insecure: this server was not started with --allow-insecure-entitlement security.insecure');
    if (name === '--cache-from') cacheFrom.push(value as string);
    if (name === '--cache-to') cacheTo.push(value as string);
    out.push(`${name}=${value}`);
  }
  remoteCacheSpecs(cacheFrom, cacheTo);
  return out;
}
