/**
 * `--progress tty` over `--host`: the server's worker writes its progress as rawjson (BuildKit's
 * SolveStatus objects, one a line: cli/progress.ts RawJsonProgress) and this replays them into the
 * same live display a local build draws. Vertexes open and end steps, statuses are a step's notes,
 * logs its output (or, with no vertex, a message above the display), warnings messages too. A line
 * that is not JSON (the worker's closing "error: ..." line) is written below the last frame.
 */
import type { StepHandle } from '../util/progress.js';
import type { Progress } from './progress.js';

interface Vertex {
  digest: string;
  name: string;
  completed?: string;
  cached?: boolean;
  error?: string;
}
interface SolveStatus {
  vertexes?: Vertex[];
  statuses?: { vertex: string; name: string }[];
  logs?: { vertex: string; data: string }[];
  warnings?: { short: string }[];
}

export class ProgressReplay {
  private readonly steps = new Map<string, { handle: StepHandle; ended: boolean }>();
  private shown = false;
  private closed = false;

  /** rewrite: the server's paths as the client's (its context copy, its output files) */
  constructor(
    private readonly display: Progress,
    private readonly rewrite: (text: string) => string = (t) => t,
  ) {}

  /** whether anything was drawn yet (a refused flag is its one line, with no display before it) */
  get started(): boolean {
    return this.shown;
  }

  /** a step the client ran before the server's first line (the context transfer), with its notes */
  clientStep(label: string, startedAt: number, notes: string[]): void {
    this.shown = true;
    const h = this.display.step(label, startedAt);
    for (const n of notes) h.note(n);
    h.done();
  }

  /** one line of the server's progress */
  line(text: string): void {
    let status: SolveStatus;
    try {
      status = JSON.parse(text) as SolveStatus;
      if (typeof status !== 'object' || status === null) throw new Error('not an object');
    } catch {
      // the worker's own last words: after the final frame, as a local build prints them
      this.close();
      process.stderr.write(this.rewrite(text) + '\n');
      return;
    }
    this.shown = true;
    const b64 = (s: string) => this.rewrite(Buffer.from(s, 'base64').toString());
    for (const v of status.vertexes ?? []) {
      let s = this.steps.get(v.digest);
      if (!s) this.steps.set(v.digest, (s = { handle: this.display.step(this.rewrite(v.name)), ended: false }));
      if (!v.completed || s.ended) continue;
      s.ended = true;
      if (v.error?.startsWith('context canceled')) s.handle.cancel();
      else if (v.error) s.handle.fail();
      else s.handle.done(v.cached ? 'CACHED' : undefined);
    }
    for (const st of status.statuses ?? []) this.steps.get(st.vertex)?.handle.note(this.rewrite(st.name));
    for (const l of status.logs ?? []) {
      const s = l.vertex ? this.steps.get(l.vertex) : undefined;
      if (s) s.handle.output(Buffer.from(b64(l.data)));
      else this.display.info(b64(l.data).replace(/\n$/, ''));
    }
    for (const w of status.warnings ?? []) this.display.info(`WARNING: ${b64(w.short)}`);
  }

  /** the call was cancelled (Ctrl-C): what still ran is shown CANCELED */
  cancel(): void {
    for (const s of this.steps.values()) if (!s.ended) s.handle.cancel();
    this.close();
  }

  /** the last frame (nothing if nothing was shown) */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.shown) this.display.close();
  }
}
