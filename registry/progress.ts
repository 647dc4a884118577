/** Bytes and layers of a pull or push, as notes on one step of the build's progress display. */
import { Transform } from 'node:stream';
import type { StepHandle } from '../util/progress.js';
import { humanBytes } from '../util/format.js';

export { humanBytes };

export interface BlobProgress {
  /** a Transform that counts the bytes passing through */
  meter(): Transform;
  /** count bytes sent some other way */
  add(n: number): void;
  done(status: string): void;
}

export class TransferProgress {
  bytes = 0;
  blobs = 0;
  private readonly t0 = Date.now();
  constructor(private readonly step?: StepHandle) {}

  note(text: string): void {
    this.step?.note(text);
  }

  blob(digest: string, size: number, label: string): BlobProgress {
    const short = digest.slice(7, 19);
    let seen = 0;
    let last = Date.now();
    const emitEvery = 1000;
    const add = (n: number) => {
      seen += n;
      this.bytes += n;
      if (Date.now() - last >= emitEvery) {
        last = Date.now();
        this.step?.note(`${label} ${short} ${humanBytes(seen)} / ${humanBytes(size)}`);
      }
    };
    return {
      add,
      meter: () =>
        new Transform({
          transform: (chunk: Buffer, _e, cb) => {
            add(chunk.length);
            cb(null, chunk);
          },
        }),
      done: (status) => {
        this.blobs++;
        this.step?.note(`${label} ${short} ${status}`);
      },
    };
  }

  summary(): string {
    const s = (Date.now() - this.t0) / 1000;
    return `${humanBytes(this.bytes)} in ${s.toFixed(1)}s`;
  }
}
