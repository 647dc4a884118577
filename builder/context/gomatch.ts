/**
 * Go `path/filepath.Match` semantics (Unix flavour), reimplemented for mbuild.
 *
 *   '*'         any sequence of non-'/' characters
 *   '?'         any single non-'/' character
 *   '[' [ '^' ] { lo [ '-' hi ] } ']'   character class (may match '/', like Go)
 *   '\\' c      the literal c
 *
 * The whole pattern is validated, even when the match fails early, and a malformed
 * pattern throws {@link BadPatternError} (Go's ErrBadPattern). Works on Unicode code
 * points, so '?' and classes consume one character, not one UTF-16 unit.
 */
import { BadPatternError } from '../../util/errors.js';

interface Chunk {
  star: boolean;
  chunk: string[];
  next: number;
}

/** Split off the next chunk: leading stars, then everything up to the next '*' outside a class. */
function nextChunk(p: string[], from: number): Chunk {
  let i = from;
  let star = false;
  while (i < p.length && p[i] === '*') {
    star = true;
    i++;
  }
  const start = i;
  let inClass = false;
  for (; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') {
      if (i + 1 < p.length) i++; // a dangling '\' is reported by matchChunk
    } else if (c === '[') {
      inClass = true;
    } else if (c === ']') {
      inClass = false;
    } else if (c === '*' && !inClass) {
      break;
    }
  }
  return { star, chunk: p.slice(start, i), next: i };
}

/** One (possibly escaped) class member; returns the code point and the index after it. */
function classChar(chunk: string[], i: number, fail: () => never): [number, number] {
  if (i >= chunk.length || chunk[i] === '-' || chunk[i] === ']') fail();
  if (chunk[i] === '\\') {
    i++;
    if (i >= chunk.length) fail();
  }
  const cp = chunk[i].codePointAt(0)!;
  i++;
  // a class member must be followed by something (at least the closing ']')
  if (i >= chunk.length) fail();
  return [cp, i];
}

/**
 * Match `chunk` (no unescaped '*' outside classes) at the start of s[from..].
 * Returns the index in s after the match, or -1. Keeps parsing after a mismatch so that
 * malformed chunks are always reported.
 */
function matchChunk(chunk: string[], s: string[], from: number, fail: () => never): number {
  let i = from;
  let failed = false;
  let c = 0;
  while (c < chunk.length) {
    if (!failed && i >= s.length) failed = true;
    const ch = chunk[c];
    if (ch === '[') {
      let r = -1;
      if (!failed) {
        r = s[i].codePointAt(0)!;
        i++;
      }
      c++;
      let negated = false;
      if (c < chunk.length && chunk[c] === '^') {
        negated = true;
        c++;
      }
      let hit = false;
      let ranges = 0;
      for (;;) {
        if (c < chunk.length && chunk[c] === ']' && ranges > 0) {
          c++;
          break;
        }
        let lo: number;
        let hi: number;
        [lo, c] = classChar(chunk, c, fail);
        hi = lo;
        if (chunk[c] === '-') [hi, c] = classChar(chunk, c + 1, fail);
        if (lo <= r && r <= hi) hit = true;
        ranges++;
      }
      if (hit === negated) failed = true;
    } else if (ch === '?') {
      if (!failed) {
        if (s[i] === '/') failed = true;
        i++;
      }
      c++;
    } else {
      let lit = ch;
      if (ch === '\\') {
        c++;
        if (c >= chunk.length) fail();
        lit = chunk[c];
      }
      if (!failed) {
        if (s[i] !== lit) failed = true;
        i++;
      }
      c++;
    }
  }
  return failed ? -1 : i;
}

/** Go filepath.Match(pattern, name). Throws BadPatternError for a malformed pattern. */
export function goMatch(pattern: string, name: string): boolean {
  const p = Array.from(pattern);
  const s = Array.from(name);
  const fail = (): never => {
    throw new BadPatternError(pattern);
  };
  let pi = 0;
  let si = 0;
  outer: while (pi < p.length) {
    const { star, chunk, next } = nextChunk(p, pi);
    pi = next;
    if (star && chunk.length === 0) {
      // trailing '*' matches the rest unless it contains a separator
      for (let k = si; k < s.length; k++) if (s[k] === '/') return false;
      return true;
    }
    const t = matchChunk(chunk, s, si, fail);
    // the last chunk must consume the whole name
    if (t >= 0 && (t === s.length || pi < p.length)) {
      si = t;
      continue;
    }
    if (star) {
      // let the star swallow 1..n more characters (never a '/')
      for (let k = si; k < s.length && s[k] !== '/'; k++) {
        const u = matchChunk(chunk, s, k + 1, fail);
        if (u >= 0) {
          if (pi >= p.length && u < s.length) continue;
          si = u;
          continue outer;
        }
      }
    }
    // no match: still report a malformed remainder
    while (pi < p.length) {
      const rest = nextChunk(p, pi);
      pi = rest.next;
      matchChunk(rest.chunk, [], 0, fail);
    }
    return false;
  }
  return si === s.length;
}

/** True if `pattern` is well-formed for goMatch. */
export function isValidGoPattern(pattern: string): boolean {
  try {
    goMatch(pattern, '.');
    return true;
  } catch (e) {
    if (e instanceof BadPatternError) return false;
    throw e;
  }
}

/** True if a path segment contains an unescaped wildcard character ('*', '?' or '['). */
export function hasWildcards(segment: string): boolean {
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === '\\') i++;
    else if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}
