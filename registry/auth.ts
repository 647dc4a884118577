/**
 * Registry authentication: the `WWW-Authenticate` challenge (Bearer token service, anonymous or
 * with credentials; Basic), tokens cached per realm/service/scope until they expire.
 * A token realm must be https unless the registry itself is plain http on an insecure host.
 */
import { RegistryAuthError, RegistryError } from '../util/errors.js';
import { describeErrorBody } from './errors.js';
import { getCredentials, type Credentials } from './credentials.js';
import { errorText, readCapped, safeUrl, send } from './transport.js';
import { isInsecure } from './settings.js';

export interface Challenge {
  scheme: string; // lower case: bearer, basic
  params: Record<string, string>;
}

/** Parse one or more challenges: `Bearer realm="x",service="y", Basic realm="z"`. */
export function parseChallenges(value: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  for (const text of Array.isArray(value) ? value : value ? [value] : []) {
    let i = 0;
    const skipWs = () => {
      while (i < text.length && /[\s,]/.test(text[i])) i++;
    };
    const token = () => {
      const m = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(text.slice(i));
      if (!m) return '';
      i += m[0].length;
      return m[0];
    };
    let cur: Challenge | undefined;
    while (i < text.length) {
      skipWs();
      const start = i;
      const name = token();
      if (!name) {
        i++;
        continue;
      }
      while (i < text.length && text[i] === ' ') i++;
      if (text[i] === '=' && cur) {
        i++;
        while (text[i] === ' ') i++;
        let v = '';
        if (text[i] === '"') {
          i++;
          while (i < text.length && text[i] !== '"') {
            if (text[i] === '\\' && i + 1 < text.length) i++;
            v += text[i++];
          }
          i++;
        } else {
          // unquoted: lenient, up to the next comma or space (some servers send bare URLs)
          while (i < text.length && !/[\s,]/.test(text[i])) v += text[i++];
        }
        cur.params[name.toLowerCase()] = v;
      } else if (text[i] === '=' && !cur) {
        i = start + name.length + 1; // a parameter without a scheme: ignore
      } else {
        cur = { scheme: name.toLowerCase(), params: {} };
        out.push(cur);
      }
    }
  }
  return out;
}

interface CachedToken {
  value: string;
  expires: number;
}

/**
 * Authorization for one registry endpoint (an origin). Shared by every client of that origin in
 * the process so tokens are reused.
 */
export class Authenticator {
  private challenge?: Challenge;
  private creds?: Promise<Credentials | undefined>;
  private readonly tokens = new Map<string, CachedToken>();
  /** whether the last authorization sent carried credentials (for the error message) */
  usedCredentials = false;

  constructor(
    readonly origin: URL,
    /** the registry name credentials are filed under (docker.io, host:port) */
    readonly credName: string,
    readonly credentialsGiven?: Credentials,
  ) {
    if (credentialsGiven) this.creds = Promise.resolve(credentialsGiven);
  }

  private credentials(): Promise<Credentials | undefined> {
    this.creds ??= getCredentials(this.credName);
    return this.creds;
  }

  get hasChallenge(): boolean {
    return this.challenge !== undefined;
  }

  /** Learn from a 401; false when the answer carried no usable challenge. */
  learn(header: string | string[] | undefined, scopes: string[]): boolean {
    const all = parseChallenges(header);
    const c = all.find((x) => x.scheme === 'bearer') ?? all.find((x) => x.scheme === 'basic');
    if (!c) return false;
    this.challenge = c;
    this.tokens.delete(this.tokenKey(scopes));
    return true;
  }

  private tokenKey(scopes: string[]): string {
    const p = this.challenge?.params ?? {};
    return `${p.realm}|${p.service}|${[...scopes].sort().join(' ')}`;
  }

  /** The Authorization header value for these scopes, or undefined (anonymous). */
  async header(scopes: string[]): Promise<string | undefined> {
    const c = this.challenge;
    if (!c) return undefined;
    const creds = await this.credentials();
    if (c.scheme === 'basic') {
      this.usedCredentials = Boolean(creds?.username !== undefined);
      if (!creds || creds.username === undefined) return undefined;
      return 'Basic ' + Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64');
    }
    const key = this.tokenKey(scopes);
    const cached = this.tokens.get(key);
    if (cached && cached.expires > Date.now()) return 'Bearer ' + cached.value;
    const token = await this.fetchToken(c, scopes, creds);
    this.tokens.set(key, token);
    return 'Bearer ' + token.value;
  }

  private async fetchToken(c: Challenge, scopes: string[], creds: Credentials | undefined): Promise<CachedToken> {
    const host = this.origin.host;
    let realm: URL;
    try {
      realm = new URL(c.params.realm ?? '');
    } catch {
      throw new RegistryAuthError(`${host}: the registry's token realm is not a valid URL`);
    }
    // realm over https, unless the registry itself speaks plain http on an insecure host
    const plainOk = this.origin.protocol === 'http:' && isInsecure(realm.host);
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && plainOk)) {
      throw new RegistryAuthError(`${host}: refusing to fetch a token from ${safeUrl(realm)} (not https)`);
    }
    this.usedCredentials = Boolean(creds);
    const service = c.params.service;
    let res;
    if (creds?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'mbuild' });
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      res = await send(realm, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
    } else {
      const u = new URL(realm);
      if (service) u.searchParams.set('service', service);
      for (const s of scopes) u.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      // credentials go to the realm the registry named (that is how token auth works), only there
      const authorization = creds?.username !== undefined ? { origin: u.origin, value: 'Basic ' + Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64') } : undefined;
      res = await send(u, { method: 'GET', headers, authorization });
    }
    if (res.status === 401 || res.status === 403) {
      const why = describeErrorBody(await errorText(res));
      throw new RegistryAuthError(
        creds ? `${host}: authentication failed: wrong username or password${why ? ` (${why})` : ''}` : `${host}: the token service refused anonymous access${why ? ` (${why})` : ''}`,
        res.status,
      );
    }
    if (res.status !== 200) {
      const why = describeErrorBody(await errorText(res));
      throw new RegistryError('MBUILD_REGISTRY_AUTH', `${host}: token request to ${realm.host} failed with HTTP ${res.status}${why ? `: ${why}` : ''}`, res.status);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse((await readCapped(res, 1 << 20, 'token response')).toString('utf8')) as typeof body;
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      throw new RegistryAuthError(`${host}: the token service at ${realm.host} sent an unreadable answer`);
    }
    const value = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' ? body.access_token : '';
    if (!value) throw new RegistryAuthError(`${host}: the token service at ${realm.host} sent no token`);
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    return { value, expires: Date.now() + Math.max(ttl - 10, 5) * 1000 };
  }
}

const authenticators = new Map<string, Authenticator>();

/** The shared authenticator for an origin. */
export function authenticatorFor(origin: URL, credName: string): Authenticator {
  const key = `${origin.origin}|${credName}`;
  let a = authenticators.get(key);
  if (!a) {
    a = new Authenticator(origin, credName);
    authenticators.set(key, a);
  }
  return a;
}

export function resetAuthenticators(): void {
  authenticators.clear();
}
