/**
 * NODE_EXTRA_CA_CERTS: the launcher hands the file to the registry client (MBUILD_EXTRA_CA_CERTS)
 * so node does not parse it at every start; the client must then trust it exactly as node would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { tlsOptionsFor } from '../../registry/transport.js';
import { configureRegistry } from '../../registry/settings.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let work: string;
let server: Server;
let port: number;
const saved = { ...process.env };

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-tls-unit-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', path.join(work, 'key.pem'), '-out', path.join(work, 'cert.pem')], { stdio: 'ignore' });
  server = createServer({ key: readFileSync(path.join(work, 'key.pem')), cert: readFileSync(path.join(work, 'cert.pem')) }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
  process.env.MBUILD_CONFIG = path.join(work, 'none.json');
  process.env.MBUILD_CERTS_DIR = path.join(work, 'certs.d');
  configureRegistry({});
});
afterAll(async () => {
  process.env = saved;
  configureRegistry({});
  await new Promise((r) => server.close(r));
  await fs.rm(work, { recursive: true, force: true });
});

/** A TLS handshake with the test server under the given options: 'connected', or the error code. */
function handshake(connect: Record<string, unknown>): Promise<string> {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port, ...connect }, () => {
      sock.end();
      resolve('connected');
    });
    sock.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('the NODE_EXTRA_CA_CERTS file, read on first use', () => {
  const remote = new URL('https://registry.test/v2/');

  it('is trusted in addition to the built-in roots for a verified registry', async () => {
    process.env.MBUILD_EXTRA_CA_CERTS = path.join(work, 'cert.pem');
    const opts = tlsOptionsFor(remote);
    expect((opts.connect.ca as string[]).length).toBe(tls.rootCertificates.length + 1);
    expect(await handshake(opts.connect)).toBe('connected');
  });

  it('without it the same certificate does not verify', async () => {
    delete process.env.MBUILD_EXTRA_CA_CERTS;
    const opts = tlsOptionsFor(remote);
    expect(opts.key).toBe('default');
    expect(await handshake(opts.connect)).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('an unreadable file is a warning, and verification stays on', async () => {
    process.env.MBUILD_EXTRA_CA_CERTS = path.join(work, 'missing.pem');
    const writes: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => writes.push(String(s)) > 0) as typeof process.stderr.write;
    try {
      expect(tlsOptionsFor(remote).key).toBe('default');
    } finally {
      process.stderr.write = write;
    }
    expect(writes.join('')).toMatch(/^warning: ignoring extra certs from .*missing\.pem \(NODE_EXTRA_CA_CERTS\): ENOENT/);
  });

  it('ADD <url> verifies TLS even on loopback, where a registry would not', async () => {
    delete process.env.MBUILD_EXTRA_CA_CERTS;
    const local = new URL(`https://127.0.0.1:${port}/file`);
    expect(await handshake(tlsOptionsFor(local).connect)).toBe('connected'); // a loopback registry: unverified, as Docker
    expect(await handshake(tlsOptionsFor(local, true).connect)).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    process.env.MBUILD_EXTRA_CA_CERTS = path.join(work, 'cert.pem');
    expect(await handshake(tlsOptionsFor(local, true).connect)).toBe('connected');
  });

  it('the launcher hands the file over instead of letting node parse it at start-up', () => {
    // node warns at start-up about an unreadable NODE_EXTRA_CA_CERTS; mbuild only when it needs TLS
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: path.join(work, 'missing.pem') };
    const plainNode = spawnSync(process.execPath, ['-e', '0'], { env, encoding: 'utf8' });
    expect(plainNode.stderr).toMatch(/Ignoring extra certs/);
    const r = spawnSync(path.join(REPO, 'bin/mbuild'), ['--help'], { env, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });
});
