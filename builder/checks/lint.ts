/**
 * Build checks: BuildKit's linter (dockerfile2llb convert.go, validations.go, convert_expose.go,
 * instructions/parse.go) replayed over the parsed Dockerfile without building anything. Pure: the
 * base images' environments come from a lookup the caller gives (the local store during a build,
 * nothing under --check), so no network is ever needed.
 *
 * Like BuildKit, rules about the file's shape (casing, stage names, FROM arguments) look at every
 * stage; rules found while "dispatching" instructions (UndefinedVar, JSONArgsRecommended, ...) look
 * at the stages the build needs, or at all of them for --check.
 */
import { AstError, parseAst, type AstNode, type AstResult } from '../dockerfile/ast.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { checkFrontend } from '../dockerfile/syntax.js';
import type { Instruction, ParsedDockerfile } from '../dockerfile/types.js';
import { Lexer, type EnvLookup } from '../expand/shell-word.js';
import { planBuild, type Plan } from '../plan/plan.js';
import { platformArgs } from '../plan/platform.js';
import { parseReference } from '../../store/reference.js';
import { MESSAGES, RULES, type RuleName } from './rules.js';
import { CheckOptionError, checkDirective, configForComments, DEFAULT_CHECK_CONFIG, parseCheckOptions, ruleEnabled, type CheckConfig } from './config.js';
import { suggest } from '../../util/suggest.js';
import { dispatchStage, Env, withRange, type DispatchContext, type StageState } from './dispatch.js';

export interface CheckWarning {
  rule: RuleName;
  description: string;
  url: string;
  message: string;
  /** 1-based lines of the instruction */
  start: number;
  end: number;
}

export interface CheckResult {
  warnings: CheckWarning[];
  /** `# check=error=true` (or the build argument) */
  errorOnWarnings: boolean;
  /** what the build itself would refuse (parse, plan, expansion, EXPOSE), with its line */
  error?: { message: string; start?: number; end?: number };
}

export interface CheckOptions {
  buildArgs?: Record<string, string>;
  target?: string;
  /** --check without --target: every stage, not only those the target needs */
  allStages?: boolean;
  /** the environment of an image (`["K=V"]`), or undefined when unknown (not in the local store) */
  imageEnv?: (ref: string) => string[] | undefined;
  /** the context's .dockerignore, for CopyIgnoredFile */
  ignore?: { excludes(rel: string): boolean; patterns: { text: string; exclusion: boolean }[] };
  /** --allow: RUN --security=insecure without security.insecure is an error (undefined: not judged) */
  allow?: string[];
}

const RESERVED_STAGE_NAMES = new Set(['context', 'scratch']);

/** ProcessWordWithMatches: the result and which names were (not) found. */
function process(lex: Lexer, word: string, env: EnvLookup): { result: string; matched: Set<string>; unmatched: Set<string> } {
  const r = lex.process(word, env);
  return { result: r.result, matched: r.matched, unmatched: r.unmatched };
}

export function checkDockerfile(text: string, file: string, opts: CheckOptions = {}): CheckResult {
  const warnings: CheckWarning[] = [];
  const buildArgs = opts.buildArgs ?? {};
  const result = (error?: CheckResult['error'], config = DEFAULT_CHECK_CONFIG): CheckResult => ({
    warnings: dedupe(warnings),
    errorOnWarnings: config.error,
    ...(error ? { error } : {}),
  });

  let ast: AstResult;
  try {
    ast = parseAst(text);
  } catch (e) {
    return result(errorOf(e));
  }

  // the file's config: BUILDKIT_DOCKERFILE_CHECK replaces the directive
  let config: CheckConfig;
  try {
    const fromArg = buildArgs.BUILDKIT_DOCKERFILE_CHECK;
    config = parseCheckOptions(fromArg ?? checkDirective(text) ?? '');
  } catch (e) {
    if (e instanceof CheckOptionError) return result({ message: `failed to parse check options: ${e.message}` });
    throw e;
  }

  const warn = (cfg: CheckConfig, rule: RuleName, message: string, start: number, end: number) => {
    if (!ruleEnabled(cfg, rule)) return;
    const r = RULES[rule];
    warnings.push({ rule, description: r.description, url: r.url, message, start, end });
  };
  const nodeConfig = (n: AstNode) => configForComments(config, n.comments);

  for (const line of ast.emptyContinuationLines) warn(config, 'NoEmptyContinuation', MESSAGES.NoEmptyContinuation(), line, line);

  // instructions, up to the first one that does not parse (its error is the build's)
  let df: ParsedDockerfile | undefined;
  let parseError: CheckResult['error'];
  try {
    df = parseDockerfile(text, file);
    checkFrontend(df, buildArgs);
  } catch (e) {
    parseError = errorOf(e);
  }
  const lastGood = parseError?.start !== undefined ? ast.nodes.findIndex((n) => n.startLine >= parseError!.start!) : ast.nodes.length;
  // BuildKit lints an instruction before parsing it, so the failing one is looked at too
  const nodes = ast.nodes.slice(0, lastGood < 0 ? ast.nodes.length : lastGood + 1);

  // parse-time rules (instructions/parse.go)
  for (const n of nodes) {
    const cfg = nodeConfig(n);
    const kw = n.value.toLowerCase();
    if (kw === 'maintainer') warn(cfg, 'MaintainerDeprecated', MESSAGES.MaintainerDeprecated(), n.startLine, n.endLine);
    if (kw === 'arg') {
      const keys = n.args.map((a) => ('value' in a ? a.value.split('=')[0]! : ''));
      definitionDescription(cfg, 'ARG', keys, n);
    }
    if (kw === 'from') {
      const args = n.args.map((a) => ('value' in a ? a.value : ''));
      if (args.length === 3 && args[2] !== args[2]!.toLowerCase()) warn(cfg, 'StageNameCasing', MESSAGES.StageNameCasing(args[2]!), n.startLine, n.endLine);
      if (args.length === 3 && args[1]!.toLowerCase() === 'as') definitionDescription(cfg, 'FROM', [args[2]!.toLowerCase()], n);
      if (args.length >= 3) {
        const lower = n.value === n.value.toLowerCase();
        const upper = n.value === n.value.toUpperCase();
        const as = args[1]!;
        if ((lower && as !== as.toLowerCase()) || (upper && !lower && as !== as.toUpperCase())) {
          warn(cfg, 'FromAsCasing', MESSAGES.FromAsCasing(n.value, as), n.startLine, n.endLine);
        }
      }
    }
  }
  if (!df) return result(parseError, config);

  // `# name description` right above a stage or ARG (experimental in BuildKit)
  function definitionDescription(cfg: CheckConfig, instruction: string, keys: string[], n: AstNode): void {
    if (n.comments.length === 0 || keys.length === 0) return;
    const first = n.comments[n.comments.length - 1]!.split(' ')[0]!;
    if (keys.includes(first)) return;
    const example = keys.length > 1 ? '<arg_key>' : keys[0]!;
    warn(cfg, 'InvalidDefinitionDescription', MESSAGES.InvalidDefinitionDescription(instruction, example), n.startLine, n.endLine);
  }

  const instructions = df.instructions;
  const nodeOf = (i: number) => ast.nodes[i]!;
  const firstFrom = instructions.findIndex((x) => x.kind === 'from');

  // stage names and command casing (validations.go), stages only (not the ARGs before the first FROM)
  const seenStages = new Set<string>();
  let lowerCount = 0;
  let upperCount = 0;
  const consistent = (s: string) => s === s.toLowerCase() || s === s.toUpperCase();
  for (let i = firstFrom; i < instructions.length; i++) {
    const v = nodeOf(i).value;
    if (consistent(v)) {
      if (v === v.toLowerCase()) lowerCount++;
      else upperCount++;
    }
  }
  const majorityLower = lowerCount > upperCount;
  for (let i = firstFrom; i < instructions.length; i++) {
    const ins = instructions[i]!;
    const n = nodeOf(i);
    if (ins.kind === 'from' && ins.stageName !== undefined) {
      if (RESERVED_STAGE_NAMES.has(ins.stageName)) warn(config, 'ReservedStageName', MESSAGES.ReservedStageName(ins.stageName), n.startLine, n.endLine);
      if (seenStages.has(ins.stageName)) warn(config, 'DuplicateStageName', MESSAGES.DuplicateStageName(ins.stageName), n.startLine, n.endLine);
      seenStages.add(ins.stageName);
    }
  }
  for (let i = firstFrom; i < instructions.length; i++) {
    const n = nodeOf(i);
    const v = n.value;
    let casing = '';
    if (majorityLower && v.toLowerCase() !== v) casing = 'lowercase';
    else if (!majorityLower && v.toUpperCase() !== v) casing = 'uppercase';
    if (casing) warn(config, 'ConsistentInstructionCasing', MESSAGES.ConsistentInstructionCasing(v, casing), n.startLine, n.endLine);
  }

  const lex = new Lexer(df.escape);
  const metaArgs = instructions.slice(0, firstFrom) as Extract<Instruction, { kind: 'arg' }>[];

  // base names with the ARG defaults only (InvalidDefaultArgInFrom)
  const defaults = metaArgValues(lex, metaArgs, {});
  if (defaults) {
    for (const ins of instructions) {
      if (ins.kind !== 'from') continue;
      let name: string;
      try {
        name = lex.processWord(ins.image, defaults.lookup);
      } catch {
        break;
      }
      if (!validReference(name)) warn(config, 'InvalidDefaultArgInFrom', MESSAGES.InvalidDefaultArgInFrom(ins.image), ins.range.start, ins.range.end);
    }
  }

  let globals: Env;
  try {
    globals = metaArgValues(lex, metaArgs, buildArgs, true)!;
  } catch (e) {
    return result(errorOf(e), config);
  }
  const declaredArgs = [...new Set([...globals.keys(), ...metaArgs.flatMap((a) => a.args.map((x) => x.name))])];

  // FROM arguments (buildDispatchStates): every stage
  const stagesSoFar = new Set<string>();
  for (let i = firstFrom; i < instructions.length; i++) {
    const ins = instructions[i]!;
    if (ins.kind !== 'from') continue;
    const cfg = nodeConfig(nodeOf(i));
    const { start, end } = ins.range;
    const reportUnused = (unmatched: Set<string>) => {
      for (const arg of unmatched) {
        if (declaredArgs.includes(arg)) continue;
        warn(cfg, 'UndefinedArgInFrom', MESSAGES.UndefinedArgInFrom(arg, suggest(arg, declaredArgs, true)), start, end);
      }
    };
    let name;
    try {
      name = process(lex, ins.image, globals.lookup);
    } catch (e) {
      return result(errorOf(e, ins.range), config);
    }
    reportUnused(name.unmatched);
    if (ins.platform !== undefined) {
      let plat;
      try {
        plat = process(lex, ins.platform, globals.lookup);
      } catch (e) {
        return result(errorOf(e, ins.range), config);
      }
      reportUnused(plat.unmatched);
      if (plat.matched.size === 1 && plat.unmatched.size === 0 && plat.matched.has('TARGETPLATFORM') && plat.result === globals.lookup('TARGETPLATFORM')) {
        warn(cfg, 'RedundantTargetPlatform', MESSAGES.RedundantTargetPlatform(ins.platform), start, end);
      }
      if (plat.matched.size === 0 && plat.unmatched.size === 0) {
        const p = parsePlatform(plat.result);
        const stage = ins.stageName ?? '';
        if (p && !stage.includes(p.os) && !stage.includes(p.arch)) {
          warn(cfg, 'FromPlatformFlagConstDisallowed', MESSAGES.FromPlatformFlagConstDisallowed(plat.result), start, end);
        }
      }
      if (plat.result === '') return result({ message: `empty platform value from expression ${ins.platform}`, start, end }, config);
    }
    if (name.result === '') return result({ message: `base name (${ins.image}) should not be blank`, start, end }, config);
    // the base must be an earlier stage, scratch, or an image the build can look up
    const base = name.result;
    if (base !== 'scratch' && !stagesSoFar.has(base.toLowerCase())) {
      try {
        parseReference(base);
      } catch (e) {
        return result(errorOf(e, ins.range), config);
      }
    }
    if (ins.stageName !== undefined) stagesSoFar.add(ins.stageName);
  }

  let plan: Plan;
  try {
    plan = planBuild(df, { target: opts.target, buildArgs });
  } catch (e) {
    return result(errorOf(e), config);
  }

  // dispatch: the stages the build needs (all of them for --check), in file order
  const cx: DispatchContext = {
    warn,
    config: (i) => nodeConfig(nodeOf(i)),
    keyword: (i) => nodeOf(i).value,
    args: (i) => nodeOf(i).args.map((a) => ('value' in a ? a.value : '')),
    lex,
    buildArgs,
    globals,
    ...(opts.ignore ? { ignore: opts.ignore } : {}),
    ...(opts.allow ? { allow: opts.allow } : {}),
    // a --from that names no stage is an image reference
    checkImageRef: (from) => {
      if (/^\d+$/.test(from) || plan.stages.some((s) => s.name === from.toLowerCase())) return;
      parseReference(from);
    },
  };
  const wanted = new Set(opts.allStages ? plan.stages.map((s) => s.index) : plan.order);
  const finals = new Map<number, StageState>();
  const firstStageIns = new Map(plan.stages.map((s) => [s.index, instructions.indexOf(s.from)]));
  for (const stage of plan.stages) {
    if (!wanted.has(stage.index)) continue;
    let st: StageState;
    if (stage.base.kind === 'scratch') st = { env: new Env(), envKnown: true, shell: false, workdirSet: false };
    else if (stage.base.kind === 'stage') {
      const parent = finals.get(stage.base.index);
      st = parent ? { ...parent, env: parent.env.clone() } : { env: new Env(), envKnown: false, shell: false, workdirSet: false };
    } else {
      const env = opts.imageEnv?.(stage.base.ref);
      st = { env: Env.fromList(env ?? []), envKnown: env !== undefined, shell: false, workdirSet: false };
    }
    try {
      dispatchStage(cx, st, stage.instructions, firstStageIns.get(stage.index)! + 1);
    } catch (e) {
      return result(errorOf(e), config);
    }
    finals.set(stage.index, st);
  }

  return result(undefined, config);
}

/** Global ARG values: platform defaults, then each ARG before FROM (build argument or default). */
function metaArgValues(lex: Lexer, metaArgs: Extract<Instruction, { kind: 'arg' }>[], buildArgs: Record<string, string>, strict = false): Env | undefined {
  const env = new Env(Object.entries(platformArgs()));
  for (const ins of metaArgs) {
    for (const a of ins.args) {
      let value: string | undefined;
      if (a.name in buildArgs) value = buildArgs[a.name];
      else if (a.default !== undefined) {
        try {
          value = lex.processWord(a.default, env.lookup);
        } catch (e) {
          if (strict) throw withRange(e, ins.range);
          return undefined;
        }
      }
      if (value !== undefined) env.set(a.name, value);
    }
  }
  return env;
}

/** reference.ParseNormalizedNamed accepts it. */
function validReference(name: string): boolean {
  if (name === '' || name !== name.trim()) return false;
  try {
    parseReference(name);
    return true;
  } catch {
    return false;
  }
}

/** containerd platforms.Parse, enough to read os and architecture. */
function parsePlatform(s: string): { os: string; arch: string } | undefined {
  const parts = s.split('/');
  if (parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9_.-]+$/.test(p))) return undefined;
  const os = parts[0]!.toLowerCase();
  const arch = parts.length > 1 ? parts[1]!.toLowerCase() : '';
  return { os, arch };
}

function errorOf(e: unknown, range?: { start: number; end: number }): NonNullable<CheckResult['error']> {
  const err = e as Error & { range?: { start: number; end: number } };
  // the parser's AstError carries its lines as start/end
  const r = err.range ?? (e instanceof AstError ? { start: e.start, end: e.end } : range);
  return { message: err.message, ...(r ? { start: r.start, end: r.end } : {}) };
}

/** The same rule, text and line reported twice (one word looked up twice) counts once; sorted by line. */
function dedupe(list: CheckWarning[]): CheckWarning[] {
  const seen = new Set<string>();
  const out: CheckWarning[] = [];
  for (const w of list) {
    const k = `${w.rule}\0${w.message}\0${w.start}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(w);
  }
  return out.sort((a, b) => a.start - b.start);
}
