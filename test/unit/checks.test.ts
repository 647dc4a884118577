/**
 * Build checks, one test per rule, with the Dockerfiles and expected warnings of BuildKit's
 * frontend/dockerfile/dockerfile_lint_test.go.
 */
import { describe, expect, it } from 'vitest';
import { checkDockerfile, type CheckOptions } from '../../builder/checks/lint.js';
import { parseCheckOptions } from '../../builder/checks/config.js';
import { formatCheckReport, formatSummary, violationMessage } from '../../builder/checks/report.js';
import { suggest } from '../../util/suggest.js';
import { IgnoreMatcher } from '../../builder/context/dockerignore.js';

const PATH_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
const imageEnv = () => PATH_ENV;

/** [rule, message, line] of each warning. */
function lint(text: string, opts: CheckOptions = {}): [string, string, number][] {
  const r = checkDockerfile(text, 'Dockerfile', { allStages: true, imageEnv, ...opts });
  expect(r.error).toBeUndefined();
  return r.warnings.map((w) => [w.rule, w.message, w.start]);
}

describe('rules', () => {
  it('StageNameCasing', () => {
    expect(lint('\n# warning: stage name should be lowercase\n#\nFROM scratch AS BadStageName\n\nFROM scratch AS base3\n')).toEqual([
      ['StageNameCasing', "Stage name 'BadStageName' should be lowercase", 4],
    ]);
  });

  it('FromAsCasing', () => {
    expect(lint('FROM scratch as base2\nFROM scratch AS base3\n')).toEqual([['FromAsCasing', "'as' and 'FROM' keywords' casing do not match", 1]]);
    expect(lint('from scratch AS base\nfrom scratch as base2\n')).toEqual([['FromAsCasing', "'AS' and 'from' keywords' casing do not match", 1]]);
  });

  it('NoEmptyContinuation', () => {
    expect(lint('\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n')).toEqual([
      ['NoEmptyContinuation', 'Empty continuation line', 6],
    ]);
  });

  it('ConsistentInstructionCasing', () => {
    expect(lint('\nFrom scratch as base\nFROM scratch AS base2\n')).toEqual([
      ['ConsistentInstructionCasing', "Command 'From' should match the case of the command majority (uppercase)", 2],
    ]);
    expect(lint('\nfrom scratch\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n')).toEqual([
      ['ConsistentInstructionCasing', "Command 'COPY' should match the case of the command majority (lowercase)", 3],
    ]);
    expect(lint('FROM scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\ncopy Dockerfile /baz\n')).toEqual([
      ['ConsistentInstructionCasing', "Command 'FROM' should match the case of the command majority (lowercase)", 1],
    ]);
    expect(lint("FROM alpine\nRUN <<'EOT'\nenv\nEOT\n")).toEqual([]);
  });

  it('DuplicateStageName', () => {
    // BuildKit only warns; mbuild's planner refuses the file as well (so --check shows both)
    const r = checkDockerfile('FROM scratch AS b\nFROM scratch AS b\n', 'Dockerfile', { allStages: true });
    expect(r.warnings.map((w) => [w.rule, w.message, w.start])).toEqual([['DuplicateStageName', 'Duplicate stage name "b", stage names should be unique', 2]]);
    expect(r.error).toMatchObject({ message: 'duplicate stage name "b"', start: 2 });
    expect(lint('FROM scratch AS b1\nFROM scratch AS b2\n')).toEqual([]);
  });

  it('ReservedStageName', () => {
    expect(lint('FROM scratch AS scratch\nFROM scratch AS context\n')).toEqual([
      ['ReservedStageName', 'Stage name should not use the same name as reserved stage "scratch"', 1],
      ['ReservedStageName', 'Stage name should not use the same name as reserved stage "context"', 2],
    ]);
    expect(lint('FROM scratch\nFROM scratch AS a\n')).toEqual([]);
  });

  it('JSONArgsRecommended', () => {
    expect(lint('FROM scratch\nCMD mycommand\n')).toEqual([['JSONArgsRecommended', 'JSON arguments recommended for CMD to prevent unintended behavior related to OS signals', 2]]);
    expect(lint('FROM scratch\nENTRYPOINT mycommand\n')).toEqual([['JSONArgsRecommended', 'JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals', 2]]);
    expect(lint('FROM scratch\nSHELL ["/usr/bin/customshell"]\nCMD mycommand\n')).toEqual([]);
    expect(lint('FROM scratch AS base\nSHELL ["/usr/bin/customshell"]\n\nFROM base\nENTRYPOINT mycommand\n')).toEqual([]);
  });

  it('MaintainerDeprecated', () => {
    expect(lint('FROM scratch\nMAINTAINER me@example.org\n')).toEqual([['MaintainerDeprecated', 'Maintainer instruction is deprecated in favor of using label', 2]]);
    expect(lint('FROM scratch\nLABEL org.opencontainers.image.authors="me@example.org"\n')).toEqual([]);
  });

  it('UndefinedArgInFrom', () => {
    expect(lint('ARG base=scratch\nFROM $base\n')).toEqual([]);
    expect(lint('FROM --platform=$BUILDPLATFORM scratch\n')).toEqual([]);
    expect(lint('ARG DEBUG\nFROM scratch${DEBUG}\n')).toEqual([]);
    expect(lint('ARG tag=latest\nFROM busybox:${tag}${version} AS b\n')).toEqual([['UndefinedArgInFrom', "FROM argument 'version' is not declared", 2]]);
    const r = checkDockerfile('FROM --platform=$BULIDPLATFORM scratch\n', 'Dockerfile', { allStages: true });
    expect(r.warnings.map((w) => w.message)).toEqual(["FROM argument 'BULIDPLATFORM' is not declared (did you mean BUILDPLATFORM?)"]);
    expect(r.error).toEqual({ message: 'empty platform value from expression $BULIDPLATFORM', start: 1, end: 1 });
  });

  it('WorkdirRelativePath', () => {
    expect(lint('FROM scratch\nWORKDIR app/\n')).toEqual([['WorkdirRelativePath', 'Relative workdir "app/" can have unexpected results if the base image changes', 2]]);
    expect(lint('FROM scratch AS a\nWORKDIR /app\n\nFROM a AS b\nWORKDIR subdir/\n')).toEqual([]);
  });

  it('UndefinedVar', () => {
    expect(lint('FROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n')).toEqual([]);
    expect(lint('FROM alpine AS base\nARG foo=Dockerfile\n\nFROM base\nCOPY $foo .\n')).toEqual([]);
    expect(lint('FROM alpine\nRUN echo $PATH\n')).toEqual([]);
    expect(lint('FROM alpine\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n')).toEqual([['UndefinedVar', "Usage of undefined variable '$foo'", 2]]);
    expect(lint('FROM alpine\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\nCOPY $DIR_ASSET .\n')).toEqual([
      ['UndefinedVar', "Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)", 5],
    ]);
    expect(lint('FROM alpine\nENV PATH=$PAHT:/tmp/bin\n')).toEqual([['UndefinedVar', "Usage of undefined variable '$PAHT' (did you mean $PATH?)", 2]]);
    // unreachable stages count for --check only
    expect(lint('FROM scratch AS first\nCOPY $foo .\n\nFROM scratch AS second\nCOPY $bar .\n', { allStages: false })).toEqual([['UndefinedVar', "Usage of undefined variable '$bar'", 5]]);
    expect(lint('FROM scratch AS first\nCOPY $foo .\n\nFROM scratch AS second\nCOPY $bar .\n').map((w) => w[2])).toEqual([2, 5]);
    // a base image whose environment is unknown (not in the store under --check) is not judged
    expect(lint('FROM golang\nENV X=$GOPATH\n', { imageEnv: () => undefined })).toEqual([]);
    // unquoted COPY here-documents are expanded, so checked too
    expect(lint('FROM scratch\nCOPY <<EOF /f\n$nope\nEOF\n')).toEqual([['UndefinedVar', "Usage of undefined variable '$nope'", 2]]);
  });

  it('MultipleInstructionsDisallowed', () => {
    const text = 'FROM scratch\nENTRYPOINT ["/myapp"]\nCMD ["/myapp"]\nHEALTHCHECK CMD ["/myapp"]\nCOPY <<EOF /a.txt\nHello, World!\nEOF\nENTRYPOINT ["/myotherapp"]\nCMD ["/myotherapp"]\nHEALTHCHECK CMD ["/myotherapp"]\n';
    expect(lint(text)).toEqual([
      ['MultipleInstructionsDisallowed', 'Multiple ENTRYPOINT instructions should not be used in the same stage because only the last one will be used', 2],
      ['MultipleInstructionsDisallowed', 'Multiple CMD instructions should not be used in the same stage because only the last one will be used', 3],
      ['MultipleInstructionsDisallowed', 'Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used', 4],
    ]);
    expect(lint('FROM scratch AS a\nENTRYPOINT ["/myapp"]\nCMD ["/myapp"]\n\nFROM a AS b\nENTRYPOINT ["/myotherapp"]\nCMD ["/myotherapp"]\n')).toEqual([]);
  });

  it('LegacyKeyValueFormat', () => {
    expect(lint('FROM scratch\nENV testkey value\nLABEL key value\n')).toEqual([
      ['LegacyKeyValueFormat', '"ENV key=value" should be used instead of legacy "ENV key value" format', 2],
      ['LegacyKeyValueFormat', '"LABEL key=value" should be used instead of legacy "LABEL key value" format', 3],
    ]);
    expect(lint('FROM scratch\nENV testkey=value\nLABEL key=value\n')).toEqual([]);
  });

  it('InvalidDefaultArgInFrom', () => {
    expect(lint('ARG VERSION\nFROM busybox:$VERSION\n', { buildArgs: { VERSION: 'latest' } })).toEqual([
      ['InvalidDefaultArgInFrom', 'Default value for ARG busybox:$VERSION results in empty or invalid base image name', 2],
    ]);
    expect(lint('ARG IMAGE\nFROM $IMAGE\n', { buildArgs: { IMAGE: 'busybox:latest' } })).toEqual([
      ['InvalidDefaultArgInFrom', 'Default value for ARG $IMAGE results in empty or invalid base image name', 2],
    ]);
    expect(lint('ARG VERSION="latest"\nFROM busybox:${VERSION}\n')).toEqual([]);
    expect(lint('ARG BUSYBOX_VARIANT=""\nFROM busybox:stable${BUSYBOX_VARIANT}\n', { buildArgs: { BUSYBOX_VARIANT: '-musl' } })).toEqual([]);
  });

  it('FromPlatformFlagConstDisallowed', () => {
    expect(lint('FROM --platform=linux/amd64 scratch\n')).toEqual([['FromPlatformFlagConstDisallowed', 'FROM --platform flag should not use constant value "linux/amd64"', 1]]);
    expect(lint('FROM --platform=linux/amd64 scratch AS my_amd64_stage\n')).toEqual([]);
    expect(lint('FROM --platform=linux/amd64 scratch AS linux\n')).toEqual([]);
  });

  it('RedundantTargetPlatform', () => {
    expect(lint('FROM --platform=$TARGETPLATFORM scratch\n')).toEqual([['RedundantTargetPlatform', 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior', 1]]);
    expect(lint('FROM --platform=${TARGETPLATFORM} scratch\n')).toEqual([['RedundantTargetPlatform', 'Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior', 1]]);
  });

  it('SecretsUsedInArgOrEnv', () => {
    const text = 'FROM scratch\nARG SECRET_PASSPHRASE\nENV SUPER_Secret=foo\nENV password=bar secret=baz\nARG super_duper_secret_token=foo auth=bar\nENV apikey=bar sunflower=foo\nENV git_key=\nENV PUBLIC_KEY=\nARG public_token\n';
    expect(lint(text).map(([, m, l]) => [m.replace('Do not use ARG or ENV instructions for sensitive data ', ''), l])).toEqual([
      ['(ARG "SECRET_PASSPHRASE")', 2],
      ['(ENV "SUPER_Secret")', 3],
      ['(ENV "password")', 4],
      ['(ENV "secret")', 4],
      ['(ARG "super_duper_secret_token")', 5],
      ['(ARG "auth")', 5],
      ['(ENV "apikey")', 6],
      ['(ENV "git_key")', 7],
    ]);
  });

  it('CopyIgnoredFile', () => {
    const matcher = (text: string) => {
      const m = IgnoreMatcher.parse(text);
      return { excludes: (p: string) => m.excludes(p), patterns: text.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => ({ text: l.replace(/^!/, ''), exclusion: l.startsWith('!') })) };
    };
    expect(lint('\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\n', { ignore: matcher('Dockerfile') })).toEqual([
      ['CopyIgnoredFile', 'Attempting to Copy file "Dockerfile" that is excluded by .dockerignore', 3],
      ['CopyIgnoredFile', 'Attempting to Add file "Dockerfile" that is excluded by .dockerignore', 4],
    ]);
    expect(lint('FROM scratch AS base\nCOPY Dockerfile /foobar\n\nFROM base\nCOPY --from=base /foobar /Dockerfile\n', { ignore: matcher('foobar') })).toEqual([]);
    // exclusions make it undecidable: no warning
    expect(lint('FROM scratch\nCOPY Dockerfile .\n', { ignore: matcher('Dockerfile\n!keep') })).toEqual([]);
  });

  it('ExposeProtoCasing and ExposeInvalidFormat', () => {
    expect(lint('FROM scratch\nEXPOSE 80/TcP\n')).toEqual([['ExposeProtoCasing', "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase", 2]]);
    expect(lint('FROM scratch\nEXPOSE 127.0.0.1:80:80/tcp 8080:80\n')).toEqual([
      ['ExposeInvalidFormat', "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80/tcp'", 2],
      ['ExposeInvalidFormat', "EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'", 2],
    ]);
  });
});

describe('experimental rules', () => {
  it('InvalidDefinitionDescription runs only when enabled', () => {
    const good = '# check=experimental=InvalidDefinitionDescription\n# foo this is the foo\nARG foo=bar\n\n# base this is the base image\nFROM scratch AS base\n\n# version this is the version number\nARG version=latest\n\n# baz this is the baz\nARG foo=baz bar=qux baz=quux\n#\nARG bit=bat\n\n# comment for something other than ARG or FROM\nCOPY Dockerfile .\n';
    expect(lint(good)).toEqual([]);
    const bad = '# check=experimental=InvalidDefinitionDescription\n# bar this is the bar\nARG foo=bar\n# BasE this is the BasE image\nFROM scratch AS base\n# definitely a bad comment\nARG version=latest\n# definitely a bad comment\nARG foo=baz bar=qux baz=quux\n';
    expect(lint(bad)).toEqual([
      ['InvalidDefinitionDescription', 'Comment for ARG should follow the format: `# foo <description>`', 3],
      ['InvalidDefinitionDescription', 'Comment for FROM should follow the format: `# base <description>`', 5],
      ['InvalidDefinitionDescription', 'Comment for ARG should follow the format: `# version <description>`', 7],
      ['InvalidDefinitionDescription', 'Comment for ARG should follow the format: `# <arg_key> <description>`', 9],
    ]);
    expect(lint(bad.replace('# check=experimental=InvalidDefinitionDescription\n', '\n'))).toEqual([]);
  });
});

describe('check configuration', () => {
  it('parses skip, experimental and error like BuildKit', () => {
    expect(parseCheckOptions('skip=A, B;error=true')).toMatchObject({ skip: new Set(['A', 'B']), error: true, skipAll: false });
    expect(parseCheckOptions('skip=all')).toMatchObject({ skipAll: true });
    expect(() => parseCheckOptions('nope')).toThrow('invalid check option "nope"');
    expect(() => parseCheckOptions('error=maybe')).toThrow('failed to parse check option "error=maybe"');
    expect(() => parseCheckOptions('foo=bar')).toThrow('invalid check option "foo"');
  });

  it('skips rules named in # check=skip=, or all of them', () => {
    const text = (d: string) => `${d}\nFROM scratch as base\ncopy Dockerfile .\n`;
    expect(lint(text('#check=skip=all'))).toEqual([]);
    expect(lint(text('#check=skip=ConsistentInstructionCasing,FromAsCasing'))).toEqual([]);
    expect(lint(text('#check=skip=ConsistentInstructionCasing'))).toEqual([['FromAsCasing', "'as' and 'FROM' keywords' casing do not match", 2]]);
  });

  it('turns warnings into a build error with error=true', () => {
    const r = checkDockerfile('#check=skip=ConsistentInstructionCasing;error=true\nFROM scratch as base\ncopy Dockerfile .\n', 'Dockerfile');
    expect(violationMessage(r)).toBe('lint violation found for rules: FromAsCasing');
    expect(violationMessage(checkDockerfile('#check=skip=all;error=true\nFROM scratch as base\n', 'Dockerfile'))).toBeUndefined();
    expect(violationMessage(checkDockerfile('#check=skip=all\nFROM scratch as base\n', 'Dockerfile', { buildArgs: { BUILDKIT_DOCKERFILE_CHECK: 'skip=ConsistentInstructionCasing;error=true' } }))).toBe(
      'lint violation found for rules: FromAsCasing',
    );
  });

  it('applies a # check= comment right before an instruction to that instruction only', () => {
    expect(lint('FROM scratch\n# check=skip=JSONArgsRecommended\nCMD a\nENTRYPOINT b\n')).toEqual([
      ['MultipleInstructionsDisallowed', 'Multiple CMD instructions should not be used in the same stage because only the last one will be used', 3],
      ['JSONArgsRecommended', 'JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals', 4],
    ].filter((w) => w[0] === 'JSONArgsRecommended'));
  });

  it('reports what the build would refuse as an error, after the warnings before it', () => {
    const r = checkDockerfile('\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n', 'Dockerfile');
    expect(r.warnings.map((w) => [w.rule, w.start])).toEqual([['StageNameCasing', 2], ['MaintainerDeprecated', 3]]);
    expect(r.error).toEqual({ message: 'unknown instruction: BADCMD', start: 4, end: 4 });
    expect(checkDockerfile('FROM scratch\nEXPOSE 80:90-91\n', 'Dockerfile').error).toEqual({ message: 'invalid ranges specified for container and host Ports: 90-91 and 80', start: 2, end: 2 });
    expect(checkDockerfile('FROM scratch\nCOPY --from=nope /a /b\nFROM scratch\n', 'Dockerfile', { allStages: true }).error).toBeUndefined();
    expect(checkDockerfile('FROM scratch\nENV A="${B:?must be set}"\n', 'Dockerfile').error?.message).toContain('B: must be set');
    expect(checkDockerfile('FROM scratch\nRUN --mount=type=nope true\n', 'Dockerfile').error).toMatchObject({ start: 2 });
    // what COPY/ADD, ENV and --from refuse before a step runs
    const err = (df: string, opts = {}) => checkDockerfile(df, 'Dockerfile', opts).error;
    expect(err('FROM scratch\nCOPY a b /c\n')).toMatchObject({ message: 'When using COPY with more than one source file, the destination must be a directory and end with a /', start: 2 });
    expect(err('FROM scratch\nARG M=0999\nCOPY --chmod=$M a /c\n')?.message).toMatch(/invalid chmod parameter: '0999'/);
    expect(err('FROM scratch\nCOPY https://example.com/x.tar /c\n')?.message).toBe("COPY: source can't be a URL for COPY (use ADD)");
    expect(err('FROM scratch\nADD --checksum=sha256:00 https://example.com/x /c\n')?.message).toMatch(/invalid ADD --checksum "sha256:00"/);
    expect(err('FROM scratch\nADD --checksum=sha256:00 a b /c/\n')?.message).toBe("ADD --checksum can't be specified for multiple sources");
    expect(err('FROM scratch\nENV ${E}=x\n')).toMatchObject({ message: 'ENV names can not be blank', start: 2 });
    expect(err('FROM scratch AS a\nFROM scratch\nCOPY --from=a /x /y\nCOPY --from=0 /x /y\nCOPY --from=busybox:1 /x /y\n')).toBeUndefined();
    expect(err('FROM scratch\nRUN --mount=from=UPPER:x,target=/m true\n')?.message).toMatch(/invalid reference format/);
    expect(err('FROM scratch AS base\nFROM base\nFROM Bad\n')).toMatchObject({ message: expect.stringMatching(/invalid reference format/), start: 3 });
    expect(err('FROM scratch\nRUN --security=insecure true\n')).toBeUndefined();
    // a word that may take its value from an unknown base image environment is not judged
    expect(err('FROM busybox\nCOPY --chmod=$MODE a /b\nENV ${K}=v\nVOLUME $V\n', { allStages: true })).toBeUndefined();
    expect(err('FROM busybox\nCOPY --chmod=$MODE a /b\n', { allStages: true, imageEnv: () => ['MODE=0644'] })).toBeUndefined();
    expect(err('FROM busybox\nCOPY --chmod=$MODE a /b\n', { allStages: true, imageEnv: () => ['MODE=99999'] })?.message).toMatch(/invalid chmod parameter: '99999'/);
    expect(err('FROM scratch\nRUN --security=insecure true\n', { allow: [] })?.message).toMatch(/needs the security.insecure entitlement/);
    expect(checkDockerfile(`FROM scratch\nLABEL a=b\nLABEL x=${'a'.repeat(70000)}\n`, 'Dockerfile').error).toEqual({ message: 'dockerfile line greater than max allowed size of 65535', start: 3, end: 3 });
    expect(lint('FROM scratch\nRUN --mount=type=cache,target=/$CACHE_DIR true\n')).toEqual([['UndefinedVar', "Usage of undefined variable '$CACHE_DIR'", 2]]);
  });
});

describe('reports', () => {
  it('prints the build summary and the --check report as buildx does', () => {
    const text = 'FROM scratch\nMAINTAINER me\nCMD a\n';
    const r = checkDockerfile(text, 'Dockerfile');
    expect(formatSummary(r.warnings, 'Dockerfile')).toBe(
      ' 2 warnings found (mbuild build --check shows them in full):\n' +
        ' - MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (Dockerfile:2)\n' +
        ' - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (Dockerfile:3)\n',
    );
    const report = formatCheckReport(r, 'Dockerfile', text);
    expect(report.startsWith('Check complete, 2 warnings have been found!\n\nWARNING: MaintainerDeprecated - https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/\n')).toBe(true);
    expect(report).toContain('Dockerfile:2\n--------------------\n   1 |     FROM scratch\n   2 | >>> MAINTAINER me\n   3 |     CMD a\n');
    expect(formatCheckReport(checkDockerfile('FROM scratch\n', 'Dockerfile'), 'Dockerfile', 'FROM scratch\n')).toBe('Check complete, no warnings found.\n');
  });

  it('suggests like BuildKit (distance under 3, exact match means no suggestion)', () => {
    expect(suggest('DIR_ASSET', ['DIR_BINARIES', 'DIR_ASSETS'], true)).toBe('DIR_ASSETS');
    expect(suggest('XYZ', ['PATH'], true)).toBe('');
    expect(suggest('PATH', ['PATH'], true)).toBe('');
  });
});
