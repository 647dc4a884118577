/**
 * An instruction's `--flag[=value]` words, read as BuildKit's BFlags reads them
 * (frontend/dockerfile/instructions/bflag.go): flags are declared first, then parse() checks the
 * words against them. Errors use BuildKit's wording; an unknown flag names the closest one.
 */
import { withSuggestion } from '../../util/suggest.js';

export type FlagType = 'bool' | 'string' | 'strings';

export interface Flag {
  readonly type: FlagType;
  /** bool: "true"/"false"; string: the value (or the default) */
  value: string;
  /** strings: every value given, in order */
  values: string[];
  used: boolean;
}

/** A flag word that BuildKit refuses; the parser turns it into an error at the instruction's line. */
export class FlagError extends Error {}

const fail = (message: string): never => {
  throw new FlagError(message);
};

export class Flags {
  private readonly defs = new Map<string, Flag>();
  /** a flag declared twice (a programming error, reported by parse() as BuildKit does) */
  private setupError?: string;
  constructor(private readonly args: readonly string[]) {}

  private add(name: string, type: FlagType, value: string): Flag {
    const f: Flag = { type, value, values: [], used: false };
    if (this.defs.has(name)) this.setupError ??= `Duplicate flag defined: ${name}`;
    else this.defs.set(name, f);
    return f;
  }
  bool(name: string, def = false): Flag {
    return this.add(name, 'bool', def ? 'true' : 'false');
  }
  string(name: string, def = ''): Flag {
    return this.add(name, 'string', def);
  }
  strings(name: string): Flag {
    return this.add(name, 'strings', '');
  }

  /** The names of the flags given, in no particular order (BuildKit's Used()). */
  used(): string[] {
    return [...this.defs].filter(([, f]) => f.used).map(([n]) => n);
  }

  parse(): void {
    if (this.setupError) fail(`error setting up flags: ${this.setupError}`);
    const seen = new Set<string>();
    for (const a of this.args) {
      if (a === '--') return;
      if (!a.startsWith('--')) fail(`arg should start with -- : ${a}`);
      const eq = a.indexOf('=');
      const flagName = eq < 0 ? a : a.slice(0, eq);
      const hasValue = eq >= 0;
      const value = hasValue ? a.slice(eq + 1) : '';
      const name = flagName.slice(2);
      const flag = this.defs.get(name);
      if (!flag) return fail(withSuggestion(`unknown flag: ${flagName}`, name, [...this.defs.keys()], true));
      if (seen.has(name) && flag.type !== 'strings') fail(`duplicate flag specified: ${flagName}`);
      seen.add(name);
      flag.used = true;
      switch (flag.type) {
        case 'bool': {
          if (hasValue && value === '') fail(`missing a value on flag: ${flagName}`);
          const v = value.toLowerCase();
          if (v === 'true' || v === '') flag.value = 'true';
          else if (v === 'false') flag.value = 'false';
          else fail(`expecting boolean value for flag ${flagName}, not: ${value}`);
          break;
        }
        case 'string':
          if (!hasValue) fail(`missing a value on flag: ${flagName}`);
          flag.value = value;
          break;
        case 'strings':
          if (!hasValue) fail(`missing a value on flag: ${flagName}`);
          flag.values.push(value);
          break;
      }
    }
  }
}
