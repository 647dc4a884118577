/**
 * Which endpoints serve a registry: its mirrors first (pulls only), then the registry itself.
 * A registry named without a scheme speaks https; an insecure one (loopback, --insecure-registry)
 * is tried over https without verification and then over plain http, as Docker does.
 */
import { apiHost } from './reference.js';
import { isInsecure, registrySettings } from './settings.js';
import { extraCAs } from './transport.js';

export interface Endpoint {
  /** base URL; the API is under `${url}/v2/` (a mirror URL may carry a path prefix) */
  url: URL;
  /** the registry name the image belongs to (docker.io, 127.0.0.1:5000) */
  registry: string;
  /** a mirror rather than the registry itself */
  mirror: boolean;
  /** name credentials are filed under for this endpoint */
  credName: string;
  /** may switch to http:// when https cannot be spoken at all */
  httpFallback: boolean;
}

/** host → the scheme that worked, so the https probe happens once per process */
const learnedScheme = new Map<string, 'http:' | 'https:'>();

export function rememberScheme(host: string, scheme: 'http:' | 'https:'): void {
  learnedScheme.set(host, scheme);
}

function direct(registry: string): Endpoint {
  const host = apiHost(registry);
  // a host with its own CA in certs.d is verified against it: no plain-http fallback then
  const insecure = isInsecure(host) && extraCAs(host).length === 0;
  const scheme = learnedScheme.get(host) ?? 'https:';
  return { url: new URL(`${scheme}//${host}`), registry, mirror: false, credName: registry, httpFallback: insecure && scheme === 'https:' };
}

function mirrorEndpoint(registry: string, raw: string): Endpoint {
  const url = new URL(raw);
  url.pathname = url.pathname.replace(/\/+$/, '').replace(/\/v2$/, '');
  url.search = '';
  url.hash = '';
  return { url, registry, mirror: true, credName: url.host, httpFallback: false };
}

/** Endpoints to pull from, in order. */
export function pullEndpoints(registry: string): Endpoint[] {
  const s = registrySettings();
  const mirrors = (s.mirrors[registry] ?? []).map((m) => mirrorEndpoint(registry, m));
  if (mirrors.length && !s.mirrorFallback) return mirrors;
  return [...mirrors, direct(registry)];
}

/** The endpoint to push to (never a mirror) or to log in to. */
export function pushEndpoint(registry: string): Endpoint {
  return direct(registry);
}
