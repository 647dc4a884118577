/**
 * Which checks run and whether they fail the build: the `# check=` directive (or the
 * BUILDKIT_DOCKERFILE_CHECK build argument, which replaces it), `skip=A,B|all`,
 * `experimental=A,B|all`, `error=true`, separated by `;` (BuildKit linter.ParseLintOptions);
 * a `# check=` comment right before an instruction adds skips for that instruction only.
 */
import { RULES, type RuleName } from './rules.js';

export interface CheckConfig {
  skipAll: boolean;
  skip: ReadonlySet<string>;
  experimentalAll: boolean;
  experimental: ReadonlySet<string>;
  /** error=true: any warning fails the build */
  error: boolean;
}

export const DEFAULT_CHECK_CONFIG: CheckConfig = { skipAll: false, skip: new Set(), experimentalAll: false, experimental: new Set(), error: false };

export class CheckOptionError extends Error {}

/** Go's strconv.ParseBool. */
function parseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

const names = (v: string) => v.split(',').map((r) => r.trim());

/** Parses `skip=A,B;error=true`; throws CheckOptionError worded as BuildKit's. */
export function parseCheckOptions(text: string): CheckConfig {
  const s = text.trim();
  if (s === '') return DEFAULT_CHECK_CONFIG;
  // Go's strings.SplitN(s, ";", 3): the third part keeps any further ';'
  const raw = s.split(';');
  const parts = raw.length > 3 ? [raw[0]!, raw[1]!, raw.slice(2).join(';')] : raw;
  const out = { skipAll: false, skip: new Set<string>(), experimentalAll: false, experimental: new Set<string>(), error: false };
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq < 0) throw new CheckOptionError(`invalid check option ${JSON.stringify(p)}`);
    const k = p.slice(0, eq).trim();
    const v = p.slice(eq + 1).trim();
    switch (k) {
      case 'skip':
        if (v === 'all') out.skipAll = true;
        else out.skip = new Set(names(v));
        break;
      case 'experimental':
        if (v === 'all') out.experimentalAll = true;
        else out.experimental = new Set(names(v));
        break;
      case 'error': {
        const b = parseBool(v);
        if (b === undefined) throw new CheckOptionError(`failed to parse check option ${JSON.stringify(p)}: strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax`);
        out.error = b;
        break;
      }
      default:
        throw new CheckOptionError(`invalid check option ${JSON.stringify(k)}`);
    }
  }
  return out;
}

/** The config with another's skips and experimental rules added (error is not inherited from comments). */
export function mergeConfig(base: CheckConfig, other: CheckConfig): CheckConfig {
  return {
    skipAll: base.skipAll || other.skipAll,
    skip: new Set([...base.skip, ...other.skip]),
    experimentalAll: base.experimentalAll || other.experimentalAll,
    experimental: new Set([...base.experimental, ...other.experimental]),
    error: base.error,
  };
}

const CHECK_COMMENT = /^check[\t\n\f\r ]*=[\t\n\f\r ]*(.*)$/i;

/**
 * The config for one instruction: the first `check=` among the comments right before it is
 * merged in (its value ends at the first space); a malformed one is ignored, as BuildKit does.
 */
export function configForComments(base: CheckConfig, comments: readonly string[]): CheckConfig {
  for (const c of comments) {
    const m = CHECK_COMMENT.exec(c);
    if (!m) continue;
    const value = m[1]!.trim().split(' ')[0]!;
    try {
      return mergeConfig(base, parseCheckOptions(value));
    } catch {
      return base;
    }
  }
  return base;
}

/** Whether a rule runs under this config. */
export function ruleEnabled(config: CheckConfig, name: RuleName): boolean {
  const r = RULES[name];
  if ('experimental' in r && r.experimental) return config.experimentalAll || config.experimental.has(name);
  return !config.skipAll && !config.skip.has(name);
}

const DIRECTIVE_LINE = /^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);

/**
 * The `# check=` directive's value as BuildKit's ParseDirective reads it: among the `#` lines at the
 * very top (after a BOM and a `#!` line), cut at the first space (`skip=all // note` → `skip=all`).
 */
export function checkDirective(text: string): string | undefined {
  let lines = text.replace(/^\uFEFF/, '').split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines[0]?.startsWith('#!')) lines = lines.slice(1);
  const seen = new Set<string>();
  for (const line of lines) {
    if (!line.startsWith('#')) break;
    const m = DIRECTIVE_LINE.exec(line.slice(1).replace(/^\p{White_Space}+/u, ''));
    if (!m) break;
    const name = m[1]!.toLowerCase();
    if (!KNOWN_DIRECTIVES.has(name) || seen.has(name)) break;
    seen.add(name);
    if (name === 'check') return m[2]!.split(' ')[0]!;
  }
  return undefined;
}
