/**
 * Shell-word processing with the semantics of BuildKit's Dockerfile lexer
 * (moby/buildkit frontend/dockerfile/shell/lex.go, ProcessWord / ProcessWords).
 *
 * What it does (and deliberately nothing more, since Dockerfile words are not run by a shell):
 *  - single quotes: everything literal up to the next `'` (no escapes inside);
 *  - double quotes: literal except `$…` expansion; the escape token escapes `"`, `$` and itself,
 *    before any other character it stays as-is;
 *  - outside quotes the escape token escapes any character (a trailing one is dropped);
 *  - `$NAME`, `${NAME}` and the modifiers `:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%` `/` `//`
 *    (patterns are shell globs: `*` and `?`, `\` escapes them);
 *  - positional (`$1`) and special (`$@ $* $# $? $- $$ $! $0`) parameters are looked up like any
 *    name, so they are normally empty;
 *  - unknown variables expand to the empty string.
 *
 * Everything works on code points, as Go's text/scanner does. Errors are MbuildError with code
 * MBUILD_EXPAND and a message worded like BuildKit's (`failed to process "…": …`).
 */
import { MbuildError } from '../../util/errors.js';

export type EnvLookup = (name: string) => string | undefined;
export type EscapeToken = '\\' | '`';

/** Lexer switches, named after the fields of BuildKit's `shell.Lex`. All default to false. */
export interface LexOptions {
  /** Keep quote characters in the output (quotes still group words and stop expansion). */
  rawQuotes?: boolean;
  /** Keep escape tokens in the output (the escaped character is still taken literally). */
  rawEscapes?: boolean;
  /** Treat `'` and `"` as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as they were written instead of expanding to "". */
  skipUnsetEnv?: boolean;
}

export interface ProcessResult {
  /** The expanded word (ProcessWord). */
  result: string;
  /** The expanded word split on unquoted whitespace (ProcessWords). */
  words: string[];
  /** Names that were looked up and found. */
  matched: Set<string>;
  /** Names that were looked up and not found. */
  unmatched: Set<string>;
}

const EOF = -1;
const REPLACEMENT_CHAR = '\uFFFD';

/** Go's unicode.IsSpace (the Unicode White_Space property). */
function isSpace(ch: string): boolean {
  return /^\p{White_Space}$/u.test(ch);
}
function isLetter(ch: string): boolean {
  return /^\p{L}$/u.test(ch);
}
function isDigit(ch: string): boolean {
  return /^\p{Nd}$/u.test(ch);
}

/** Go's strconv.Quote, close enough for error messages. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"': out += '\\"'; continue;
      case '\\': out += '\\\\'; continue;
      case '\x07': out += '\\a'; continue;
      case '\b': out += '\\b'; continue;
      case '\f': out += '\\f'; continue;
      case '\n': out += '\\n'; continue;
      case '\r': out += '\\r'; continue;
      case '\t': out += '\\t'; continue;
      case '\v': out += '\\v'; continue;
    }
    if (cp < 0x20 || cp === 0x7f) {
      out += '\\x' + cp.toString(16).padStart(2, '0');
    } else if (/^[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}\p{Cn}]$/u.test(ch) || (cp >= 0x80 && cp <= 0x9f)) {
      out += cp > 0xffff ? '\\U' + cp.toString(16).padStart(8, '0') : '\\u' + cp.toString(16).padStart(4, '0');
    } else {
      out += ch;
    }
  }
  return out + '"';
}

class ExpandFailure extends Error {}

/** Collects the words of ProcessWords while the result string is being built. */
class WordCollector {
  private buf = '';
  private inWord = false;
  readonly words: string[] = [];

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.buf.length !== 0) {
        this.words.push(this.buf);
        this.buf = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }
  addRawChar(ch: string): void {
    this.buf += ch;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }
  addRawString(s: string): void {
    this.buf += s;
    this.inWord = true;
  }
  finish(): string[] {
    if (this.buf.length > 0) {
      this.words.push(this.buf);
      this.buf = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** One pass over one word (BuildKit's shellWord). */
class ShellWord {
  private readonly chars: string[];
  private pos = 0;
  private rawEscapes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    word: string,
    private readonly env: EnvLookup,
    private readonly escapeToken: string,
    private readonly opts: LexOptions,
  ) {
    this.chars = Array.from(word);
    this.rawEscapes = !!opts.rawEscapes;
  }

  private peek(): string | typeof EOF {
    return this.pos < this.chars.length ? this.chars[this.pos]! : EOF;
  }
  private next(): string | typeof EOF {
    return this.pos < this.chars.length ? this.chars[this.pos++]! : EOF;
  }

  run(): { result: string; words: string[] } {
    return this.processStopOn(EOF, this.rawEscapes);
  }

  /** Process until the end of the word or `stopChar` (consumed). */
  private processStopOn(stopChar: string | typeof EOF, rawEscapes: boolean): { result: string; words: string[] } {
    let result = '';
    const words = new WordCollector();
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      while (this.peek() !== EOF) {
        const ch = this.peek() as string;
        if (stopChar !== EOF && ch === stopChar) {
          this.next();
          return { result, words: words.finish() };
        }
        let special: (() => string) | undefined;
        if (ch === '$') special = () => this.processDollar();
        else if (ch === '<') special = () => this.processPossibleHeredoc();
        else if (!this.opts.skipProcessQuotes && ch === "'") special = () => this.processSingleQuote();
        else if (!this.opts.skipProcessQuotes && ch === '"') special = () => this.processDoubleQuote();
        if (special) {
          const tmp = special();
          result += tmp;
          if (ch === '$') words.addString(tmp);
          else words.addRawString(tmp);
          continue;
        }
        let c = this.next() as string;
        if (c === this.escapeToken) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          const n = this.next();
          if (n === EOF) break; // a trailing escape token is dropped
          c = n;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stopChar !== EOF) {
        throw new ExpandFailure(`unexpected end of statement while looking for matching ${stopChar}`);
      }
      return { result, words: words.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    let result = '';
    const open = this.next() as string;
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new ExpandFailure('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    let result = '';
    const open = this.next() as string;
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new ExpandFailure('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        this.next();
        if (this.opts.rawQuotes) result += p;
        return result;
      }
      if (p === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = this.next() as string;
      if (ch === this.escapeToken) {
        if (this.rawEscapes) result += ch;
        const after = this.peek();
        if (after === EOF) continue; // the loop then reports the missing quote
        if (after === '"' || after === '$' || after === this.escapeToken) ch = this.next() as string;
      }
      result += ch;
    }
  }

  private processDollar(): string {
    this.next(); // '$'
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return '$' + name;
      return value ?? '';
    }

    this.next(); // '{'
    const first = this.peek();
    if (first === EOF) throw new ExpandFailure("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new ExpandFailure('syntax error: bad substitution');

    const name = this.processName();
    let ch = this.next();
    let chs = ch === EOF ? REPLACEMENT_CHAR : ch;
    let nullIsUnset = false;

    if (ch === '}') {
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return '${' + name + '}';
      return value ?? '';
    }

    if (ch === ':') {
      nullIsUnset = true;
      ch = this.next();
      chs += ch === EOF ? REPLACEMENT_CHAR : ch;
    }
    if (nullIsUnset || ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      const rawEscapes = ch === '#' || ch === '%';
      if (nullIsUnset && rawEscapes) throw new ExpandFailure(`unsupported modifier (${chs}) in substitution`);
      let word: string;
      try {
        word = this.processStopOn('}', rawEscapes).result;
      } catch (e) {
        if (e instanceof ExpandFailure && this.peek() === EOF) throw new ExpandFailure("syntax error: missing '}'");
        throw e;
      }

      const value = this.getEnv(name);
      const set = value !== undefined;
      if (this.opts.skipUnsetEnv && !set) return '${' + name + chs + word + '}';
      const v = value ?? '';

      switch (ch) {
        case '-':
          return !set || (nullIsUnset && v === '') ? word : v;
        case '+':
          return !set || (nullIsUnset && v === '') ? '' : word;
        case '?':
          if (!set) throw new ExpandFailure(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
          if (nullIsUnset && v === '') throw new ExpandFailure(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
          return v;
        case '%':
        case '#': {
          let greedy = false;
          let pattern = word;
          if (pattern.length > 0 && pattern[0] === ch) {
            greedy = true;
            pattern = pattern.slice(1);
          }
          return ch === '%' ? trimSuffix(pattern, v, greedy) : trimPrefix(pattern, v, greedy);
        }
        default:
          throw new ExpandFailure(`unsupported modifier (${chs}) in substitution`);
      }
    }

    if (ch === '/') {
      const replaceAll = this.peek() === '/';
      if (replaceAll) this.next();
      let pattern: string;
      try {
        pattern = this.processStopOn('/', true).result;
      } catch (e) {
        if (e instanceof ExpandFailure && this.peek() === EOF) throw new ExpandFailure("syntax error: missing '/' in ${}");
        throw e;
      }
      let replacement: string;
      try {
        replacement = this.processStopOn('}', true).result;
      } catch (e) {
        if (e instanceof ExpandFailure && this.peek() === EOF) throw new ExpandFailure("syntax error: missing '}'");
        throw e;
      }
      const value = this.getEnv(name);
      if (this.opts.skipUnsetEnv && value === undefined) return '${' + name + '/' + pattern + '/' + replacement + '}';
      let re: RegExp;
      try {
        re = shellPatternToRegex(pattern, true, false);
      } catch (e) {
        throw new ExpandFailure(`invalid pattern (${pattern}) in substitution: ${(e as Error).message}`);
      }
      return replaceAll ? goReplaceAll(re, value ?? '', replacement) : goReplaceFirst(re, value ?? '', replacement);
    }

    throw new ExpandFailure(`unsupported modifier (${chs}) in substitution`);
  }

  /** A name: letters, digits and `_`; or a run of digits; or one special parameter character. */
  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      const ch = this.peek() as string;
      if (name.length === 0 && isDigit(ch)) {
        while (this.peek() !== EOF && isDigit(this.peek() as string)) name += this.next();
        return name;
      }
      if (name.length === 0 && isSpecialParam(ch)) {
        return this.next() as string;
      }
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      name += this.next();
    }
    return name;
  }

  /** `<<` followed by blanks stays glued to the heredoc word that follows (BuildKit heredoc support). */
  private processPossibleHeredoc(): string {
    this.next(); // '<'
    if (this.peek() !== '<') return '<';
    this.next();
    let space = '';
    for (let p = this.peek(); p === ' ' || p === '\t' || p === '\r'; p = this.peek()) {
      space += p;
      this.next();
    }
    return '<<' + space;
  }

  private getEnv(name: string): string | undefined {
    const v = this.env(name);
    if (v !== undefined) this.matched.add(name);
    else this.unmatched.add(name);
    return v;
  }
}

function isSpecialParam(ch: string): boolean {
  return ch === '@' || ch === '*' || ch === '#' || ch === '?' || ch === '-' || ch === '$' || ch === '!' || ch === '0';
}

// ---------------------------------------------------------------------------------------------
// Glob patterns of ${V#p} ${V%p} ${V/p/r}

/**
 * Converts a shell pattern (`*`, `?`, `\` escapes; no bracket expressions) to a regular expression
 * that behaves like the Go one BuildKit builds. `.` is spelled `[^\n]` because Go's `.` matches
 * `\r`, `\u2028` and `\u2029` where JavaScript's does not.
 */
export function shellPatternToRegex(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const chars = Array.from(pattern);
  let out = anchored ? '^' : '';
  const any = '[^\\n]';
  const star = greedy ? `${any}*` : `${any}*?`;
  for (let i = 0; i < chars.length; i++) {
    let tok = chars[i]!;
    switch (tok) {
      case '*':
        out += star;
        continue;
      case '?':
        out += any;
        continue;
      case '\\': {
        const nextCh = chars[i + 1];
        // "}" and "/" have to be escaped inside ${}, but the escape is not part of the pattern
        if (nextCh === '}' || nextCh === '/') continue;
        out += '\\';
        i++;
        if (nextCh !== '*' && nextCh !== '?' && nextCh !== '\\') {
          throw new Error(`invalid escape '\\${nextCh ?? REPLACEMENT_CHAR}'`);
        }
        tok = nextCh;
        break;
      }
      case '[': case ']': case '{': case '}': case '.': case '+': case '(': case ')': case '|': case '^': case '$':
        out += '\\';
        break;
    }
    out += tok;
  }
  return new RegExp(out, 'u');
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  let re: RegExp;
  try {
    re = shellPatternToRegex(pattern, greedy, true);
  } catch (e) {
    throw new ExpandFailure(`invalid pattern (${pattern}) in substitution: ${(e as Error).message}`);
  }
  const m = re.exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

/** Reverses a pattern without reversing its escapes: a\*c -> c\*a. */
export function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out: string[] = new Array(runes.length);
  const last = runes.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = runes[i]!;
    const outIdx = last - i;
    if (tok === '\\' && i !== last) {
      out[outIdx - 1] = tok;
      out[outIdx] = runes[i + 1]!;
      i += 2;
    } else {
      out[outIdx] = tok;
      i++;
    }
  }
  return out.join('');
}

function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // the shortest rightmost match is the shortest leftmost match of the reversed pattern on the
  // reversed string
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

/** Go's Regexp.Expand for a pattern without capture groups: `$0`/`${0}` is the match, `$$` is `$`. */
function expandTemplate(template: string, match: string): string {
  let out = '';
  let rest = template;
  for (;;) {
    const i = rest.indexOf('$');
    if (i < 0) break;
    out += rest.slice(0, i);
    rest = rest.slice(i + 1);
    if (rest.startsWith('$')) {
      out += '$';
      rest = rest.slice(1);
      continue;
    }
    const m = /^(?:\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/u.exec(rest);
    if (!m) {
      out += '$';
      continue;
    }
    const name = (m[1] ?? m[2])!;
    rest = rest.slice(m[0].length);
    if (name === '0') out += match; // the only group there is
  }
  return out + rest;
}

function goReplaceFirst(re: RegExp, value: string, replacement: string): string {
  const m = re.exec(value);
  if (!m) return value;
  return value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
}

/** Go's Regexp.ReplaceAllString: an empty match right after a previous match is not replaced. */
function goReplaceAll(re: RegExp, src: string, replacement: string): string {
  const g = new RegExp(re.source, 'gu');
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length) {
    g.lastIndex = searchPos;
    const m = g.exec(src);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    out += src.slice(lastMatchEnd, start);
    if (end > lastMatchEnd || start === 0) out += expandTemplate(replacement, m[0]);
    lastMatchEnd = end;
    const cp = src.codePointAt(searchPos);
    const width = cp === undefined ? 0 : cp > 0xffff ? 2 : 1;
    if (searchPos + width > end) searchPos += width;
    else if (searchPos + 1 > end) searchPos++;
    else searchPos = end;
  }
  return out + src.slice(lastMatchEnd);
}

// ---------------------------------------------------------------------------------------------
// Public API

/** A reusable lexer, like BuildKit's `shell.Lex`. */
export class Lexer {
  constructor(
    readonly escapeToken: EscapeToken = '\\',
    readonly options: LexOptions = {},
  ) {}

  process(word: string, env: EnvLookup): ProcessResult {
    const sw = new ShellWord(word, env, this.escapeToken, this.options);
    try {
      const { result, words } = sw.run();
      return { result, words, matched: sw.matched, unmatched: sw.unmatched };
    } catch (e) {
      if (e instanceof ExpandFailure) {
        throw new MbuildError('MBUILD_EXPAND', `failed to process ${goQuote(word)}: ${e.message}`, { cause: e });
      }
      throw e;
    }
  }
  processWord(word: string, env: EnvLookup): string {
    return this.process(word, env).result;
  }
  processWords(word: string, env: EnvLookup): string[] {
    return this.process(word, env).words;
  }
}

/** One word: quotes removed, escapes processed, variables expanded (BuildKit ProcessWord). */
export function expandWord(word: string, env: EnvLookup, escape: EscapeToken = '\\', options: LexOptions = {}): string {
  return new Lexer(escape, options).processWord(word, env);
}

/** Expansion + field splitting on unquoted whitespace (BuildKit ProcessWords). */
export function expandWords(word: string, env: EnvLookup, escape: EscapeToken = '\\', options: LexOptions = {}): string[] {
  return new Lexer(escape, options).processWords(word, env);
}

/**
 * A lookup over `["K=V", ...]` (the last definition wins; an entry without `=` defines an empty
 * value, as BuildKit's EnvsFromSlice does) or over a record.
 */
export function envLookupFrom(list: string[] | Record<string, string>): EnvLookup {
  const map = new Map<string, string>();
  if (Array.isArray(list)) {
    for (const e of list) {
      const i = e.indexOf('=');
      if (i < 0) map.set(e, '');
      else map.set(e.slice(0, i), e.slice(i + 1));
    }
  } else {
    for (const [k, v] of Object.entries(list)) map.set(k, v);
  }
  return (name) => map.get(name);
}
