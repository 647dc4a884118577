/**
 * `--call outline` / `--call targets` from the Dockerfile alone: the vectors of BuildKit's own
 * frontend tests (dockerfile_outline_test.go, dockerfile_targets_test.go), and the text tables and
 * JSON buildx prints of them.
 */
import { describe, expect, it } from 'vitest';
import { dockerfileOutline, dockerfileTargets, printOutline, printTargets, resultJson } from '../../builder/checks/outline.js';

const ARGS = `
ARG inherited=box
ARG inherited2=box2
ARG unused=abc\${inherited2}
# sfx is a suffix
ARG sfx="usy\${inherited}"

FROM b\${sfx} AS first
# this is not assigned to anything
ARG FOO=123
# BAR is a number
ARG BAR=456
RUN true

FROM alpine\${unused} AS second
ARG BAZ
RUN true

FROM scratch AS third
ARG ABC=a
# check=skip=all
ARG password
# alternate_password will show up in the outline
# check=skip=all
ARG alternate_password

# target defines build target
FROM third AS target
COPY --from=first /etc/passwd /

FROM second
`;

const SECRETS = `
FROM busybox AS first
RUN --mount=type=secret,target=/etc/passwd,required=true --mount=type=ssh true

FROM alpine AS second
RUN --mount=type=secret,id=unused --mount=type=ssh,id=ssh2 true

FROM scratch AS third
ARG BAR
RUN --mount=type=secret,id=second\${BAR} true

FROM third AS target
COPY --from=first /foo /
RUN --mount=type=ssh,id=ssh3,required true

FROM second
`;

const line = (o: { location?: { ranges: { start: { line: number } }[] } }) => o.location!.ranges[0]!.start.line;

describe('--call outline', () => {
  it('the target, its doc comment, and the ARGs it and the stages it reads take (BuildKit testOutlineArgs)', () => {
    const o = dockerfileOutline(ARGS, { target: 'target', buildArgs: { BAR: '678' } });
    expect(o.name).toBe('target');
    expect(o.description).toBe('defines build target');
    expect(Buffer.from(o.sources[0]!, 'base64').toString()).toBe(ARGS);
    expect(o.args!.map((a) => [a.name, a.value ?? '', a.description ?? '', line(a)])).toEqual([
      ['inherited', 'box', '', 2],
      ['sfx', 'usybox', 'is a suffix', 6],
      ['FOO', '123', '', 10],
      ['BAR', '678', 'is a number', 12],
      ['ABC', 'a', '', 20],
      ['password', '', '', 22],
      ['alternate_password', '', 'will show up in the outline', 25],
    ]);
    expect(o.secrets).toBeUndefined();
    expect(printOutline(o)).toBe(
      'TARGET:      target\n' +
        'DESCRIPTION: defines build target\n' +
        '\n' +
        'BUILD ARG            VALUE    DESCRIPTION\n' +
        'inherited            box      \n' +
        'sfx                  usybox   is a suffix\n' +
        'FOO                  123      \n' +
        'BAR                  678      is a number\n' +
        'ABC                  a        \n' +
        'password                      \n' +
        'alternate_password            will show up in the outline\n' +
        '\n',
    );
  });

  it('the secrets and ssh ids the target and its stages mount, with required (BuildKit testOutlineSecrets)', () => {
    const o = dockerfileOutline(SECRETS, { target: 'target', buildArgs: { BAR: '678' } });
    expect(o.secrets!.map((s) => [s.name, s.required ?? false, line(s)])).toEqual([
      ['passwd', true, 3],
      ['second678', false, 10],
    ]);
    expect(o.ssh!.map((s) => [s.name, s.required ?? false, line(s)])).toEqual([
      ['default', false, 3],
      ['ssh3', true, 14],
    ]);
    expect(printOutline(o)).toBe('TARGET: target\n\nBUILD ARG   VALUE   DESCRIPTION\nBAR         678     \n\nSECRET      REQUIRED\npasswd      true\nsecond678   \n\nSSH       REQUIRED\ndefault   \nssh3      true\n\n');
  });

  it('ARG defaults that read other ARGs: the values, and the global ARGs a used one reads (BuildKit testOutlineDeps)', () => {
    const df = `
ARG FOO=123
ARG ABC=abc
ARG DEF=def
ARG FOO=\${FOO}\${ABC}
ARG BAR=\${FOO}456
ARG FOO=\${FOO}456\${BAR}
FROM scratch
ARG FOO
ARG INFOO=123
ARG INBAR=\${INFOO}456
ARG INFOO=\${INFOO}456\${INBAR}
`;
    const o = dockerfileOutline(df);
    expect(o.name).toBeUndefined();
    expect(o.args!.map((a) => [a.name, a.value])).toEqual([
      ['ABC', 'abc'],
      ['BAR', '123abc456'],
      ['FOO', '123abc456123abc456'],
      ['INBAR', '123456'],
      ['INFOO', '123456123456'],
    ]);
    // an unnamed default target: no TARGET block
    expect(printOutline(o).startsWith('BUILD ARG ')).toBe(true);
  });

  it('a Dockerfile with nothing to take prints nothing; format=json is the result as BuildKit marshals it', () => {
    expect(printOutline(dockerfileOutline('FROM scratch\nCOPY a /a\n'))).toBe('');
    const json = resultJson(dockerfileOutline('# app the <main> image\nFROM scratch AS app\n# V the version\nARG V=1\n', { target: 'app' }));
    expect(json).toBe(
      [
        '{',
        '  "name": "app",',
        '  "description": "the \\u003cmain\\u003e image",',
        '  "args": [',
        '    {',
        '      "name": "V",',
        '      "description": "the version",',
        '      "value": "1",',
        '      "location": {',
        '        "ranges": [',
        '          {',
        '            "start": {',
        '              "line": 4',
        '            },',
        '            "end": {',
        '              "line": 4',
        '            }',
        '          }',
        '        ]',
        '      }',
        '    }',
        '  ],',
        `  "sources": [`,
        `    "${Buffer.from('# app the <main> image\nFROM scratch AS app\n# V the version\nARG V=1\n').toString('base64')}"`,
        '  ]',
        '}',
      ].join('\n'),
    );
  });

  it('refuses an unknown --target as a build does', () => {
    expect(() => dockerfileOutline('FROM scratch AS a\n', { target: 'b' })).toThrow(/target stage "b" could not be found/);
  });
});

describe('--call targets', () => {
  it('every stage: name, doc comment, base, the last one the default (BuildKit testTargetsList)', () => {
    const df = `
# build defines stage for compiling the binary
FROM alpine AS build
RUN true

FROM busybox as second
RUN false

FROM --platform=$BUILDPLATFORM alpine
RUN false

# binary returns the compiled binary
FROM second AS binary
`;
    const l = dockerfileTargets(df);
    expect(l.targets.map((t) => [t.name ?? '', t.description ?? '', t.base, t.platform ?? '', t.default ?? false, line(t)])).toEqual([
      ['build', 'defines stage for compiling the binary', 'alpine', '', false, 3],
      ['second', '', 'busybox', '', false, 6],
      ['', '', 'alpine', '$BUILDPLATFORM', false, 9],
      ['binary', 'returns the compiled binary', 'second', '', true, 13],
    ]);
    expect(printTargets(l)).toBe('TARGET           DESCRIPTION\nbuild            defines stage for compiling the binary\nsecond           \n                 \nbinary (default) returns the compiled binary\n');
    expect(printTargets(dockerfileTargets('FROM scratch\n'))).toBe('TARGET    DESCRIPTION\n(default) \n');
    expect(JSON.parse(resultJson(l)).targets[3]).toEqual({ name: 'binary', default: true, description: 'returns the compiled binary', base: 'second', location: { ranges: [{ start: { line: 13 }, end: { line: 13 } }] } });
  });
});
