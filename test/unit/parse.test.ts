import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseDockerfile, parseGoDuration } from '../../builder/dockerfile/parse.js';
import { dumpNode, parseAst, parseWords } from '../../builder/dockerfile/ast.js';
import type { Instruction } from '../../builder/dockerfile/types.js';
import { ParseError } from '../../util/errors.js';

/** Parses `FROM scratch\n<body>` and returns the instructions after the FROM. */
function body(text: string): Instruction[] {
  return parseDockerfile('FROM scratch\n' + text, 'Dockerfile').instructions.slice(1);
}
function one(text: string): Instruction {
  const ins = body(text);
  expect(ins).toHaveLength(1);
  return ins[0]!;
}
function parseError(text: string): ParseError {
  try {
    parseDockerfile(text, 'Dockerfile');
  } catch (e) {
    expect(e).toBeInstanceOf(ParseError);
    expect((e as ParseError).code).toBe('MBUILD_PARSE');
    return e as ParseError;
  }
  throw new Error('expected a parse error');
}
const bodyError = (text: string) => parseError('FROM scratch\n' + text);

describe('lines, ranges and raw text', () => {
  it('gives 1-based inclusive ranges with the file name, and the joined text as raw', () => {
    const df = parseDockerfile('FROM busybox\n\n# comment\nRUN echo hi\n', 'sub/Dockerfile');
    expect(df.instructions.map((i) => i.range)).toEqual([
      { file: 'sub/Dockerfile', start: 1, end: 1 },
      { file: 'sub/Dockerfile', start: 4, end: 4 },
    ]);
    expect(df.instructions[1]!.raw).toBe('RUN echo hi');
    expect(df.escape).toBe('\\');
    expect(df.warnings).toEqual([]);
  });
  it('omits file from ranges when none is given', () => {
    expect(parseDockerfile('FROM a').instructions[0]!.range).toEqual({ start: 1, end: 1 });
  });
  it('joins continuations like BuildKit: escape removed, whitespace of later lines kept, comment lines dropped', () => {
    const df = parseDockerfile('FROM busybox\nRUN echo one \\\n# a comment inside the continuation\n    two \\\n    three > /cont.txt\n');
    const run = df.instructions[1]!;
    expect(run.range).toEqual({ start: 2, end: 5 });
    expect(run.raw).toBe('RUN echo one     two     three > /cont.txt');
    expect(run).toMatchObject({ kind: 'run', cmd: { shell: true, command: 'echo one     two     three > /cont.txt' } });
  });
  it('accepts blanks after the continuation escape and indented comment lines', () => {
    const [r] = body('RUN a \\  \t\n  # indented comment\n  b');
    expect(r!.raw).toBe('RUN a   b');
  });
  it('skips empty continuation lines with a warning', () => {
    const df = parseDockerfile('FROM x\nRUN something \\\n\n    following \\\n   \n    more\nRUN x');
    expect(df.instructions[1]!.raw).toBe('RUN something     following     more');
    expect(df.instructions[1]!.range).toEqual({ start: 2, end: 6 });
    expect(df.instructions[2]!.range).toEqual({ start: 7, end: 7 });
    expect(df.warnings).toEqual(['Empty continuation line found in: RUN something     following     more']);
  });
  it('is not fooled by an escaped escape at the end of a line', () => {
    const ins = body('RUN echo a\\\\\nRUN echo b');
    expect(ins.map((i) => i.raw)).toEqual(['RUN echo a\\\\', 'RUN echo b']);
  });
  it('ends a continuation at the end of the file', () => {
    const [r] = body('RUN echo a \\');
    expect(r).toMatchObject({ raw: 'RUN echo a ', cmd: { shell: true, command: 'echo a' } });
  });
  it('handles CRLF line endings, a BOM and leading indentation', () => {
    const df = parseDockerfile('\uFEFFFROM a\r\n  RUN b \\\r\n c\r\n');
    expect(df.instructions.map((i) => i.raw)).toEqual(['FROM a', 'RUN b  c']);
    expect(df.instructions[1]!.range).toEqual({ start: 2, end: 3 });
  });
  it('accepts keywords in any case', () => {
    const df = parseDockerfile('from a as B\nrun x\nCoPy a b');
    expect(df.instructions.map((i) => i.kind)).toEqual(['from', 'run', 'copy']);
  });
});

describe('parser directives', () => {
  it('switches the escape token to backtick', () => {
    const df = parseDockerfile('# escape=`\nFROM x\nRUN echo C:\\dir `\n  next\nCOPY a` b c\\d');
    expect(df.escape).toBe('`');
    expect(df.instructions[1]).toMatchObject({ raw: 'RUN echo C:\\dir   next', range: { start: 3, end: 4 } });
    // COPY splits on whitespace only; escapes stay for the later expansion
    expect(df.instructions[2]).toMatchObject({ kind: 'copy', sources: ['a`', 'b'], dest: 'c\\d' });
  });
  it('reads the syntax directive (its frontend is judged by syntax.ts), and accepts spacing and case', () => {
    const df = parseDockerfile('  # Syntax = docker/dockerfile:1.7\n#ESCAPE= \\\nFROM x');
    expect(df.syntax).toBe('docker/dockerfile:1.7');
    expect(df.warnings).not.toContain('syntax directive ignored');
    expect(df.syntaxRange).toMatchObject({ start: 1, end: 1 });
    expect(df.escape).toBe('\\');
  });
  it('recognises directives only before anything else', () => {
    expect(parseDockerfile('\n# escape=`\nFROM x').escape).toBe('\\');
    expect(parseDockerfile('# a comment\n# escape=`\nFROM x').escape).toBe('\\');
    expect(parseDockerfile('FROM x\n# escape=`\nRUN a').escape).toBe('\\');
    expect(parseDockerfile('# unknown=1\n# escape=`\nFROM x').escape).toBe('\\');
    expect(parseDockerfile('# check=skip=all\n# escape=`\nFROM x').escape).toBe('`');
  });
  it('rejects repeated directives and bad escape tokens', () => {
    const e = parseError('# escape=`\n# escape=\\\nFROM x');
    expect(e.message).toBe('only one escape parser directive can be used');
    expect(e.range?.start).toBe(2);
    expect(parseError('# escape=x\nFROM x').message).toBe("invalid escape token 'x' does not match ` or \\");
  });
});

describe('FROM', () => {
  it('reads image, stage name (lower-cased) and --platform', () => {
    const df = parseDockerfile('FROM --platform=$BUILDPLATFORM golang:1.22 AS Build-Env\nFROM $BASE\nFROM x as y');
    expect(df.instructions[0]).toEqual({
      kind: 'from',
      image: 'golang:1.22',
      stageName: 'build-env',
      platform: '$BUILDPLATFORM',
      range: { start: 1, end: 1 },
      raw: 'FROM --platform=$BUILDPLATFORM golang:1.22 AS Build-Env',
    });
    expect(df.instructions[1]).toMatchObject({ image: '$BASE' });
    expect(df.instructions[1]).not.toHaveProperty('stageName');
    expect(df.instructions[2]).toMatchObject({ image: 'x', stageName: 'y' });
  });
  it('needs one or three arguments and a valid stage name', () => {
    expect(parseError('FROM').message).toBe('FROM requires either one or three arguments');
    expect(parseError('FROM a b').message).toBe('FROM requires either one or three arguments');
    expect(parseError('FROM a AS b c').message).toBe('FROM requires either one or three arguments');
    expect(parseError('FROM a AS 1st').message).toBe(
      'invalid name for build stage: "1st", name can\'t start with a number or contain symbols',
    );
    expect(parseError('FROM a AS b$c').message).toContain('invalid name for build stage');
    expect(parseError('FROM --pull a').message).toBe('unknown flag: --pull');
  });
});

describe('RUN', () => {
  it('keeps shell form as text', () => {
    expect(one('RUN echo "$HOME" && ls  -l')).toMatchObject({
      kind: 'run',
      cmd: { shell: true, command: 'echo "$HOME" && ls  -l' },
      mounts: [],
    });
  });
  it('reads exec form as a JSON array of strings', () => {
    expect(one('RUN ["/bin/sh", "-c", "echo $X"]')).toMatchObject({ cmd: { shell: false, args: ['/bin/sh', '-c', 'echo $X'] } });
    expect(one('RUN   [ "a" ]  ')).toMatchObject({ cmd: { shell: false, args: ['a'] } });
  });
  it('falls back to shell form for invalid JSON', () => {
    expect(one("RUN ['single', 'quotes']")).toMatchObject({ cmd: { shell: true, command: "['single', 'quotes']" } });
    expect(one('RUN ["a", ]')).toMatchObject({ cmd: { shell: true } });
    expect(one('RUN [ "unterminated"')).toMatchObject({ cmd: { shell: true } });
    expect(one('RUN ["a"] extra')).toMatchObject({ cmd: { shell: true, command: '["a"] extra' } });
  });
  it('rejects JSON arrays of non-strings', () => {
    expect(bodyError('RUN ["a", 1]').message).toBe('when using JSON array syntax, arrays must be comprised of strings only');
  });
  it('reads --network, --security and repeated --mount', () => {
    expect(
      one('RUN --network=none --security=insecure --mount=type=cache,target=/c --mount=type=secret,id=s make'),
    ).toMatchObject({
      network: 'none',
      security: 'insecure',
      mounts: ['type=cache,target=/c', 'type=secret,id=s'],
      cmd: { shell: true, command: 'make' },
    });
    const plain = one('RUN make');
    expect(plain).not.toHaveProperty('network');
    expect(plain).not.toHaveProperty('security');
  });
  it('unquotes flag values and stops at --', () => {
    expect(one('RUN --mount="type=bind,target=/a b" -- --not-a-flag')).toMatchObject({
      mounts: ['type=bind,target=/a b'],
      cmd: { shell: true, command: '--not-a-flag' },
    });
  });
  it('validates flags', () => {
    expect(bodyError('RUN --network=bridge x').message).toBe('invalid network mode "bridge"');
    expect(bodyError('RUN --security=x y').message).toBe('security "x" is not valid');
    expect(bodyError('RUN --x y').message).toBe('unknown flag: --x');
    expect(bodyError('RUN --network=none --network=host y').message).toBe('duplicate flag specified: --network');
    expect(bodyError('RUN --network y').message).toBe('missing a value on flag: --network');
    expect(bodyError('RUN').message).toBe('RUN requires at least one argument');
  });
  it('reads here-documents', () => {
    const df = parseDockerfile('FROM x\nRUN <<EOF\necho "$A"\n  echo b\nEOF\nRUN 3<<-"END" cat\n\tx\n\tEND\nRUN echo done');
    expect(df.instructions[1]).toMatchObject({
      range: { start: 2, end: 5 },
      raw: 'RUN <<EOF',
      cmd: { shell: true, command: '<<EOF' },
      heredocs: [{ name: 'EOF', content: 'echo "$A"\n  echo b\n', expand: true, chomp: false, fileDescriptor: 0 }],
    });
    expect(df.instructions[2]).toMatchObject({
      range: { start: 6, end: 8 },
      heredocs: [{ name: 'END', content: '\tx\n', expand: false, chomp: true, fileDescriptor: 3 }],
    });
    expect(df.instructions[3]).toMatchObject({ raw: 'RUN echo done', range: { start: 9, end: 9 } });
    expect(df.instructions[3]).not.toHaveProperty('heredocs');
  });
  it('does not read here-documents in quotes or in exec form', () => {
    const ins = body('RUN echo "<<EOF"\nRUN ["<<EOF"]\nRUN echo a<<b');
    expect(ins.map((i) => i.kind)).toEqual(['run', 'run', 'run']);
    for (const i of ins) expect(i).not.toHaveProperty('heredocs');
  });
  it('fails on an unterminated here-document', () => {
    const e = bodyError('RUN <<EOF\necho hi');
    expect(e.message).toBe('unterminated heredoc');
    expect(e.range).toMatchObject({ start: 2, end: 3 });
  });
});

describe('COPY and ADD', () => {
  it('reads sources and destination as unexpanded words', () => {
    expect(one('COPY a.txt $DIR/*.md /dest/')).toEqual({
      kind: 'copy',
      sources: ['a.txt', '$DIR/*.md'],
      dest: '/dest/',
      link: false,
      exclude: [],
      range: { file: 'Dockerfile', start: 2, end: 2 },
      raw: 'COPY a.txt $DIR/*.md /dest/',
    });
  });
  it('reads the JSON form', () => {
    expect(one('COPY [ "c d.txt", "/with space/" ]')).toMatchObject({ sources: ['c d.txt'], dest: '/with space/' });
  });
  it('reads all COPY flags', () => {
    expect(
      one('COPY --from=build --chown=1000:1000 --chmod=0755 --link --exclude=*.md --exclude=tmp --parents a /b'),
    ).toMatchObject({
      from: 'build',
      chown: '1000:1000',
      chmod: '0755',
      link: true,
      exclude: ['*.md', 'tmp'],
      parents: true,
      sources: ['a'],
      dest: '/b',
    });
    expect(one('COPY --link=false a b')).toMatchObject({ link: false });
  });
  it('reads all ADD flags', () => {
    expect(
      one('ADD --checksum=sha256:abc --keep-git-dir=true --chown=u:g --chmod=600 --link --unpack=false --exclude=x https://e.com/f.tgz /opt/'),
    ).toMatchObject({
      kind: 'add',
      checksum: 'sha256:abc',
      keepGitDir: true,
      chown: 'u:g',
      chmod: '600',
      link: true,
      unpack: false,
      exclude: ['x'],
      sources: ['https://e.com/f.tgz'],
      dest: '/opt/',
    });
  });
  it('keeps flags to the instruction that has them', () => {
    expect(bodyError('ADD --from=x a b').message).toBe('unknown flag: --from');
    expect(bodyError('COPY --checksum=x a b').message).toBe('unknown flag: --checksum');
    expect(bodyError('COPY --keep-git-dir a b').message).toBe('unknown flag: --keep-git-dir');
    expect(bodyError('COPY --link=maybe a b').message).toBe('expecting boolean value for flag --link, not: maybe');
    expect(bodyError('COPY --from a b').message).toBe('missing a value on flag: --from');
  });
  it('needs a destination', () => {
    const e = bodyError('COPY onlyone');
    expect(e.message).toMatch(/^COPY requires at least two arguments/);
    expect(e.range).toEqual({ file: 'Dockerfile', start: 2, end: 2 });
    expect(bodyError('ADD x').message).toMatch(/^ADD requires at least two arguments/);
    expect(bodyError('COPY').message).toMatch(/^COPY requires at least two arguments/);
    expect(bodyError('COPY ["a"]').message).toMatch(/^COPY requires at least two arguments/);
  });
  it('takes here-document sources out of sources', () => {
    const [c] = body('COPY <<one <<-two a.txt /dest/\nfirst\none\n\tsecond\n\ttwo\n');
    expect(c).toMatchObject({
      sources: ['a.txt'],
      dest: '/dest/',
      sourceContents: [
        { path: 'one', data: 'first\n', expand: true },
        { path: 'two', data: 'second\n', expand: true },
      ],
      range: { start: 2, end: 6 },
    });
    expect(bodyError('COPY a <<EOF\nx\nEOF').message).toBe('COPY cannot accept a heredoc as a destination');
  });
});

describe('ENV and LABEL', () => {
  it('reads key=value pairs with quotes kept in the value', () => {
    expect(one('ENV A=1 B="two words" C=\'x $y\' D=a\\ b E=')).toMatchObject({
      kind: 'env',
      pairs: [
        { key: 'A', value: '1' },
        { key: 'B', value: '"two words"' },
        { key: 'C', value: "'x $y'" },
        { key: 'D', value: 'a\\ b' },
        { key: 'E', value: '' },
      ],
    });
  });
  it('keeps escaped quotes in double-quoted values', () => {
    expect(one('ENV QUOTED="a \\"b\\" c" SINGLE=\'x $y\'')).toMatchObject({
      pairs: [
        { key: 'QUOTED', value: '"a \\"b\\" c"' },
        { key: 'SINGLE', value: "'x $y'" },
      ],
    });
  });
  it('reads the legacy form: the rest of the line is the value', () => {
    expect(one('ENV C ${A}-x  and   more')).toMatchObject({ pairs: [{ key: 'C', value: '${A}-x  and   more' }] });
    expect(one('LABEL maintainer "someone <a@b>"')).toMatchObject({ kind: 'label', pairs: [{ key: 'maintainer', value: '"someone <a@b>"' }] });
  });
  it('reads labels across continuation lines', () => {
    expect(one('LABEL org.opencontainers.image.title="demo app" multi="a b" \\\n      plain=value')).toMatchObject({
      kind: 'label',
      pairs: [
        { key: 'org.opencontainers.image.title', value: '"demo app"' },
        { key: 'multi', value: '"a b"' },
        { key: 'plain', value: 'value' },
      ],
      range: { start: 2, end: 3 },
    });
  });
  it('reports malformed pairs', () => {
    expect(bodyError('ENV').message).toBe('ENV requires at least one argument');
    expect(bodyError('LABEL').message).toBe('LABEL requires at least one argument');
    expect(bodyError('ENV ONLYKEY').message).toBe('ENV must have two arguments');
    expect(bodyError('ENV a=1 b').message).toBe('Syntax error - can\'t find = in "b". Must be of the form: name=value');
    expect(bodyError('ENV =x').message).toBe('ENV names can not be blank');
    expect(bodyError('LABEL --x a=b').message).toBe('unknown flag: --x');
  });
});

describe('ARG', () => {
  it('reads names with and without defaults, several per line', () => {
    expect(one('ARG A B=2 C="x y" D=')).toMatchObject({
      kind: 'arg',
      args: [{ name: 'A' }, { name: 'B', default: '2' }, { name: 'C', default: '"x y"' }, { name: 'D', default: '' }],
    });
    expect((one('ARG A') as { args: object[] }).args[0]).not.toHaveProperty('default');
  });
  it('may come before the first FROM', () => {
    const df = parseDockerfile('ARG BASE=busybox\nARG V\nFROM $BASE');
    expect(df.instructions.map((i) => i.kind)).toEqual(['arg', 'arg', 'from']);
  });
  it('reports missing or blank names', () => {
    expect(bodyError('ARG').message).toBe('ARG requires at least one argument');
    expect(bodyError('ARG =x').message).toBe('ARG names can not be blank');
  });
});

describe('CMD, ENTRYPOINT, SHELL', () => {
  it('reads both forms', () => {
    expect(one('CMD echo shell cmd')).toMatchObject({ kind: 'cmd', cmd: { shell: true, command: 'echo shell cmd' } });
    expect(one('CMD ["b", "c"]')).toMatchObject({ kind: 'cmd', cmd: { shell: false, args: ['b', 'c'] } });
    expect(one('ENTRYPOINT echo hi')).toMatchObject({ kind: 'entrypoint', cmd: { shell: true, command: 'echo hi' } });
    expect(one('ENTRYPOINT ["/bin/echo", "a"]')).toMatchObject({ kind: 'entrypoint', cmd: { shell: false, args: ['/bin/echo', 'a'] } });
  });
  it('accepts an empty JSON array (clears the value)', () => {
    expect(one('ENTRYPOINT []')).toMatchObject({ cmd: { shell: false, args: [] } });
    expect(one('CMD []')).toMatchObject({ cmd: { shell: false, args: [] } });
  });
  it('needs some command', () => {
    expect(bodyError('CMD').message).toBe('CMD requires at least one argument');
    expect(bodyError('ENTRYPOINT').message).toBe('ENTRYPOINT requires at least one argument');
  });
  it('requires JSON for SHELL', () => {
    expect(one('SHELL ["/bin/sh", "-ec"]')).toMatchObject({ kind: 'shell', args: ['/bin/sh', '-ec'] });
    expect(bodyError('SHELL /bin/sh -c').message).toBe('SHELL requires the arguments to be in JSON form');
    expect(bodyError('SHELL []').message).toBe('SHELL requires at least one argument');
  });
});

describe('EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, MAINTAINER', () => {
  it('reads EXPOSE ports (sorted, as BuildKit does)', () => {
    expect(one('EXPOSE 80 443/tcp 53/udp $PORT')).toMatchObject({ kind: 'expose', ports: ['$PORT', '443/tcp', '53/udp', '80'] });
    expect(bodyError('EXPOSE').message).toBe('EXPOSE requires at least one argument');
  });
  it('reads VOLUME as JSON or as words', () => {
    expect(one('VOLUME ["/a", "/b c"]')).toMatchObject({ kind: 'volume', paths: ['/a', '/b c'] });
    expect(one('VOLUME /data ["/cache"]')).toMatchObject({ paths: ['/data', '["/cache"]'] });
    expect(one('VOLUME /x /y')).toMatchObject({ paths: ['/x', '/y'] });
    expect(bodyError('VOLUME').message).toBe('VOLUME requires at least one argument');
    expect(bodyError('VOLUME []').message).toBe('VOLUME requires at least one argument');
    expect(bodyError('VOLUME [" "]').message).toBe('VOLUME specified can not be an empty string');
  });
  it('takes the whole rest of the line for USER, WORKDIR, STOPSIGNAL, MAINTAINER', () => {
    expect(one('USER worker:worker')).toMatchObject({ kind: 'user', user: 'worker:worker' });
    expect(one('WORKDIR $BASE/my app')).toMatchObject({ kind: 'workdir', path: '$BASE/my app' });
    expect(one('STOPSIGNAL SIGTERM')).toMatchObject({ kind: 'stopsignal', signal: 'SIGTERM' });
    expect(one('MAINTAINER Jane Doe <jane@example.com>')).toMatchObject({ kind: 'maintainer', name: 'Jane Doe <jane@example.com>' });
  });
  it('needs exactly one argument', () => {
    for (const k of ['USER', 'WORKDIR', 'STOPSIGNAL', 'MAINTAINER']) {
      expect(bodyError(k).message).toBe(`${k} requires exactly one argument`);
    }
    expect(bodyError('MAINTAINER --boo joe@example.com').message).toBe('unknown flag: --boo');
    expect(bodyError('WORKDIR --x /a').message).toBe('unknown flag: --x');
  });
});

describe('ONBUILD', () => {
  it('stores the trigger text', () => {
    expect(one('ONBUILD RUN echo  hi')).toMatchObject({ kind: 'onbuild', trigger: 'RUN echo  hi' });
    expect(one('onbuild copy --chown=1 a b')).toMatchObject({ trigger: 'copy --chown=1 a b' });
    expect(one('ONBUILD RUN a \\\n  b')).toMatchObject({ trigger: 'RUN a   b', range: { start: 2, end: 3 } });
  });
  it('appends here-documents to the trigger like BuildKit', () => {
    expect(one('ONBUILD RUN <<EOF\necho hi\nEOF')).toMatchObject({ trigger: 'RUN <<EOF\necho hi\nEOF' });
  });
  it('rejects chaining and FROM/MAINTAINER triggers', () => {
    expect(bodyError('ONBUILD ONBUILD RUN x').message).toBe('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
    expect(bodyError('ONBUILD FROM scratch').message).toBe("FROM isn't allowed as an ONBUILD trigger");
    expect(bodyError('ONBUILD maintainer me').message).toBe("MAINTAINER isn't allowed as an ONBUILD trigger");
    expect(bodyError('ONBUILD').message).toBe('ONBUILD requires at least one argument');
    expect(bodyError('ONBUILD RUN ["a", 1]').message).toContain('arrays must be comprised of strings only');
  });
});

describe('HEALTHCHECK', () => {
  it('reads NONE', () => {
    expect(one('HEALTHCHECK NONE')).toMatchObject({ kind: 'healthcheck', test: ['NONE'] });
    expect(one('healthcheck none')).toMatchObject({ test: ['NONE'] });
    expect(bodyError('HEALTHCHECK NONE x').message).toBe('HEALTHCHECK NONE takes no arguments');
  });
  it('reads CMD shell form as CMD-SHELL, with durations in nanoseconds', () => {
    const hc = one('HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q -O- http://localhost/ || exit 1');
    expect(hc).toEqual({
      kind: 'healthcheck',
      test: ['CMD-SHELL', 'wget -q -O- http://localhost/ || exit 1'],
      interval: 30e9,
      timeout: 3e9,
      retries: 2,
      range: { file: 'Dockerfile', start: 2, end: 2 },
      raw: 'HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q -O- http://localhost/ || exit 1',
    });
  });
  it('reads CMD exec form and all duration flags', () => {
    expect(one('HEALTHCHECK --start-period=1m30s --start-interval=500ms --interval=1.5h CMD ["curl", "-f", "x"]')).toMatchObject({
      test: ['CMD', 'curl', '-f', 'x'],
      startPeriod: 90e9,
      startInterval: 500e6,
      interval: 5400e9,
    });
  });
  it('leaves zero values out', () => {
    const hc = one('HEALTHCHECK --interval=0s --retries=0 CMD true');
    expect(hc).not.toHaveProperty('interval');
    expect(hc).not.toHaveProperty('retries');
  });
  it('reports bad input', () => {
    expect(bodyError('HEALTHCHECK').message).toBe('HEALTHCHECK requires at least one argument');
    expect(bodyError('HEALTHCHECK CMD').message).toBe('Missing command after HEALTHCHECK CMD');
    expect(bodyError('HEALTHCHECK CMD []').message).toBe('Missing command after HEALTHCHECK CMD');
    expect(bodyError('HEALTHCHECK PING x').message).toBe('Unknown type "PING" in HEALTHCHECK (try CMD)');
    expect(bodyError('HEALTHCHECK --interval=50ns CMD x').message).toBe('Interval "interval" cannot be less than 1ms');
    expect(bodyError('HEALTHCHECK --timeout=5 CMD x').message).toBe('time: missing unit in duration "5"');
    expect(bodyError('HEALTHCHECK --timeout=5x CMD x').message).toBe('time: unknown unit "x" in duration "5x"');
    expect(bodyError('HEALTHCHECK --retries=-1 CMD x').message).toBe('--retries cannot be negative (-1)');
    expect(bodyError('HEALTHCHECK --retries=two CMD x').message).toBe('strconv.ParseInt: parsing "two": invalid syntax');
    expect(bodyError('HEALTHCHECK --bogus=1 CMD x').message).toBe('unknown flag: --bogus');
  });
});

describe('parseGoDuration', () => {
  it('parses like Go time.ParseDuration', () => {
    expect(parseGoDuration('0')).toBe(0n);
    expect(parseGoDuration('1m30s')).toBe(90_000_000_000n);
    expect(parseGoDuration('500ms')).toBe(500_000_000n);
    expect(parseGoDuration('1.5h')).toBe(5_400_000_000_000n);
    expect(parseGoDuration('-1.5m')).toBe(-90_000_000_000n);
    expect(parseGoDuration('+3s')).toBe(3_000_000_000n);
    expect(parseGoDuration('1h2m3s4ms5us6ns')).toBe(3_723_004_005_006n);
    expect(parseGoDuration('10µs')).toBe(10_000n);
    expect(parseGoDuration('10μs')).toBe(10_000n);
    expect(parseGoDuration('.5s')).toBe(500_000_000n);
    expect(parseGoDuration('1.s')).toBe(1_000_000_000n);
    expect(parseGoDuration('2562047h47m16.854775807s')).toBe(9_223_372_036_854_775_807n);
  });
  it('rejects what Go rejects', () => {
    for (const bad of ['', '-', 's', '.s', '1', '1.5', '1d', '1s2', 'x1s', '9223372036854775808ns', '3000000h']) {
      expect(() => parseGoDuration(bad), bad).toThrow(/^time: /);
    }
  });
});

describe('structure errors', () => {
  it('reports an unknown instruction at its line', () => {
    const e = parseError('FROM busybox\nFROBNICATE /x\n');
    expect(e.message).toBe('unknown instruction: FROBNICATE');
    expect(e.range).toEqual({ file: 'Dockerfile', start: 2, end: 2 });
    expect(String(e)).toBe('Dockerfile:2: unknown instruction: FROBNICATE');
    expect(parseError('FROM a\nfoo bar').message).toBe('unknown instruction: foo');
  });
  it('reports instructions before the first FROM (ARG excepted)', () => {
    const e = parseError('ARG A\nRUN x\nFROM y');
    expect(e.message).toBe('no build stage in current context');
    expect(e.range?.start).toBe(2);
  });
  it('needs a FROM and some instruction', () => {
    expect(parseError('ARG A=1\n').message).toBe('dockerfile contains no stages to build');
    expect(parseError('').message).toBe('file with no instructions');
    expect(parseError('# only a comment\n\n').message).toBe('file with no instructions');
  });
  it('reports the first error in file order', () => {
    expect(parseError('FROM a\nCOPY x\nFROBNICATE').range?.start).toBe(2);
  });
  it('names the closest flag when one is unknown, as BuildKit', () => {
    expect(bodyError('COPY --chwon=1 a b\n').message).toBe('unknown flag: --chwon (did you mean chown?)');
    expect(bodyError('RUN --mnt=type=cache true\n').message).toBe('unknown flag: --mnt (did you mean mount?)');
    expect(bodyError('RUN --frobnicate true\n').message).toBe('unknown flag: --frobnicate');
  });
  it('names the line over 64 KiB itself (BuildKit names none: its scanner stops before it)', () => {
    const long = 'LABEL x=' + 'a'.repeat(70000);
    const e = parseError(`FROM scratch\nLABEL a=b\n${long}\nLABEL c=d\n`);
    expect(String(e)).toBe('Dockerfile:3: dockerfile line greater than max allowed size of 65535');
    // inside a continuation, and as the last line without a newline
    expect(parseError(`FROM scratch\nRUN a \\\n  b \\\n${long}\n`).range?.start).toBe(4);
    expect(parseError(`FROM scratch\n\n${long}`).range?.start).toBe(3);
  });
});

describe('robustness', () => {
  const pieces = [
    'FROM x', 'RUN', 'COPY', 'ADD', 'ENV', 'ARG', 'ONBUILD', 'HEALTHCHECK', 'CMD', 'LABEL', 'SHELL', 'VOLUME',
    ' ', '\\', '`', '\n', '\r\n', '#', '# escape=`', '<<EOF', 'EOF', '"', "'", '[', ']', '"a"', ',', '=', '--', '--from=a',
    '$X', '${', '}', 'a', '\t',
  ];
  it('throws nothing but ParseError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 30 }), (parts) => {
        try {
          const df = parseDockerfile(parts.join(''), 'Dockerfile');
          for (const i of df.instructions) expect(i.range.start).toBeLessThanOrEqual(i.range.end);
        } catch (e) {
          expect(e).toBeInstanceOf(ParseError);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('ast helpers', () => {
  it('splits words keeping quotes and escapes', () => {
    expect(parseWords(`foo bar 'abc xyz' "a\\"b" c\\ d`, '\\')).toEqual(['foo', 'bar', "'abc xyz'", '"a\\"b"', 'c\\ d']);
    expect(parseWords('föo bàr "âbc xÿz"', '\\')).toEqual(['föo', 'bàr', '"âbc xÿz"']);
    expect(parseWords('a="" b', '\\')).toEqual(['a=""', 'b']);
  });
  it('dumps nodes like BuildKit', () => {
    const ast = parseAst('FROM x\nRUN --mount=a ["echo", "hi"]\nENV a b c d\nLABEL k="v w"\nONBUILD RUN echo\n');
    expect(ast.nodes.map(dumpNode)).toEqual([
      'from "x"',
      'run ["--mount=a"] "echo" "hi"',
      'env "a" "b c d" ""',
      'label "k" "\\"v w\\"" "="',
      'onbuild (run "echo")',
    ]);
  });
});

describe('conformance Dockerfiles', () => {
  const dir = '/work/shared/conformance/cases';
  const cases = existsSync(dir) ? readdirSync(dir).filter((c) => existsSync(path.join(dir, c, 'Dockerfile'))) : [];

  it('finds the cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(28);
  });

  for (const c of cases) {
    it(c, () => {
      const file = path.join(dir, c, 'Dockerfile');
      const text = readFileSync(file, 'utf8');
      if (c === 'error-unknown-instruction') {
        let err: unknown;
        try {
          parseDockerfile(text, file);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(ParseError);
        expect((err as ParseError).message).toBe('unknown instruction: FROBNICATE');
        expect((err as ParseError).range).toEqual({ file, start: 2, end: 2 });
        return;
      }
      const df = parseDockerfile(text, file);
      expect(df.instructions.length).toBeGreaterThan(0);
      expect(df.instructions.some((i) => i.kind === 'from')).toBe(true);
      for (const i of df.instructions) {
        expect(i.range.file).toBe(file);
        expect(i.range.start).toBeLessThanOrEqual(i.range.end);
        expect(i.raw.toLowerCase().startsWith(i.kind === 'add' ? 'add' : i.kind)).toBe(true);
      }
    });
  }

  it('reads the details of a few cases', () => {
    const load = (c: string) => parseDockerfile(readFileSync(path.join(dir, c, 'Dockerfile'), 'utf8'), 'Dockerfile');
    expect(load('line-continuation').instructions[2]).toMatchObject({
      kind: 'env',
      pairs: [
        { key: 'QUOTED', value: '"a \\"b\\" c"' },
        { key: 'SINGLE', value: "'x $y'" },
      ],
    });
    expect(load('metadata').instructions.map((i) => i.kind)).toEqual(['from', 'label', 'expose', 'volume', 'stopsignal', 'healthcheck']);
    expect(load('metadata').instructions[4]).toMatchObject({ signal: 'SIGTERM' });
    expect(load('env-expansion').instructions[3]).toMatchObject({
      pairs: [
        { key: 'D', value: '${UNSET:-fallback}' },
        { key: 'E', value: '${A:+set}' },
      ],
    });
    expect(load('copy-from-index').instructions[5]).toMatchObject({ from: '0', sources: ['/zero.txt'], dest: '/' });
    expect(load('copy-from-index').instructions[6]).toMatchObject({ from: 'second', sources: ['/one.txt', '/zero.txt'], dest: '/all/' });
    expect(load('arg-scoping').instructions.slice(0, 3)).toMatchObject([
      { kind: 'arg', args: [{ name: 'BASE', default: 'busybox' }] },
      { kind: 'arg', args: [{ name: 'VERSION', default: '1.0' }] },
      { kind: 'from', image: '$BASE' },
    ]);
    expect(load('shell').instructions[1]).toMatchObject({ kind: 'shell', args: ['/bin/sh', '-ec'] });
    expect(load('user').instructions.filter((i) => i.kind === 'user').map((i) => (i as { user: string }).user)).toEqual([
      'worker',
      '0',
      'worker:worker',
    ]);
  });
});
