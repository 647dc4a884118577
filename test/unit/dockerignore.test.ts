import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IgnoreMatcher, loadIgnore } from '../../builder/context/dockerignore.js';
import { goMatch, hasWildcards } from '../../builder/context/gomatch.js';
import { BadPatternError } from '../../util/errors.js';
import { MbuildError } from '../../util/errors.js';

describe('goMatch (Go filepath.Match)', () => {
  const cases: Array<[string, string, boolean]> = [
    ['abc', 'abc', true],
    ['abc', 'abd', false],
    ['*', 'anything', true],
    ['*', '', true],
    ['*', 'a/b', false],
    ['*.txt', 'notes.txt', true],
    ['*.txt', 'notes.txt.bak', false],
    ['a*', 'a', true],
    ['a*z', 'abcz', true],
    ['a*z', 'a/z', false],
    ['*x', 'xxx', true],
    ['a*b?c*x', 'aXXbYcZZx', true],
    ['a*b?c*x', 'aXXbYcZZy', false],
    ['?', 'é', true],
    ['??', 'é', false],
    ['a?c', 'a/c', false],
    ['[abc]', 'b', true],
    ['[a-c]x', 'cx', true],
    ['[a-c]x', 'dx', false],
    ['[^a-c]x', 'dx', true],
    ['[^a-c]x', 'bx', false],
    ['[α-ω]', 'λ', true],
    ['[\\]a]', ']', true],
    ['[x\\-]', '-', true],
    ['[\\-x]', 'x', true],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'aXb', false],
    ['\\[x\\]', '[x]', true],
    ['[!a]', '!', true], // '!' is not a negation in Go
    ['[!a]', 'b', false],
  ];
  it.each(cases)('goMatch(%j, %j) = %s', (pat, name, want) => {
    expect(goMatch(pat, name)).toBe(want);
  });

  const bad = ['[', '[^', '[^bc', 'a[', '[]a]', '[-]', '[x-]', '[-x]', '[a-b-c]', '\\', 'ab\\'];
  it.each(bad)('rejects malformed %j', (pat) => {
    expect(() => goMatch(pat, 'a')).toThrow(BadPatternError);
  });

  it('reports a malformed remainder even after an early mismatch', () => {
    expect(() => goMatch('x*a[', 'zzz')).toThrow(BadPatternError);
    expect(() => goMatch('a/b[', 'x')).toThrow(BadPatternError);
  });

  it('detects unescaped wildcards', () => {
    expect(hasWildcards('a*b')).toBe(true);
    expect(hasWildcards('a?')).toBe(true);
    expect(hasWildcards('[ab]')).toBe(true);
    expect(hasWildcards('a\\*b')).toBe(false);
    expect(hasWildcards('plain.txt')).toBe(false);
  });
});

function ex(lines: string[], p: string): boolean {
  return IgnoreMatcher.parse(lines.join('\n')).excludes(p);
}

describe('IgnoreMatcher.parse', () => {
  it('skips comments and blank lines, trims, strips BOM and CRLF', () => {
    const m = IgnoreMatcher.parse('\uFEFF*.log\r\n# comment\r\n\r\n   \r\n  build  \r\n');
    expect(m.excludes('a.log')).toBe(true);
    expect(m.excludes('build')).toBe(true);
    expect(m.excludes('# comment')).toBe(false);
    expect(m.excludes('comment')).toBe(false);
  });

  it('only treats "#" in the first column as a comment', () => {
    // BuildKit checks for '#' before trimming
    const m = IgnoreMatcher.parse('  #notacomment');
    expect(m.excludes('#notacomment')).toBe(true);
  });

  it('cleans patterns and anchors them at the root', () => {
    expect(ex(['/foo'], 'foo')).toBe(true);
    expect(ex(['./foo/'], 'foo/bar')).toBe(true);
    expect(ex(['a/../b'], 'b')).toBe(true);
    expect(ex(['a/../b'], 'a')).toBe(false);
    expect(ex(['foo//bar/'], 'foo/bar')).toBe(true);
    expect(ex(['! /keep'], 'keep')).toBe(false);
    expect(ex(['*', '! /keep'], 'keep')).toBe(false);
    expect(ex(['*', '! /keep'], 'other')).toBe(true);
    // patterns are anchored: "foo" does not match "sub/foo"
    expect(ex(['foo'], 'sub/foo')).toBe(false);
  });

  it('rejects "!" alone and malformed patterns with a clear error', () => {
    expect(() => IgnoreMatcher.parse('ok\n!')).toThrow(MbuildError);
    expect(() => IgnoreMatcher.parse('ok\n!')).toThrow(/line 2/);
    expect(() => IgnoreMatcher.parse('a[')).toThrow(/syntax error/);
  });

  it('never excludes the context root', () => {
    expect(ex(['*', '**', '.'], '')).toBe(false);
    expect(ex(['*', '**'], '.')).toBe(false);
  });

  it('an empty matcher excludes nothing', () => {
    const m = IgnoreMatcher.parse('');
    expect(m.excludes('a')).toBe(false);
    expect(m.mayReincludeUnder('a')).toBe(false);
  });
});

describe('IgnoreMatcher.excludes', () => {
  it('single star stays in one segment', () => {
    expect(ex(['*.go'], 'main.go')).toBe(true);
    expect(ex(['*.go'], 'pkg/main.go')).toBe(false);
    expect(ex(['*/*.go'], 'pkg/main.go')).toBe(true);
    expect(ex(['*/*.go'], 'a/b/main.go')).toBe(false);
  });

  it('a pattern matching a directory excludes everything under it', () => {
    expect(ex(['docs'], 'docs/a/b/c.md')).toBe(true);
    expect(ex(['docs/'], 'docs/readme.md')).toBe(true);
    expect(ex(['d?cs'], 'docs/x')).toBe(true);
    expect(ex(['*'], 'any/thing/deep')).toBe(true);
  });

  it('"**" matches any number of segments', () => {
    expect(ex(['**/secret*'], 'secret.key')).toBe(true);
    expect(ex(['**/secret*'], 'a/b/secret.key')).toBe(true);
    expect(ex(['**/secret*'], 'a/notsecret')).toBe(false);
    expect(ex(['**/*.txt'], 'a/b/c.txt')).toBe(true);
    expect(ex(['**/*.txt'], 'c.txt')).toBe(true);
    expect(ex(['a/**/z'], 'a/z')).toBe(true);
    expect(ex(['a/**/z'], 'a/b/c/z')).toBe(true);
    expect(ex(['a/**/z'], 'b/z')).toBe(false);
    expect(ex(['**'], 'x/y')).toBe(true);
    expect(ex(['**/dir2/*'], 'dir/dir2/file')).toBe(true);
    expect(ex(['a**/*.txt'], 'a/dir/dir/file.txt')).toBe(true);
  });

  it('"dir/**" excludes the contents but not the directory itself', () => {
    expect(ex(['abc/**'], 'abc')).toBe(false);
    expect(ex(['abc/**'], 'abc/def')).toBe(true);
    expect(ex(['abc/**'], 'abc/def/ghi')).toBe(true);
  });

  it('leading "**" without a slash is a plain suffix (patternmatcher quirk)', () => {
    expect(ex(['**file'], 'file')).toBe(true);
    expect(ex(['**file'], 'dir/file')).toBe(true);
    expect(ex(['**file'], 'myfile')).toBe(true);
    expect(ex(['**/.foo'], 'bar.foo')).toBe(false);
    expect(ex(['**/.foo'], '.foo')).toBe(true);
  });

  it('character classes, "?" and escapes', () => {
    expect(ex(['a[b-d]e'], 'ace')).toBe(true);
    expect(ex(['a[b-d]e'], 'aae')).toBe(false);
    expect(ex(['a[b-d]e'], 'ae')).toBe(false);
    expect(ex(['a[^b-d]e'], 'aze')).toBe(true);
    expect(ex(['a[^b-d]e'], 'ace')).toBe(false);
    expect(ex(['file?.txt'], 'file1.txt')).toBe(true);
    expect(ex(['file?.txt'], 'file12.txt')).toBe(false);
    expect(ex(['a\\*b'], 'a*b')).toBe(true);
    expect(ex(['a\\*b'], 'axb')).toBe(false);
    expect(ex(['a\\\\'], 'a\\')).toBe(true);
  });

  it('regular-expression characters are literal', () => {
    expect(ex(['abc.def'], 'abc.def')).toBe(true);
    expect(ex(['abc.def'], 'abcXdef')).toBe(false);
    expect(ex(['.*'], '.env')).toBe(true);
    expect(ex(['.*'], 'env')).toBe(false);
    expect(ex(['a(b)c/d+e{1}$'], 'a(b)c/d+e{1}$')).toBe(true);
    expect(ex(['dist/*.whl'], 'dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl')).toBe(true);
  });

  it('"!" re-includes and the last matching pattern wins', () => {
    expect(ex(['*.md', '!README.md'], 'README.md')).toBe(false);
    expect(ex(['*.md', '!README.md'], 'CHANGES.md')).toBe(true);
    expect(ex(['!README.md', '*.md'], 'README.md')).toBe(true);
    expect(ex(['*.md', '!README.md', 'README*'], 'README.md')).toBe(true);
    expect(ex(['docs', '!docs/keep.md'], 'docs/keep.md')).toBe(false);
    expect(ex(['docs', '!docs/keep.md'], 'docs/other.md')).toBe(true);
    expect(ex(['docs', '!docs/keep.md'], 'docs')).toBe(true);
    expect(ex(['**', '!util/docker/web'], 'util/docker/web/foo')).toBe(false);
    expect(ex(['**', '!util/docker/web', 'util/docker/web/foo'], 'util/docker/web/foo')).toBe(true);
    expect(ex(['build/', '!build/keep.txt'], 'build/out.o')).toBe(true);
    expect(ex(['build/', '!build/keep.txt'], 'build/keep.txt')).toBe(false);
  });

  it('follows the BuildKit walker when a re-include is skipped at the parent', () => {
    // At "a" the '!a' pattern is not evaluated (nothing to re-include yet), so the walker
    // does not remember it for "a/x": "a/x" stays excluded in BuildKit.
    expect(ex(['a/x', '!a'], 'a/x')).toBe(true);
    expect(ex(['a/x', '!a'], 'a')).toBe(false);
  });

  it('accepts relPath variants', () => {
    const m = IgnoreMatcher.parse('docs');
    expect(m.excludes('./docs/a')).toBe(true);
    expect(m.excludes('docs/')).toBe(true);
    expect(m.excludes('/docs')).toBe(true);
  });
});

describe('IgnoreMatcher.mayReincludeUnder', () => {
  it('is false without "!" patterns', () => {
    expect(IgnoreMatcher.parse('build').mayReincludeUnder('build')).toBe(false);
  });
  it('checks plain "!" patterns by prefix', () => {
    const m = IgnoreMatcher.parse('build\n!build/keep.txt\nnode_modules');
    expect(m.mayReincludeUnder('build')).toBe(true);
    expect(m.mayReincludeUnder('node_modules')).toBe(false);
    expect(m.mayReincludeUnder('buil')).toBe(false);
    const deep = IgnoreMatcher.parse('a\n!a/b/c/**');
    expect(deep.mayReincludeUnder('a')).toBe(true);
    expect(deep.mayReincludeUnder('a/b')).toBe(true);
    expect(deep.mayReincludeUnder('a/b/c')).toBe(true);
    expect(deep.mayReincludeUnder('a/x')).toBe(false);
  });
  it('is always true when a "!" pattern has wildcards', () => {
    const m = IgnoreMatcher.parse('*\n!**/*.md');
    expect(m.mayReincludeUnder('anything')).toBe(true);
    expect(m.excludes('docs/a.md')).toBe(false);
    expect(m.excludes('docs/a.txt')).toBe(true);
  });
});

describe('loadIgnore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'mbuild-ign-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('no file: excludes nothing', async () => {
    const m = await loadIgnore(dir);
    expect(m.excludes('anything')).toBe(false);
  });

  it('reads contextDir/.dockerignore', async () => {
    await writeFile(path.join(dir, '.dockerignore'), '*.log\n');
    const m = await loadIgnore(dir, path.join(dir, 'Dockerfile'));
    expect(m.excludes('x.log')).toBe(true);
  });

  it('<Dockerfile>.dockerignore beside the Dockerfile wins', async () => {
    await writeFile(path.join(dir, '.dockerignore'), '*.log\n');
    await mkdir(path.join(dir, 'sub'));
    await writeFile(path.join(dir, 'sub', 'app.Dockerfile'), 'FROM scratch\n');
    await writeFile(path.join(dir, 'sub', 'app.Dockerfile.dockerignore'), '*.tmp\n');
    const m = await loadIgnore(dir, path.join(dir, 'sub', 'app.Dockerfile'));
    expect(m.excludes('x.tmp')).toBe(true);
    expect(m.excludes('x.log')).toBe(false);
    // another Dockerfile without its own ignore file falls back to the root one
    const m2 = await loadIgnore(dir, path.join(dir, 'sub', 'other.Dockerfile'));
    expect(m2.excludes('x.log')).toBe(true);
  });

  it('does not follow a .dockerignore symlink out of the context', async () => {
    const outside = await mkdtemp(path.join(tmpdir(), 'mbuild-ign-out-'));
    try {
      await writeFile(path.join(outside, 'patterns'), '*\n');
      await symlink(path.join(outside, 'patterns'), path.join(dir, '.dockerignore'));
      const m = await loadIgnore(dir);
      expect(m.excludes('a')).toBe(false);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('follows a .dockerignore symlink inside the context', async () => {
    await writeFile(path.join(dir, 'ignore.txt'), 'secret\n');
    await symlink('/ignore.txt', path.join(dir, '.dockerignore'));
    const m = await loadIgnore(dir);
    expect(m.excludes('secret')).toBe(true);
  });
});
