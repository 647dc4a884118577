import { describe, expect, it } from 'vitest';
import { HelpRequested, parseArgs } from '../../util/args.js';
import { parseOutput } from '../../builder/executor/output-spec.js';
import { renderTemplate } from '../../cli/go-template.js';
import { suggest } from '../../cli/main.js';
import { isGitUrl } from '../../cli/context-input.js';

describe('CLI arguments', () => {
  const specs = [
    { names: ['-t', '--tag'], key: 'tag', kind: 'list' as const },
    { names: ['-f', '--file'], key: 'file', kind: 'string' as const },
    { names: ['--no-cache'], key: 'noCache', kind: 'bool' as const },
  ];
  it('takes --flag value, --flag=value and repeats', () => {
    expect(parseArgs(['-t', 'a', '--tag=b', '-f', 'D', '--no-cache', '.'], specs)).toEqual({ flags: { tag: ['a', 'b'], file: 'D', noCache: true }, positional: ['.'] });
    expect(parseArgs(['--no-cache=false', '.'], specs).flags.noCache).toBe(false);
  });
  it('refuses unknown flags, missing values and a bool flag with a value that is not true/false', () => {
    expect(() => parseArgs(['--nope'], specs)).toThrow(/unknown flag: --nope/);
    expect(() => parseArgs(['-f'], specs)).toThrow(/needs an argument/);
    expect(() => parseArgs(['--no-cache=maybe'], specs)).toThrow(/use true or false/);
  });
  it('--help and -h ask for help', () => {
    expect(() => parseArgs(['--help'], specs)).toThrow(HelpRequested);
    expect(() => parseArgs(['-t', 'x', '-h'], specs)).toThrow(HelpRequested);
  });
});

describe('--output', () => {
  it('reads every option of the image, registry, oci and docker exporters', () => {
    expect(parseOutput('type=oci,dest=out.tar')).toMatchObject({ type: 'oci', dest: 'out.tar', tar: true, compression: 'gzip', push: false });
    expect(parseOutput('outdir')).toMatchObject({ type: 'local', dest: 'outdir' });
    expect(parseOutput('-')).toMatchObject({ type: 'tar', dest: '-' });
    expect(parseOutput('type=image,name=r/a:1,push=true')).toMatchObject({ type: 'image', names: ['r/a:1'], push: true });
    expect(parseOutput('type=image,"name=r/a:1,r/b:2"')).toMatchObject({ names: ['r/a:1', 'r/b:2'] });
    expect(parseOutput('type=registry')).toMatchObject({ type: 'registry', push: true });
    expect(parseOutput('type=oci,dest=d,tar=false,compression=uncompressed,force-compression=true,oci-mediatypes=false')).toMatchObject({
      tar: false,
      compression: 'uncompressed',
      forceCompression: true,
      ociMediatypes: false,
    });
    expect(parseOutput('type=image,annotation.org.opencontainers.image.title=x').annotations).toMatchObject([{ kind: 'manifest', key: 'org.opencontainers.image.title', value: 'x' }]);
  });
  it('refuses unknown keys and values with one line naming them', () => {
    expect(() => parseOutput('type=zip,dest=x')).toThrow(/type=zip is not supported/);
    expect(() => parseOutput('type=oci')).toThrow(/needs dest/);
    // as buildx: "dest cannot be stdout for local exporter" (a directory)
    expect(() => parseOutput('type=local,dest=-')).toThrow(/--output type=local,dest=-: a directory cannot be written to stdout/);
    expect(() => parseOutput('type=oci,tar=false,dest=-')).toThrow(/--output type=oci,tar=false,dest=-: a directory cannot be written to stdout/);
    expect(() => parseOutput('type=image,pushh=true')).toThrow(/does not take pushh=/);
    expect(() => parseOutput('type=local,dest=x,compression=gzip')).toThrow(/type=local does not take compression=/);
    expect(() => parseOutput('type=image,push=yes')).toThrow(/push=yes: use true or false/);
    expect(parseOutput('type=oci,dest=x,compression=zstd')).toMatchObject({ compression: 'zstd' });
    expect(() => parseOutput('type=oci,dest=x,compression=estargz')).toThrow(/compression=estargz is not supported/);
    expect(() => parseOutput('type=oci,dest=x,compression=lz4')).toThrow(/use gzip, zstd or uncompressed/);
    expect(() => parseOutput('type=image,unpack=true')).toThrow(/unpack= is not supported/);
    expect(() => parseOutput('type=image,store=false')).toThrow(/store=false is not supported/);
  });
  it('takes compression-level for gzip (0-9) and zstd (0-22), push-by-digest with a push', () => {
    expect(parseOutput('type=oci,dest=x,compression-level=9')).toMatchObject({ compression: 'gzip', compressionLevel: 9 });
    expect(parseOutput('type=oci,dest=x,compression=zstd,compression-level=22')).toMatchObject({ compression: 'zstd', compressionLevel: 22 });
    expect(() => parseOutput('type=oci,dest=x,compression-level=10')).toThrow(/compression-level=10: gzip takes 0-9/);
    expect(() => parseOutput('type=oci,dest=x,compression=uncompressed,compression-level=1')).toThrow(/needs compression=gzip or zstd/);
    expect(() => parseOutput('type=oci,dest=x,compression-level=fast')).toThrow(/give a whole number/);
    expect(parseOutput('type=registry,push-by-digest=true')).toMatchObject({ push: true, pushByDigest: true });
    expect(() => parseOutput('type=image,push-by-digest=true')).toThrow(/push-by-digest=true needs push=true/);
  });
  it('refuses every other key of BuildKit\'s exporters with the reason', () => {
    const keys = ['unpack', 'registry.insecure', 'dangling-name-prefix', 'danging-name-empty-only', 'name-canonical', 'oci-artifact', 'attestation-inline', 'prefer-nondist-layers', 'source-date-epoch', 'rewrite-timestamp'];
    for (const k of keys) expect(() => parseOutput(`type=image,${k}=true`), k).toThrow(new RegExp(`--output ${k.replace('.', '\\.')}= is not supported: \\w`));
    expect(() => parseOutput('type=image,annotation-bogus.a=b')).toThrow(/unknown annotation type "bogus"/);
    expect(() => parseOutput('type=local,dest=x,platform-split=true')).toThrow(/platform-split= is not supported/);
  });
});

describe('inspect --format templates', () => {
  const data = { Id: 'sha256:abc', RepoTags: ['a:1', 'b:2'], Config: { Env: ['A=1', 'B=2'], Labels: { 'x.y': 'z' }, User: '' }, Size: 10 };
  it('evaluates the forms docker users write', () => {
    expect(renderTemplate('{{.Id}}', data)).toBe('sha256:abc');
    expect(renderTemplate('{{.Config.Env}}', data)).toBe('[A=1 B=2]');
    expect(renderTemplate('{{json .Config.Labels}}', data)).toBe('{"x.y":"z"}');
    expect(renderTemplate('{{index .Config.Labels "x.y"}}', data)).toBe('z');
    expect(renderTemplate('{{join .RepoTags ","}}', data)).toBe('a:1,b:2');
    expect(renderTemplate('{{range .RepoTags}}<{{.}}>{{end}}', data)).toBe('<a:1><b:2>');
    expect(renderTemplate('{{if .Config.User}}u{{else}}root{{end}}', data)).toBe('root');
    expect(renderTemplate('{{.Config.Labels}} {{.Nope}} {{len .RepoTags}}', data)).toBe('map[x.y:z] <no value> 2');
  });
  it('refuses what it cannot evaluate', () => {
    expect(() => renderTemplate('{{range .RepoTags}}x', data)).toThrow(/without \{\{end\}\}/);
    expect(() => renderTemplate('{{printf "%s" .Id}}', data)).toThrow(/not a function mbuild knows/);
  });
});

describe('commands', () => {
  it('suggests the command a typo meant', () => {
    expect(suggest('imagse')).toEqual(['images']);
    expect(suggest('biuld')).toEqual(['build']);
    expect(suggest('zzzzzz')).toEqual([]);
  });
  it('recognises git contexts as docker does', () => {
    expect(isGitUrl('https://example.com/repo.git')).toBe(true);
    expect(isGitUrl('https://example.com/repo.git#main:sub')).toBe(true);
    expect(isGitUrl('git@github.com:o/r.git')).toBe(true);
    expect(isGitUrl('github.com/o/r')).toBe(true);
    expect(isGitUrl('https://example.com/ctx.tar.gz')).toBe(false);
  });
});

describe('buildArgValues', () => {
  it('reads K=V, takes a bare K from the environment only when it is set, and keeps "=" in values', async () => {
    const { buildArgValues } = await import('../../util/args.js');
    expect(buildArgValues(['A=1', 'B', 'C', 'D=x=y', 'E='], { B: 'from-env' })).toEqual({ A: '1', B: 'from-env', D: 'x=y', E: '' });
  });
});
