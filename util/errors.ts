/**
 * Errors with stable codes (util/error-codes.ts) and every MbuildError subclass. The CLI prints
 * `message` (one line); `--debug` shows the code and the cause chain.
 */
import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';

export interface SourceRange {
  file?: string;
  start: number; // 1-based line
  end: number;
}

export class MbuildError extends Error {
  readonly code: ErrorCode;
  readonly range?: SourceRange;
  /** Extra lines shown under the message (e.g. the last output lines of a failed RUN). */
  readonly details?: string[];
  constructor(code: ErrorCode, message: string, opts: { range?: SourceRange; cause?: unknown; details?: string[] } = {}) {
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
  constructor(code: ErrorCode, message: string, range?: SourceRange) {
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

/** A .dockerignore line that is not a valid pattern, or a .dockerignore that cannot be read. */
export class IgnorePatternError extends MbuildError {
  constructor(message: string) {
    super('MBUILD_DOCKERIGNORE', message);
  }
}
/** A Go filepath.Match pattern with a syntax error. */
export class BadPatternError extends MbuildError {
  constructor(pattern: string, why = 'syntax error in pattern') {
    super('MBUILD_BAD_PATTERN', `${why}: ${JSON.stringify(pattern)}`);
  }
}
export class SymlinkLoopError extends MbuildError {
  constructor(relPath: string) {
    super('MBUILD_SYMLINK_LOOP', `too many levels of symbolic links resolving ${JSON.stringify(relPath)}`);
  }
}
export class NetworkError extends MbuildError {
  constructor(message: string, cause?: unknown) {
    super('MBUILD_NETWORK', message, { cause });
  }
}
/** A failed `mbuild-helper fsops` operation, with the op, its path and the errno name. */
export class FsOpError extends MbuildError {
  readonly op: string;
  readonly path: string;
  readonly errno: string;
  constructor(op: string, path: string, errno: string, reason: string) {
    super('MBUILD_FSOP', `${op} ${path}: ${reason}`);
    this.op = op;
    this.path = path;
    this.errno = errno;
  }
}
export class NoSpaceError extends MbuildError {
  constructor(message: string, cause?: unknown) {
    super('MBUILD_NO_SPACE', message, { cause });
  }
  /** The store's filesystem is full (or its quota exhausted). */
  static forStore(root: string, what?: string, cause?: unknown): NoSpaceError {
    return new NoSpaceError(`no space left on device${what ? ` while ${what}` : ''}; nothing was committed to the store ${root} (free some space, or run "mbuild prune")`, cause);
  }
}

/** Registry errors. Messages name the host and the operation, never a credential or header. */
export class RegistryError extends MbuildError {
  constructor(code: ErrorCode, message: string, readonly status?: number, cause?: unknown) {
    super(code, message, cause !== undefined ? { cause } : {});
  }
}
/** 401/403 or a failed token request. */
export class RegistryAuthError extends RegistryError {
  constructor(message: string, status?: number) {
    super('MBUILD_REGISTRY_AUTH', message, status);
  }
}
/** The registry says the manifest or blob does not exist (404). */
export class RegistryNotFoundError extends RegistryError {
  constructor(message: string) {
    super('MBUILD_REGISTRY_NOT_FOUND', message, 404);
  }
}
/** The registry could not be reached at all (DNS, refused, TLS). */
export class RegistryUnreachableError extends RegistryError {
  constructor(message: string, cause?: unknown) {
    super('MBUILD_REGISTRY_UNREACHABLE', message, undefined, cause);
  }
}

/** A cached layer of a --cache-from cache could not be fetched or was not what the cache said. */
export class CacheBlobError extends MbuildError {
  constructor(readonly key: string, message: string, cause?: unknown) {
    super('MBUILD_CACHE_BLOB', message, { cause });
  }
}
/** Snapshotter.commit: the name is taken (another build committed the same layer first). */
export class SnapshotExistsError extends MbuildError {
  constructor(readonly snapshot: string) {
    super('MBUILD_SNAPSHOT', `snapshot ${snapshot} already exists`);
  }
}
/** Snapshotter.remove of a snapshot another one is over, or a key that is not there. */
export class SnapshotError extends MbuildError {
  constructor(message: string) {
    super('MBUILD_SNAPSHOT', message);
  }
}
