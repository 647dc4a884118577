/**
 * Credentials in Docker's own format: $DOCKER_CONFIG/config.json (default ~/.docker/config.json)
 * with `auths` (base64 user:password, or an identity token), `credsStore` and `credHelpers`
 * (programs named docker-credential-NAME speaking get/store/erase on stdin/stdout).
 * Nothing here ever prints a secret; helper errors are reported by exit status and a short,
 * secret-free message.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../store/fsutil.js';
import { MbuildError } from '../util/errors.js';
import { canonicalRegistry } from './settings.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** an OAuth2 refresh token (Docker's "identitytoken") */
  identityToken?: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

const HUB_KEY = 'https://index.docker.io/v1/';

export function dockerConfigFile(): string {
  return path.join(process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker'), 'config.json');
}

/** The key Docker files a registry's credentials under. */
export function credentialKey(registry: string): string {
  const r = canonicalRegistry(registry);
  return r === 'docker.io' ? HUB_KEY : r;
}

/** A config key (`https://host/v1/`, `host`) → the registry it names. */
function keyRegistry(key: string): string {
  return canonicalRegistry(key.replace(/^[a-z]+:\/\//i, '').split('/')[0]);
}

async function readConfig(): Promise<DockerConfig> {
  const file = dockerConfigFile();
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new MbuildError('MBUILD_CREDENTIALS', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as DockerConfig;
  } catch {
    // the parser's message could quote file content (secrets): say only where
    throw new MbuildError('MBUILD_CREDENTIALS', `${file} is not a valid JSON object`);
  }
}

async function writeConfig(cfg: DockerConfig): Promise<void> {
  await writeFileAtomic(dockerConfigFile(), JSON.stringify(cfg, null, '\t') + '\n', 0o600);
}

function helperFor(cfg: DockerConfig, registry: string): string | undefined {
  const reg = canonicalRegistry(registry);
  for (const [k, v] of Object.entries(cfg.credHelpers ?? {})) if (keyRegistry(k) === reg && v) return v;
  return cfg.credsStore || undefined;
}

/** Run docker-credential-NAME ACTION with `input` on stdin. */
function runHelper(name: string, action: 'get' | 'store' | 'erase', input: string): Promise<{ code: number; stdout: string }> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) return Promise.reject(new MbuildError('MBUILD_CREDENTIALS', `invalid credential helper name "${name.slice(0, 50)}"`));
  const prog = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(prog, [action], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', () => undefined); // may echo what it was given: never shown
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new MbuildError('MBUILD_CREDENTIALS', `cannot run credential helper ${prog}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** The credentials for a registry (host[:port] or docker.io), if any are configured. */
export async function getCredentials(registry: string): Promise<Credentials | undefined> {
  const cfg = await readConfig();
  const helper = helperFor(cfg, registry);
  if (helper) {
    const r = await runHelper(helper, 'get', credentialKey(registry));
    // helpers exit non-zero with "credentials not found" when they have nothing
    if (r.code !== 0) return undefined;
    let v: { Username?: unknown; Secret?: unknown };
    try {
      v = JSON.parse(r.stdout) as typeof v;
    } catch {
      throw new MbuildError('MBUILD_CREDENTIALS', `credential helper docker-credential-${helper} gave an unreadable answer`);
    }
    if (typeof v.Secret !== 'string' || !v.Secret) return undefined;
    if (v.Username === '<token>') return { identityToken: v.Secret };
    return { username: typeof v.Username === 'string' ? v.Username : '', password: v.Secret };
  }
  const reg = canonicalRegistry(registry);
  const entries = Object.entries(cfg.auths ?? {});
  const found = entries.find(([k]) => k === credentialKey(registry)) ?? entries.find(([k]) => keyRegistry(k) === reg);
  if (!found) return undefined;
  const e = found[1] ?? {};
  const out: Credentials = {};
  if (typeof e.auth === 'string' && e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new MbuildError('MBUILD_CREDENTIALS', `the saved credentials for ${registry} in ${dockerConfigFile()} are malformed`);
    out.username = decoded.slice(0, colon);
    out.password = decoded.slice(colon + 1);
  } else if (typeof e.username === 'string') {
    out.username = e.username;
    out.password = typeof e.password === 'string' ? e.password : '';
  }
  if (typeof e.identitytoken === 'string' && e.identitytoken) out.identityToken = e.identitytoken;
  return out.username !== undefined || out.identityToken ? out : undefined;
}

/** Save credentials as `docker login` does (through the helper when one is configured). */
export async function storeCredentials(registry: string, creds: { username: string; password: string }): Promise<string> {
  const cfg = await readConfig();
  const key = credentialKey(registry);
  const helper = helperFor(cfg, registry);
  cfg.auths ??= {};
  if (helper) {
    const r = await runHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: creds.username, Secret: creds.password }));
    if (r.code !== 0) throw new MbuildError('MBUILD_CREDENTIALS', `credential helper docker-credential-${helper} could not store the credentials (exit ${r.code})`);
    cfg.auths[key] = {};
    await writeConfig(cfg);
    return `docker-credential-${helper}`;
  }
  cfg.auths[key] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
  await writeConfig(cfg);
  return dockerConfigFile();
}

/** Forget a registry's credentials; false when there were none. */
export async function eraseCredentials(registry: string): Promise<boolean> {
  const cfg = await readConfig();
  const reg = canonicalRegistry(registry);
  const helper = helperFor(cfg, registry);
  let removed = false;
  if (helper) {
    const r = await runHelper(helper, 'erase', credentialKey(registry));
    removed = r.code === 0;
  }
  for (const k of Object.keys(cfg.auths ?? {})) {
    if (keyRegistry(k) === reg) {
      delete cfg.auths![k];
      removed = true;
    }
  }
  if (removed) await writeConfig(cfg);
  return removed;
}
