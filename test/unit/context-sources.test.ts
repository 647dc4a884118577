import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IgnoreMatcher, loadIgnore } from '../../builder/context/dockerignore.js';
import { MAX_SYMLINKS, resolveInScope, resolveInScopeDetailed } from '../../builder/context/scope.js';
import { SymlinkLoopError } from '../../util/errors.js';
import { resolveSources, walkSourceSync, type SourceEntry } from '../../builder/context/sources.js';
import { CopySourceMissingError } from '../../util/errors.js';

let root: string; // the context
let outside: string; // a directory next to it that must stay unreachable

async function tree(base: string, spec: Record<string, string | { link: string } | null>): Promise<void> {
  for (const [rel, v] of Object.entries(spec)) {
    const p = path.join(base, rel);
    await mkdir(path.dirname(p), { recursive: true });
    if (v === null) await mkdir(p, { recursive: true });
    else if (typeof v === 'string') await writeFile(p, v);
    else await symlink(v.link, p);
  }
}

async function walkRels(entry: SourceEntry, ignore?: IgnoreMatcher): Promise<string[]> {
  const out: string[] = [];
  for (const e of walkSourceSync(root, entry, ignore)) {
    out.push(e.rel + (e.stat.isDirectory() ? '/' : e.stat.isSymbolicLink() ? '@' : ''));
  }
  return out;
}

const rels = (entries: SourceEntry[]): string[] => entries.map((e) => e.rel);

beforeEach(async () => {
  const base = await realpath(await mkdtemp(path.join(tmpdir(), 'mbuild-ctx-')));
  root = path.join(base, 'ctx');
  outside = path.join(base, 'outside');
  await tree(outside, { 'passwd': 'host secret', 'dir/file': 'host file' });
  await mkdir(root);
});

afterEach(async () => {
  await rm(path.dirname(root), { recursive: true, force: true });
});

describe('resolveInScope', () => {
  it('returns paths below root, existing or not', async () => {
    await tree(root, { 'a/b.txt': 'x' });
    expect(await resolveInScope(root, 'a/b.txt', true)).toBe(path.join(root, 'a/b.txt'));
    expect(await resolveInScope(root, 'a/missing/deeper', true)).toBe(path.join(root, 'a/missing/deeper'));
    expect(await resolveInScope(root, '', true)).toBe(root);
    expect(await resolveInScope(root, '/', true)).toBe(root);
  });

  it('clamps ".." at the root', async () => {
    expect(await resolveInScope(root, '../../../etc/passwd', true)).toBe(path.join(root, 'etc/passwd'));
    expect(await resolveInScope(root, 'a/../../x', true)).toBe(path.join(root, 'x'));
  });

  it('resolves absolute symlinks against root', async () => {
    await tree(root, { 'real/f': 'x', 'abs': { link: '/real' }, 'hostetc': { link: '/etc' } });
    expect(await resolveInScope(root, 'abs/f', true)).toBe(path.join(root, 'real/f'));
    expect(await resolveInScope(root, 'hostetc/passwd', true)).toBe(path.join(root, 'etc/passwd'));
    await tree(root, { etc: { link: '/etc' } });
    // inside the scope, "etc -> /etc" points at itself
    await expect(resolveInScope(root, 'etc/passwd', true)).rejects.toBeInstanceOf(SymlinkLoopError);
  });

  it('resolves relative symlinks with too many ".." inside root', async () => {
    await tree(root, { 'real/f': 'x', 'd/e/up': { link: '../../../../../../real' }, 'd/sib': { link: '../real/f' } });
    expect(await resolveInScope(root, 'd/e/up/f', true)).toBe(path.join(root, 'real/f'));
    expect(await resolveInScope(root, 'd/sib', true)).toBe(path.join(root, 'real/f'));
  });

  it('does not escape through a link to a host directory', async () => {
    await tree(root, { evil: { link: outside }, rel: { link: '../outside' } });
    expect(await resolveInScope(root, 'evil/passwd', true)).toBe(path.join(root, outside, 'passwd'));
    expect(await resolveInScope(root, 'rel/passwd', true)).toBe(path.join(root, 'outside/passwd'));
  });

  it('leaves a final symlink alone when followFinal is false', async () => {
    await tree(root, { 'real/f': 'x', 'dir': { link: 'real' }, 'dir2': { link: 'real' } });
    expect(await resolveInScope(root, 'dir', false)).toBe(path.join(root, 'dir'));
    expect(await resolveInScope(root, 'dir', true)).toBe(path.join(root, 'real'));
    // parents are still followed
    await tree(root, { 'real/l': { link: 'f' } });
    expect(await resolveInScope(root, 'dir2/l', false)).toBe(path.join(root, 'real/l'));
    expect(await resolveInScope(root, 'dir2/l', true)).toBe(path.join(root, 'real/f'));
  });

  it('chains of links', async () => {
    await tree(root, { 'f': 'x', 'l1': { link: 'l2' }, 'l2': { link: '/l3' }, 'l3': { link: './f' } });
    expect(await resolveInScope(root, 'l1', true)).toBe(path.join(root, 'f'));
  });

  it('fails on symlink loops', async () => {
    await tree(root, { loop1: { link: 'loop2' }, loop2: { link: 'loop1' }, self: { link: 'self' } });
    await expect(resolveInScope(root, 'loop1', true)).rejects.toBeInstanceOf(SymlinkLoopError);
    await expect(resolveInScope(root, 'self/x', true)).rejects.toThrow(/too many levels/);
    expect(MAX_SYMLINKS).toBe(255);
  });

  it('a file used as a directory is just missing', async () => {
    await tree(root, { f: 'x' });
    const r = await resolveInScopeDetailed(root, 'f/x', true);
    expect(r.hostPath).toBe(path.join(root, 'f/x'));
    expect(r.missing).toBe(true);
  });
});

describe('resolveSources', () => {
  beforeEach(async () => {
    await tree(root, {
      'a.txt': 'a',
      'b.txt': 'b',
      'c.md': 'c',
      'dir/sub/x.txt': 'x',
      'dir/y.txt': 'y',
      'dir2/x.txt': 'x2',
      'other/x.txt': 'x3',
      'empty': null,
      'link-to-a': { link: 'a.txt' },
      'link-to-dir': { link: '/dir' },
      'evil': { link: outside },
      'evil-rel': { link: '../outside' },
      'evil-file': { link: path.join(outside, 'passwd') },
      'dangling': { link: 'nope' },
    });
  });

  it('plain files and directories', async () => {
    const r = await resolveSources(root, ['a.txt', 'dir', 'dir/sub/', './empty']);
    expect(r).toEqual([
      { hostPath: path.join(root, 'a.txt'), rel: 'a.txt', isDir: false },
      { hostPath: path.join(root, 'dir'), rel: 'dir', isDir: true },
      { hostPath: path.join(root, 'dir/sub'), rel: 'dir/sub', isDir: true },
      { hostPath: path.join(root, 'empty'), rel: 'empty', isDir: true },
    ]);
  });

  it('the context root itself', async () => {
    const r = await resolveSources(root, ['.', '/', '..']);
    expect(r.map((e) => [e.hostPath, e.rel, e.isDir])).toEqual([
      [root, '.', true],
      [root, '.', true],
      [root, '.', true],
    ]);
  });

  it('a missing plain name throws CopySourceMissingError', async () => {
    await expect(resolveSources(root, ['nope.txt'])).rejects.toBeInstanceOf(CopySourceMissingError);
    await expect(resolveSources(root, ['nope.txt'])).rejects.toThrow('"nope.txt": not found');
    await expect(resolveSources(root, ['a.txt/x'])).rejects.toThrow('"a.txt/x": not found');
    await expect(resolveSources(root, ['dangling'])).rejects.toThrow('"dangling": not found');
  });

  it('follows a symlink named as a source, inside the context', async () => {
    const r = await resolveSources(root, ['link-to-a', 'link-to-dir', 'link-to-dir/sub/x.txt']);
    expect(r).toEqual([
      { hostPath: path.join(root, 'a.txt'), rel: 'link-to-a', isDir: false },
      { hostPath: path.join(root, 'dir'), rel: 'link-to-dir', isDir: true },
      { hostPath: path.join(root, 'dir/sub/x.txt'), rel: 'link-to-dir/sub/x.txt', isDir: false },
    ]);
  });

  it('never reaches the host through symlinks or ".."', async () => {
    for (const src of ['evil/passwd', 'evil-rel/passwd', 'evil-file', 'evil/dir/file', '../outside/passwd', '/../../outside/passwd']) {
      await expect(resolveSources(root, [src]), src).rejects.toBeInstanceOf(CopySourceMissingError);
    }
    // wildcards through the links find nothing either
    expect(await resolveSources(root, ['evil/*', 'evil-rel/*', '../outside/*'])).toEqual([]);
  });

  it('a link out of the context resolves to the path inside the context', async () => {
    // the same absolute path, but inside the context
    await tree(root, { [path.join(outside.slice(1), 'passwd')]: 'in ctx' });
    const r = await resolveSources(root, ['evil/passwd']);
    expect(r[0].hostPath).toBe(path.join(root, outside, 'passwd'));
  });

  it('absolute sources and ".." are taken relative to root', async () => {
    const r = await resolveSources(root, ['/a.txt', '../../b.txt', 'dir/../c.md']);
    expect(r.map((e) => e.hostPath)).toEqual([path.join(root, 'a.txt'), path.join(root, 'b.txt'), path.join(root, 'c.md')]);
  });

  it('wildcards match per segment, in byte order', async () => {
    expect(rels(await resolveSources(root, ['*.txt']))).toEqual(['a.txt', 'b.txt']);
    expect(rels(await resolveSources(root, ['?.md']))).toEqual(['c.md']);
    expect(rels(await resolveSources(root, ['[ab].txt']))).toEqual(['a.txt', 'b.txt']);
    expect(rels(await resolveSources(root, ['[^a].txt']))).toEqual(['b.txt']);
    expect(rels(await resolveSources(root, ['[a-b]*']))).toEqual(['a.txt', 'b.txt']);
    expect(rels(await resolveSources(root, ['*/x.txt']))).toEqual(['dir2/x.txt', 'other/x.txt']);
    expect(rels(await resolveSources(root, ['dir*/x.txt']))).toEqual(['dir2/x.txt']);
    expect(rels(await resolveSources(root, ['*/*/x.txt']))).toEqual(['dir/sub/x.txt']);
    expect(rels(await resolveSources(root, ['dir/*']))).toEqual(['dir/sub', 'dir/y.txt']);
  });

  it('wildcard directory matches are returned as directories', async () => {
    const r = await resolveSources(root, ['di?']);
    expect(r).toEqual([{ hostPath: path.join(root, 'dir'), rel: 'dir', isDir: true }]);
  });

  it('a wildcard that matches nothing is allowed', async () => {
    expect(await resolveSources(root, ['*.nope', 'nodir/*', 'a.txt/*'])).toEqual([]);
    // a malformed pattern matches nothing (as in BuildKit)
    expect(await resolveSources(root, ['[.txt'])).toEqual([]);
  });

  it('special characters in names: [[] escapes, a backslash-only name is literal', async () => {
    await tree(root, { 'arr[0].txt': 'w', 'we*rd': 'w' });
    expect(rels(await resolveSources(root, ['arr[[]0].txt']))).toEqual(['arr[0].txt']);
    expect(rels(await resolveSources(root, ['we[*]rd']))).toEqual(['we*rd']);
    // as in BuildKit, a segment whose only wildcard is escaped is not a pattern: literal name
    await expect(resolveSources(root, ['we\\*rd'])).rejects.toBeInstanceOf(CopySourceMissingError);
    // inside a pattern, escapes work
    expect(rels(await resolveSources(root, ['we\\*r?']))).toEqual(['we*rd']);
  });

  it('wildcards do not descend through symlinked directories, but follow matched links', async () => {
    expect(rels(await resolveSources(root, ['link-to-*/x.txt']))).toEqual([]);
    const r = await resolveSources(root, ['link-to-?']);
    expect(r).toEqual([{ hostPath: path.join(root, 'a.txt'), rel: 'link-to-a', isDir: false }]);
    // a literal prefix through a link is followed
    expect(rels(await resolveSources(root, ['link-to-dir/*.txt']))).toEqual(['link-to-dir/y.txt']);
    expect((await resolveSources(root, ['link-to-dir/*.txt']))[0].hostPath).toBe(path.join(root, 'dir/y.txt'));
  });

  it('a wildcard matching a dangling link fails', async () => {
    await expect(resolveSources(root, ['dangl*'])).rejects.toBeInstanceOf(CopySourceMissingError);
  });

  it('keeps the order of the sources', async () => {
    expect(rels(await resolveSources(root, ['c.md', '*.txt', 'dir']))).toEqual(['c.md', 'a.txt', 'b.txt', 'dir']);
  });
});

describe('resolveSources with .dockerignore', () => {
  beforeEach(async () => {
    await tree(root, {
      'a.txt': 'a',
      'debug.log': 'l',
      'build/out.o': 'o',
      'build/keep.txt': 'k',
      'build/deep/x.o': 'x',
      'secret/key': 'k',
      'sub/secret.key': 's',
      'sub/ok.txt': 'ok',
      'link-to-log': { link: 'debug.log' },
      'link-to-secret': { link: '/secret' },
      'ignored-link': { link: 'a.txt' },
      'ignored-dir-link': { link: 'sub' },
    });
  });
  const ignore = () => IgnoreMatcher.parse('*.log\n**/secret*\nbuild/\n!build/keep.txt\nignored-*\n');

  it('an excluded plain name is not found', async () => {
    for (const src of ['debug.log', 'sub/secret.key', 'secret', 'secret/key', 'build/out.o', 'build/deep']) {
      await expect(resolveSources(root, [src], ignore()), src).rejects.toThrow(`"${src}": not found`);
    }
  });

  it('cannot be bypassed with "..", absolute paths or symlinks', async () => {
    for (const src of [
      '/debug.log',
      'sub/../debug.log',
      '../../secret/key',
      'link-to-log',
      'link-to-secret/key',
      'ignored-link',
      'ignored-dir-link/ok.txt',
    ]) {
      await expect(resolveSources(root, [src], ignore()), src).rejects.toBeInstanceOf(CopySourceMissingError);
    }
  });

  it('re-included entries and their excluded parent directories exist', async () => {
    const r = await resolveSources(root, ['build/keep.txt', 'build', 'sub/ok.txt', 'a.txt'], ignore());
    expect(rels(r)).toEqual(['build/keep.txt', 'build', 'sub/ok.txt', 'a.txt']);
    expect(r[1].isDir).toBe(true);
  });

  it('wildcards skip excluded entries', async () => {
    expect(rels(await resolveSources(root, ['[abs]*'], ignore()))).toEqual(['a.txt', 'build', 'sub']);
    expect(rels(await resolveSources(root, ['build/*'], ignore()))).toEqual(['build/keep.txt']);
    expect(rels(await resolveSources(root, ['sub/*'], ignore()))).toEqual(['sub/ok.txt']);
    expect(rels(await resolveSources(root, ['*/*.o'], ignore()))).toEqual([]);
  });

  it('a wildcard matching a link whose target is excluded fails like a dangling link', async () => {
    await expect(resolveSources(root, ['link-to-l*'], ignore())).rejects.toBeInstanceOf(CopySourceMissingError);
  });

  it('an excluded directory without re-includes is hidden entirely', async () => {
    const m = IgnoreMatcher.parse('build\n');
    await expect(resolveSources(root, ['build'], m)).rejects.toBeInstanceOf(CopySourceMissingError);
    await expect(resolveSources(root, ['build/keep.txt'], m)).rejects.toBeInstanceOf(CopySourceMissingError);
    expect(await resolveSources(root, ['build/*'], m)).toEqual([]);
  });

  it('an excluded directory whose re-include matches nothing is hidden', async () => {
    const m = IgnoreMatcher.parse('build\n!build/nothing-here\n');
    await expect(resolveSources(root, ['build'], m)).rejects.toBeInstanceOf(CopySourceMissingError);
  });
});

describe('walkSourceSync', () => {
  beforeEach(async () => {
    await tree(root, {
      'b/z.txt': 'z',
      'b/a.txt': 'a',
      'a-c': 'x',
      'a/b': 'x',
      'B': 'upper',
      'lnk': { link: 'b' },
      'abs': { link: outside },
      'empty': null,
    });
  });

  it('yields everything depth-first in byte order, links as links', async () => {
    const [entry] = await resolveSources(root, ['.']);
    expect(await walkRels(entry)).toEqual(['B', 'a/', 'a/b', 'a-c', 'abs@', 'b/', 'b/a.txt', 'b/z.txt', 'empty/', 'lnk@']);
  });

  it('walks a subdirectory with rels relative to it', async () => {
    const [entry] = await resolveSources(root, ['b']);
    expect(await walkRels(entry)).toEqual(['a.txt', 'z.txt']);
    const [viaLink] = await resolveSources(root, ['lnk']);
    expect(await walkRels(viaLink)).toEqual(['a.txt', 'z.txt']);
  });

  it('yields nothing for a file', async () => {
    const [entry] = await resolveSources(root, ['a-c']);
    expect(await walkRels(entry)).toEqual([]);
  });

  it('applies the ignore matcher with context-root paths', async () => {
    const m = IgnoreMatcher.parse('b/z.txt\nempty\nabs\n');
    const [all] = await resolveSources(root, ['.'], m);
    expect(await walkRels(all, m)).toEqual(['B', 'a/', 'a/b', 'a-c', 'b/', 'b/a.txt', 'lnk@']);
    // walking "lnk" (which resolves to b) still matches "b/z.txt"
    const [viaLink] = await resolveSources(root, ['lnk'], m);
    expect(await walkRels(viaLink, m)).toEqual(['a.txt']);
  });

  it('emits excluded parents of re-included entries, before them', async () => {
    await tree(root, { 'x/y/keep.md': 'k', 'x/y/drop.txt': 'd', 'x/other.txt': 'o' });
    const m = IgnoreMatcher.parse('x\n!x/y/keep.md\n');
    const [all] = await resolveSources(root, ['.'], m);
    const got = await walkRels(all, m);
    expect(got.filter((r) => r.startsWith('x'))).toEqual(['x/', 'x/y/', 'x/y/keep.md']);
    const [x] = await resolveSources(root, ['x'], m);
    expect(await walkRels(x, m)).toEqual(['y/', 'y/keep.md']);
  });

  it('wildcard re-includes are found at any depth', async () => {
    await tree(root, { 'docs/a.md': 'a', 'docs/deep/b.md': 'b', 'docs/c.txt': 'c' });
    const m = IgnoreMatcher.parse('*\n!**/*.md\n');
    const [all] = await resolveSources(root, ['.'], m);
    expect(await walkRels(all, m)).toEqual(['docs/', 'docs/a.md', 'docs/deep/', 'docs/deep/b.md']);
  });
});

describe('conformance case: dockerignore', () => {
  const caseDir = '/work/shared/conformance/cases/dockerignore';
  it.skipIf(!existsSync(caseDir))('COPY . /ctx/ keeps exactly the expected files', async () => {
    const ctx = path.join(caseDir, 'context');
    const expected = JSON.parse(readFileSync(path.join(caseDir, 'expected.json'), 'utf8')) as {
      tree: Record<string, { type: string }>;
    };
    const want = Object.entries(expected.tree)
      .filter(([k]) => k.startsWith('ctx/'))
      .map(([k, v]) => k.slice(4) + (v.type === 'dir' ? '/' : ''))
      .sort();
    const m = await loadIgnore(ctx, path.join(caseDir, 'Dockerfile'));
    const [entry] = await resolveSources(ctx, ['.'], m);
    const got: string[] = [];
    for (const e of walkSourceSync(ctx, entry, m)) got.push(e.rel + (e.stat.isDirectory() ? '/' : ''));
    expect(got.sort()).toEqual(want);
  });
});
