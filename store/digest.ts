import { createHash } from 'node:crypto';
import { MbuildError } from '../util/errors.js';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** Refuse anything but a well-formed lowercase sha256 digest before it is ever used in a path. */
export function assertDigest(digest: string, what = 'digest'): string {
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) {
    throw new MbuildError('MBUILD_BAD_DIGEST', `malformed ${what}: ${JSON.stringify(String(digest)).slice(0, 100)}`);
  }
  return digest;
}

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

export function sha256(data: string | Buffer): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

export function hex(digest: string): string {
  return assertDigest(digest).slice('sha256:'.length);
}
