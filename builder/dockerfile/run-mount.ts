/**
 * `RUN --mount=` values, read as BuildKit reads them (frontend/dockerfile/instructions/commands_runmount.go):
 * CSV fields of key=value (keys case-insensitive), type=bind by default, option values expanded with
 * the stage's ARG/ENV (except `from`, which takes no variables), and the same refusals for options a
 * type does not take. Pure: no I/O; the RUN step turns the result into sandbox mounts.
 */
import { MbuildError, type SourceRange } from '../../util/errors.js';

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
export type CacheSharing = 'shared' | 'private' | 'locked';

export interface RunMount {
  type: MountType;
  from?: string;
  source?: string;
  target?: string;
  readonly: boolean;
  /** tmpfs size in bytes (0: the kernel's default) */
  size?: number;
  /** cache id, secret id or ssh id as written (`id=`) */
  id?: string;
  sharing?: CacheSharing;
  required: boolean;
  /** secret: expose as this environment variable instead of (or as well as, with target) a file */
  env?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

const TYPES: MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const SHARING: CacheSharing[] = ['shared', 'private', 'locked'];
const KEYS = ['type', 'from', 'source', 'target', 'readonly', 'id', 'sharing', 'required', 'size', 'mode', 'uid', 'gid', 'src', 'dst', 'destination', 'ro', 'rw', 'readwrite', 'env'];

export class MountSpecError extends MbuildError {
  constructor(message: string, range?: SourceRange) {
    super('MBUILD_PARSE', message, { range });
  }
}

/** Splits a CSV record (Go's encoding/csv rules for one line: "quoted, ""escaped"" fields"). */
export function csvFields(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    if (s[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        if (i >= s.length) throw new Error(`extraneous or missing " in quoted-field`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            v += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        v += s[i++];
      }
      if (i < s.length && s[i] !== ',') throw new Error(`extraneous or missing " in quoted-field`);
      out.push(v);
    } else {
      const end = s.indexOf(',', i);
      const v = end < 0 ? s.slice(i) : s.slice(i, end);
      if (v.includes('"')) throw new Error(`bare " in non-quoted-field`);
      out.push(v);
      i = end < 0 ? s.length : end;
    }
    if (i >= s.length) return out;
    i++; // the comma
  }
}

function parseBool(v: string): boolean | undefined {
  // Go's strconv.ParseBool
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

/** docker/go-units RAMInBytes: "64m", "1g", "100" (bytes), binary multiples. */
export function ramInBytes(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(v.trim());
  if (!m) return undefined;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[m[2]!.toLowerCase() as 'k'];
  return Math.floor(Number(m[1]) * mult);
}

function closest(word: string, options: string[]): string | undefined {
  // BuildKit's suggest: the nearest option by edit distance, if close enough
  let best: string | undefined;
  let bestD = 3; // BuildKit's util/suggest (as hcl): closer than 3 edits
  for (const o of options) {
    const d = editDistance(word.toLowerCase(), o);
    if (d < bestD) [best, bestD] = [o, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

function suggest(msg: string, word: string, options: string[]): string {
  const s = closest(word, options);
  return s && s !== word ? `${msg} (did you mean ${s}?)` : msg;
}

/**
 * The `from=` of each mount, read before any expansion (the plan needs it to order stages).
 * A `$` in it is refused, as BuildKit refuses it.
 */
export function mountFrom(raw: string, range?: SourceRange): string | undefined {
  let fields: string[];
  try {
    fields = csvFields(raw);
  } catch (err) {
    throw new MountSpecError(`failed to parse csv mounts: ${(err as Error).message}`, range);
  }
  let from: string | undefined;
  for (const f of fields) {
    const eq = f.indexOf('=');
    if (eq < 0 || f.slice(0, eq).toLowerCase() !== 'from') continue;
    const v = f.slice(eq + 1);
    const idx = v.indexOf('$');
    if (idx !== -1 && idx !== v.length - 1) throw new MountSpecError(`'from' doesn't support variable expansion, define alias stage instead`, range);
    from = v;
  }
  return from;
}

/** One `--mount` value; `expand` expands an option value (the stage's ARG and ENV). */
export function parseRunMount(raw: string, expand: (word: string) => string, range?: SourceRange): RunMount {
  const bad = (msg: string): never => {
    throw new MountSpecError(`RUN --mount=${raw}: ${msg}`, range);
  };
  let fields: string[];
  try {
    fields = csvFields(raw);
  } catch (err) {
    return bad(`failed to parse csv mounts: ${(err as Error).message}`);
  }
  const m: RunMount = { type: 'bind', readonly: true, required: false };
  let roAuto = true;
  const bool = (key: string, v: string): boolean => parseBool(v) ?? bad(`invalid value for ${key}: ${v}`);
  const uint = (key: string, v: string, base: 8 | 10): number => {
    const ok = base === 8 ? /^[0-7]+$/.test(v) : /^\d+$/.test(v);
    const n = ok ? Number.parseInt(v, base) : NaN;
    return ok && n <= 0xffffffff ? n : bad(`invalid value ${v} for ${key}`);
  };
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro') [m.readonly, roAuto] = [true, false];
      else if (key === 'readwrite' || key === 'rw') [m.readonly, roAuto] = [false, false];
      else if (key === 'required') {
        if (m.type !== 'secret' && m.type !== 'ssh') bad(`unexpected key '${key}' for mount type '${m.type}'`);
        m.required = true;
      } else bad(`invalid field '${field}' must be a key=value pair`);
      continue;
    }
    let value = field.slice(eq + 1);
    if (key === 'from') mountFrom(field, range);
    else value = expand(value);
    switch (key) {
      case 'type': {
        const t = value.toLowerCase() as MountType;
        if (!TYPES.includes(t)) bad(suggest(`unsupported mount type "${value}"`, value, TYPES));
        m.type = t;
        break;
      }
      case 'from':
        m.from = value;
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
        roAuto = false;
        break;
      case 'readwrite':
      case 'rw':
        m.readonly = !bool(key, value);
        roAuto = false;
        break;
      case 'required':
        if (m.type !== 'secret' && m.type !== 'ssh') bad(`unexpected key '${key}' for mount type '${m.type}'`);
        m.required = bool(key, value);
        break;
      case 'size': {
        if (m.type !== 'tmpfs') bad(`unexpected key '${key}' for mount type '${m.type}'`);
        const n = ramInBytes(value);
        m.size = n ?? bad(`invalid value for ${key}: ${value}`);
        break;
      }
      case 'id':
        m.id = value;
        break;
      case 'sharing': {
        const s = value.toLowerCase() as CacheSharing;
        if (!SHARING.includes(s)) bad(suggest(`unsupported sharing value "${value}"`, value, SHARING));
        m.sharing = s;
        break;
      }
      case 'mode':
        m.mode = uint('mode', value, 8);
        break;
      case 'uid':
        m.uid = uint('uid', value, 10);
        break;
      case 'gid':
        m.gid = uint('gid', value, 10);
        break;
      case 'env':
        m.env = value;
        break;
      default:
        bad(suggest(`unexpected key '${key}' in '${field}'`, key, KEYS));
    }
  }
  if (m.type !== 'secret' && m.type !== 'ssh' && m.type !== 'cache') {
    for (const k of ['mode', 'uid', 'gid'] as const) if (m[k] !== undefined) bad(`${k} not allowed for "${m.type}" type mounts`);
  }
  if (roAuto) m.readonly = m.type !== 'cache' && m.type !== 'tmpfs';
  if (m.type === 'secret') {
    if (m.from !== undefined && m.from !== '') bad('secret mount should not have a from');
    if (m.sharing) bad('secret mount should not define sharing');
    if (!m.source && !m.target && !m.id) bad('invalid secret mount. one of source, target required');
    if (m.source && m.id) bad("both source and id can't be set");
  }
  if (m.sharing && m.type !== 'cache') bad(`invalid cache sharing set for ${m.type} mount`);
  if (m.type === 'ssh' && m.source) bad('ssh does not support source');
  if (m.env !== undefined && m.type !== 'secret') bad(`unexpected key 'env' for mount type '${m.type}'`);
  return m;
}
