/**
 * Here-documents on real builds, with the Dockerfiles and expected files of BuildKit's
 * frontend/dockerfile/dockerfile_heredoc_test.go (docker 20.10's built-in frontend predates
 * heredocs, so BuildKit's own tests are the reference). Each build copies its results into a
 * scratch stage exported with -o type=local, and the files are read back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, mountsUnder } from '../helpers/cli.js';

let tmp: string;
let root: string;

async function buildLocal(dockerfile: string, extra: string[] = []): Promise<{ files: (name: string) => Promise<string>; dir: string; stderr: string }> {
  const ctx = await fs.mkdtemp(path.join(tmp, 'ctx-'));
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  const dir = await fs.mkdtemp(path.join(tmp, 'out-'));
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-o', `type=local,dest=${dir}`, ...extra, ctx]);
  if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stderr}`);
  return { dir, stderr: r.stderr, files: (name) => fs.readFile(path.join(dir, name), 'utf8') };
}

async function expectFiles(dockerfile: string, want: Record<string, string>): Promise<void> {
  const { files } = await buildLocal(dockerfile);
  const got: Record<string, string> = {};
  for (const name of Object.keys(want)) got[name] = await files(name);
  expect(got).toEqual(want);
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-heredoc-'));
  root = path.join(tmp, 'root');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('RUN here-documents', () => {
  it('runs a lone here-document as the script (testRunBasicHeredoc)', async () => {
    await expectFiles('FROM busybox AS build\nRUN <<EOF\necho "i am" >> /dest\nwhoami >> /dest\nEOF\nFROM scratch\nCOPY --from=build /dest /dest\n', { dest: 'i am\nroot\n' });
  });

  it('hands the script to a non-shell SHELL (testRunFakeHeredoc; awk is /usr/bin/awk in this busybox)', async () => {
    await expectFiles('FROM busybox AS build\nSHELL ["/usr/bin/awk"]\nRUN <<EOF\nBEGIN {\n\tprint "foo" > "/dest"\n}\nEOF\nFROM scratch\nCOPY --from=build /dest /dest\n', { dest: 'foo\n' });
  });

  it('runs a #! here-document with its interpreter, mounted at /dev/pipes (testRunShebangHeredoc; awk is /usr/bin/awk here)', async () => {
    const { files, dir } = await buildLocal(`FROM busybox AS build
WORKDIR /dest
RUN <<EOF
#!/usr/bin/awk -f
BEGIN {
	print "hello" >> "./out1"
	print "world" >> "./out1"
}
EOF
RUN <<-EOF
	#!/usr/bin/awk -f
	BEGIN {
		print "hello" >> "./out2"
		print "world" >> "./out2"
	}
EOF
RUN <<EOF
#!/bin/sh
echo "
	foo" > /dest/foo2-run
echo "$0" > /dest/argv0
EOF
RUN <<-EOF
#!/bin/sh
echo "
	bar" > /dest/bar2-run
EOF
FROM scratch
COPY --from=build /dest /
`);
    expect({ out1: await files('out1'), out2: await files('out2'), foo2: await files('foo2-run'), bar2: await files('bar2-run'), argv0: await files('argv0') }).toEqual({
      out1: 'hello\nworld\n', out2: 'hello\nworld\n', foo2: '\n\tfoo\n', bar2: '\nbar\n', argv0: '/dev/pipes/EOF\n',
    });
    expect((await fs.readdir(dir)).sort()).toEqual(['argv0', 'bar2-run', 'foo2-run', 'out1', 'out2']);
  });

  it('keys a #! here-document by its script and leaves nothing of it in the layer', async () => {
    const df = (word: string) => `FROM busybox\nRUN <<EOF\n#!/bin/sh\necho ${word} > /w\nEOF\n`;
    const ctx = await fs.mkdtemp(path.join(tmp, 'ctx-'));
    await fs.writeFile(path.join(ctx, 'Dockerfile'), df('one'));
    let r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-t', 'heredoc-shebang', ctx]);
    expect(r.code, r.stderr).toBe(0);
    const inspect = await mbuild(['--root', root, 'inspect', 'heredoc-shebang']);
    const history = (JSON.parse(inspect.stdout)[0].History as { created_by: string }[]).map((h) => h.created_by);
    expect(history).toContain('RUN /bin/sh -c /dev/pipes/EOF # buildkit');
    await fs.writeFile(path.join(ctx, 'Dockerfile'), df('two'));
    const out = path.join(tmp, 'shebang-two');
    r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(out, 'w'), 'utf8')).toBe('two\n');
    expect(await fs.readdir(path.join(out, 'dev'))).toEqual([]);
  });

  it('runs heredocs inside commands, several per RUN and on other descriptors (testRunComplexHeredoc)', async () => {
    await expectFiles(
      `FROM busybox AS build
WORKDIR /dest
RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\
	cat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2
hello WORLD
EOF1
HELLO world
EOF2
RUN <<EOF 3<<IN1 4<<IN2 awk -f -
BEGIN {
	while ((getline line < "/proc/self/fd/3") > 0)
		print tolower(line) > "./fd3"
	while ((getline line < "/proc/self/fd/4") > 0)
		print toupper(line) > "./fd4"
}
EOF
hello WORLD
IN1
HELLO world
IN2
RUN 3<<EOF cat /dev/fd/3 > ./fd-cat
three
EOF
ENV WHO=builder
RUN python3 <<EOF 2>/dev/null || cat <<EOF2 > ./cat-file
print(1)
EOF
from cat $WHO
EOF2
FROM scratch
COPY --from=build /dest /
`,
      { out1: 'hello world\n', out2: 'HELLO WORLD\n', fd3: 'hello world\n', fd4: 'HELLO WORLD\n', 'fd-cat': 'three\n', 'cat-file': 'from cat builder\n' },
    );
  });

  it('strips tabs for <<- and keeps them for << (testHeredocIndent, shell cases)', async () => {
    await expectFiles(
      `FROM busybox AS build
COPY <<EOF /dest/foo-copy
	foo
EOF
COPY <<-EOF /dest/bar-copy
	bar
EOF
RUN <<EOF
echo "
	foo" > /dest/foo-run
EOF
RUN <<-EOF
echo "
	bar" > /dest/bar-run
EOF
RUN <<EOF sh > /dest/foo3-run
echo "
	foo"
EOF
RUN <<-EOF sh > /dest/bar3-run
echo "
	bar"
EOF
FROM scratch
COPY --from=build /dest /
`,
      { 'foo-copy': '\tfoo\n', 'foo-run': '\n\tfoo\n', 'foo3-run': '\n\tfoo\n', 'bar-copy': 'bar\n', 'bar-run': '\nbar\n', 'bar3-run': '\nbar\n' },
    );
  });

  it('lets the shell expand RUN heredocs and the builder expand unquoted COPY ones (testHeredocVarSubstitution)', async () => {
    await expectFiles(
      `FROM busybox as build
ARG name=world
COPY <<EOF /dest/c1
Hello \${name}!
EOF
COPY <<'EOF' /dest/c2
Hello \${name}!
EOF
COPY <<"EOF" /dest/c3
Hello \${name}!
EOF
COPY <<EOF /dest/q1
Hello '\${name}'!
EOF
COPY <<EOF /dest/q2
Hello "\${name}"!
EOF
COPY <<'EOF' /dest/qsingle1
Hello '\${name}'!
EOF
COPY <<"EOF" /dest/qdouble2
Hello "\${name}"!
EOF
RUN <<EOF
greeting="Hello"
echo "\${greeting} \${name}!" > /dest/r1
EOF
RUN <<EOF
name="new world"
echo "Hello \${name}!" > /dest/r2
EOF
RUN cat <<'EOF' > /dest/r3
Hello \${name}!
EOF
FROM scratch
COPY --from=build /dest /
`,
      {
        c1: 'Hello world!\n', c2: 'Hello ${name}!\n', c3: 'Hello ${name}!\n', q1: "Hello 'world'!\n", q2: 'Hello "world"!\n',
        qsingle1: "Hello '${name}'!\n", qdouble2: 'Hello "${name}"!\n', r1: 'Hello world!\n', r2: 'Hello new world!\n', r3: 'Hello ${name}!\n',
      },
    );
  });

  it('records the script in the history and reruns the step when a here-document changes', async () => {
    const df = (word: string) => `FROM busybox\nRUN <<EOF\necho ${word} > /w\nEOF\nRUN cat <<EOF > /v\n${word}\nEOF\n`;
    const ctx = await fs.mkdtemp(path.join(tmp, 'ctx-'));
    await fs.writeFile(path.join(ctx, 'Dockerfile'), df('one'));
    let r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-t', 'heredoc-history', ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('RUN <<EOF (echo one > /w)');
    const inspect = await mbuild(['--root', root, 'inspect', 'heredoc-history']);
    expect(inspect.code, inspect.stderr).toBe(0);
    const history = (JSON.parse(inspect.stdout)[0].History as { created_by: string }[]).map((h) => h.created_by);
    expect(history).toContain('RUN /bin/sh -c echo one > /w\n # buildkit');
    expect(history).toContain('RUN /bin/sh -c cat <<EOF > /v\none\nEOF # buildkit');
    await fs.writeFile(path.join(ctx, 'Dockerfile'), df('two'));
    r = await mbuild(['--root', root, 'build', '--progress', 'plain', '-o', `type=local,dest=${path.join(tmp, 'two')}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(tmp, 'two/w'), 'utf8')).toBe('two\n');
    expect(await fs.readFile(path.join(tmp, 'two/v'), 'utf8')).toBe('two\n');
  });
});

describe('COPY here-documents', () => {
  it('writes one or several files, with --chmod and --chown (testCopyHeredoc; no adduser in this busybox)', async () => {
    await expectFiles(
      `FROM busybox AS build
RUN echo user:x:1000:1000::/home/user:/bin/sh >> /etc/passwd && echo user:x:1000: >> /etc/group
WORKDIR /dest
COPY <<EOF single
single file
EOF
COPY <<EOF <<EOF2 double/
first file
EOF
second file
EOF2
RUN mkdir -p /permfiles
COPY --chmod=777 <<EOF /permfiles/all
dummy content
EOF
COPY --chmod=0644 <<EOF /permfiles/rw
dummy content
EOF
COPY --chown=user:user <<EOF /permfiles/owned
dummy content
EOF
RUN stat -c "%04a" /permfiles/all >> perms && \\
	stat -c "%04a" /permfiles/rw >> perms && \\
	stat -c "%U:%G" /permfiles/owned >> perms
FROM scratch
COPY --from=build /dest /
`,
      { single: 'single file\n', 'double/EOF': 'first file\n', 'double/EOF2': 'second file\n', perms: '0777\n0644\nuser:user\n' },
    );
  });

  it('keeps quotes, backslashes and dollars as BuildKit does (testCopyHeredocSpecialSymbols)', async () => {
    await expectFiles(
      'FROM scratch\nCOPY <<EOF quotefile\n"quotes in file"\nEOF\nCOPY <<EOF slashfile1\n\\\nEOF\nCOPY <<EOF slashfile2\n\\\\\nEOF\nCOPY <<EOF slashfile3\n\\$\nEOF\n' +
        'COPY <<"EOF" rawslashfile1\n\\\nEOF\nCOPY <<"EOF" rawslashfile2\n\\\\\nEOF\nCOPY <<"EOF" rawslashfile3\n\\$\nEOF\n',
      { quotefile: '"quotes in file"\n', slashfile1: '\n', slashfile2: '\\\n', slashfile3: '$\n', rawslashfile1: '\\\n', rawslashfile2: '\\\\\n', rawslashfile3: '\\$\n' },
    );
  });

  it('reruns the COPY when the ARG its here-document expands changes', async () => {
    const df = 'FROM busybox\nARG V=one\nCOPY <<EOF /v\n$V\nEOF\nFROM scratch\nCOPY --from=0 /v /v\n';
    const a = await buildLocal(df);
    expect(await a.files('v')).toBe('one\n');
    const b = await buildLocal(df, ['--build-arg', 'V=two']);
    expect(await b.files('v')).toBe('two\n');
  });
});
