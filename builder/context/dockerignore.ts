/**
 * .dockerignore parsing and matching with the semantics of BuildKit's context transfer
 * (moby/buildkit dockerignore.ReadAll + moby/patternmatcher + the tonistiigi/fsutil walker).
 *
 * Pattern rules, as BuildKit applies them:
 *  - lines starting with '#' (before trimming) are comments; blank lines are ignored; a UTF-8 BOM
 *    on the first line is dropped;
 *  - whitespace is trimmed, a leading '!' marks a re-include, the rest is filepath.Clean'ed and a
 *    leading '/' removed, so patterns are anchored at the context root;
 *  - a pattern is matched against the whole slash-separated path: '*' and '?' never cross '/',
 *    '**' matches any number of segments, `[...]` classes and '\' escapes work as in Go;
 *  - a path is excluded when the last pattern that matches it (or one of its parent directories)
 *    is a plain pattern; a '!' pattern that matches wins the other way;
 *  - an excluded directory is only descended into when some '!' pattern could re-include
 *    something below it (see {@link IgnoreMatcher.mayReincludeUnder}).
 *
 * The matching reproduces patternmatcher's translation of a pattern into a regular expression
 * (including its exact/prefix/suffix shortcuts), so odd patterns behave as in docker build.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { IgnorePatternError, MbuildError } from '../../util/errors.js';
import { isValidGoPattern } from './gomatch.js';
import { resolveInScope } from './scope.js';

/** Go filepath.Clean for slash-separated paths. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  let n = path.posix.normalize(p);
  if (n.length > 1 && n.endsWith('/')) n = n.slice(0, -1);
  return n;
}

type MatchKind = 'exact' | 'prefix' | 'suffix' | 'regexp';

interface Pattern {
  /** the pattern text without '!' */
  text: string;
  exclusion: boolean;
  kind: MatchKind;
  re?: RegExp;
}

// ---------------------------------------------------------------------------------------------
// pattern -> RE2 source (as patternmatcher builds it) -> JavaScript RegExp

const RE2_ESCAPED = new Set(['.', '+', '(', ')', '|', '{', '}', '$']);

/** Build the same regular-expression source patternmatcher builds, and classify the pattern. */
function compileToRe2(text: string): { kind: MatchKind; source: string } {
  const cs = Array.from(text);
  let kind: MatchKind = 'exact';
  let re = '^';
  let k = 0;
  for (let iter = 0; k < cs.length; iter++) {
    const ch = cs[k++];
    if (ch === '*') {
      if (cs[k] === '*') {
        k++;
        if (cs[k] === '/') k++; // "**/" is the same as "**"
        if (k >= cs.length) {
          if (kind === 'exact') {
            kind = 'prefix';
          } else {
            re += '.*';
            kind = 'regexp';
          }
        } else {
          re += '(.*/)?';
          kind = 'regexp';
        }
        if (iter === 0) kind = 'suffix';
      } else {
        re += '[^/]*';
        kind = 'regexp';
      }
    } else if (ch === '?') {
      re += '[^/]';
      kind = 'regexp';
    } else if (RE2_ESCAPED.has(ch)) {
      re += '\\' + ch;
    } else if (ch === '\\') {
      if (k < cs.length) {
        re += '\\' + cs[k++];
        kind = 'regexp';
      } else {
        re += '\\';
      }
    } else if (ch === '[' || ch === ']') {
      re += ch;
      kind = 'regexp';
    } else {
      re += ch;
    }
  }
  return { kind, source: re + '$' };
}

const JS_SYNTAX = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`\\{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

const isAsciiAlnum = (c: string): boolean => /^[0-9A-Za-z]$/.test(c);

/**
 * Translate the RE2 source produced above into an equivalent JavaScript RegExp (flag 'u').
 * Handles what the generated sources can contain: literals, escapes, classes (with RE2's
 * "']' first is literal" and [:posix:] rules), '.', groups and quantifiers. Exotic RE2
 * escapes (\x, \p, \Q, octal, ...) are refused with an error rather than guessed.
 */
function re2ToJs(src: string, original: string): RegExp {
  const cs = Array.from(src);
  const bad = (why: string): never => {
    throw new IgnorePatternError(`invalid .dockerignore pattern ${JSON.stringify(original)}: ${why}`);
  };
  const lit = (c: string, inClass: boolean): string =>
    JS_SYNTAX.has(c) || (inClass && c === '-') ? '\\' + c : c;
  let out = '';
  let i = 0;
  while (i < cs.length) {
    const c = cs[i++];
    if (c === '\\') {
      if (i >= cs.length) bad('trailing backslash');
      const e = cs[i++];
      out += escapeOutside(e, bad) ?? lit(e, false);
    } else if (c === '.') {
      out += '[^\\n]'; // RE2 '.' without the s flag: anything but newline
    } else if (c === '[') {
      out += '[';
      if (cs[i] === '^') {
        out += '^';
        i++;
      }
      let first = true;
      let closed = false;
      while (i < cs.length) {
        const d = cs[i];
        if (d === ']' && !first) {
          i++;
          closed = true;
          break;
        }
        first = false;
        if (d === '[' && cs[i + 1] === ':') {
          let end = -1;
          for (let j = i + 2; j + 1 < cs.length; j++) {
            if (cs[j] === ':' && cs[j + 1] === ']') {
              end = j;
              break;
            }
          }
          if (end > 0) {
            const name = cs.slice(i + 2, end).join('');
            if (name.startsWith('^')) bad('negated POSIX class in a class is not supported');
            const cls = POSIX_CLASSES[name];
            if (cls === undefined) bad(`unknown POSIX class [:${name}:]`);
            out += cls;
            i = end + 2;
            continue;
          }
        }
        if (d === '\\') {
          if (i + 1 >= cs.length) bad('trailing backslash');
          const e = cs[i + 1];
          i += 2;
          out += escapeInClass(e, bad) ?? lit(e, true);
          continue;
        }
        // '-' between two members is a range in both dialects; keep it raw
        out += d === '-' ? '-' : lit(d, true);
        i++;
      }
      if (!closed) bad('missing closing ]');
      out += ']';
    } else if (c === ']') {
      out += '\\]';
    } else if (c === '^' || c === '$' || c === '(' || c === ')' || c === '?' || c === '*' || c === '|') {
      out += c;
    } else {
      out += lit(c, false);
    }
  }
  try {
    return new RegExp(out, 'u');
  } catch (e) {
    return bad((e as Error).message);
  }
}

/** RE2 escape outside a class: JS text for special escapes, undefined for a plain literal. */
function escapeOutside(e: string, bad: (why: string) => never): string | undefined {
  const code = e.codePointAt(0)!;
  if (code >= 0x80) bad(`invalid escape \\${e}`);
  if (!isAsciiAlnum(e)) return undefined; // escaped punctuation is a literal
  switch (e) {
    case 'd':
      return '[0-9]';
    case 'D':
      return '[^0-9]';
    case 's':
      return '[\\t\\n\\f\\r ]';
    case 'S':
      return '[^\\t\\n\\f\\r ]';
    case 'w':
      return '[0-9A-Za-z_]';
    case 'W':
      return '[^0-9A-Za-z_]';
    case 'b':
      return '\\b';
    case 'B':
      return '\\B';
    case 'A':
      return '^';
    case 'z':
      return '(?![\\s\\S])';
    default:
      return escapeChar(e) ?? bad(`unsupported escape \\${e}`);
  }
}

function escapeInClass(e: string, bad: (why: string) => never): string | undefined {
  const code = e.codePointAt(0)!;
  if (code >= 0x80) bad(`invalid escape \\${e}`);
  if (!isAsciiAlnum(e)) return undefined;
  switch (e) {
    case 'd':
      return '0-9';
    case 's':
      return '\\t\\n\\f\\r ';
    case 'w':
      return '0-9A-Za-z_';
    default:
      return escapeChar(e) ?? bad(`unsupported escape \\${e} in a class`);
  }
}

function escapeChar(e: string): string | undefined {
  switch (e) {
    case 'a':
      return '\\x07';
    case 'f':
      return '\\f';
    case 'n':
      return '\\n';
    case 'r':
      return '\\r';
    case 't':
      return '\\t';
    case 'v':
      return '\\v';
    default:
      return undefined;
  }
}

function compilePattern(text: string, exclusion: boolean, line: string): Pattern {
  const { kind, source } = compileToRe2(text);
  const p: Pattern = { text, exclusion, kind };
  if (kind === 'regexp') p.re = re2ToJs(source, line);
  return p;
}

function patternMatches(p: Pattern, file: string): boolean {
  switch (p.kind) {
    case 'exact':
      return file === p.text;
    case 'prefix':
      return file.startsWith(p.text.slice(0, -2));
    case 'suffix': {
      const suffix = p.text.slice(2);
      if (file.endsWith(suffix)) return true;
      // "**/foo" also matches "foo"
      return suffix.startsWith('/') && file === suffix.slice(1);
    }
    case 'regexp':
      return p.re!.test(file);
  }
}

/** Pattern text without a trailing "/**" or "/*" (fsutil's patternWithoutTrailingGlob). */
function withoutTrailingGlob(text: string): string {
  let t = text;
  if (t.endsWith('/**')) t = t.slice(0, -3);
  if (t.endsWith('/*')) t = t.slice(0, -2);
  return t;
}

interface StepResult {
  excluded: boolean;
  /** per pattern: did it match this path (or, via the parent, one of its ancestors) */
  info: boolean[];
}

const CACHE_LIMIT = 65536;

export class IgnoreMatcher {
  private readonly patterns: Pattern[];
  private readonly hasExclusions: boolean;
  /** true when every '!' pattern is a plain path (maybe with a trailing glob) */
  private readonly onlyPrefixExceptions: boolean;
  private readonly cache = new Map<string, StepResult>();

  private constructor(patterns: Pattern[]) {
    this.patterns = patterns;
    this.hasExclusions = patterns.some((p) => p.exclusion);
    this.onlyPrefixExceptions = !patterns.some((p) => p.exclusion && /[*[\]?^\\]/.test(withoutTrailingGlob(p.text)));
  }

  /** A matcher that excludes nothing. */
  static empty(): IgnoreMatcher {
    return new IgnoreMatcher([]);
  }

  /** Parse .dockerignore text. Throws IgnorePatternError (MBUILD_DOCKERIGNORE) for a bad pattern. */
  static parse(text: string): IgnoreMatcher {
    const patterns: Pattern[] = [];
    const lines = text.split('\n');
    lines.forEach((raw, idx) => {
      let line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (idx === 0 && line.startsWith('\uFEFF')) line = line.slice(1);
      if (line.startsWith('#')) return;
      let p = line.trim();
      if (p === '') return;
      const invert = p.startsWith('!');
      if (invert) p = p.slice(1).trim();
      if (p.length > 0) {
        p = cleanPath(p);
        if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
      }
      if (invert && p === '') {
        throw new IgnorePatternError(`invalid .dockerignore line ${idx + 1}: illegal exclusion pattern "!"`);
      }
      if (!isValidGoPattern(p)) {
        throw new IgnorePatternError(
          `invalid .dockerignore line ${idx + 1}: syntax error in pattern ${JSON.stringify(line.trim())}`,
        );
      }
      patterns.push(compilePattern(p, invert, line.trim()));
    });
    return new IgnoreMatcher(patterns);
  }

  /**
   * A matcher from a list of patterns, as moby/patternmatcher.New takes them (COPY --exclude,
   * the include pattern of COPY --parents): no comment lines. `what` names the flag in errors.
   */
  static fromPatterns(list: string[], what: string): IgnoreMatcher {
    const patterns: Pattern[] = [];
    for (const raw of list) {
      let p = raw.trim();
      if (p === '') continue;
      const invert = p.startsWith('!');
      if (invert) p = p.slice(1).trim();
      if (p.length > 0) {
        p = cleanPath(p);
        if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
      }
      if (invert && p === '') throw new IgnorePatternError(`${what}: illegal exclusion pattern "!"`);
      if (!isValidGoPattern(p)) throw new IgnorePatternError(`${what}: syntax error in pattern ${JSON.stringify(raw)}`);
      patterns.push(compilePattern(p, invert, raw));
    }
    return new IgnoreMatcher(patterns);
  }

  /** The patterns in file order (text without '!'), for the CopyIgnoredFile check. */
  get patternList(): { text: string; exclusion: boolean }[] {
    return this.patterns.map((p) => ({ text: p.text, exclusion: p.exclusion }));
  }

  /** True if there are no patterns at all. */
  get isEmpty(): boolean {
    return this.patterns.length === 0;
  }

  /**
   * One step of the fsutil walk (patternmatcher MatchesUsingParentResults): match `file`,
   * reusing what its parent directory matched. Without parent info, ancestors are tried
   * directly (MatchesOrParentMatches).
   */
  private step(file: string, parent: boolean[] | undefined): StepResult {
    let excluded = false;
    const info = new Array<boolean>(this.patterns.length).fill(false);
    this.patterns.forEach((p, i) => {
      let m = parent ? parent[i] : false;
      if (!m) {
        // skipping cannot change the outcome: the pattern would only re-assert the current state
        if (p.exclusion !== excluded) return;
        m = patternMatches(p, file);
        if (!m && !parent) {
          const dirs = file.split('/');
          for (let j = 1; j < dirs.length && !m; j++) m = patternMatches(p, dirs.slice(0, j).join('/'));
        }
      }
      info[i] = m;
      if (m) excluded = !p.exclusion;
    });
    return { excluded, info };
  }

  private lookup(rel: string): StepResult {
    const hit = this.cache.get(rel);
    if (hit) return hit;
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? undefined : this.lookup(rel.slice(0, slash)).info;
    const res = this.step(rel, parent);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(rel, res);
    return res;
  }

  /** relPath: slash-separated, relative to context root, no leading "./" */
  excludes(relPath: string): boolean {
    if (this.patterns.length === 0) return false;
    const rel = normalizeRel(relPath);
    if (rel === '') return false; // the context root itself is never excluded
    return this.lookup(rel).excluded;
  }

  /** true if some '!' pattern could re-include something under this excluded dir (so the walker must still descend) */
  mayReincludeUnder(relDir: string): boolean {
    if (!this.hasExclusions) return false;
    if (!this.onlyPrefixExceptions) return true;
    const rel = normalizeRel(relDir);
    if (rel === '') return true;
    const dirSlash = rel + '/';
    return this.patterns.some((p) => p.exclusion && (withoutTrailingGlob(p.text) + '/').startsWith(dirSlash));
  }
}

/** "./a//b/" -> "a/b"; "", ".", "/" -> "" */
function normalizeRel(p: string): string {
  let c = cleanPath(p);
  if (c.startsWith('/')) c = c.replace(/^\/+/, '');
  if (c === '.' || c === '') return '';
  return c;
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new MbuildError('MBUILD_DOCKERIGNORE', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * `<Dockerfile>.dockerignore` beside the Dockerfile wins over contextDir/.dockerignore;
 * none → matcher that excludes nothing. The context's .dockerignore is looked up inside the
 * context's scope (a symlink cannot make us read a file outside the context).
 */
export async function loadIgnore(contextDir: string, dockerfilePath?: string): Promise<IgnoreMatcher> {
  if (dockerfilePath !== undefined && dockerfilePath !== '' && dockerfilePath !== '-') {
    const text = await readIfExists(path.resolve(dockerfilePath) + '.dockerignore');
    if (text !== undefined) return IgnoreMatcher.parse(text);
  }
  const file = await resolveInScope(contextDir, '.dockerignore', true);
  const text = await readIfExists(file);
  return text === undefined ? IgnoreMatcher.empty() : IgnoreMatcher.parse(text);
}
