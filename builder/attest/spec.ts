/**
 * `--provenance`, `--sbom` and `--attest` as buildx reads them: `--provenance` alone or `=true`
 * asks for provenance (mode=min, buildx's default), `=false` for none, anything else is a list of
 * its keys (`--provenance=mode=max,version=v1`); `--attest type=provenance|sbom,KEY=V...` is the
 * long form (`disabled=true` turns one off). Every key is applied or refused in one line.
 */
import { UsageError } from '../../util/errors.js';
import type { ProvenanceOptions } from './provenance.js';

export interface AttestRequest {
  provenance?: ProvenanceOptions;
  sbom?: Record<string, never>;
}

function bool(v: string, what: string): boolean {
  const l = v.toLowerCase();
  if (['true', '1'].includes(l)) return true;
  if (['false', '0'].includes(l)) return false;
  throw new UsageError(`${what}: expected true or false, got "${v}"`);
}

function keyValues(csv: string, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of csv.split(',')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`${what}: expected KEY=VALUE, got "${part}"`);
    out[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).trim();
  }
  return out;
}

function provenanceOptions(kv: Record<string, string>, what: string): ProvenanceOptions {
  const opts: ProvenanceOptions = { mode: 'min', version: 'v1' };
  for (const [k, v] of Object.entries(kv)) {
    if (k === 'mode') {
      if (v !== 'min' && v !== 'max' && v !== 'full') throw new UsageError(`${what}: mode=${v} is not one of min, max`);
      opts.mode = v === 'full' ? 'max' : v;
    } else if (k === 'version') {
      if (v !== 'v1' && v !== 'v0.2') throw new UsageError(`${what}: version=${v} is not one of v1, v0.2`);
      opts.version = v;
    } else if (k === 'builder-id') opts.builderId = v;
    else if (k === 'reproducible') opts.reproducible = bool(v, `${what} reproducible`);
    else throw new UsageError(`${what}: the key ${k}= is not supported (mode, version, builder-id, reproducible)`);
  }
  return opts;
}

function sbomOptions(kv: Record<string, string>, what: string): Record<string, never> {
  for (const k of Object.keys(kv))
    throw new UsageError(`${what}: the key ${k}= is not supported (mbuild makes the SBOM itself: no generator image, no context or stage scans)`);
  return {};
}

/** Flag values → what to attach; undefined when nothing is asked. */
export function parseAttestFlags(provenance: string | undefined, sbom: string | undefined, attest: string[]): AttestRequest {
  const req: AttestRequest = {};
  const apply = (type: string, kv: Record<string, string>, what: string) => {
    const disabled = kv.disabled !== undefined ? bool(kv.disabled, `${what} disabled`) : false;
    delete kv.disabled;
    if (type === 'provenance') {
      const opts = provenanceOptions(kv, what);
      if (disabled) delete req.provenance;
      else req.provenance = opts;
    } else if (type === 'sbom') {
      const opts = sbomOptions(kv, what);
      if (disabled) delete req.sbom;
      else req.sbom = opts;
    } else throw new UsageError(`${what}: type=${type || '(none)'} is not supported (provenance or sbom)`);
  };
  // --attest first: --provenance and --sbom, given too, have the last word (as buildx appends them)
  for (const a of attest) {
    const what = `--attest ${a}`;
    const kv = keyValues(a, what);
    const type = kv.type ?? '';
    delete kv.type;
    apply(type, kv, what);
  }
  for (const [type, v] of [['provenance', provenance], ['sbom', sbom]] as const) {
    if (v === undefined) continue;
    const what = `--${type}=${v}`;
    if (/^(true|false|1|0)$/i.test(v)) apply(type, { disabled: String(!bool(v, what)) }, what);
    else apply(type, keyValues(v, what), what);
  }
  return req;
}
