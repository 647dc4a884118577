/** Docker-style image references: `busybox` → `docker.io/library/busybox:latest`. */
import { MbuildError } from '../util/errors.js';

export interface Reference {
  domain: string;
  path: string; // e.g. library/busybox
  tag?: string;
  digest?: string;
}

const NAME_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

export function parseReference(input: string): Reference {
  let rest = input.trim();
  if (!rest) throw new MbuildError('MBUILD_BAD_REFERENCE', 'empty image reference');
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new MbuildError('MBUILD_BAD_REFERENCE', `invalid digest in reference "${input}"`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new MbuildError('MBUILD_BAD_REFERENCE', `invalid tag in reference "${input}"`);
  }
  let domain = 'docker.io';
  let path = rest;
  const first = rest.split('/')[0];
  if (rest.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    domain = first;
    path = rest.slice(first.length + 1);
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  for (const part of path.split('/')) {
    if (!NAME_COMPONENT.test(part)) throw new MbuildError('MBUILD_BAD_REFERENCE', `invalid reference format: "${input}" (repository names must be lowercase)`);
  }
  if (!tag && !digest) tag = 'latest';
  return { domain, path, tag, digest };
}

export function formatReference(ref: Reference): string {
  let s = `${ref.domain}/${ref.path}`;
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** The canonical name images are stored under. */
export function normalizeName(input: string): string {
  return formatReference(parseReference(input));
}

/** The short form users expect to see: `busybox:latest`, `localhost:5000/app:1`. */
export function familiarName(name: string): string {
  const ref = parseReference(name);
  let repo = ref.domain === 'docker.io' ? ref.path.replace(/^library\//, '') : `${ref.domain}/${ref.path}`;
  if (ref.tag) repo += `:${ref.tag}`;
  if (ref.digest) repo += `@${ref.digest}`;
  return repo;
}
