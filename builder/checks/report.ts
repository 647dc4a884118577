/** How check results are shown: BuildKit's build summary, its --check report, and error=true. */
import type { CheckResult, CheckWarning } from './lint.js';

/** `lint violation found for rules: A, B` when `error=true` and something was found. */
export function violationMessage(result: CheckResult): string | undefined {
  if (!result.errorOnWarnings || result.warnings.length === 0) return undefined;
  return `lint violation found for rules: ${[...new Set(result.warnings.map((w) => w.rule))].join(', ')}`;
}

/** After a build (stderr), like buildx's ` 2 warnings found ...:` and one line each. */
export function formatSummary(warnings: CheckWarning[], file: string): string {
  if (warnings.length === 0) return '';
  const n = warnings.length;
  let out = ` ${n} warning${n === 1 ? '' : 's'} found (mbuild build --check shows them in full):\n`;
  for (const w of warnings) out += ` - ${w.rule}: ${w.message} (${file}:${w.start})\n`;
  return out;
}

/** `mbuild build --check`: buildx's "Check complete" report, each warning with its source lines. */
export function formatCheckReport(result: CheckResult, file: string, source: string): string {
  const n = result.warnings.length;
  let out = '';
  if (n > 0) out += `Check complete, ${n === 1 ? '1 warning has been found!' : `${n} warnings have been found!`}\n`;
  out += formatWarnings(result.warnings, file, source);
  if (result.error) {
    if (n > 0) out += '\n';
    out += `ERROR: ${result.error.message}\n`;
    if (result.error.start !== undefined) out += sourceSnippet(file, source, result.error.start, result.error.end ?? result.error.start);
  } else if (n === 0) out += 'Check complete, no warnings found.\n';
  return out;
}

function formatWarnings(warnings: CheckWarning[], file: string, source: string): string {
  let out = '';
  for (const w of warnings) {
    out += `\nWARNING: ${w.rule} - ${w.url}\n${w.message}\n`;
    out += sourceSnippet(file, source, w.start, w.end);
  }
  return out;
}

/** BuildKit's errdefs Source.Print: the lines with a little context, the instruction marked `>>>`. */
export function sourceSnippet(file: string, source: string, start: number, end: number): string {
  const lines = source.split('\n');
  if (start < 1 || start > lines.length) return '';
  let s = start;
  let e = Math.min(end, lines.length);
  const pad = s === e ? 4 : 2;
  for (let p = 0; p < pad; ) {
    if (s > 1) {
      s--;
      p++;
    }
    if (e !== lines.length) {
      e++;
      p++;
    }
    p++;
  }
  let out = `${file}:${start}\n--------------------\n`;
  for (let i = s; i <= e; i++) {
    const mark = i >= start && i <= end ? '>>>' : '   ';
    out += ` ${String(i).padStart(3)} | ${mark} ${lines[i - 1]}\n`;
  }
  return out + '--------------------\n';
}
