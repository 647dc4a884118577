/** RUN/COPY here-documents turned into what runs and what is written, as BuildKit's dispatchRun/ExpandRaw do. */
import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { expandHeredocContent, runCommand, stepName } from '../../builder/dockerfile/heredoc.js';
import type { CopyInstruction, RunInstruction } from '../../builder/dockerfile/types.js';
import { envLookupFrom } from '../../builder/expand/shell-word.js';

const SH = ['/bin/sh', '-c'];
const ins = (text: string) => parseDockerfile('FROM busybox\n' + text).instructions[1]!;
const run = (text: string) => runCommand(ins(text) as RunInstruction, SH);

describe('RUN here-documents', () => {
  it('runs a lone here-document as the shell command string', () => {
    expect(run('RUN <<EOF\necho "i am" >> /dest\nwhoami >> /dest\nEOF\n')).toEqual({ args: [...SH, 'echo "i am" >> /dest\nwhoami >> /dest\n'], files: [] });
  });

  it('strips tabs for <<- and leaves the content unexpanded whatever the quoting', () => {
    expect(run('RUN <<-EOF\n\techo "\n\tbar" > /dest/bar-run\nEOF\n').args[2]).toBe('echo "\nbar" > /dest/bar-run\n');
    expect(run("RUN <<'EOF'\necho $HOME\nEOF\n").args[2]).toBe('echo $HOME\n');
    expect(run('RUN <<EOF\necho $HOME\nEOF\n').args[2]).toBe('echo $HOME\n');
  });

  it('passes the SHELL the script (a "fake" heredoc for non-shells like awk)', () => {
    const r = runCommand(ins('RUN <<EOF\nBEGIN {\n\tprint "foo" > "/dest"\n}\nEOF\n') as RunInstruction, ['/bin/awk']);
    expect(r.args).toEqual(['/bin/awk', 'BEGIN {\n\tprint "foo" > "/dest"\n}\n']);
  });

  it('mounts a #! here-document as an executable file at /dev/pipes/NAME and runs its path', () => {
    expect(run('RUN <<EOF\n#!/bin/awk -f\nBEGIN { print "hi" }\nEOF\n')).toEqual({
      args: [...SH, '/dev/pipes/EOF'],
      files: [{ target: '/dev/pipes/EOF', name: 'EOF', data: '#!/bin/awk -f\nBEGIN { print "hi" }\n', mode: 0o755 }],
    });
    // after tab stripping the #! comes first
    expect(run('RUN <<-EOF\n\t#!/bin/sh\n\techo hi\nEOF\n').files[0]).toMatchObject({ data: '#!/bin/sh\necho hi\n' });
    // with tabs kept, it is not a #! script
    expect(run('RUN <<EOF\n\t#!/bin/sh\nEOF\n').files).toEqual([]);
  });

  it('puts a here-document inside a command back together for the shell', () => {
    expect(run('RUN cat <<EOF > /f\nhello $HOME\nEOF\n').args).toEqual([...SH, 'cat <<EOF > /f\nhello $HOME\nEOF']);
    expect(run('RUN python3 <<EOF\nprint(1)\nEOF\n').args[2]).toBe('python3 <<EOF\nprint(1)\nEOF');
    expect(run("RUN <<'EOF' | python\nprint(\"hello\")\nEOF\n").args[2]).toBe("<<'EOF' | python\nprint(\"hello\")\nEOF");
  });

  it('keeps <<- content raw (the shell strips the tabs) and several heredocs in order', () => {
    const r = run("RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\\n\tcat <<-EOF2 > ./out2\nhello WORLD\nEOF1\n\tHELLO world\n\tEOF2\n");
    expect(r.args[2]).toBe("cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \tcat <<-EOF2 > ./out2\nhello WORLD\nEOF1\n\tHELLO world\nEOF2");
  });

  it('gives heredocs on other descriptors to the shell', () => {
    expect(run('RUN 3<<EOF cat /dev/fd/3\nthree\nEOF\n').args[2]).toBe('3<<EOF cat /dev/fd/3\nthree\nEOF');
    // a lone `3<<EOF` is still "the whole command": its content is the script
    expect(run('RUN 3<<EOF\necho x\nEOF\n').args[2]).toBe('echo x\n');
  });

  it('leaves RUN without here-documents and the exec form alone', () => {
    expect(run('RUN echo hi')).toEqual({ args: [...SH, 'echo hi'], files: [] });
    expect(run('RUN ["<<EOF"]')).toEqual({ args: ['<<EOF'], files: [] });
  });

  it('names the step with the here-document summary, as BuildKit does', () => {
    expect(stepName(ins('RUN <<EOF\n  apt-get update\n  apt-get install x\nEOF\n'))).toBe('RUN <<EOF (apt-get update...)');
    expect(stepName(ins('RUN <<EOF\necho one\nEOF\n'))).toBe('RUN <<EOF (echo one)');
    expect(stepName(ins('RUN cat <<EOF\nx\nEOF\n'))).toBe('RUN cat <<EOF');
    expect(stepName(ins('ENV A=b'))).toBe('ENV A=b');
  });
});

describe('COPY here-document contents', () => {
  const env = envLookupFrom(['name=world']);
  const expand = (text: string) => {
    const c = ins(text) as CopyInstruction;
    const h = c.sourceContents![0]!;
    return h.expand ? expandHeredocContent(h.data, env) : h.data;
  };

  it('keeps special symbols as BuildKit does (testCopyHeredocSpecialSymbols)', () => {
    expect(expand('COPY <<EOF quotefile\n"quotes in file"\nEOF\n')).toBe('"quotes in file"\n');
    expect(expand('COPY <<EOF slashfile1\n\\\nEOF\n')).toBe('\n');
    expect(expand('COPY <<EOF slashfile2\n\\\\\nEOF\n')).toBe('\\\n');
    expect(expand('COPY <<EOF slashfile3\n\\$\nEOF\n')).toBe('$\n');
    expect(expand('COPY <<"EOF" rawslashfile1\n\\\nEOF\n')).toBe('\\\n');
    expect(expand('COPY <<"EOF" rawslashfile2\n\\\\\nEOF\n')).toBe('\\\\\n');
    expect(expand('COPY <<"EOF" rawslashfile3\n\\$\nEOF\n')).toBe('\\$\n');
  });

  it('expands variables only when the terminator is unquoted, leaving quotes in place (testHeredocVarSubstitution)', () => {
    expect(expand('COPY <<EOF /dest/c1\nHello ${name}!\nEOF\n')).toBe('Hello world!\n');
    expect(expand("COPY <<'EOF' /dest/c2\nHello ${name}!\nEOF\n")).toBe('Hello ${name}!\n');
    expect(expand('COPY <<"EOF" /dest/c3\nHello ${name}!\nEOF\n')).toBe('Hello ${name}!\n');
    expect(expand("COPY <<EOF /dest/q1\nHello '${name}'!\nEOF\n")).toBe("Hello 'world'!\n");
    expect(expand('COPY <<EOF /dest/q2\nHello "${name}"!\nEOF\n')).toBe('Hello "world"!\n');
    expect(expand("COPY <<'EOF' /dest/qsingle2\nHello \"${name}\"!\nEOF\n")).toBe('Hello "${name}"!\n');
  });

  it('uses \\ as the escape even under # escape=`', () => {
    const c = parseDockerfile('# escape=`\nFROM busybox\nCOPY <<EOF /f\na\\$name\nEOF\n').instructions[1] as CopyInstruction;
    expect(expandHeredocContent(c.sourceContents![0]!.data, env)).toBe('a$name\n');
  });

  it('strips tabs for <<- before expanding', () => {
    expect(expand('COPY <<-EOF /dest/bar-copy\n\tbar $name\nEOF\n')).toBe('bar world\n');
    expect(expand('COPY <<EOF /dest/foo-copy\n\tfoo\nEOF\n')).toBe('\tfoo\n');
  });
});
