/** Which ADD sources are git repositories, and their options, as BuildKit's dfgitutil.ParseGitRef reads them. */
import { describe, expect, it } from 'vitest';
import { parseGitSource } from '../../builder/steps/git.js';

describe('parseGitSource', () => {
  it('recognises git addresses and leaves plain URLs and paths alone', () => {
    expect(parseGitSource('https://example.com/org/repo.git')).toMatchObject({ remote: 'https://example.com/org/repo.git', submodules: true });
    expect(parseGitSource('git@github.com:org/repo.git#v1.2:docs')).toMatchObject({ remote: 'git@github.com:org/repo.git', ref: 'v1.2', subdir: 'docs' });
    expect(parseGitSource('ssh://git@host/repo')).toMatchObject({ remote: 'ssh://git@host/repo' });
    expect(parseGitSource('git://host/repo#:sub/')).toMatchObject({ remote: 'git://host/repo', subdir: 'sub' });
    expect(parseGitSource('https://example.com/file.tar.gz')).toBeUndefined();
    expect(parseGitSource('https://example.com/repo')).toBeUndefined();
    expect(parseGitSource('src/dir')).toBeUndefined();
    expect(parseGitSource('file.txt')).toBeUndefined();
  });

  it('reads the query form', () => {
    expect(parseGitSource('https://h/r.git?tag=v1&subdir=a/../b&keep-git-dir=true&checksum=abc123')).toMatchObject({ ref: 'refs/tags/v1', subdir: 'b', keepGitDir: true, checksum: 'abc123' });
    expect(parseGitSource('https://h/r.git?branch=dev&submodules=false')).toMatchObject({ ref: 'refs/heads/dev', submodules: false });
    expect(() => parseGitSource('https://h/r.git#main?ref=other')).not.toThrow(); // a fragment ends the URL: the "query" is part of the ref
    expect(() => parseGitSource('https://h/r.git?ref=a#b')).toThrow('ref conflicts: "b" vs "a"');
    expect(() => parseGitSource('https://h/r.git?depth=1')).toThrow('the git URL option "depth" is not supported');
    expect(() => parseGitSource('https://h/r.git?ref=')).toThrow('query "ref" has no value');
  });
});
