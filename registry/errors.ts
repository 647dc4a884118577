/** Registry errors. Messages name the host and the operation, never a credential or header. */
import { MbuildError } from '../util/errors.js';

export class RegistryError extends MbuildError {
  constructor(code: string, message: string, readonly status?: number, cause?: unknown) {
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

/** Describe a registry's JSON error body ({"errors":[{"code","message"}]}) in one line. */
export function describeErrorBody(text: string): string {
  try {
    const v = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    if (Array.isArray(v.errors) && v.errors.length) {
      return v.errors
        .slice(0, 3)
        .map((e) => [e.code, e.message].filter((x) => typeof x === 'string' && x).join(': '))
        .filter(Boolean)
        .join('; ');
    }
  } catch {
    /* not JSON */
  }
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** One line for a network error: its code and message, no URL credentials. */
export function describeNetworkError(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { cause?: unknown };
  const inner = (e?.cause ?? undefined) as (NodeJS.ErrnoException | undefined);
  const code = inner?.code ?? e?.code;
  const msg = inner?.message ?? e?.message ?? String(err);
  return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
}
