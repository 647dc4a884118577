import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { envLookupFrom, expandWord, expandWords, Lexer, type EnvLookup } from '../../builder/expand/shell-word.js';
import { MbuildError } from '../../util/errors.js';

const env = envLookupFrom({
  HOME: '/root',
  EMPTY: '',
  SPACED: 'a  b',
  PADDED: '  x y  ',
  FILE: 'archive.tar.gz',
  PATHV: '/usr/local/bin/tool',
  GLOB: 'a*b',
  UNI: 'héllo wörld',
});
const x = (w: string, e: EnvLookup = env) => expandWord(w, e);
const xs = (w: string, e: EnvLookup = env) => expandWords(w, e);

function expandError(w: string, e: EnvLookup = env, escape: '\\' | '`' = '\\'): MbuildError {
  try {
    expandWord(w, e, escape);
  } catch (err) {
    expect(err).toBeInstanceOf(MbuildError);
    expect((err as MbuildError).code).toBe('MBUILD_EXPAND');
    return err as MbuildError;
  }
  throw new Error(`expected ${w} to fail`);
}

describe('envLookupFrom', () => {
  it('reads K=V lists, last definition wins, value may contain =', () => {
    const l = envLookupFrom(['A=1', 'B=x=y', 'A=2', 'C=']);
    expect(l('A')).toBe('2');
    expect(l('B')).toBe('x=y');
    expect(l('C')).toBe('');
    expect(l('D')).toBeUndefined();
  });
  it('treats an entry without = as set to empty (like EnvsFromSlice)', () => {
    expect(envLookupFrom(['FOO'])('FOO')).toBe('');
  });
  it('reads records; names are case-sensitive', () => {
    const l = envLookupFrom({ Foo: 'bar' });
    expect(l('Foo')).toBe('bar');
    expect(l('FOO')).toBeUndefined();
  });
});

describe('quotes and escapes', () => {
  it('leaves plain words alone', () => {
    expect(x('hello')).toBe('hello');
    expect(x('')).toBe('');
    expect(x('a b  c')).toBe('a b  c');
  });
  it('removes quotes, joining the pieces', () => {
    expect(x(`he'll'o`)).toBe('hello');
    expect(x(`"a b"'c d'e`)).toBe('a bc de');
    expect(x(`"''"`)).toBe(`''`);
    expect(x(`'"x"'`)).toBe('"x"');
  });
  it('takes single quotes literally: no escapes, no expansion', () => {
    expect(x(`'$HOME'`)).toBe('$HOME');
    expect(x(`'a\\tb'`)).toBe('a\\tb');
    expect(x(`'a\\\\b'`)).toBe('a\\\\b');
    expect(x(`'trailing\\'`)).toBe('trailing\\');
  });
  it('expands in double quotes; \\ only escapes " $ and \\ there', () => {
    expect(x(`"$HOME"`)).toBe('/root');
    expect(x(`"a\\"b"`)).toBe('a"b');
    expect(x(`"\\$HOME"`)).toBe('$HOME');
    expect(x(`"a\\\\b"`)).toBe('a\\b');
    expect(x(`"a\\tb"`)).toBe('a\\tb');
    expect(x(`"it's"`)).toBe("it's");
    expect(x(`"a'$HOME'"`)).toBe("a'/root'");
  });
  it('escapes any character outside quotes', () => {
    expect(x('a\\tb')).toBe('atb');
    expect(x("he\\'llo")).toBe("he'llo");
    expect(x('\\$HOME')).toBe('$HOME');
    expect(x('\\\\$HOME')).toBe('\\/root');
    expect(x('a\\ b')).toBe('a b');
    expect(x('\\"quoted\\"')).toBe('"quoted"');
  });
  it('drops a trailing escape token', () => {
    expect(x('hello\\')).toBe('hello');
    expect(x('hello\\\\')).toBe('hello\\');
  });
  it('fails on unterminated quotes', () => {
    expect(expandError(`he'llo`).message).toContain('matching single-quote');
    expect(expandError(`"hello`).message).toContain('matching double-quote');
    expect(expandError(`"hello\\"`).message).toContain('matching double-quote');
    expect(expandError(`he\\\\'llo`).message).toContain('single-quote');
  });
  it('names the word in the error, like BuildKit', () => {
    expect(expandError(`'abc`).message).toBe(
      `failed to process "'abc": unexpected end of statement while looking for matching single-quote`,
    );
  });
  it('works on non-ASCII text', () => {
    expect(x("안'녕'하세요")).toBe('안녕하세요');
    expect(x('"안녕\\t하세요"')).toBe('안녕\\t하세요');
    expect(x('$UNI!')).toBe('héllo wörld!');
    expect(x('😀$HOME😀')).toBe('😀/root😀');
  });
});

describe('backtick escape token', () => {
  const bt = (w: string) => expandWord(w, env, '`');
  it('escapes with ` and leaves \\ literal', () => {
    expect(bt('C:\\Windows')).toBe('C:\\Windows');
    expect(bt('a` b')).toBe('a b');
    expect(bt('`$HOME')).toBe('$HOME');
    expect(bt('"a`"b"')).toBe('a"b');
    expect(bt('"a\\b"')).toBe('a\\b');
    expect(bt('"``"')).toBe('`');
    expect(bt('x`')).toBe('x');
  });
  it('expandWords honours it too', () => {
    expect(expandWords('a` b c', env, '`')).toEqual(['a b', 'c']);
  });
});

describe('$VAR and ${VAR}', () => {
  it('expands known variables, unknown ones to nothing', () => {
    expect(x('he$HOME')).toBe('he/root');
    expect(x('${HOME}x')).toBe('/rootx');
    expect(x('$NOPE')).toBe('');
    expect(x('a${NOPE}b')).toBe('ab');
    expect(x('$HOMEx')).toBe(''); // the name is HOMEx
    expect(x('$HOME.x')).toBe('/root.x');
  });
  it('keeps a $ that starts no name', () => {
    expect(x('$')).toBe('$');
    expect(x('$.')).toBe('$.');
    expect(x('a$ b')).toBe('a$ b');
    expect(x('cost: 5$')).toBe('cost: 5$');
  });
  it('reads positional and special parameters (normally unset)', () => {
    expect(x('he$1x')).toBe('hex');
    expect(x('$999aaa')).toBe('aaa');
    expect(x('$@@@')).toBe('@@');
    expect(x('$$')).toBe('');
    expect(x('${#}')).toBe('');
    expect(x('${0:-zero}')).toBe('zero');
    expect(expandWord('$1', envLookupFrom({ '1': 'one' }))).toBe('one');
  });
  it('rejects bad substitutions', () => {
    expect(expandError('${}').message).toContain('bad substitution');
    expect(expandError('${:}').message).toContain('bad substitution');
    expect(expandError('${{a}').message).toContain('bad substitution');
    expect(expandError('he${.}').message).toContain('unsupported modifier (.)');
    expect(expandError('${HOME').message).toContain('unsupported modifier');
    expect(expandError('${').message).toContain("missing '}'");
    expect(expandError('${HOME:=x}').message).toContain('unsupported modifier (:=)');
    expect(expandError('${HOME=x}').message).toContain('unsupported modifier (=)');
  });
  it('treats a stray } after ${V} as text', () => {
    expect(x('${NOPE}}')).toBe('}');
    expect(x('\\${}')).toBe('${}');
  });
});

describe('${V-w} ${V:-w} ${V+w} ${V:+w}', () => {
  it('substitutes defaults', () => {
    expect(x('${NOPE:-def}')).toBe('def');
    expect(x('${NOPE-def}')).toBe('def');
    expect(x('${EMPTY:-def}')).toBe('def');
    expect(x('${EMPTY-def}')).toBe('');
    expect(x('${HOME:-def}')).toBe('/root');
    expect(x('${NOPE:-}')).toBe('');
  });
  it('substitutes alternates', () => {
    expect(x('${HOME:+alt}')).toBe('alt');
    expect(x('${HOME+alt}')).toBe('alt');
    expect(x('${EMPTY:+alt}')).toBe('');
    expect(x('${EMPTY+alt}')).toBe('alt');
    expect(x('${NOPE+alt}')).toBe('');
  });
  it('expands, unquotes and nests inside the word', () => {
    expect(x('${NOPE:-$HOME}')).toBe('/root');
    expect(x('${NOPE:-${NOPE2:-deep}}x')).toBe('deepx');
    expect(x('${NOPE:-"a b"}')).toBe('a b');
    expect(x("${NOPE:-'$HOME'}")).toBe('$HOME');
    expect(x('${NOPE:-\\$HOME:}')).toBe('$HOME:');
    expect(x('${NOPE:-\\${HOME}z}')).toBe('${HOMEz}');
    expect(x('${HOME:+${HOME}:}')).toBe('/root:');
    expect(x('${NOPE:-a {b}')).toBe('a {b');
  });
  it('matches the TARGETVARIANT idiom', () => {
    const w = 'tool-${OS}-${ARCH}${VARIANT:+-${VARIANT}}.tgz';
    expect(expandWord(w, envLookupFrom({ OS: 'linux', ARCH: 'arm', VARIANT: 'v7' }))).toBe('tool-linux-arm-v7.tgz');
    expect(expandWord(w, envLookupFrom({ OS: 'linux', ARCH: 'arm64', VARIANT: '' }))).toBe('tool-linux-arm64.tgz');
    expect(expandWord(w, envLookupFrom({ OS: 'linux', ARCH: 'amd64' }))).toBe('tool-linux-amd64.tgz');
  });
  it('needs the closing brace', () => {
    expect(expandError('${NOPE:-abc').message).toContain("missing '}'");
    expect(expandError('${NOPE:-abc ${HOME}').message).toContain("missing '}'");
  });
});

describe('${V?msg} ${V:?msg}', () => {
  it('passes set values through', () => {
    expect(x('${HOME?oops}')).toBe('/root');
    expect(x('${HOME:?oops}')).toBe('/root');
    expect(x('${EMPTY?oops}')).toBe('');
  });
  it('fails with the message (expanded) or a default one', () => {
    const e = expandError('${NOPE:?need $HOME}');
    expect(e.message).toBe('failed to process "${NOPE:?need $HOME}": NOPE: need /root');
    expect(expandError('${NOPE?}').message).toContain('NOPE: is not allowed to be unset');
    expect(expandError('${NOPE:?}').message).toContain('NOPE: is not allowed to be unset');
    expect(expandError('${EMPTY:?}').message).toContain('EMPTY: is not allowed to be empty');
    expect(expandError('${EMPTY:?custom}').message).toContain('EMPTY: custom');
  });
});

describe('${V#p} ${V##p} ${V%p} ${V%%p}', () => {
  it('trims prefixes, shortest and longest', () => {
    expect(x('${PATHV#*/}')).toBe('usr/local/bin/tool');
    expect(x('${PATHV##*/}')).toBe('tool');
    expect(x('${FILE#*.}')).toBe('tar.gz');
    expect(x('${FILE##*.}')).toBe('gz');
    expect(x('${FILE#nomatch}')).toBe('archive.tar.gz');
    expect(x('${FILE#}')).toBe('archive.tar.gz');
    expect(x('${FILE##}')).toBe('archive.tar.gz');
    expect(x('${FILE#*}')).toBe('archive.tar.gz');
    expect(x('${FILE##*}')).toBe('');
    expect(x('${FILE#?r}')).toBe('chive.tar.gz');
  });
  it('trims suffixes, shortest and longest', () => {
    expect(x('${FILE%.*}')).toBe('archive.tar');
    expect(x('${FILE%%.*}')).toBe('archive');
    expect(x('${PATHV%/*}')).toBe('/usr/local/bin');
    expect(x('${PATHV%%/*}')).toBe('');
    expect(x('${FILE%}')).toBe('archive.tar.gz');
    expect(x('${FILE%x}')).toBe('archive.tar.gz');
  });
  it('treats regex characters literally and honours \\* \\? \\\\ and \\}', () => {
    const e = envLookupFrom({ V: '()[]{}^$.*?|\\x', S: 'xx**', T: 'a***yy*', Q: '???y' });
    expect(expandWord('${V#()[]{\\}^$.\\*\\?|\\\\}', e)).toBe('x');
    expect(expandWord('${S%%\\**}', e)).toBe('xx');
    expect(expandWord('${T%%\\**\\*}', e)).toBe('a');
    expect(expandWord('${Q#?\\?}', e)).toBe('?y');
    expect(expandWord('${V#(}', e)).toBe(')[]{}^$.*?|\\x');
  });
  it('expands variables in the pattern (their glob characters count)', () => {
    const e = envLookupFrom({ F: 'xxyy', B: 'x', STAR: '*', EMPTY: '' });
    expect(expandWord('${F#$B}', e)).toBe('xyy');
    expect(expandWord('${F##$STAR}', e)).toBe('');
    expect(expandWord('${F#$EMPTY}', e)).toBe('xxyy');
    expect(expandWord('${F%%$EMPTY}', e)).toBe('xxyy');
  });
  it('does not match across newlines with * (Go regexp semantics)', () => {
    const e = envLookupFrom({ M: 'a\nb' });
    expect(expandWord('${M#*b}', e)).toBe('a\nb');
    expect(expandWord('${M#a?}', e)).toBe('a\nb');
  });
  it('handles astral characters as single characters', () => {
    const e = envLookupFrom({ E: '👽🚀🖖' });
    expect(expandWord('${E#?}', e)).toBe('🚀🖖');
    expect(expandWord('${E%?}', e)).toBe('👽🚀');
  });
  it('rejects :# :% and bad escapes in patterns', () => {
    expect(expandError('${FILE:#x}').message).toContain('unsupported modifier (:#)');
    expect(expandError('${FILE:%%x}').message).toContain('unsupported modifier (:%)');
    expect(expandError('${FILE#\\x}').message).toContain("invalid escape '\\x'");
  });
  it('gives an unset variable back empty', () => {
    expect(x('${NOPE#*}')).toBe('');
    expect(x('${NOPE%x}')).toBe('');
  });
});

describe('${V/p/r} ${V//p/r}', () => {
  it('replaces the first or every match', () => {
    const e = envLookupFrom({ P: '/a/foo/b/c.txt', N: '/?/', R: '/' });
    expect(expandWord('${P/$N/$R} - ${P//$N/$R}', e)).toBe('/foo/b/c.txt - /foo/c.txt');
    expect(x('${FILE/./-}')).toBe('archive-tar.gz');
    expect(x('${FILE//./-}')).toBe('archive-tar-gz');
    expect(x('${FILE/nomatch/x}')).toBe('archive.tar.gz');
  });
  it('uses greedy globs', () => {
    const e = envLookupFrom({ G: '/foo*/*/*.txt', N: '\\*/' });
    expect(expandWord('${G/$N/.} - ${G//$N/.}', e)).toBe('/foo.*/*.txt - /foo..*.txt');
    expect(x('${FILE/a*r/X}')).toBe('X.gz');
  });
  it('lets \\/ stand for / and keeps the backslash in the replacement (BuildKit quirk)', () => {
    const e = envLookupFrom({ F: '/tmp/foo.txt' });
    expect(expandWord('${F//\\//\\/}', e)).toBe('\\/tmp\\/foo.txt');
    expect(expandWord('${F//\\//_}', e)).toBe('_tmp_foo.txt');
  });
  it('treats an empty pattern like Go regexp does', () => {
    const e = envLookupFrom({ F: 'xxyy', B: '' });
    expect(expandWord('${F/$B/ww}', e)).toBe('wwxxyy');
    expect(expandWord('${F///}', e)).toBe('xxyy');
    expect(expandWord('${NOPE///}', e)).toBe('');
  });
  it('does not replace an empty match right after a match (Go ReplaceAll)', () => {
    const e = envLookupFrom({ F: 'abc' });
    expect(expandWord('${F//*/X}', e)).toBe('X');
    expect(expandWord('${F//?/X}', e)).toBe('XXX');
  });
  it('expands $0 in the replacement to the match, like Go Expand', () => {
    const e = envLookupFrom({ F: 'abc', R: '[$0]', D: '$$', Z: '$1' });
    expect(expandWord('${F/b/$R}', e)).toBe('a[$0]c'); // the first-match form inserts it verbatim
    expect(expandWord('${F//b/$R}', e)).toBe('a[b]c');
    expect(expandWord('${F//b/$D}', e)).toBe('a$c');
    expect(expandWord('${F//b/$Z}', e)).toBe('ac');
  });
  it('needs both separators and the brace', () => {
    expect(expandError('${FILE//ww}').message).toContain("missing '/' in ${}");
    expect(expandError('${FILE//}').message).toContain("missing '/' in ${}");
    expect(expandError('${FILE/a/b').message).toContain("missing '}'");
  });
});

describe('expandWords (ProcessWords)', () => {
  it('splits on unquoted whitespace', () => {
    expect(xs('hello there')).toEqual(['hello', 'there']);
    expect(xs('  a\tb \n c  ')).toEqual(['a', 'b', 'c']);
    expect(xs('')).toEqual([]);
    expect(xs('   ')).toEqual([]);
  });
  it('keeps quoted and escaped whitespace', () => {
    expect(xs('hello" there  "')).toEqual(['hello there  ']);
    expect(xs('hello\\ there')).toEqual(['hello there']);
    expect(xs(`'a b' "c d"`)).toEqual(['a b', 'c d']);
    expect(xs('hello\\" there')).toEqual(['hello"', 'there']);
  });
  it('splits unquoted expansions, keeps quoted ones whole', () => {
    expect(xs('x${SPACED}y')).toEqual(['xa', 'by']);
    expect(xs('x"${SPACED}"y')).toEqual(['xa  by']);
    expect(xs('x ${PADDED} y')).toEqual(['x', 'x', 'y', 'y']);
    expect(xs('x${PADDED}')).toEqual(['x', 'x', 'y']);
    expect(xs('"${PADDED}"')).toEqual(['  x y  ']);
  });
  it('drops empty words, even quoted ones', () => {
    expect(xs('a "" b')).toEqual(['a', 'b']);
    expect(xs('$NOPE')).toEqual([]);
    expect(xs("''")).toEqual([]);
  });
  it('keeps text before a ${V:-x} in the same word', () => {
    // (BuildKit >= 1.9 shares one buffer between nested words and loses "abc" here; see report)
    expect(xs('abc${NOPE:-y} z')).toEqual(['abcy', 'z']);
  });
  it('keeps `<< WORD` together (heredoc support in the lexer)', () => {
    expect(xs('cat <<  EOF')).toEqual(['cat', '<<  EOF']);
    expect(xs('a < b')).toEqual(['a', '<', 'b']);
    expect(x('cat <<  EOF')).toBe('cat <<  EOF');
  });
});

describe('Lexer options', () => {
  it('rawQuotes keeps the quotes', () => {
    const l = new Lexer('\\', { rawQuotes: true });
    expect(l.processWord(`"a $HOME" 'b'`, env)).toBe(`"a /root" 'b'`);
  });
  it('rawEscapes keeps the escapes', () => {
    const l = new Lexer('\\', { rawEscapes: true });
    expect(l.processWord('a\\ b\\$HOME', env)).toBe('a\\ b\\$HOME');
  });
  it('skipUnsetEnv leaves unknown references as written', () => {
    const l = new Lexer('\\', { skipUnsetEnv: true });
    expect(l.processWord('$HOME $NOPE ${NOPE} ${NOPE:-d} ${NOPE/a/b}', env)).toBe('/root $NOPE ${NOPE} ${NOPE:-d} ${NOPE/a/b}');
  });
  it('skipProcessQuotes treats quotes as text', () => {
    const l = new Lexer('\\', { skipProcessQuotes: true });
    expect(l.processWord(`"$HOME" '$HOME'`, env)).toBe(`"/root" '/root'`);
  });
  it('reports matched and unmatched names', () => {
    const r = new Lexer().process('$HOME ${NOPE:-x} ${EMPTY}', env);
    expect([...r.matched].sort()).toEqual(['EMPTY', 'HOME']);
    expect([...r.unmatched]).toEqual(['NOPE']);
  });
});

describe('properties', () => {
  const noEnv: EnvLookup = () => undefined;
  it('single-quoting any text without quotes gives it back', () => {
    fc.assert(
      fc.property(fc.string().filter((s) => !s.includes("'")), (s) => {
        expect(expandWord(`'${s}'`, noEnv)).toBe(s);
      }),
    );
  });
  it('escaping every character gives the text back (both escape tokens)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.constantFrom<'\\' | '`'>('\\', '`'), (s, esc) => {
        const escaped = Array.from(s).map((c) => esc + c).join('');
        expect(expandWord(escaped, noEnv, esc)).toBe(s);
      }),
    );
  });
  it('double-quoting text with ", $ and \\ escaped gives it back', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const q = '"' + s.replace(/[\\"$]/g, (c) => '\\' + c) + '"';
        expect(expandWord(q, noEnv)).toBe(s);
      }),
    );
  });
  it('words of plain tokens split back into the tokens', () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[a-zA-Z0-9_./:-]{1,8}$/), { maxLength: 6 }), (ws) => {
        expect(expandWords(ws.join(' '), noEnv)).toEqual(ws);
      }),
    );
  });
  it('an expanded value is never re-expanded', () => {
    fc.assert(
      fc.property(fc.string(), (v) => {
        expect(expandWord('"$V"', envLookupFrom({ V: v }))).toBe(v);
        expect(expandWord('${V}', envLookupFrom({ V: v }))).toBe(v);
      }),
    );
  });
  it('never throws anything but MbuildError', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '"', "'", '*', 'a', 'V', ' ') }), (w) => {
        try {
          expandWord(w, envLookupFrom({ V: 'value', a: '' }));
          expandWords(w, envLookupFrom({ V: 'value', a: '' }));
        } catch (e) {
          expect(e).toBeInstanceOf(MbuildError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
