/**
 * Why a step missed the cache: each build records the inputs of every step (by stage and step
 * position, per Dockerfile and target); a miss is compared with the last build's record.
 *
 * The per-file digests of context COPYs (thousands of entries) live in a side file: it is read
 * only to explain a changed COPY, and written only when the inputs changed, so a rebuild that
 * changed nothing neither parses nor writes it.
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { digestOf } from './keys.js';
import { writeFileAtomic } from '../../store/fsutil.js';

export interface StepRecord {
  inputs: Record<string, string>;
  /** per-file content digests of a COPY from the context, to name the files that changed */
  files?: Record<string, string>;
}

const NAMES: Record<string, string> = {
  parent: 'an earlier step changed',
  args: 'the command changed',
  env: 'the environment (ENV/ARG) changed',
  user: 'the user changed',
  cwd: 'the working directory changed',
  network: 'the network mode changed',
  sources: 'the source list changed',
  dest: 'the destination changed',
  content: 'the copied files changed',
  from: 'the stage or image copied from changed',
};

type Inputs = Record<string, Record<string, string>>;
type Files = Record<string, Record<string, string>>;

function readJson<T>(file: string): { value: T; text: string } | undefined {
  try {
    const text = readFileSync(file, 'utf8');
    return { value: JSON.parse(text) as T, text };
  } catch {
    return undefined; // no earlier build, or an unreadable record: nothing to compare with
  }
}

export class MissExplainer {
  private readonly next: Record<string, StepRecord> = {};
  private lastFiles: Files | undefined;
  /** `base`: the records' path without its suffix (`.inputs.json`, `.files.json`) */
  private constructor(
    private readonly base: string,
    private readonly last: Inputs,
    private readonly lastText: string,
  ) {}

  static async load(cacheDir: string, dockerfile: string, target: string | undefined): Promise<MissExplainer> {
    const base = path.join(cacheDir, 'last', digestOf({ dockerfile: path.resolve(dockerfile), target: target ?? '' }).slice(7, 39));
    const last = readJson<Inputs>(`${base}.inputs.json`);
    return new MissExplainer(base, last?.value ?? {}, last?.text ?? '');
  }

  record(position: string, rec: StepRecord): void {
    this.next[position] = rec;
  }

  /** Did the last local build of this Dockerfile and target record this step? */
  knows(position: string): boolean {
    const inputs = this.last[position];
    return Boolean(inputs) && typeof inputs === 'object';
  }

  /** Why this step missed, compared with the last local build. */
  explain(position: string, rec: StepRecord): string {
    const inputs = this.last[position];
    if (!inputs || typeof inputs !== 'object') return 'not built before';
    this.lastFiles ??= readJson<Files>(`${this.base}.files.json`)?.value ?? {};
    return compareRecords({ inputs, files: this.lastFiles[position] }, rec);
  }

  /** What this build recorded (for a shared cache to carry to other runners). */
  recorded(): Record<string, StepRecord> {
    return this.next;
  }

  async save(): Promise<void> {
    const positions = Object.keys(this.next);
    if (positions.length === 0) return;
    const inputs: Inputs = {};
    const files: Files = {};
    for (const p of positions) {
      inputs[p] = this.next[p]!.inputs;
      if (this.next[p]!.files) files[p] = this.next[p]!.files!;
    }
    // the files are part of the inputs (the content digest): same inputs, same files
    const text = JSON.stringify(inputs);
    if (text === this.lastText) return; // a rebuild that changed nothing
    // at once (each waits for its fsync): a pair half-written only blurs a later miss's explanation
    await Promise.all([
      writeFileAtomic(`${this.base}.files.json`, JSON.stringify(files)),
      writeFileAtomic(`${this.base}.inputs.json`, text),
      // the one-file record of earlier versions (per-file digests inline) is replaced
      rm(`${this.base}.json`, { force: true }),
    ]);
  }
}

/** `f:644:<sha>` → mode and content, to say "mode 664 vs 644" when only the mode changed. */
function describeFile(prev: string | undefined, cur: string | undefined, name: string): string {
  const p = prev?.split(':');
  const c = cur?.split(':');
  if (p && c && p[0] === c[0] && p[2] === c[2] && p[1] !== c[1]) return `${name} (mode ${c[1]} vs ${p[1]})`;
  return name;
}

/** Why a step's inputs differ from an earlier record of the same step (position). */
export function compareRecords(prev: StepRecord, rec: StepRecord): string {
  const changed = Object.keys({ ...prev.inputs, ...rec.inputs }).filter((k) => prev.inputs[k] !== rec.inputs[k]);
  if (changed.length === 0) return 'the cached layer was removed (pruned?) or --no-cache';
  // an earlier step's change explains everything after it: say only that
  if (changed.includes('parent')) return NAMES.parent;
  const reasons: string[] = [];
  for (const k of changed) {
    if (k === 'content' && prev.files && rec.files) {
      const names = Object.keys({ ...prev.files, ...rec.files }).filter((f) => prev.files![f] !== rec.files![f]).sort();
      const shown = names.slice(0, 5).map((f) => describeFile(prev.files![f], rec.files![f], f)).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
      reasons.push(names.length ? `files changed: ${shown}` : NAMES.content);
    } else reasons.push(NAMES[k] ?? `${k} changed`);
  }
  return reasons.join('; ');
}
