/** Errors with stable codes. The CLI prints `message` (one line); `--debug` shows the cause chain. */
export interface SourceRange {
  file?: string;
  start: number; // 1-based line
  end: number;
}

export class MbuildError extends Error {
  readonly code: string;
  readonly range?: SourceRange;
  /** Extra lines shown under the message (e.g. the last output lines of a failed RUN). */
  readonly details?: string[];
  constructor(code: string, message: string, opts: { range?: SourceRange; cause?: unknown; details?: string[] } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.range = opts.range;
    this.details = opts.details;
  }
  /** "Dockerfile:3: message" when the error points at a Dockerfile line. */
  override toString(): string {
    if (!this.range) return this.message;
    return `${this.range.file ?? 'Dockerfile'}:${this.range.start}: ${this.message}`;
  }
}

export class ParseError extends MbuildError {
  constructor(message: string, range?: SourceRange, cause?: unknown) {
    super('MBUILD_PARSE', message, { range, cause });
  }
}
export class PlanError extends MbuildError {
  constructor(code: string, message: string, range?: SourceRange) {
    super(code, message, { range });
  }
}
export class CopySourceMissingError extends MbuildError {
  constructor(message: string, range?: SourceRange) {
    super('MBUILD_COPY_SOURCE_MISSING', message, { range });
  }
}
export class RunFailedError extends MbuildError {
  constructor(message: string, range: SourceRange | undefined, details: string[]) {
    super('MBUILD_RUN_FAILED', message, { range, details });
  }
}
export class StoreError extends MbuildError {}
export class DigestMismatchError extends MbuildError {
  constructor(message: string) {
    super('MBUILD_DIGEST_MISMATCH', message);
  }
}
export class ImageNotFoundError extends MbuildError {
  constructor(name: string, range?: SourceRange) {
    super('MBUILD_IMAGE_NOT_FOUND', `image ${name} is not in the local store (load it with "mbuild load -i FILE")`, { range });
  }
}
export class UnsafeArchiveError extends MbuildError {
  constructor(message: string) {
    super('MBUILD_UNSAFE_ARCHIVE', message);
  }
}
export class SandboxError extends MbuildError {
  constructor(message: string, cause?: unknown) {
    super('MBUILD_SANDBOX', message, { cause });
  }
}
export class UsageError extends MbuildError {
  constructor(message: string) {
    super('MBUILD_USAGE', message);
  }
}
