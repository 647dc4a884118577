/**
 * Dockerfile text → typed instructions, with BuildKit's rules and error messages
 * (frontend/dockerfile/instructions/parse.go, bflag.go). Words stay unexpanded; the executor
 * expands them with builder/expand.
 *
 * The line level (continuations, directives, here-documents, per-instruction argument splitting)
 * is in ast.ts.
 */
import { ParseError, type SourceRange } from '../../util/errors.js';
import {
  AstError,
  chompHeredocContent,
  mustParseHeredocWord,
  nodeArgs,
  parseAst,
  trimSpace,
  type AstNode,
} from './ast.js';
import { DurationError, parseGoDuration } from './duration.js';
import { FlagError, Flags } from './bflag.js';
import type {
  ArgInstruction,
  CommandForm,
  CopyInstruction,
  HealthcheckInstruction,
  Instruction,
  KeyValue,
  ParsedDockerfile,
  RunInstruction,
} from './types.js';

export { parseGoDuration } from './duration.js';

/** Thrown inside one instruction; turned into a ParseError at the instruction's range. */
class InstructionError extends Error {}
const fail = (message: string): never => {
  throw new InstructionError(message);
};

// ---------------------------------------------------------------------------------------------
// helpers

const errAtLeastOne = (cmd: string) => fail(`${cmd} requires at least one argument`);
const errExactlyOne = (cmd: string) => fail(`${cmd} requires exactly one argument`);
const errNoDestination = (cmd: string) =>
  fail(`${cmd} requires at least two arguments, but only one was provided. Destination could not be determined`);

function parseKvps(args: string[], cmd: string): KeyValue[] {
  if (args.length === 0) errAtLeastOne(cmd);
  if (args.length % 3 !== 0) fail(`Bad input to ${cmd}, too many arguments`);
  const out: KeyValue[] = [];
  for (let j = 0; j < args.length; j += 3) {
    if (args[j]!.length === 0) fail(`${cmd} names can not be blank`);
    out.push({ key: args[j]!, value: args[j + 1]! });
  }
  return out;
}

/** Shell form: the argument text as one command; exec form: the JSON strings. */
function commandForm(args: string[], json: boolean): CommandForm {
  return json ? { shell: false, args } : { shell: true, command: args.join(' ') };
}

/** Go's time.ParseDuration, then BuildKit's "0 or at least 1ms" rule. */
function parseInterval(name: string, value: string): number | undefined {
  if (value === '') return undefined;
  let d: bigint;
  try {
    d = parseGoDuration(value);
  } catch (e) {
    if (e instanceof DurationError) return fail(e.message);
    throw e;
  }
  if (d === 0n) return undefined;
  if (d < 1_000_000n) fail(`Interval "${name}" cannot be less than 1ms`);
  return Number(d);
}

/** Go's strconv.ParseInt(s, 10, 32). */
function parseInt32(s: string): number {
  const syntax = () => fail(`strconv.ParseInt: parsing ${JSON.stringify(s)}: invalid syntax`);
  if (!/^[+-]?[0-9]+$/.test(s)) syntax();
  const n = BigInt(s);
  if (n > 2147483647n || n < -2147483648n) fail(`strconv.ParseInt: parsing ${JSON.stringify(s)}: value out of range`);
  return Number(n);
}

const VALID_STAGE_NAME = /^[a-z][a-z0-9._-]*$/;

// ---------------------------------------------------------------------------------------------
// instructions

/** One parsed line (AST node) as an instruction; its errors become ParseErrors at `range`. */
export function parseNode(node: AstNode, range: SourceRange = { start: node.startLine, end: node.endLine }): Instruction {
  try {
    return parseInstruction(node, range);
  } catch (e) {
    if (e instanceof InstructionError || e instanceof FlagError) throw new ParseError(e.message, range);
    throw e;
  }
}

function parseInstruction(node: AstNode, range: SourceRange): Instruction {
  const args = nodeArgs(node);
  const flags = new Flags(node.flags);
  const raw = node.original;
  const base = { range, raw };
  const keyword = node.value.toLowerCase();

  switch (keyword) {
    case 'env': {
      flags.parse();
      return { ...base, kind: 'env', pairs: parseKvps(args, 'ENV') };
    }
    case 'label': {
      flags.parse();
      return { ...base, kind: 'label', pairs: parseKvps(args, 'LABEL') };
    }
    case 'maintainer': {
      if (args.length !== 1) errExactlyOne('MAINTAINER');
      flags.parse();
      return { ...base, kind: 'maintainer', name: args[0]! };
    }
    case 'add':
    case 'copy':
      return parseCopyOrAdd(node, keyword, args, flags, base);
    case 'from': {
      let stageName: string | undefined;
      if (args.length === 3 && args[1]!.toLowerCase() === 'as') {
        stageName = args[2]!.toLowerCase();
        if (!VALID_STAGE_NAME.test(stageName)) {
          fail(`invalid name for build stage: ${JSON.stringify(args[2])}, name can't start with a number or contain symbols`);
        }
      } else if (args.length !== 1) {
        fail('FROM requires either one or three arguments');
      }
      const platform = flags.string('platform');
      flags.parse();
      return {
        ...base,
        kind: 'from',
        image: args[0]!,
        ...(stageName !== undefined ? { stageName } : {}),
        ...(platform.value !== '' ? { platform: platform.value } : {}),
      };
    }
    case 'onbuild': {
      if (args.length === 0) errAtLeastOne('ONBUILD');
      flags.parse();
      const trigger = trimSpace(args[0]!).toUpperCase();
      if (trigger === 'ONBUILD') fail('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (trigger === 'MAINTAINER' || trigger === 'FROM') fail(`${trigger} isn't allowed as an ONBUILD trigger`);
      let expression = raw.replace(/^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*/i, '');
      for (const h of node.heredocs) expression += '\n' + h.content + h.name;
      return { ...base, kind: 'onbuild', trigger: expression };
    }
    case 'workdir': {
      if (args.length !== 1) errExactlyOne('WORKDIR');
      flags.parse();
      return { ...base, kind: 'workdir', path: args[0]! };
    }
    case 'run': {
      const mount = flags.strings('mount');
      const network = flags.string('network', 'default');
      const security = flags.string('security', 'sandbox');
      flags.parse();
      if (args.length === 0) errAtLeastOne('RUN');
      if (!['default', 'none', 'host'].includes(network.value)) fail(`invalid network mode ${JSON.stringify(network.value)}`);
      if (!['sandbox', 'insecure'].includes(security.value)) fail(`security ${JSON.stringify(security.value)} is not valid`);
      const run: RunInstruction = { ...base, kind: 'run', cmd: commandForm(args, node.json), mounts: mount.values };
      if (network.used) run.network = network.value;
      if (security.used) run.security = security.value;
      if (node.heredocs.length > 0) run.heredocs = node.heredocs.map((h) => ({ ...h }));
      return run;
    }
    case 'cmd':
    case 'entrypoint': {
      flags.parse();
      if (args.length === 0 && !node.json) errAtLeastOne(keyword.toUpperCase());
      return { ...base, kind: keyword, cmd: commandForm(args, node.json) };
    }
    case 'healthcheck':
      return parseHealthcheck(node, args, flags, base);
    case 'expose': {
      if (args.length === 0) errAtLeastOne('EXPOSE');
      flags.parse();
      const ports = [...args].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return { ...base, kind: 'expose', ports };
    }
    case 'user': {
      if (args.length !== 1) errExactlyOne('USER');
      flags.parse();
      return { ...base, kind: 'user', user: args[0]! };
    }
    case 'volume': {
      if (args.length === 0) errAtLeastOne('VOLUME');
      flags.parse();
      const paths = args.map((v) => {
        const p = trimSpace(v);
        if (p === '') fail('VOLUME specified can not be an empty string');
        return p;
      });
      return { ...base, kind: 'volume', paths };
    }
    case 'stopsignal': {
      // BuildKit does not look at STOPSIGNAL's flags at all
      if (args.length !== 1) errExactlyOne('STOPSIGNAL');
      return { ...base, kind: 'stopsignal', signal: args[0]! };
    }
    case 'arg': {
      // nor at ARG's
      if (args.length === 0) errAtLeastOne('ARG');
      const out: ArgInstruction['args'] = args.map((a) => {
        const eq = a.indexOf('=');
        if (eq < 0) return { name: a };
        if (eq === 0) fail('ARG names can not be blank');
        return { name: a.slice(0, eq), default: a.slice(eq + 1) };
      });
      return { ...base, kind: 'arg', args: out };
    }
    case 'shell': {
      flags.parse();
      if (args.length === 0) errAtLeastOne('SHELL');
      if (!node.json) fail('SHELL requires the arguments to be in JSON form');
      return { ...base, kind: 'shell', args };
    }
  }
  return fail(`unknown instruction: ${node.value}`);
}

function parseCopyOrAdd(
  node: AstNode,
  kind: 'copy' | 'add',
  args: string[],
  flags: Flags,
  base: { range: SourceRange; raw: string },
): CopyInstruction {
  const name = kind.toUpperCase();
  if (args.length < 2) errNoDestination(name);
  const chown = flags.string('chown');
  const chmod = flags.string('chmod');
  const link = flags.bool('link');
  const exclude = flags.strings('exclude');
  let from, parents, keepGitDir, checksum, unpack;
  if (kind === 'copy') {
    from = flags.string('from');
    parents = flags.bool('parents');
  } else {
    keepGitDir = flags.bool('keep-git-dir');
    checksum = flags.string('checksum');
    unpack = flags.bool('unpack');
  }
  flags.parse();

  const dest = args[args.length - 1]!;
  if (mustParseHeredocWord(dest)) fail(`${name} cannot accept a heredoc as a destination`);
  const docs = new Map(node.heredocs.map((h) => [h.name, h]));
  const sources: string[] = [];
  const contents: NonNullable<CopyInstruction['sourceContents']> = [];
  for (const src of args.slice(0, -1)) {
    const h = mustParseHeredocWord(src);
    if (h) {
      let data = docs.get(h.name)?.content ?? '';
      if (h.chomp) data = chompHeredocContent(data);
      contents.push({ path: h.name, data, expand: h.expand });
    } else {
      sources.push(src);
    }
  }

  const ins: CopyInstruction = {
    ...base,
    kind,
    sources,
    dest,
    link: link.value === 'true',
    exclude: exclude.values,
  };
  if (chown.value !== '') ins.chown = chown.value;
  if (chmod.value !== '') ins.chmod = chmod.value;
  if (from && from.value !== '') ins.from = from.value;
  if (parents?.used) ins.parents = parents.value === 'true';
  if (checksum && checksum.value !== '') ins.checksum = checksum.value;
  if (keepGitDir?.used) ins.keepGitDir = keepGitDir.value === 'true';
  if (unpack?.used) ins.unpack = unpack.value === 'true';
  if (contents.length > 0) ins.sourceContents = contents;
  return ins;
}

function parseHealthcheck(
  node: AstNode,
  args: string[],
  flags: Flags,
  base: { range: SourceRange; raw: string },
): HealthcheckInstruction {
  if (args.length === 0) errAtLeastOne('HEALTHCHECK');
  const typ = args[0]!.toUpperCase();
  const rest = args.slice(1);
  if (typ === 'NONE') {
    // like BuildKit, flags are not looked at for NONE
    if (rest.length !== 0) fail('HEALTHCHECK NONE takes no arguments');
    return { ...base, kind: 'healthcheck', test: ['NONE'] };
  }
  const interval = flags.string('interval');
  const timeout = flags.string('timeout');
  const startPeriod = flags.string('start-period');
  const startInterval = flags.string('start-interval');
  const retries = flags.string('retries');
  flags.parse();

  if (typ !== 'CMD') fail(`Unknown type ${JSON.stringify(typ)} in HEALTHCHECK (try CMD)`);
  const cmd = node.json ? rest : rest.length === 0 ? [] : [rest.join(' ')];
  if (cmd.length === 0) fail('Missing command after HEALTHCHECK CMD');
  const hc: HealthcheckInstruction = {
    ...base,
    kind: 'healthcheck',
    test: [node.json ? 'CMD' : 'CMD-SHELL', ...cmd],
  };
  const iv = parseInterval('interval', interval.value);
  if (iv !== undefined) hc.interval = iv;
  const to = parseInterval('timeout', timeout.value);
  if (to !== undefined) hc.timeout = to;
  const sp = parseInterval('start-period', startPeriod.value);
  if (sp !== undefined) hc.startPeriod = sp;
  const si = parseInterval('start-interval', startInterval.value);
  if (si !== undefined) hc.startInterval = si;
  if (retries.value !== '') {
    const n = parseInt32(retries.value);
    if (n < 0) fail(`--retries cannot be negative (${n})`);
    if (n !== 0) hc.retries = n;
  }
  return hc;
}

// ---------------------------------------------------------------------------------------------

/**
 * Parses a Dockerfile. Throws ParseError (code MBUILD_PARSE) with the 1-based line range of the
 * offending instruction.
 */
export function parseDockerfile(text: string, file?: string): ParsedDockerfile {
  const rangeOf = (start: number, end: number): SourceRange =>
    file !== undefined ? { file, start, end } : { start, end };

  let ast;
  try {
    ast = parseAst(text);
  } catch (e) {
    if (e instanceof AstError) throw new ParseError(e.message, rangeOf(e.start, e.end), e);
    if (e instanceof Error) throw new ParseError(e.message, undefined, e);
    throw e;
  }

  const warnings = [...ast.warnings];
  const syntaxDirective = ast.directives.find((d) => d.name === 'syntax');
  const syntax = syntaxDirective?.value;

  const instructions: Instruction[] = [];
  let seenFrom = false;
  for (const node of ast.nodes) {
    const range = rangeOf(node.startLine, node.endLine);
    const ins = parseNode(node, range);
    if (ins.kind === 'from') seenFrom = true;
    else if (!seenFrom && ins.kind !== 'arg') throw new ParseError('no build stage in current context', range);
    instructions.push(ins);
  }
  if (!seenFrom) throw new ParseError('dockerfile contains no stages to build');

  const out: ParsedDockerfile = { escape: ast.escape, instructions, warnings };
  if (syntaxDirective) {
    out.syntax = syntaxDirective.value;
    out.syntaxRange = rangeOf(syntaxDirective.line, syntaxDirective.line);
  }
  return out;
}
