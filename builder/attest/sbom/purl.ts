/**
 * Package URLs (https://github.com/package-url/purl-spec) as BuildKit and syft spell them: Go's
 * url.QueryEscape for the namespace and name, url.PathEscape for the version and qualifier values.
 */
import type { Platform } from '../../../store/oci.js';
import { parseReference } from '../../../store/reference.js';

const UNRESERVED = /[A-Za-z0-9\-_.~]/;

/** Go's url.QueryEscape: everything but unreserved characters escaped, space as "+". */
function queryEscape(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += UNRESERVED.test(c) ? c : c === ' ' ? '+' : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** Go's url.PathEscape: like QueryEscape, but $ & + : = @ stay and space is %20. */
function pathEscape(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += UNRESERVED.test(c) || '$&+:=@'.includes(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

export function purl(type: string, namespace: string, name: string, version: string, qualifiers: [string, string][] = []): string {
  let s = `pkg:${type}/`;
  if (namespace) s += namespace.split('/').map(queryEscape).join('/') + '/';
  s += queryEscape(name);
  if (version) s += '@' + pathEscape(version);
  const q = qualifiers.filter(([, v]) => v !== '');
  if (q.length) s += '?' + q.map(([k, v]) => `${k}=${pathEscape(v)}`).join('&');
  return s;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}

/**
 * An image reference as a purl (BuildKit's purl.RefToPURL): the familiar name split into namespace
 * and name, the tag as version (latest when none), a digest and the platform as qualifiers.
 */
export function imagePurl(ref: string, platform?: Platform, type = 'docker'): string {
  const r = parseReference(ref);
  const familiar = r.domain === 'docker.io' ? r.path.replace(/^library\//, '') : `${r.domain}/${r.path}`;
  const slash = familiar.lastIndexOf('/');
  const q: [string, string][] = [];
  if (r.digest) q.push(['digest', r.digest]);
  if (platform) q.push(['platform', formatPlatform(platform)]);
  const version = r.digest && !r.tag ? '' : (r.tag ?? 'latest');
  return purl(type, slash >= 0 ? familiar.slice(0, slash) : '', familiar.slice(slash + 1), version, q);
}
