/**
 * Line level of the Dockerfile parser: physical lines → logical instructions, with the behaviour of
 * BuildKit's frontend/dockerfile/parser (parser.go, line_parsers.go, split_command.go,
 * directives.go):
 *  - parser directives (`# escape=`, `# syntax=`, `# check=`) only at the very top;
 *  - the escape token at the end of a line (optionally followed by blanks) continues it; comment
 *    lines and blank lines inside a continuation are dropped (blank ones with a warning);
 *  - leading whitespace of the first line is dropped, that of continuation lines is kept;
 *  - leading `--flags` are split off, then each instruction's arguments are cut up the way the
 *    matching BuildKit "line parser" does (JSON arrays, whitespace words, name=value pairs, ...);
 *  - here-documents (`<<EOF`) of RUN/COPY/ADD (also under ONBUILD) consume the following lines.
 *
 * Nothing here interprets the instruction; see parse.ts for that.
 */
import type { Heredoc } from './types.js';
import { Lexer, goQuote, type EnvLookup } from '../expand/shell-word.js';

export type EscapeToken = '\\' | '`';

/** One argument of a node: a word, or (ONBUILD) the node of the trigger instruction. */
export type AstArg = { value: string } | { child: AstNode };

export interface AstNode {
  /** The instruction keyword as written (any case). */
  value: string;
  /** Leading `--flag[=value]` words, quotes removed. */
  flags: string[];
  args: AstArg[];
  /** The arguments were a JSON array. */
  json: boolean;
  /** The logical line (continuations joined) the node was made from. */
  original: string;
  startLine: number;
  endLine: number;
  heredocs: Heredoc[];
  /**
   * The comment lines right before the instruction (text after `#`, trimmed; an empty `#` line
   * clears them; parser directives excluded), as BuildKit's PrevComment: `# check=skip=...` there
   * applies to this instruction only.
   */
  comments: string[];
}

export interface AstResult {
  nodes: AstNode[];
  escape: EscapeToken;
  directives: { name: string; value: string; line: number }[];
  warnings: string[];
  /** The last line of each instruction that had an empty continuation line (NoEmptyContinuation). */
  emptyContinuationLines: number[];
}

/** An error at a 1-based line range; parse.ts turns it into a ParseError. */
export class AstError extends Error {
  constructor(message: string, readonly start: number, readonly end: number) {
    super(message);
  }
}

class LineParseError extends Error {}
class NotStringArrayError extends LineParseError {
  constructor() {
    super('when using JSON array syntax, arrays must be comprised of strings only');
  }
}

// ---------------------------------------------------------------------------------------------
// character classes (Go semantics)

/** Go unicode.IsSpace. */
export function isGoSpace(ch: string): boolean {
  return /^\p{White_Space}$/u.test(ch);
}
function trimLeftSpace(s: string): string {
  return s.replace(/^\p{White_Space}+/u, '');
}
/** Go strings.TrimSpace. */
export function trimSpace(s: string): string {
  return s.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '');
}
function trimNewline(s: string): string {
  return s.replace(/[\r\n]+$/, '');
}
/** BuildKit's reWhitespace. */
const RE_WHITESPACE = /[\t\v\f\r ]+/;

function isComment(line: string): boolean {
  return trimLeftSpace(line).startsWith('#');
}
function isEmptyContinuationLine(line: string): boolean {
  return trimLeftSpace(trimNewline(line)).length === 0;
}

// ---------------------------------------------------------------------------------------------
// directives

const VALID_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
const DIRECTIVE_RE = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*([^\n]+?)[\t\n\f\r ]*$/;

class Directives {
  escapeToken: EscapeToken = '\\';
  continuation = makeContinuationRegex('\\');
  private done = false;
  private readonly seen = new Set<string>();
  readonly found: { name: string; value: string; line: number }[] = [];

  /** Parser directives: comments at the very top of the file, each name at most once. True for a directive. */
  possibleDirective(line: string, lineNo: number): boolean {
    if (this.done) return false;
    if (!line.startsWith('#')) {
      this.done = true;
      return false;
    }
    const m = DIRECTIVE_RE.exec(trimLeftSpace(line.slice(1)));
    if (!m) {
      this.done = true;
      return false;
    }
    const name = m[1]!.toLowerCase();
    if (!VALID_DIRECTIVES.has(name)) {
      this.done = true;
      return false;
    }
    if (this.seen.has(name)) throw new AstError(`only one ${name} parser directive can be used`, lineNo, lineNo);
    this.seen.add(name);
    const value = m[2]!;
    if (name === 'escape') {
      if (value !== '`' && value !== '\\') {
        throw new AstError(`invalid escape token '${value}' does not match \` or \\`, lineNo, lineNo);
      }
      this.escapeToken = value;
      this.continuation = makeContinuationRegex(value);
    }
    this.found.push({ name, value, line: lineNo });
    return true;
  }
}

/**
 * The escape token as the last non-blank character continues the line, unless the character before
 * it is the escape token too (like BuildKit, `foo \\\` is not treated as a continuation).
 */
function makeContinuationRegex(token: EscapeToken): RegExp {
  const t = '\\' + token;
  return new RegExp(`([^${t}])${t}[ \\t]*$|^${t}[ \\t]*$`);
}

function trimContinuation(line: string, d: Directives): { line: string; end: boolean } {
  const m = d.continuation.exec(line);
  if (!m) return { line, end: true };
  return { line: line.slice(0, m.index) + (m[1] ?? ''), end: false };
}

// ---------------------------------------------------------------------------------------------
// splitting a logical line

function splitCommand(line: string, d: Directives): { cmd: string; flags: string[]; rest: string } {
  const trimmed = trimSpace(line);
  const m = RE_WHITESPACE.exec(trimmed);
  if (!m) return { cmd: trimmed, flags: [], rest: '' };
  const cmd = trimmed.slice(0, m.index);
  const { rest, flags } = extractBuilderFlags(trimmed.slice(m.index + m[0].length), d);
  return { cmd, flags, rest: trimSpace(rest) };
}

/** Leading words that start with `--` are flags (quotes and escapes processed); `--` alone ends them. */
function extractBuilderFlags(line: string, d: Directives): { rest: string; flags: string[] } {
  const chars = Array.from(line);
  const offsets: number[] = [];
  {
    let off = 0;
    for (const c of chars) {
      offsets.push(off);
      off += c.length;
    }
    offsets.push(off);
  }
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  const n = chars.length;
  for (let pos = 0; pos <= n; pos++) {
    const ch = pos < n ? chars[pos]! : '';
    if (phase === 'spaces') {
      if (pos === n) break;
      if (isGoSpace(ch)) continue;
      if (ch !== '-' || pos + 1 === n || chars[pos + 1] !== '-') {
        return { rest: line.slice(offsets[pos]), flags: words };
      }
      phase = 'word';
    }
    if (pos === n) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isGoSpace(ch)) {
        phase = 'spaces';
        if (word === '--') return { rest: line.slice(offsets[pos]), flags: words };
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      let c = ch;
      if (c === d.escapeToken) {
        if (pos + 1 === n) continue; // an escape token at the end is dropped
        pos++;
        c = chars[pos]!;
      }
      word += c;
      continue;
    }
    // in quote
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    let c = ch;
    if (c === d.escapeToken) {
      if (pos + 1 === n) {
        phase = 'word';
        continue;
      }
      pos++;
      c = chars[pos]!;
    }
    word += c;
  }
  return { rest: '', flags: words };
}

/**
 * Words separated by unquoted whitespace, quotes and escapes kept (they are removed later, when the
 * word is expanded).
 */
export function parseWords(rest: string, escapeToken: EscapeToken): string[] {
  const chars = Array.from(rest);
  const n = chars.length;
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let quote = '';
  let blankOK = false;
  let word = '';
  for (let pos = 0; pos <= n; pos++) {
    let ch = pos < n ? chars[pos]! : '';
    if (phase === 'spaces') {
      if (pos === n) break;
      if (isGoSpace(ch)) continue;
      phase = 'word';
    }
    if (pos === n) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isGoSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escapeToken) {
        if (pos + 1 === n) continue; // an escape token at the end is dropped
        word += ch;
        pos++;
        ch = chars[pos]!;
      }
      word += ch;
      continue;
    }
    // in quote
    if (ch === quote) phase = 'word';
    if (ch === escapeToken && quote !== "'") {
      if (pos + 1 === n) {
        phase = 'word';
        continue;
      }
      word += ch;
      pos++;
      ch = chars[pos]!;
    }
    word += ch;
  }
  return words;
}

// ---------------------------------------------------------------------------------------------
// line parsers (one per instruction kind)

interface Parsed {
  args: AstArg[];
  json?: boolean;
}
const words = (ws: string[]): AstArg[] => ws.map((value) => ({ value }));

function parseIgnore(): Parsed {
  return { args: [] };
}

function parseSubCommand(rest: string, d: Directives): Parsed {
  if (rest === '') return { args: [] };
  return { args: [{ child: newNodeFromLine(rest, d) }] };
}

/** ENV / LABEL: `name=value ...` or the legacy `name value with spaces`. */
function parseNameVal(rest: string, key: string, d: Directives): Parsed {
  const ws = parseWords(rest, d.escapeToken);
  if (ws.length === 0) return { args: [] };
  if (!ws[0]!.includes('=')) {
    const m = RE_WHITESPACE.exec(rest);
    if (!m) throw new LineParseError(`${key} must have two arguments`);
    return { args: words([rest.slice(0, m.index), rest.slice(m.index + m[0].length), '']) };
  }
  const out: string[] = [];
  for (const w of ws) {
    const i = w.indexOf('=');
    if (i < 0) throw new LineParseError(`Syntax error - can't find = in ${goQuote(w)}. Must be of the form: name=value`);
    out.push(w.slice(0, i), w.slice(i + 1), '=');
  }
  return { args: words(out) };
}

function parseNameOrNameVal(rest: string, d: Directives): Parsed {
  return { args: words(parseWords(rest, d.escapeToken)) };
}

function parseStringsWhitespaceDelimited(rest: string): Parsed {
  if (rest === '') return { args: [] };
  return { args: words(rest.split(RE_WHITESPACE)) };
}

function parseString(rest: string): Parsed {
  if (rest === '') return { args: [] };
  return { args: [{ value: rest }] };
}

/** A JSON array of strings; throws NotStringArrayError for other arrays, LineParseError otherwise. */
function parseJSON(rest: string): Parsed {
  const text = trimLeftSpace(rest);
  if (!text.startsWith('[')) throw new LineParseError('not a JSON array');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new LineParseError((e as Error).message);
  }
  if (!Array.isArray(value)) throw new LineParseError('not a JSON array');
  // Go's decoder rejects numbers that do not fit a float64 before looking at element types
  if (value.some((v) => typeof v === 'number' && !Number.isFinite(v))) throw new LineParseError('number out of range');
  if (!value.every((v): v is string => typeof v === 'string')) throw new NotStringArrayError();
  return { args: words(value), json: true };
}

function parseMaybeJSON(rest: string): Parsed {
  if (rest === '') return { args: [] };
  try {
    return parseJSON(rest);
  } catch (e) {
    if (e instanceof NotStringArrayError) throw e;
    return { args: [{ value: rest }] };
  }
}

function parseMaybeJSONToList(rest: string): Parsed {
  try {
    return parseJSON(rest);
  } catch (e) {
    if (e instanceof NotStringArrayError) throw e;
    return parseStringsWhitespaceDelimited(rest);
  }
}

/** HEALTHCHECK: a type word (NONE / CMD) followed by a command in shell or JSON form. */
function parseHealthConfig(rest: string): Parsed {
  const isSp = (c: string | undefined) => c !== undefined && /^[\t\n\v\f\r \u0085\u00a0]$/.test(c);
  let sep = 0;
  while (sep < rest.length && !isSp(rest[sep])) sep++;
  let next = sep;
  while (next < rest.length && isSp(rest[next])) next++;
  if (sep === 0) return { args: [] };
  const cmd = parseMaybeJSON(rest.slice(next));
  return { args: [{ value: rest.slice(0, sep) }, ...cmd.args], json: cmd.json };
}

const DISPATCH: Record<string, (rest: string, d: Directives) => Parsed> = {
  add: (r) => parseMaybeJSONToList(r),
  arg: parseNameOrNameVal,
  cmd: (r) => parseMaybeJSON(r),
  copy: (r) => parseMaybeJSONToList(r),
  entrypoint: (r) => parseMaybeJSON(r),
  env: (r, d) => parseNameVal(r, 'ENV', d),
  expose: (r) => parseStringsWhitespaceDelimited(r),
  from: (r) => parseStringsWhitespaceDelimited(r),
  healthcheck: (r) => parseHealthConfig(r),
  label: (r, d) => parseNameVal(r, 'LABEL', d),
  maintainer: (r) => parseString(r),
  onbuild: parseSubCommand,
  run: (r) => parseMaybeJSON(r),
  shell: (r) => parseMaybeJSON(r),
  stopsignal: (r) => parseString(r),
  user: (r) => parseString(r),
  volume: (r) => parseMaybeJSONToList(r),
  workdir: (r) => parseString(r),
};

function newNodeFromLine(line: string, d: Directives): AstNode {
  const { cmd, flags, rest } = splitCommand(line, d);
  const fn = DISPATCH[cmd.toLowerCase()] ?? parseIgnore;
  const parsed = fn(rest, d);
  return {
    value: cmd,
    flags,
    args: parsed.args,
    json: !!parsed.json,
    original: line,
    startLine: 0,
    endLine: 0,
    heredocs: [],
    comments: [],
  };
}

/** The words of a node, ONBUILD triggers flattened as [keyword, ...args] (BuildKit nodeArgs). */
export function nodeArgs(node: AstNode): string[] {
  const out: string[] = [];
  for (const a of node.args) {
    if ('value' in a) out.push(a.value);
    else out.push(a.child.value, ...nodeArgs(a.child));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// here-documents

const HEREDOC_INSTRUCTIONS = new Set(['add', 'copy', 'run']);
const RE_HEREDOC = /^([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)$/;
const noEnv: EnvLookup = () => undefined;

function canContainHeredoc(node: AstNode): boolean {
  let n = node;
  if (n.value.toLowerCase() === 'onbuild') {
    const first = n.args[0];
    if (first && 'child' in first) n = first.child;
  }
  return HEREDOC_INSTRUCTIONS.has(n.value.toLowerCase()) && !n.json;
}

/**
 * The here-document a word like `<<EOF`, `<<-"EOF"` or `3<<EOF` starts, or undefined.
 * Throws (an MbuildError from the lexer) on a malformed terminator word.
 */
export function parseHeredocWord(src: string): Omit<Heredoc, 'content'> | undefined {
  const m = RE_HEREDOC.exec(src);
  if (!m) return undefined;
  const rest = m[3]!;
  if (rest.length === 0) return undefined;
  const plain = new Lexer('\\', { skipUnsetEnv: true }).processWords(rest, noEnv);
  if (plain.length !== 1) return undefined;
  const raw = new Lexer('\\', { skipUnsetEnv: true, rawQuotes: true }).processWords(rest, noEnv);
  if (raw.length !== plain.length) {
    throw new LineParseError(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  }
  const quotes = (s: string) => (s.match(/['"]/g) ?? []).length;
  const fd = m[1] ? Number.parseInt(m[1], 10) : 0;
  return {
    name: plain[0]!,
    expand: quotes(plain[0]!) === quotes(raw[0]!),
    chomp: m[2] === '-',
    fileDescriptor: Number.isFinite(fd) ? fd : 0,
  };
}

/** Like parseHeredocWord, but a malformed word is just not a here-document. */
export function mustParseHeredocWord(src: string): Omit<Heredoc, 'content'> | undefined {
  try {
    return parseHeredocWord(src);
  } catch {
    return undefined;
  }
}

export function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let ws: string[];
  try {
    ws = new Lexer('\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).processWords(line, noEnv);
  } catch {
    ws = [];
  }
  const docs: Omit<Heredoc, 'content'>[] = [];
  for (const w of ws) {
    let h: Omit<Heredoc, 'content'> | undefined;
    try {
      h = parseHeredocWord(w);
    } catch (e) {
      throw new LineParseError((e as Error).message);
    }
    if (h) docs.push(h);
  }
  return docs;
}

/** `<<-` here-documents lose the leading tabs of every line. */
export function chompHeredocContent(src: string): string {
  return src.replace(/^\t+/gm, '');
}

// ---------------------------------------------------------------------------------------------
// the file

/** Go's bufio.MaxScanTokenSize. */
const MAX_SCAN_TOKEN_SIZE = 64 * 1024;

/** Physical lines, each with its line ending (like BuildKit's scanLines). */
function splitLines(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

export function parseAst(text: string): AstResult {
  const d = new Directives();
  const lines = splitLines(text);
  const nodes: AstNode[] = [];
  const warnings: string[] = [];
  const emptyContinuationLines: number[] = [];
  let comments: string[] = [];
  let i = 0; // index of the next physical line
  let currentLine = 0; // number of physical lines consumed

  // BuildKit reads lines with a bufio.Scanner (64 KiB buffer): a longer line stops the scan there,
  // and the file ends with an error unless something failed first
  let tooLong = false;
  const nextLine = (): string | undefined => {
    if (tooLong || i >= lines.length) return undefined;
    const line = lines[i]!;
    const bytes = Buffer.byteLength(line);
    if (bytes > MAX_SCAN_TOKEN_SIZE || (bytes === MAX_SCAN_TOKEN_SIZE && !line.endsWith('\n'))) {
      tooLong = true;
      return undefined;
    }
    i++;
    return line;
  };

  const lineError = (e: unknown, start: number, end: number): never => {
    if (e instanceof AstError) throw e;
    if (e instanceof Error) throw new AstError(e.message, start, end);
    throw e;
  };

  for (let raw = nextLine(); raw !== undefined; raw = nextLine()) {
    if (currentLine === 0 && raw.startsWith('\uFEFF')) raw = raw.slice(1);
    let first = trimLeftSpace(trimNewline(raw));
    const directive = d.possibleDirective(first, currentLine + 1);
    if (isComment(first)) {
      const text = trimSpace(first.slice(1));
      if (directive) {
        // not a comment of the next instruction
      } else if (text === '') comments = [];
      else comments.push(text);
      first = '';
    }
    currentLine++;
    const startLine = currentLine;

    let { line: part, end } = trimContinuation(first, d);
    if (end && part.length === 0) continue;
    let buf = part;
    let hasEmptyContinuation = false;
    while (!end) {
      const rawNext = nextLine();
      if (rawNext === undefined) break;
      let cont = trimNewline(rawNext);
      d.possibleDirective(cont, currentLine + 1);
      currentLine++;
      if (isComment(rawNext)) continue;
      if (isEmptyContinuationLine(cont)) {
        hasEmptyContinuation = true;
        continue;
      }
      ({ line: cont, end } = trimContinuation(cont, d));
      buf += cont;
    }

    if (hasEmptyContinuation) {
      warnings.push(`Empty continuation line found in: ${buf}`);
      emptyContinuationLines.push(currentLine);
    }

    let node: AstNode;
    try {
      node = newNodeFromLine(buf, d);
    } catch (e) {
      return lineError(e, startLine, currentLine);
    }

    if (canContainHeredoc(node) && buf.includes('<<')) {
      let docs: Omit<Heredoc, 'content'>[];
      try {
        docs = heredocsFromLine(buf);
      } catch (e) {
        return lineError(e, startLine, currentLine);
      }
      for (const doc of docs) {
        let terminated = false;
        let content = '';
        for (let l = nextLine(); l !== undefined; l = nextLine()) {
          currentLine++;
          let candidate = trimNewline(l);
          if (doc.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          content += l;
        }
        if (!terminated) throw new AstError('unterminated heredoc', startLine, currentLine);
        node.heredocs.push({ ...doc, content });
      }
    }

    node.startLine = startLine;
    node.endLine = currentLine;
    node.comments = comments;
    comments = [];
    nodes.push(node);
  }

  if (nodes.length === 0) throw new AstError('file with no instructions', Math.max(currentLine, 1), Math.max(currentLine, 1));
  if (tooLong) {
    const at = i + 1; // the long line itself (BuildKit names the line before it)
    throw new AstError(`dockerfile line greater than max allowed size of ${MAX_SCAN_TOKEN_SIZE - 1}`, at, at);
  }
  return { nodes, escape: d.escapeToken, directives: d.found, warnings, emptyContinuationLines };
}

// ---------------------------------------------------------------------------------------------
// debugging aid: BuildKit's Node.Dump format

function goQuoteList(list: string[]): string {
  return '[' + list.map(goQuote).join(' ') + ']';
}

/** The node as BuildKit's `Node.Dump()` prints it, e.g. `run ["--network=none"] "echo hi"`. */
export function dumpNode(node: AstNode): string {
  let s = node.value.toLowerCase();
  if (node.flags.length > 0) s += ' ' + goQuoteList(node.flags);
  for (const a of node.args) {
    s += ' ' + ('value' in a ? goQuote(a.value) : '(' + dumpNode(a.child) + ')');
  }
  return s.trim();
}
