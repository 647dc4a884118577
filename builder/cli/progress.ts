/** Progress output in the spirit of `docker build --progress=plain`: one numbered line per step. */
import type { ProgressReporter, StepHandle } from '../../util/progress.js';

export class Progress implements ProgressReporter {
  private next = 1;
  private readonly start = Date.now();
  constructor(private readonly out: NodeJS.WritableStream = process.stderr, private readonly quiet = false) {}

  private write(line: string): void {
    if (!this.quiet) this.out.write(line + '\n');
  }

  info(text: string): void {
    this.write(text);
  }

  step(label: string): StepHandle {
    const n = this.next++;
    const t0 = Date.now();
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
    };
    return {
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
    };
  }

  total(): string {
    return ((Date.now() - this.start) / 1000).toFixed(1) + 's';
  }
}
