/**
 * Build progress on stderr, in the modes of `docker buildx build --progress`:
 * - plain: one numbered line per step and per output line (`#5 0.123 hello`), as BuildKit's plain;
 * - tty: a live display redrawn in place: running steps with their timers and last output lines,
 *   finished steps collapsed to one line (CACHED marked, peak memory and CPU kept), the error's
 *   last lines under a failed step, CANCELED on the steps a failure or Ctrl-C stopped;
 * - rawjson: one JSON object a line, BuildKit's SolveStatus (vertexes, statuses, logs);
 * - quiet: nothing (the image ID goes to stdout).
 * `auto` is tty on a terminal, plain otherwise; BUILDKIT_PROGRESS sets the default.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../util/errors.js';
import type { ProgressReporter, StepHandle } from '../util/progress.js';

export type { StepHandle };

export type ProgressMode = 'plain' | 'tty' | 'rawjson' | 'quiet';
const MODES = ['auto', 'plain', 'tty', 'rawjson', 'quiet'];

/** The mode from --progress, else $BUILDKIT_PROGRESS, else auto; -q is quiet. */
export function progressMode(flag: string | undefined, quiet: boolean, out: { isTTY?: boolean } = process.stderr): ProgressMode {
  const fromEnv = process.env.BUILDKIT_PROGRESS || undefined;
  const want = flag ?? fromEnv ?? 'auto';
  if (!MODES.includes(want)) throw new UsageError(`${flag !== undefined ? '--progress' : 'BUILDKIT_PROGRESS'} ${want}: use auto, plain, tty, rawjson or quiet`);
  if (quiet || want === 'quiet') return 'quiet';
  if (want === 'tty' && !out.isTTY && flag !== undefined) throw new UsageError('--progress tty needs a terminal on stderr (use plain)');
  if (want === 'auto' || want === 'tty') return out.isTTY ? 'tty' : 'plain';
  return want as ProgressMode;
}

export function createProgress(mode: ProgressMode, out: NodeJS.WritableStream = process.stderr): Progress {
  if (mode === 'tty') return new TtyProgress(out as NodeJS.WriteStream);
  if (mode === 'rawjson') return new RawJsonProgress(out);
  return new Progress(out, mode === 'quiet');
}

/** plain (and quiet): the base every mode shares. */
export class Progress implements ProgressReporter {
  protected next = 1;
  protected readonly start = Date.now();
  /** plain mode's running steps, for Ctrl-C */
  private readonly running = new Map<number, () => void>();
  private interruptHandler?: () => void;
  constructor(protected readonly out: NodeJS.WritableStream = process.stderr, protected readonly quiet = false) {}

  /** Ctrl-C: mark the running steps CANCELED, then let the signal take its course. */
  watchInterrupt(): void {
    if (this.quiet || this.interruptHandler) return;
    this.interruptHandler = () => {
      for (const cancel of [...this.running.values()]) cancel();
      this.close();
      process.off('SIGINT', this.interruptHandler!);
      if (process.listenerCount('SIGINT') === 0) process.kill(process.pid, 'SIGINT');
    };
    process.on('SIGINT', this.interruptHandler);
  }

  protected write(line: string): void {
    if (!this.quiet) this.out.write(line + '\n');
  }

  info(text: string): void {
    this.write(text);
  }

  /** startedAt: when the step began, if before now (a remote build's context transfer) */
  step(label: string, startedAt?: number): StepHandle {
    const n = this.next++;
    const t0 = startedAt ?? Date.now();
    this.write(`#${n} ${label}`);
    let partial = '';
    const elapsed = () => ((Date.now() - t0) / 1000).toFixed(3);
    const emit = (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) this.write(`#${n} ${elapsed()} ${l}`);
    };
    const flush = () => {
      if (partial) this.write(`#${n} ${elapsed()} ${partial}`);
      partial = '';
      this.running.delete(n);
    };
    const handle: StepHandle = {
      output: (chunk) => emit(chunk.toString()),
      note: (text) => this.write(`#${n} ${text}`),
      done: (extra) => {
        flush();
        this.write(`#${n} ${extra ? extra + ' ' : ''}DONE ${elapsed()}s`);
      },
      fail: () => {
        flush();
        this.write(`#${n} ERROR after ${elapsed()}s`);
      },
      cancel: () => {
        if (!this.running.has(n)) return;
        flush();
        this.write(`#${n} CANCELED`);
      },
    };
    this.running.set(n, handle.cancel);
    return handle;
  }

  total(): string {
    return ((Date.now() - this.start) / 1000).toFixed(1) + 's';
  }

  /** the end of the build: a live display draws its last frame */
  close(): void {
    if (this.interruptHandler) process.off('SIGINT', this.interruptHandler);
  }
}

/** BuildKit's vertex digests are of LLB ops; here one of the step's number and label. */
function vertexDigest(n: number, label: string): string {
  return 'sha256:' + createHash('sha256').update(`${n}\0${label}`).digest('hex');
}

/** `--progress rawjson`: one SolveStatus object a line (the shape buildx prints). */
class RawJsonProgress extends Progress {
  private emit(status: { vertexes?: unknown[]; statuses?: unknown[]; logs?: unknown[]; warnings?: unknown[] }): void {
    this.out.write(JSON.stringify(status) + '\n');
  }

  override info(text: string): void {
    // messages outside a step (warnings, naming) go out as a log of no vertex, as BuildKit's progress does
    if (text.startsWith('WARNING: ')) this.emit({ warnings: [{ vertex: '', level: 1, short: Buffer.from(text.slice(9)).toString('base64') }] });
    else this.emit({ logs: [{ vertex: '', stream: 2, data: Buffer.from(text + '\n').toString('base64'), timestamp: new Date().toISOString() }] });
  }

  override step(label: string): StepHandle {
    const n = this.next++;
    const digest = vertexDigest(n, label);
    const started = new Date().toISOString();
    const vertex = { digest, name: label, started };
    this.emit({ vertexes: [vertex] });
    const log = (stream: number, data: Buffer | string) => this.emit({ logs: [{ vertex: digest, stream, data: Buffer.from(data).toString('base64'), timestamp: new Date().toISOString() }] });
    return {
      output: (chunk) => log(1, chunk),
      // notes (peak memory, transfer counts) are statuses of the vertex
      note: (text) => this.emit({ statuses: [{ id: text.split(' ').slice(0, 2).join(' '), vertex: digest, name: text, timestamp: new Date().toISOString() }] }),
      done: (extra) => {
        // what the step ends with (an index digest, a cache's step count) is its last status, so a
        // display replaying this stream (a remote --progress tty) shows it as a local one does
        if (extra && extra !== 'CACHED') this.emit({ statuses: [{ id: extra.split(' ').slice(0, 2).join(' '), vertex: digest, name: extra, timestamp: new Date().toISOString() }] });
        this.emit({ vertexes: [{ ...vertex, completed: new Date().toISOString(), ...(extra === 'CACHED' ? { cached: true } : {}) }] });
      },
      fail: () => this.emit({ vertexes: [{ ...vertex, completed: new Date().toISOString(), error: 'failed' }] }),
      cancel: () => this.emit({ vertexes: [{ ...vertex, completed: new Date().toISOString(), error: 'context canceled: canceled' }] }),
    };
  }
}

interface TtyStep {
  n: number;
  label: string;
  t0: number;
  t1?: number;
  state: 'running' | 'done' | 'cached' | 'error' | 'canceled';
  lines: string[];
  partial: string;
  notes: string[];
}

const SHOWN_LINES = 6;

/** `--progress tty`: the live display, redrawn in place at most 10 times a second. */
export class TtyProgress extends Progress {
  private readonly steps: TtyStep[] = [];
  private drawn = 0;
  private timer?: NodeJS.Timeout;
  private closed = false;
  private readonly onSigint = () => {
    // Ctrl-C: show what was running as canceled, then let the signal take its course
    for (const s of this.steps) if (s.state === 'running') this.finish(s, 'canceled');
    this.close();
    process.off('SIGINT', this.onSigint);
    if (process.listenerCount('SIGINT') === 0) process.kill(process.pid, 'SIGINT');
  };
  constructor(out: NodeJS.WriteStream) {
    super(out, false);
  }

  override watchInterrupt(): void {
    process.on('SIGINT', this.onSigint);
  }

  private cols(): number {
    return (this.out as NodeJS.WriteStream).columns || 80;
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.render();
    }, 100);
  }

  private frame(final: boolean): string[] {
    const now = Date.now();
    const secs = (a: number, b?: number) => (((b ?? now) - a) / 1000).toFixed(1) + 's';
    const doneCount = this.steps.filter((s) => s.state !== 'running').length;
    const lines = [`[+] Building ${secs(this.start)} (${doneCount}/${this.steps.length})${final ? ' FINISHED' : ''}`];
    const w = this.cols();
    const fit = (left: string, right = '') => {
      const room = w - right.length - 1;
      const l = left.length > room ? left.slice(0, Math.max(0, room - 3)) + '...' : left;
      return right ? l.padEnd(room) + ' ' + right : l;
    };
    for (const s of this.steps) {
      const tag = s.state === 'cached' ? 'CACHED ' : s.state === 'error' ? 'ERROR ' : s.state === 'canceled' ? 'CANCELED ' : '';
      lines.push(fit(` => ${tag}${s.label}`, s.state === 'cached' ? '0.0s' : secs(s.t0, s.t1)));
      // a finished step keeps what it measured (peak memory, cpu, transfers), not why it ran
      for (const note of s.notes) if (s.state === 'running' || !note.startsWith('cache miss')) lines.push(fit(` => => ${note}`));
      // running steps show their last lines; a failed one keeps them
      if (s.state === 'running' || s.state === 'error') {
        const tail = [...s.lines, ...(s.partial ? [s.partial] : [])].slice(-SHOWN_LINES);
        for (const l of tail) lines.push(fit(` => => # ${l.replace(/\r/g, '')}`));
      }
    }
    return lines;
  }

  private render(final = false): void {
    const lines = this.frame(final);
    let buf = this.drawn ? `\x1b[${this.drawn}A\r` : '';
    for (const l of lines) buf += `\x1b[K${l}\n`;
    buf += '\x1b[J';
    this.out.write(buf);
    this.drawn = lines.length;
  }

  override info(text: string): void {
    // above the live area: clear it, write the message, draw again below
    if (this.drawn) this.out.write(`\x1b[${this.drawn}A\r\x1b[J`);
    this.drawn = 0;
    this.out.write(text + '\n');
    if (!this.closed) this.render();
  }

  private finish(s: TtyStep, state: TtyStep['state']): void {
    if (s.state !== 'running') return;
    s.state = state;
    s.t1 = Date.now();
    if (s.partial) s.lines.push(s.partial);
    s.partial = '';
    this.schedule();
  }

  override step(label: string, startedAt?: number): StepHandle {
    const s: TtyStep = { n: this.next++, label, t0: startedAt ?? Date.now(), state: 'running', lines: [], partial: '', notes: [] };
    this.steps.push(s);
    this.schedule();
    if (!this.timer) this.schedule();
    const ticker = setInterval(() => this.schedule(), 200);
    ticker.unref();
    const end = (state: TtyStep['state']) => {
      clearInterval(ticker);
      this.finish(s, state);
    };
    return {
      output: (chunk) => {
        const parts = (s.partial + chunk.toString()).split('\n');
        s.partial = parts.pop() ?? '';
        s.lines.push(...parts);
        if (s.lines.length > 50) s.lines.splice(0, s.lines.length - 50);
        this.schedule();
      },
      note: (text) => {
        // a transfer's running counters replace their previous line
        const key = text.split(' ').slice(0, 2).join(' ');
        const i = s.notes.findIndex((x) => x.startsWith(key));
        if (i >= 0 && !text.startsWith('cache miss')) s.notes[i] = text;
        else s.notes.push(text);
        this.schedule();
      },
      done: (extra) => {
        if (extra && extra !== 'CACHED') s.notes.push(extra);
        end(extra === 'CACHED' ? 'cached' : 'done');
      },
      fail: () => end('error'),
      cancel: () => end('canceled'),
    };
  }

  override close(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.render(true);
    this.closed = true;
    process.off('SIGINT', this.onSigint);
    super.close();
  }
}
