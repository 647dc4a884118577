/**
 * Typed Dockerfile instructions. Words are kept *unexpanded* (quotes included where the
 * Dockerfile had them) so the executor can expand them with the environment of the step;
 * see builder/expand. `range` is 1-based and inclusive.
 */
import type { SourceRange } from '../../util/errors.js';

interface Base {
  range: SourceRange;
  /** The instruction's original text (continuations joined), for history `created_by`. */
  raw: string;
}

export interface FromInstruction extends Base {
  kind: 'from';
  image: string; // unexpanded word, e.g. "$BASE" or "busybox:1.36"
  stageName?: string; // lower-cased, as Docker compares stage names case-insensitively
  platform?: string; // unexpanded --platform value
}

/** A here-document attached to RUN/COPY/ADD (`<<EOF` … `EOF`), as BuildKit's parser reads it. */
export interface Heredoc {
  /** The terminator word with quotes removed, e.g. "EOF". */
  name: string;
  /** The lines between the instruction and the terminator, each with its line ending. */
  content: string;
  /** false when the terminator word was quoted (`<<"EOF"`): no variable expansion in the content. */
  expand: boolean;
  /** `<<-EOF`: leading tabs are stripped from the content lines. */
  chomp: boolean;
  /** `3<<EOF` → 3; 0 when no descriptor was written. */
  fileDescriptor: number;
}

/** Shell form keeps the command text; exec form keeps the JSON array. */
export type CommandForm = { shell: true; command: string } | { shell: false; args: string[] };

export interface RunInstruction extends Base {
  kind: 'run';
  cmd: CommandForm;
  network?: string; // --network=none|host|default
  mounts: string[]; // raw --mount values
  security?: string; // --security=
  /** Here-documents of a shell-form RUN (`RUN <<EOF`), in order; absent when there are none. */
  heredocs?: Heredoc[];
}

export interface CopyInstruction extends Base {
  kind: 'copy' | 'add';
  sources: string[]; // unexpanded words (JSON form: already unquoted, still expanded later)
  dest: string;
  from?: string; // COPY --from (never expanded)
  chown?: string;
  chmod?: string;
  link: boolean;
  exclude: string[];
  checksum?: string; // ADD --checksum
  keepGitDir?: boolean;
  parents?: boolean;
  unpack?: boolean; // ADD --unpack (set only when the flag was given)
  /**
   * Here-document sources (`COPY <<EOF /dest`). They are NOT in `sources`; `data` already has
   * leading tabs removed for `<<-`. Absent when there are none.
   */
  sourceContents?: { path: string; data: string; expand: boolean }[];
}

export interface KeyValue {
  key: string;
  value: string; // unexpanded word
}

export interface EnvInstruction extends Base { kind: 'env'; pairs: KeyValue[] }
export interface LabelInstruction extends Base { kind: 'label'; pairs: KeyValue[] }
export interface ArgInstruction extends Base {
  kind: 'arg';
  args: { name: string; default?: string /* unexpanded */ }[];
}
export interface WorkdirInstruction extends Base { kind: 'workdir'; path: string }
export interface UserInstruction extends Base { kind: 'user'; user: string }
export interface ExposeInstruction extends Base { kind: 'expose'; ports: string[] }
export interface VolumeInstruction extends Base { kind: 'volume'; paths: string[] }
export interface EntrypointInstruction extends Base { kind: 'entrypoint'; cmd: CommandForm }
export interface CmdInstruction extends Base { kind: 'cmd'; cmd: CommandForm }
export interface ShellInstruction extends Base { kind: 'shell'; args: string[] }
export interface StopsignalInstruction extends Base { kind: 'stopsignal'; signal: string }
export interface MaintainerInstruction extends Base { kind: 'maintainer'; name: string }
export interface HealthcheckInstruction extends Base {
  kind: 'healthcheck';
  /** undefined test = HEALTHCHECK NONE → ["NONE"] */
  test: string[]; // ["NONE"] | ["CMD", ...] | ["CMD-SHELL", "cmd"]
  interval?: number; // nanoseconds
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}
export interface OnbuildInstruction extends Base {
  kind: 'onbuild';
  /** The trigger's text as stored in the image config, e.g. "RUN echo hi". */
  trigger: string;
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CopyInstruction
  | EnvInstruction
  | LabelInstruction
  | ArgInstruction
  | WorkdirInstruction
  | UserInstruction
  | ExposeInstruction
  | VolumeInstruction
  | EntrypointInstruction
  | CmdInstruction
  | ShellInstruction
  | StopsignalInstruction
  | MaintainerInstruction
  | HealthcheckInstruction
  | OnbuildInstruction;

export interface ParsedDockerfile {
  escape: '\\' | '`';
  syntax?: string;
  /** the `# syntax=` line */
  syntaxRange?: SourceRange;
  instructions: Instruction[];
  warnings: string[];
}
