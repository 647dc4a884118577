/** Cache keys: a digest of a step's definition and its parent's key (BuildKit's idea). */
import { createHash } from 'node:crypto';

/** JSON with sorted object keys, so equal inputs always give equal bytes. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

export function digestOf(value: unknown): string {
  return 'sha256:' + createHash('sha256').update(typeof value === 'string' ? value : canonicalJson(value)).digest('hex');
}

/** The key of a step: its parent's key plus what the step reads and does. */
export function stepKey(parent: string, inputs: Record<string, unknown>): string {
  return digestOf({ parent, inputs });
}

/** Per-input digests of a step, kept so a later miss can say which input changed. */
export function inputDigests(inputs: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(inputs)) if (v !== undefined) out[k] = digestOf(v).slice(7, 23);
  return out;
}
