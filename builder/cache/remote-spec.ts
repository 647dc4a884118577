/**
 * `--cache-to` / `--cache-from` values in buildx's syntax: `type=registry,ref=R[,mode=min|max]`,
 * `type=local,dest=DIR` / `type=local,src=DIR`, `type=inline`, and a bare `IMAGE` meaning
 * `type=registry,ref=IMAGE`. Every key is either honoured or refused with one line naming the flag.
 */
import { UsageError } from '../../util/errors.js';

export type CacheMode = 'min' | 'max';

export type CacheExportSpec =
  | { type: 'registry'; ref: string; mode: CacheMode; ignoreError: boolean; maxAgeMs: number }
  | { type: 'local'; dir: string; mode: CacheMode; ignoreError: boolean; maxAgeMs: number; maxBytes: number }
  | { type: 'inline' };

export type CacheImportSpec = { type: 'registry'; ref: string } | { type: 'local'; dir: string };

/** A cache keeps a step this long after the last export that used it (buildx has no limit; ours is settable). */
export const DEFAULT_MAX_AGE_MS = 14 * 24 * 3600 * 1000;
/** A local cache directory is trimmed to this many bytes of layers, least recently exported first. */
export const DEFAULT_LOCAL_MAX_BYTES = 10 * 1024 ** 3;

function fields(flag: string, spec: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} ${spec}: expected key=value pairs (e.g. type=registry,ref=REGISTRY/NAME:TAG)`);
    const k = part.slice(0, eq).trim();
    if (k in out) throw new UsageError(`${flag} ${spec}: "${k}" is given twice`);
    out[k] = part.slice(eq + 1).trim();
  }
  return out;
}

function refuseOthers(flag: string, spec: string, f: Record<string, string>, allowed: string[]): void {
  const extra = Object.keys(f).filter((k) => k !== 'type' && !allowed.includes(k));
  if (extra.length) {
    const type = f.type ?? 'registry';
    throw new UsageError(`${flag} ${spec}: unknown key "${extra[0]}" for type=${type} (${allowed.length ? 'known: ' + allowed.join(', ') : 'it takes no keys'})`);
  }
}

function need(flag: string, spec: string, f: Record<string, string>, key: string): string {
  const v = f[key];
  if (!v) throw new UsageError(`${flag} ${spec}: type=${f.type} needs ${key}=`);
  return v;
}

function mode(flag: string, spec: string, v: string | undefined): CacheMode {
  if (v === undefined || v === 'min' || v === 'max') return v ?? 'min';
  throw new UsageError(`${flag} ${spec}: mode=${v}: use min or max`);
}

function bool(flag: string, spec: string, key: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (v === 'true' || v === 'false') return v === 'true';
  throw new UsageError(`${flag} ${spec}: ${key}=${v}: use true or false`);
}

/** Keys mbuild always satisfies (its cache is an OCI image manifest): only their `true` is accepted. */
function onlyTrue(flag: string, spec: string, f: Record<string, string>): void {
  for (const k of ['oci-mediatypes', 'image-manifest']) {
    if (f[k] !== undefined && f[k] !== 'true') throw new UsageError(`${flag} ${spec}: ${k}=${f[k]}: mbuild writes only the OCI image-manifest form (${k}=true)`);
  }
  if (f.compression !== undefined && f.compression !== 'gzip') throw new UsageError(`${flag} ${spec}: compression=${f.compression}: mbuild compresses cache layers with gzip only`);
}

export function parseDuration(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(v.trim());
  if (!m) throw new UsageError(`${flag}: max-age=${v}: give a duration such as 36h or 7d`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

export function parseSize(flag: string, v: string): number {
  const m = /^(\d+)([kmgt]?)i?b?$/i.exec(v.trim());
  if (!m) throw new UsageError(`${flag}: max-size=${v}: give a size such as 512m or 10g`);
  return Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
}

export function parseCacheTo(spec: string): CacheExportSpec {
  const flag = '--cache-to';
  const f = spec.includes('=') ? fields(flag, spec) : { type: 'registry', ref: spec };
  const type = f.type ?? 'registry';
  const common = () => ({
    mode: mode(flag, spec, f.mode),
    ignoreError: bool(flag, spec, 'ignore-error', f['ignore-error'], false),
    maxAgeMs: f['max-age'] !== undefined ? parseDuration(flag, f['max-age']) : DEFAULT_MAX_AGE_MS,
  });
  if (type === 'registry') {
    refuseOthers(flag, spec, f, ['ref', 'mode', 'ignore-error', 'max-age', 'oci-mediatypes', 'image-manifest', 'compression']);
    onlyTrue(flag, spec, f);
    return { type, ref: need(flag, spec, { ...f, type }, 'ref'), ...common() };
  }
  if (type === 'local') {
    refuseOthers(flag, spec, f, ['dest', 'mode', 'ignore-error', 'max-age', 'max-size', 'oci-mediatypes', 'image-manifest', 'compression']);
    onlyTrue(flag, spec, f);
    const maxBytes = f['max-size'] !== undefined ? parseSize(flag, f['max-size']) : DEFAULT_LOCAL_MAX_BYTES;
    return { type, dir: need(flag, spec, f, 'dest'), ...common(), maxBytes };
  }
  if (type === 'inline') {
    // BuildKit's inline cache holds the final image's own steps only (mode=min)
    if (f.mode === 'max') throw new UsageError(`${flag} ${spec}: type=inline supports only mode=min (use type=registry for mode=max)`);
    refuseOthers(flag, spec, f, ['mode']);
    return { type };
  }
  throw new UsageError(`${flag} ${spec}: unknown cache type "${type}" (registry, local or inline)`);
}

export function parseCacheFrom(spec: string): CacheImportSpec {
  const flag = '--cache-from';
  const f = spec.includes('=') ? fields(flag, spec) : { type: 'registry', ref: spec };
  const type = f.type ?? 'registry';
  if (type === 'registry') {
    refuseOthers(flag, spec, f, ['ref']);
    return { type, ref: need(flag, spec, { ...f, type }, 'ref') };
  }
  if (type === 'local') {
    refuseOthers(flag, spec, f, ['src']);
    return { type, dir: need(flag, spec, f, 'src') };
  }
  if (type === 'inline') throw new UsageError(`${flag} ${spec}: type=inline is for --cache-to; import an inline cache with --cache-from IMAGE`);
  throw new UsageError(`${flag} ${spec}: unknown cache type "${type}" (registry or local)`);
}

/**
 * --cache-from / --cache-to as a server takes them: checked with the local parser, and no
 * type=local (the directory would be on the server, where a client must not choose paths).
 * Both the client (cli/remote-build.ts) and the server (server/service.ts) check.
 */
export function remoteCacheSpecs(cacheFrom: string[], cacheTo: string[]): void {
  for (const [flag, specs, parse] of [['--cache-from', cacheFrom, parseCacheFrom], ['--cache-to', cacheTo, parseCacheTo]] as const) {
    for (const spec of specs) {
      if (parse(spec).type === 'local') throw new UsageError(`${flag} ${spec}: type=local is not available with --host / MBUILD_HOST (the directory would be on the server); use type=registry`);
    }
  }
}
