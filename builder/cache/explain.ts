/**
 * Why a step missed the cache: each build records the inputs of every step (by stage and step
 * position, per Dockerfile and target); a miss is compared with the last build's record.
 */
import { readFileSync } from 'node:fs';
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

export class MissExplainer {
  private readonly next: Record<string, StepRecord> = {};
  private constructor(
    private readonly file: string,
    private readonly last: Record<string, StepRecord>,
    private readonly lastText: string,
  ) {}

  static async load(cacheDir: string, dockerfile: string, target: string | undefined): Promise<MissExplainer> {
    const file = path.join(cacheDir, 'last', digestOf({ dockerfile: path.resolve(dockerfile), target: target ?? '' }).slice(7, 39) + '.json');
    let last: Record<string, StepRecord> = {};
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
      last = JSON.parse(text) as Record<string, StepRecord>;
    } catch {
      /* no earlier build */
    }
    return new MissExplainer(file, last, text);
  }

  record(position: string, rec: StepRecord): void {
    this.next[position] = rec;
  }

  explain(position: string, rec: StepRecord): string {
    const prev = this.last[position];
    if (!prev) return 'not built before';
    const changed = Object.keys({ ...prev.inputs, ...rec.inputs }).filter((k) => prev.inputs[k] !== rec.inputs[k]);
    if (changed.length === 0) return 'the cached layer was removed (pruned?) or --no-cache';
    const reasons: string[] = [];
    for (const k of changed) {
      if (k === 'content' && prev.files && rec.files) {
        const names = Object.keys({ ...prev.files, ...rec.files }).filter((f) => prev.files![f] !== rec.files![f]).sort();
        const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
        reasons.push(names.length ? `files changed: ${shown}` : NAMES.content);
      } else reasons.push(NAMES[k] ?? `${k} changed`);
    }
    // an earlier step's change explains everything after it: say only that
    if (changed.includes('parent')) return NAMES.parent;
    return reasons.join('; ');
  }

  async save(): Promise<void> {
    if (Object.keys(this.next).length === 0) return;
    const text = JSON.stringify(this.next);
    if (text === this.lastText) return; // a rebuild that changed nothing
    await writeFileAtomic(this.file, text);
  }
}
