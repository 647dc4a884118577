/**
 * Where registries live: mirrors, insecure (plain http / unverified TLS) registries, CA dirs.
 * Sources, later ones adding to earlier ones: the config file ($MBUILD_CONFIG, else
 * ~/.config/mbuild/config.json), then the global CLI flags `--registry-mirror REG=URL` and
 * `--insecure-registry HOST`.
 *
 *   { "registryMirrors": { "docker.io": ["http://127.0.0.1:5000"] },
 *     "insecureRegistries": ["registry.lan:5000"],
 *     "mirrorFallback": true,           // false: never contact the upstream when mirrors fail
 *     "certsDir": "/etc/docker/certs.d" }
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MbuildError, UsageError } from '../util/errors.js';

export interface RegistrySettings {
  /** registry domain (docker.io, ghcr.io, 127.0.0.1:5000) → mirror base URLs, tried in order */
  mirrors: Record<string, string[]>;
  /** hosts (host or host:port) that may use plain http or unverified TLS */
  insecure: string[];
  /** when every mirror fails, try the registry itself (Docker's behaviour) */
  mirrorFallback: boolean;
  /** CA certificates per host: DIR/<host[:port]>/*.crt (Docker's certs.d layout) */
  certsDir: string;
}

let flagMirrors: string[] = [];
let flagInsecure: string[] = [];
let cached: RegistrySettings | undefined;

/** Called by the CLI with the global flags' values. */
export function configureRegistry(opts: { mirrors?: string[]; insecure?: string[] }): void {
  flagMirrors = opts.mirrors ?? [];
  flagInsecure = opts.insecure ?? [];
  cached = undefined;
  // validate now so a typo is a usage error before any work starts
  for (const m of flagMirrors) parseMirrorFlag(m);
}

export function configFile(): string {
  return process.env.MBUILD_CONFIG || path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'mbuild', 'config.json');
}

/** `docker.io=http://127.0.0.1:5000` (a bare URL means docker.io, as dockerd's flag). */
export function parseMirrorFlag(value: string): { registry: string; url: string } {
  const eq = value.indexOf('=');
  const registry = eq > 0 ? value.slice(0, eq).trim() : 'docker.io';
  const url = (eq > 0 ? value.slice(eq + 1) : value).trim();
  checkMirrorUrl(url, `--registry-mirror ${value}`);
  return { registry: canonicalRegistry(registry), url };
}

function checkMirrorUrl(url: string, what: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${what}: the mirror must be a URL such as http://127.0.0.1:5000`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${what}: the mirror must be an http:// or https:// URL`);
  if (u.username || u.password) throw new UsageError(`${what}: put credentials in "mbuild login", not in the mirror URL`);
}

export function canonicalRegistry(name: string): string {
  const n = name.trim().toLowerCase().replace(/^https?:\/\//, '').replace(/\/+$/, '');
  return n === 'index.docker.io' || n === 'registry-1.docker.io' ? 'docker.io' : n;
}

function readConfigFile(): Partial<RegistrySettings> & { registryMirrors?: unknown; insecureRegistries?: unknown } {
  const file = configFile();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new MbuildError('MBUILD_CONFIG', `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as ReturnType<typeof readConfigFile>;
  } catch (err) {
    throw new MbuildError('MBUILD_CONFIG', `${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export function registrySettings(): RegistrySettings {
  if (cached) return cached;
  const file = readConfigFile();
  const where = configFile();
  const mirrors: Record<string, string[]> = {};
  const rm = file.registryMirrors;
  if (rm !== undefined) {
    if (typeof rm !== 'object' || rm === null || Array.isArray(rm)) throw new MbuildError('MBUILD_CONFIG', `${where}: registryMirrors must be an object {"docker.io": ["http://..."]}`);
    for (const [reg, v] of Object.entries(rm)) {
      const list = Array.isArray(v) ? v : [v];
      for (const url of list) {
        if (typeof url !== 'string') throw new MbuildError('MBUILD_CONFIG', `${where}: registryMirrors.${reg} must be URLs`);
        checkMirrorUrl(url, `${where}: registryMirrors.${reg}`);
        (mirrors[canonicalRegistry(reg)] ??= []).push(url);
      }
    }
  }
  for (const m of flagMirrors) {
    const { registry, url } = parseMirrorFlag(m);
    // flags come first: they are the most specific wish
    (mirrors[registry] ??= []).unshift(url);
  }
  const insecure: string[] = [];
  const ir = file.insecureRegistries;
  if (ir !== undefined) {
    if (!Array.isArray(ir) || ir.some((h) => typeof h !== 'string')) throw new MbuildError('MBUILD_CONFIG', `${where}: insecureRegistries must be a list of hosts`);
    insecure.push(...(ir as string[]).map(canonicalRegistry));
  }
  insecure.push(...flagInsecure.map(canonicalRegistry));
  const certsDir = typeof file.certsDir === 'string' ? file.certsDir : process.env.MBUILD_CERTS_DIR || '/etc/docker/certs.d';
  cached = { mirrors, insecure, mirrorFallback: file.mirrorFallback !== false, certsDir };
  return cached;
}

/** host[:port] → host, without brackets for IPv6. */
export function hostOnly(hostPort: string): string {
  if (hostPort.startsWith('[')) return hostPort.slice(1, hostPort.indexOf(']'));
  const colon = hostPort.lastIndexOf(':');
  return colon > 0 && hostPort.indexOf(':') === colon ? hostPort.slice(0, colon) : hostPort;
}

/** localhost, 127.0.0.0/8 and ::1: plain http is allowed there, as Docker allows it. */
export function isLoopback(hostPort: string): boolean {
  const h = hostOnly(hostPort).toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1';
  return false;
}

/** May this host be reached over plain http or TLS without verification? */
export function isInsecure(hostPort: string, settings = registrySettings()): boolean {
  const hp = canonicalRegistry(hostPort);
  return isLoopback(hp) || settings.insecure.includes(hp) || settings.insecure.includes(hostOnly(hp));
}
