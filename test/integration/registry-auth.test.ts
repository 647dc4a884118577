/**
 * Registries that ask for credentials (htpasswd Basic auth) and that speak TLS with a
 * self-signed certificate: login/logout in Docker's config format, credential helpers, and
 * certificate verification against a CA in the certs.d layout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, run, type CliResult } from '../helpers/cli.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

const USER = 'alice';
const PASSWORD = 'S3cret-pw-9f2c';
const WRONG = 'not-the-Password-77';

let work: string;
let env: NodeJS.ProcessEnv;
let seed: string;
let storeN = 0;
const registries: RunningRegistry[] = [];

function mb(root: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliResult> {
  return mbuild(['--root', root, ...args], { env: { ...env, ...opts.env }, input: opts.input });
}

async function emptyStore(): Promise<string> {
  return fs.mkdtemp(path.join(work, `store${++storeN}-`));
}

/** No secret in anything mbuild printed. */
function noSecrets(r: CliResult): void {
  for (const s of [PASSWORD, WRONG, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')]) {
    expect(r.stdout).not.toContain(s);
    expect(r.stderr).not.toContain(s);
  }
}

async function tag(name: string): Promise<void> {
  const dir = path.join(work, 'ctx-plain');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\n');
  const r = await mb(seed, ['build', '-q', '-t', name, dir]);
  expect(r.code, r.stderr).toBe(0);
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-registry-auth-'));
  env = { MBUILD_CONFIG: path.join(work, 'no-config.json'), DOCKER_CONFIG: path.join(work, 'docker'), MBUILD_REGISTRY_BACKOFF_MS: '20', MBUILD_CERTS_DIR: path.join(work, 'certs.d') };
  seed = await emptyStore();
  expect((await mb(seed, ['load', '-i', BUSYBOX_TAR])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  for (const r of registries) await r.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('htpasswd Basic auth', () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ auth: { user: USER, password: PASSWORD } });
    registries.push(reg);
  });

  it('without credentials: a clear "authentication required" error', async () => {
    await tag(`${reg.host}/auth/busybox:1`);
    const r = await mb(seed, ['push', `${reg.host}/auth/busybox:1`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: ${reg.host}: authentication required to access auth/busybox; log in with "mbuild login ${reg.host}"`);
  });

  it('login with a wrong password gives a clear error and saves nothing', async () => {
    const r = await mb(seed, ['login', '-u', USER, '--password-stdin', reg.host], { input: WRONG + '\n' });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`error: login to ${reg.host} failed: wrong username or password (HTTP 401)`);
    noSecrets(r);
    await expect(fs.access(path.join(work, 'docker', 'config.json'))).rejects.toThrow();
  });

  it('login saves Docker-format credentials; push and pull use them; logout removes them', async () => {
    const r = await mb(seed, ['login', '-u', USER, '--password-stdin', reg.host], { input: PASSWORD + '\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Login Succeeded');
    noSecrets(r);
    const file = path.join(work, 'docker', 'config.json');
    const cfg = JSON.parse(await fs.readFile(file, 'utf8'));
    expect(cfg.auths[reg.host].auth).toBe(Buffer.from(`${USER}:${PASSWORD}`).toString('base64'));
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);

    const push = await mb(seed, ['push', `${reg.host}/auth/busybox:1`]);
    expect(push.code, push.stderr).toBe(0);
    noSecrets(push);
    const digest = /digest: (sha256:[a-f0-9]{64})/.exec(push.stdout)![1];
    const sk = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', `${USER}:${PASSWORD}`, `docker://${reg.host}/auth/busybox:1`]);
    expect(sk.code, sk.stderr).toBe(0);
    expect(JSON.parse(sk.stdout).Digest).toBe(digest);

    const root = await emptyStore();
    const pull = await mb(root, ['pull', `${reg.host}/auth/busybox:1`]);
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stdout).toContain(digest);
    noSecrets(pull);

    const out = await mb(seed, ['logout', reg.host]);
    expect(out.stdout).toContain(`Removing login credentials for ${reg.host}`);
    expect(JSON.parse(await fs.readFile(file, 'utf8')).auths[reg.host]).toBeUndefined();
    const again = await mb(await emptyStore(), ['pull', `${reg.host}/auth/busybox:1`]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/authentication required/);
  });

  it('uses a credential helper (credsStore) and keeps the secret out of config.json', async () => {
    const bin = path.join(work, 'bin');
    await fs.mkdir(bin, { recursive: true });
    const helperStore = path.join(work, 'helper-store.json');
    await fs.writeFile(
      path.join(bin, 'docker-credential-mbtest'),
      `#!/bin/sh\nf="${helperStore}"\ncase "$1" in\n  store) cat > "$f" ;;\n  get) read url; [ -s "$f" ] && cat "$f" || { echo "credentials not found in native keychain"; exit 1; } ;;\n  erase) read url; rm -f "$f" ;;\nesac\n`,
      { mode: 0o755 },
    );
    const dockerDir = path.join(work, 'docker-helper');
    await fs.mkdir(dockerDir, { recursive: true });
    await fs.writeFile(path.join(dockerDir, 'config.json'), JSON.stringify({ credsStore: 'mbtest' }));
    const henv = { DOCKER_CONFIG: dockerDir, PATH: `${bin}:${process.env.PATH}` };

    const login = await mb(seed, ['login', '-u', USER, '--password-stdin', reg.host], { env: henv, input: PASSWORD });
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain('docker-credential-mbtest');
    const cfgText = await fs.readFile(path.join(dockerDir, 'config.json'), 'utf8');
    expect(cfgText).not.toContain(PASSWORD);
    expect(JSON.parse(cfgText).auths[reg.host]).toEqual({});
    expect(JSON.parse(await fs.readFile(helperStore, 'utf8'))).toEqual({ ServerURL: reg.host, Username: USER, Secret: PASSWORD });

    const pull = await mb(await emptyStore(), ['pull', `${reg.host}/auth/busybox:1`], { env: henv });
    expect(pull.code, pull.stderr).toBe(0);
    noSecrets(pull);
    expect((await mb(seed, ['logout', reg.host], { env: henv })).code).toBe(0);
    await expect(fs.access(helperStore)).rejects.toThrow();
  });
});

describe('TLS with a self-signed certificate', () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ tls: true });
    registries.push(reg);
  });

  it('pushes and pulls over https (loopback: unverified, as Docker), skopeo reads it', async () => {
    await tag(`${reg.host}/tls/busybox:1`);
    const push = await mb(seed, ['push', `${reg.host}/tls/busybox:1`]);
    expect(push.code, push.stderr).toBe(0);
    const digest = /digest: (sha256:[a-f0-9]{64})/.exec(push.stdout)![1];
    const sk = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/tls/busybox:1`]);
    expect(sk.code, sk.stderr).toBe(0);
    expect(JSON.parse(sk.stdout).Digest).toBe(digest);
    const pull = await mb(await emptyStore(), ['pull', `${reg.host}/tls/busybox:1`]);
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stdout).toContain(digest);
  });

  it('verifies the certificate against a CA in certs.d, and refuses a certificate the CA did not sign', async () => {
    const dir = path.join(work, 'certs.d', reg.host);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'ca.crt'), reg.cert!);
    const ok = await mb(await emptyStore(), ['pull', `${reg.host}/tls/busybox:1`]);
    expect(ok.code, ok.stderr).toBe(0);

    // another self-signed certificate as the CA: the registry's certificate no longer verifies
    const other = path.join(work, 'other');
    await fs.mkdir(other, { recursive: true });
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(other, 'k.pem'), '-out', path.join(other, 'c.pem')], { stdio: 'ignore' });
    await fs.copyFile(path.join(other, 'c.pem'), path.join(dir, 'ca.crt'));
    const bad = await mb(await emptyStore(), ['pull', `${reg.host}/tls/busybox:1`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/error: .*https:\/\/127\.0\.0\.1:\d+\/v2\/.*(certificate|self[- ]signed)/i);
    await fs.rm(dir, { recursive: true, force: true });
  });
});
