/**
 * Test fixtures for registry tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with
 * a free port and a temp config (open, htpasswd Basic auth, or TLS from a self-signed
 * certificate), and a small recording/fault-injecting HTTP proxy in front of it.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { promises as fs, openSync, closeSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { Agent } from 'undici';

/** Install docker-registry, skopeo and htpasswd when missing (scripts/setup.sh lists them too). */
export function ensureRegistryTools(): void {
  const need: string[] = [];
  const has = (cmd: string) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!has('docker-registry')) need.push('docker-registry');
  if (!has('skopeo')) need.push('skopeo');
  if (!has('htpasswd')) need.push('apache2-utils');
  if (!has('openssl')) need.push('openssl');
  if (!need.length) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...need], { stdio: 'ignore', env });
  } catch {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...need], { stdio: 'ignore', env });
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface RegistryOptions {
  auth?: { user: string; password: string };
  tls?: boolean;
}

export interface RunningRegistry {
  host: string; // 127.0.0.1:PORT
  port: number;
  dir: string;
  /** the self-signed certificate (PEM) when tls */
  cert?: string;
  log: () => Promise<string>;
  stop: () => Promise<void>;
}

const insecureAgent = new Agent({ connect: { rejectUnauthorized: false } });

async function waitUp(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${await fs.readFile(logFile, 'utf8').catch(() => '')}`);
    try {
      const res = await request(url, { dispatcher: insecureAgent });
      await res.body.dump();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`docker-registry did not come up at ${url}`);
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  ensureRegistryTools();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-registry-'));
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${path.join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  let cert: string | undefined;
  if (opts.tls) {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    cert = await fs.readFile(path.join(dir, 'cert.pem'), 'utf8');
    lines.push('  tls:', `    certificate: ${path.join(dir, 'cert.pem')}`, `    key: ${path.join(dir, 'key.pem')}`);
  }
  if (opts.auth) {
    const line = execFileSync('htpasswd', ['-Bbn', opts.auth.user, opts.auth.password]).toString().trim();
    await fs.writeFile(path.join(dir, 'htpasswd'), line + '\n');
    lines.push('auth:', '  htpasswd:', '    realm: test-realm', `    path: ${path.join(dir, 'htpasswd')}`);
  }
  await fs.writeFile(path.join(dir, 'config.yml'), lines.join('\n') + '\n');
  const logFile = path.join(dir, 'registry.log');
  const fd = openSync(logFile, 'a');
  const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const scheme = opts.tls ? 'https' : 'http';
  try {
    await waitUp(`${scheme}://127.0.0.1:${port}/v2/`, child, logFile);
  } catch (err) {
    child.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    dir,
    cert,
    log: () => fs.readFile(logFile, 'utf8'),
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export interface ProxyRequest {
  method: string;
  path: string;
}

export interface ProxyHooks {
  /** answer a request here instead of forwarding it (return undefined to forward) */
  intercept?: (req: ProxyRequest) => { status: number; body?: string } | undefined;
  /** change a forwarded response body (the whole body, buffered) */
  rewrite?: (req: ProxyRequest, body: Buffer) => Buffer;
  /** forward the request under another path (e.g. a mount request without its mount, as a registry that refuses it) */
  forwardPath?: (req: ProxyRequest) => string | undefined;
}

export interface RecordingProxy {
  host: string;
  requests: ProxyRequest[];
  hooks: ProxyHooks;
  close: () => Promise<void>;
}

/** A plain-http proxy on 127.0.0.1 in front of a plain-http registry; it records every request. */
export async function startProxy(target: string, hooks: ProxyHooks = {}): Promise<RecordingProxy> {
  const requests: ProxyRequest[] = [];
  const state = { hooks };
  const server = http.createServer((req, res) => {
    const r: ProxyRequest = { method: req.method ?? 'GET', path: req.url ?? '/' };
    requests.push(r);
    const answer = state.hooks.intercept?.(r);
    if (answer) {
      req.resume();
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(answer.body ?? '{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}');
      return;
    }
    const [thost, tport] = target.split(':');
    const up = http.request({ host: thost, port: Number(tport), method: req.method, path: state.hooks.forwardPath?.(r) ?? req.url, headers: req.headers }, (ur) => {
      const rewrite = state.hooks.rewrite;
      if (!rewrite || req.method === 'HEAD') {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      ur.on('data', (c: Buffer) => chunks.push(c));
      ur.on('end', () => {
        const body = rewrite(r, Buffer.concat(chunks));
        const headers = { ...ur.headers, 'content-length': String(body.length) };
        res.writeHead(ur.statusCode ?? 502, headers);
        res.end(body);
      });
    });
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    get hooks() {
      return state.hooks;
    },
    set hooks(h: ProxyHooks) {
      state.hooks = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Upload requests a client made (starting, sending or finishing a blob upload). */
export function uploadRequests(reqs: ProxyRequest[]): ProxyRequest[] {
  return reqs.filter((r) => /\/blobs\/uploads\//.test(r.path) && ['POST', 'PATCH', 'PUT'].includes(r.method));
}
