/** Docker-style argument parsing: `--flag value`, `--flag=value`, `-t x`, repeatable flags. */
import { MbuildError, UsageError } from './errors.js';

export interface FlagSpec {
  /** names, e.g. ['-t', '--tag'] */
  names: string[];
  key: string;
  kind: 'bool' | 'string' | 'list';
  /** one line for `--help` (VALUE placeholder in `arg`); hidden flags are left out of it */
  help?: string;
  arg?: string;
  hidden?: boolean;
  /** a string flag given without "=VALUE" takes this value and leaves the next word alone (pflag's NoOptDefVal) */
  optional?: string;
}

export interface ParsedArgs {
  flags: Record<string, string | boolean | string[] | undefined>;
  positional: string[];
}

/** `--help` (or `-h` where no flag of the command takes it) anywhere among the options. */
export class HelpRequested extends MbuildError {
  constructor() {
    super('MBUILD_USAGE', 'help requested');
  }
}

export function parseArgs(argv: string[], specs: FlagSpec[]): ParsedArgs {
  const flags: ParsedArgs['flags'] = {};
  const positional: string[] = [];
  for (const s of specs) if (s.kind === 'list') flags[s.key] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const spec = specs.find((s) => s.names.includes(name));
    if (!spec) {
      if (name === '--help' || name === '-h') throw new HelpRequested();
      throw new UsageError(`unknown flag: ${name}`);
    }
    if (spec.kind === 'bool') {
      if (eq > 0 && !['true', 'false', '1', '0'].includes(a.slice(eq + 1))) throw new UsageError(`invalid value "${a.slice(eq + 1)}" for ${name}: use true or false`);
      flags[spec.key] = eq > 0 ? a.slice(eq + 1) === 'true' || a.slice(eq + 1) === '1' : true;
      continue;
    }
    let value: string;
    if (a.startsWith('--') && eq > 0) value = a.slice(eq + 1);
    else if (spec.optional !== undefined) value = spec.optional;
    else {
      if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: ${name}`);
      value = argv[++i];
    }
    if (spec.kind === 'list') (flags[spec.key] as string[]).push(value);
    else flags[spec.key] = value;
  }
  return { flags, positional };
}

/** The options part of a command's help, from its flag table. */
export function formatFlags(specs: FlagSpec[]): string {
  const rows = specs
    .filter((s) => !s.hidden && s.help)
    .map((s) => {
      const short = s.names.find((n) => /^-[^-]/.test(n));
      const long = s.names.filter((n) => n.startsWith('--'));
      const value = s.kind === 'bool' ? '' : s.optional !== undefined ? `[=${s.arg ?? 'VALUE'}]` : ` ${s.arg ?? 'VALUE'}`;
      const names = (short ? `${short}, ` : '    ') + long.join(', ') + value;
      return [names, s.help!];
    });
  const w = Math.max(0, ...rows.map((r) => r[0].length)) + 2;
  return rows.map(([n, h]) => `  ${n.padEnd(w)}${h}`).join('\n') + '\n';
}

/** `--build-arg K=V` values as docker reads them: `K` alone takes K from the environment (if set). */
export function buildArgValues(list: string[], env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq < 0) {
      if (env[kv] !== undefined) out[kv] = env[kv]!;
    } else out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}
