/**
 * `--call outline` and `--call targets`: what a build of a Dockerfile takes, read from the
 * Dockerfile alone (nothing runs, no image is read), as BuildKit's Dockerfile frontend answers
 * these subrequests (frontend.outline, frontend.targets):
 * - targets: every stage with its name, the doc comment above its FROM (`# NAME text`), its base
 *   as written, its --platform as written; the last stage is the default;
 * - outline: the target stage's name and doc comment, and what the target and the stages it reads
 *   (its base stage, COPY --from and RUN --mount=from stages) take: the ARGs they declare and the
 *   global ARGs their FROM lines use (with the global ARGs those defaults read), each with its
 *   value (the --build-arg, else the default) and doc comment (`# NAME text` above the ARG); the
 *   secrets and ssh ids RUN mounts use, with required=. Sorted by line.
 * Printed as buildx prints them (text tables, or the JSON of the result with format=json).
 */
import { parseAst } from '../dockerfile/ast.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { parseRunMount } from '../dockerfile/run-mount.js';
import type { Instruction } from '../dockerfile/types.js';
import { Lexer, type EnvLookup } from '../expand/shell-word.js';
import { planBuild } from '../plan/plan.js';
import { platformArgs } from '../plan/platform.js';

/** pb.Location as BuildKit's JSON has it: one range of 1-based lines. */
export interface Location {
  ranges: { start: { line: number }; end: { line: number } }[];
}

export interface OutlineArg {
  name: string;
  description?: string;
  value?: string;
  location?: Location;
}
export interface OutlineMount {
  name: string;
  required?: boolean;
  location?: Location;
}
export interface Outline {
  name?: string;
  description?: string;
  args?: OutlineArg[];
  secrets?: OutlineMount[];
  ssh?: OutlineMount[];
  /** the Dockerfile, base64 */
  sources: string[];
}

export interface Target {
  name?: string;
  default?: boolean;
  description?: string;
  base?: string;
  platform?: string;
  location?: Location;
}
export interface TargetList {
  targets: Target[];
  sources: string[];
}

const location = (start: number, end: number): Location => ({ ranges: [{ start: { line: start }, end: { line: end } }] });

/** BuildKit's doc comment: a comment line above the instruction that starts with `NAME `. */
function docComment(comments: string[] | undefined, name: string | undefined): string | undefined {
  if (!name) return undefined;
  for (const c of comments ?? []) if (c.startsWith(name + ' ')) return c.slice(name.length + 1) || undefined;
  return undefined;
}

/** The comments above each instruction, by its first line. */
function commentsByLine(text: string): Map<number, string[]> {
  return new Map(parseAst(text).nodes.map((n) => [n.startLine, n.comments]));
}

export function dockerfileTargets(text: string, file?: string): TargetList {
  const df = parseDockerfile(text, file);
  const comments = commentsByLine(text);
  const froms = df.instructions.filter((i) => i.kind === 'from');
  return {
    targets: froms.map((f, i) => ({
      ...(f.stageName ? { name: f.stageName } : {}),
      ...(i === froms.length - 1 ? { default: true } : {}),
      ...opt('description', docComment(comments.get(f.range.start), f.stageName)),
      ...opt('base', f.image),
      ...opt('platform', f.platform),
      location: location(f.range.start, f.range.end),
    })),
    sources: [Buffer.from(text).toString('base64')],
  };
}

const opt = <K extends string>(key: K, v: string | undefined): { [k in K]?: string } => (v ? ({ [key]: v } as { [k in K]: string }) : {});

interface ArgInfo {
  name: string;
  value?: string;
  description?: string;
  line: [number, number];
  /** global ARGs its default read */
  deps: Set<string>;
}
interface MountInfo {
  required: boolean;
  line: [number, number];
}
interface StageOutline {
  args: Map<string, ArgInfo>;
  used: Set<string>;
  secrets: Map<string, MountInfo>;
  ssh: Map<string, MountInfo>;
  /** ARG and ENV values the stage has so far (a later default reads them) */
  env: Map<string, string>;
}

export function dockerfileOutline(text: string, opts: { file?: string; target?: string; buildArgs?: Record<string, string> } = {}): Outline {
  const df = parseDockerfile(text, opts.file);
  // the stage graph (and the errors a build would give: an unknown --target, a bad COPY --from)
  const plan = planBuild(df, { target: opts.target, buildArgs: opts.buildArgs });
  const buildArgs = opts.buildArgs ?? {};
  const comments = commentsByLine(text);
  const lexer = new Lexer(df.escape);
  const lookup = (m: Map<string, string>): EnvLookup => (k) => m.get(k);

  // global ARGs: every one is known; a stage uses those its FROM reads
  const globals = new Map<string, string>(Object.entries(platformArgs(plan.platform)));
  const globalInfo = new Map<string, ArgInfo>();
  const stages: StageOutline[] = [];
  let current: StageOutline | undefined;
  let stageIndex = -1;
  for (const ins of df.instructions) {
    const lines: [number, number] = [ins.range.start, ins.range.end];
    if (ins.kind === 'from') {
      stageIndex++;
      const stage = plan.stages[stageIndex]!;
      const used = new Set<string>();
      for (const w of [ins.image, ...(ins.platform !== undefined ? [ins.platform] : [])]) for (const k of lexer.process(w, lookup(globals)).matched) used.add(k);
      const env = new Map(stage.base.kind === 'stage' ? stages[stage.base.index]!.env : []);
      current = { args: new Map(globalInfo), used, secrets: new Map(), ssh: new Map(), env };
      stages.push(current);
      continue;
    }
    if (!current) {
      // a global ARG (before the first FROM)
      if (ins.kind !== 'arg') continue;
      for (const a of ins.args) {
        const info: ArgInfo = { name: a.name, line: lines, deps: new Set(), ...opt('description', docComment(comments.get(ins.range.start), a.name)) };
        let value: string | undefined;
        if (a.name in buildArgs) value = buildArgs[a.name];
        else if (a.default !== undefined) {
          const r = lexer.process(a.default, lookup(globals));
          value = r.result;
          for (const k of r.matched) if (k !== a.name) info.deps.add(k);
          // ARG A=${A}-x keeps what the earlier A read
          if (r.matched.has(a.name)) for (const k of globalInfo.get(a.name)?.deps ?? []) info.deps.add(k);
        }
        if (value !== undefined) {
          globals.set(a.name, value);
          info.value = value;
        }
        globalInfo.set(a.name, info);
      }
      continue;
    }
    stageInstruction(current, ins, lines);
  }

  function stageInstruction(s: StageOutline, ins: Instruction, lines: [number, number]): void {
    if (ins.kind === 'arg') {
      for (const a of ins.args) {
        s.used.add(a.name);
        const given = a.name in buildArgs;
        // declared again without a value: the global's, described where the global is
        if (!given && a.default === undefined && globals.has(a.name)) {
          s.env.set(a.name, globals.get(a.name)!);
          continue;
        }
        const value = given ? buildArgs[a.name] : a.default !== undefined ? lexer.processWord(a.default, lookup(s.env)) : undefined;
        if (value !== undefined) s.env.set(a.name, value);
        s.args.set(a.name, { name: a.name, line: lines, deps: new Set(), ...opt('value', value), ...opt('description', docComment(comments.get(ins.range.start), a.name)) });
      }
    } else if (ins.kind === 'env') {
      for (const p of ins.pairs) s.env.set(p.key, lexer.processWord(p.value, lookup(s.env)));
    } else if (ins.kind === 'run') {
      for (const raw of ins.mounts) {
        const m = parseRunMount(raw, (w) => lexer.processWord(w, lookup(s.env)), ins.range);
        if (m.type === 'secret') {
          const id = m.source || m.id || (m.target ?? '').split('/').pop() || '';
          if (id && !s.secrets.has(id)) s.secrets.set(id, { required: m.required, line: lines });
        } else if (m.type === 'ssh') {
          const id = m.id || 'default';
          if (!s.ssh.has(id)) s.ssh.set(id, { required: m.required, line: lines });
        }
      }
    }
  }

  // what the target and the stages it reads take: its own first, then its base, then the others
  const seen = { args: new Set<string>(), secrets: new Set<string>(), ssh: new Set<string>(), stages: new Set<number>() };
  const args: ArgInfo[] = [];
  const secrets: (MountInfo & { name: string })[] = [];
  const ssh: (MountInfo & { name: string })[] = [];
  const walk = (i: number) => {
    if (seen.stages.has(i)) return;
    seen.stages.add(i);
    const s = stages[i]!;
    // the global ARGs a used default read are used too
    const used = new Set<string>();
    const mark = (k: string) => {
      if (used.has(k)) return;
      used.add(k);
      for (const d of s.args.get(k)?.deps ?? []) mark(d);
    };
    for (const k of s.used) mark(k);
    for (const k of used) {
      const a = s.args.get(k);
      if (a && !seen.args.has(k)) {
        seen.args.add(k);
        args.push(a);
      }
    }
    for (const [k, v] of s.secrets) if (!seen.secrets.has(k)) (seen.secrets.add(k), secrets.push({ name: k, ...v }));
    for (const [k, v] of s.ssh) if (!seen.ssh.has(k)) (seen.ssh.add(k), ssh.push({ name: k, ...v }));
    const stage = plan.stages[i]!;
    if (stage.base.kind === 'stage') walk(stage.base.index);
    for (const d of stage.deps) walk(d);
  };
  walk(plan.target);
  const byLine = <T extends { line: [number, number] }>(list: T[]) => list.map((x, k) => [x, k] as const).sort((a, b) => a[0].line[0] - b[0].line[0] || a[1] - b[1]).map(([x]) => x);

  const target = plan.stages[plan.target]!;
  // the keys in BuildKit's order (name, description, args, secrets, ssh, sources)
  const out = { ...opt('name', target.name), ...opt('description', docComment(comments.get(target.from.range.start), target.name)) } as Outline;
  if (args.length) out.args = byLine(args).map((a) => ({ name: a.name, ...opt('description', a.description), ...opt('value', a.value), location: location(...a.line) }));
  if (secrets.length) out.secrets = byLine(secrets).map((s) => ({ name: s.name, ...(s.required ? { required: true } : {}), location: location(...s.line) }));
  if (ssh.length) out.ssh = byLine(ssh).map((s) => ({ name: s.name, ...(s.required ? { required: true } : {}), location: location(...s.line) }));
  out.sources = [Buffer.from(text).toString('base64')];
  return out;
}

/**
 * Go's text/tabwriter (minwidth 0, tabwidth 0, padchar ' ', no flags) over lines of cells: every
 * cell but a line's last is padded to its column's widest cell plus `padding`.
 */
function tabwrite(rows: string[][], padding: number): string {
  const widths: number[] = [];
  for (const r of rows) r.slice(0, -1).forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  return rows.map((r) => r.map((c, i) => (i < r.length - 1 ? c + ' '.repeat(widths[i]! - [...c].length + padding) : c)).join('') + '\n').join('');
}

/** buildx's text form of the outline (BuildKit's PrintOutline). */
export function printOutline(o: Outline): string {
  let out = '';
  if (o.name || o.description) {
    out += tabwrite([['TARGET:', o.name || '(default)'], ...(o.description ? [['DESCRIPTION:', o.description]] : [])], 1) + '\n';
  }
  if (o.args?.length) out += tabwrite([['BUILD ARG', 'VALUE', 'DESCRIPTION'], ...o.args.map((a) => [a.name, a.value ?? '', a.description ?? ''])], 3) + '\n';
  if (o.secrets?.length) out += tabwrite([['SECRET', 'REQUIRED'], ...o.secrets.map((s) => [s.name, s.required ? 'true' : ''])], 3) + '\n';
  if (o.ssh?.length) out += tabwrite([['SSH', 'REQUIRED'], ...o.ssh.map((s) => [s.name, s.required ? 'true' : ''])], 3) + '\n';
  return out;
}

/** buildx's text form of the targets (BuildKit's PrintTargets). */
export function printTargets(l: TargetList): string {
  return tabwrite([['TARGET', 'DESCRIPTION'], ...l.targets.map((t) => [t.default ? (t.name ? `${t.name} (default)` : '(default)') : (t.name ?? ''), t.description ?? ''])], 1);
}

/** The result as format=json prints it: Go's json.MarshalIndent (two spaces, <, > and & escaped). */
export function resultJson(v: Outline | TargetList): string {
  return JSON.stringify(v, null, 2).replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}
