/** Docker-style argument parsing: `--flag value`, `--flag=value`, `-t x`, repeatable flags. */
import { UsageError } from '../../util/errors.js';

export interface FlagSpec {
  /** names, e.g. ['-t', '--tag'] */
  names: string[];
  key: string;
  kind: 'bool' | 'string' | 'list';
}

export interface ParsedArgs {
  flags: Record<string, string | boolean | string[] | undefined>;
  positional: string[];
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
    if (!spec) throw new UsageError(`unknown flag: ${name}`);
    if (spec.kind === 'bool') {
      flags[spec.key] = eq > 0 ? a.slice(eq + 1) !== 'false' : true;
      continue;
    }
    let value: string;
    if (a.startsWith('--') && eq > 0) value = a.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: ${name}`);
      value = argv[++i];
    }
    if (spec.kind === 'list') (flags[spec.key] as string[]).push(value);
    else flags[spec.key] = value;
  }
  return { flags, positional };
}

/** `--output type=oci,dest=out.tar` (or a bare path = local directory, as BuildKit takes it). */
export interface OutputSpec {
  type: 'oci' | 'docker' | 'tar' | 'local' | 'image';
  dest?: string;
}

export function parseOutput(spec: string): OutputSpec {
  if (!spec.includes('=')) return { type: spec === '-' ? 'tar' : 'local', dest: spec };
  const fields: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new UsageError(`invalid --output value "${spec}": expected key=value pairs`);
    fields[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const type = fields.type ?? 'local';
  if (!['oci', 'docker', 'tar', 'local', 'image'].includes(type)) throw new UsageError(`unsupported output type "${type}" (oci, docker, tar, local, image)`);
  const dest = fields.dest;
  if (type !== 'image' && !dest) throw new UsageError(`--output type=${type} needs dest=PATH`);
  return { type: type as OutputSpec['type'], dest };
}
