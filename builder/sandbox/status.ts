/** The helper's status records on its stderr: "\0MBUILD-HELPER:<nonce>:<kind>:<payload>\n". */

export type Status = { kind: 'exit' | 'signal' | 'error'; payload: string };

/**
 * Splits the helper's stderr into the command's output and the helper's records, holding back bytes
 * that might start a record. exit/signal/error end the run; other kinds (netns) go to onEvent.
 */
export class StatusFilter {
  private readonly header: Buffer;
  private pending = Buffer.alloc(0);
  status?: Status;

  constructor(
    nonce: string,
    private readonly emit: (b: Buffer) => void,
    private readonly onEvent: (kind: string, payload: string) => void = () => undefined,
  ) {
    this.header = Buffer.from(`\0MBUILD-HELPER:${nonce}:`, 'latin1');
  }

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    for (;;) {
      const at = buf.indexOf(this.header);
      if (at < 0) break;
      if (at > 0) this.emit(buf.subarray(0, at));
      const nl = buf.indexOf(0x0a, at + this.header.length);
      if (nl < 0) {
        this.pending = Buffer.from(buf.subarray(at));
        return;
      }
      const rec = buf.subarray(at + this.header.length, nl).toString('utf8');
      const colon = rec.indexOf(':');
      const kind = rec.slice(0, colon);
      const payload = rec.slice(colon + 1);
      if (kind === 'exit' || kind === 'signal' || kind === 'error') this.status = { kind, payload };
      else this.onEvent(kind, payload);
      buf = buf.subarray(nl + 1);
    }
    // keep a tail that could be the beginning of a header
    let keep = Math.min(this.header.length - 1, buf.length);
    while (keep > 0 && !buf.subarray(buf.length - keep).equals(this.header.subarray(0, keep))) keep--;
    if (buf.length - keep > 0) this.emit(buf.subarray(0, buf.length - keep));
    if (keep > 0) this.pending = Buffer.from(buf.subarray(buf.length - keep));
  }

  end(): void {
    if (this.pending.length) this.emit(this.pending);
    this.pending = Buffer.alloc(0);
  }
}
