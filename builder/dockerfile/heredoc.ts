/**
 * What BuildKit does with here-documents once they are parsed (dockerfile2llb/convert.go
 * dispatchRun, instructions/commands.go ExpandRaw, convert_copy.go):
 *
 * RUN (shell form only; the parser never reads heredocs for the exec form)
 *  - the whole command is one heredoc word (`RUN <<EOF`, `RUN <<-'EOF'`, `RUN 3<<EOF`): its content
 *    (tabs stripped for `<<-`) is the script. Starting with `#!`, it becomes an executable file
 *    (0755) at /dev/pipes/NAME and the shell runs that path, so the kernel picks the interpreter;
 *    otherwise the shell runs the content as its command string. The quoting of the terminator
 *    does not matter here: nothing is expanded by the builder, the shell sees the script as written.
 *  - anything else (`RUN cat <<EOF > /f`, `RUN python3 <<EOF`, several heredocs, `3<<EOF`): the
 *    command line is put back together with each heredoc's raw lines and terminator after it, and
 *    the shell handles the here-documents itself (so `<<-`, quoting and expansion are the shell's).
 *
 * COPY/ADD `<<EOF` sources: the content (tabs stripped for `<<-`) becomes a 0644 file named after
 * the terminator; when the terminator was not quoted, variables are expanded with a lexer that
 * always uses `\` as the escape and leaves quotes alone (so `\$` gives `$`, `\\` gives `\`, and a
 * trailing `\` joins the next line).
 */
import path from 'node:path';
import type { Instruction, RunInstruction } from './types.js';
import { chompHeredocContent, mustParseHeredocWord } from './ast.js';
import { Lexer, type EnvLookup } from '../expand/shell-word.js';

/** Where BuildKit mounts the script of a `#!` here-document. */
export const HEREDOC_PIPES_DIR = '/dev/pipes';

/** A file the RUN step needs mounted read-only (a `#!` here-document's script). */
export interface InlineFile {
  /** absolute path inside the container, e.g. /dev/pipes/EOF */
  target: string;
  name: string;
  data: string;
  mode: number;
}

export interface RunCommand {
  /** the argv the step runs (shell prepended for the shell form) */
  args: string[];
  /** files to mount for it (a `#!` here-document) */
  files: InlineFile[];
}

/** The argv of a RUN (and the files it needs), as dispatchRun makes them. */
export function runCommand(ins: RunInstruction, shell: string[]): RunCommand {
  if (!ins.cmd.shell) return { args: ins.cmd.args, files: [] };
  const docs = ins.heredocs ?? [];
  if (docs.length === 0) return { args: [...shell, ins.cmd.command], files: [] };
  if (mustParseHeredocWord(ins.cmd.command)) {
    const first = docs[0]!;
    const data = first.chomp ? chompHeredocContent(first.content) : first.content;
    if (data.startsWith('#!')) {
      const target = path.posix.join(HEREDOC_PIPES_DIR + '/', first.name);
      return { args: [...shell, target], files: [{ target, name: first.name, data, mode: 0o755 }] };
    }
    return { args: [...shell, data], files: [] };
  }
  let script = ins.cmd.command;
  for (const d of docs) script += '\n' + d.content + d.name;
  return { args: [...shell, script], files: [] };
}

/** The text of a COPY/ADD here-document source after expansion (ExpandRaw). */
export function expandHeredocContent(data: string, env: EnvLookup): string {
  return new Lexer('\\', { skipProcessQuotes: true }).processWord(data, env);
}

/**
 * The step's name in the progress output: the instruction, and for a RUN whose whole command is a
 * here-document, BuildKit's summary of it (`RUN <<EOF (apt-get update...)`).
 */
export function stepName(ins: Instruction): string {
  if (ins.kind !== 'run') return ins.raw;
  const first = ins.heredocs?.[0];
  if (!first || !ins.cmd.shell || !mustParseHeredocWord(ins.cmd.command)) return ins.raw;
  return `${ins.raw} (${summarizeHeredoc(first.content)})`;
}

/** BuildKit's summary of a here-document: its first line, `...` when there are more. */
function summarizeHeredoc(doc: string): string {
  const lines = doc.trim().replace(/\r\n/g, '\n').split('\n');
  return lines.length > 1 ? lines[0] + '...' : lines[0]!;
}
