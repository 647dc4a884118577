/**
 * `mbuild serve`: the Builder service over gRPC on a unix socket (0660, the default
 * /run/mbuild/mbuild.sock) and/or TCP with mutual TLS. SIGTERM (or SIGINT) drains: queued builds
 * are refused, running ones finish, then the server exits; a second signal interrupts them.
 */
import { promises as fs, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import os from 'node:os';
import { parseArgs } from '../util/args.js';
import { UsageError } from '../util/errors.js';
import { DEFAULT_SOCKET, grpcTarget, isLoopback, parseAddress, type Address } from './address.js';
import { loadGrpc, MAX_MESSAGE } from './grpc.js';
import { SERVICE_DEF } from './protocol.js';
import { BuilderService } from './service.js';
import { readTls } from './tls.js';

const FLAGS = [
  { names: ['--addr'], key: 'addr', kind: 'list' as const },
  { names: ['--tlscacert'], key: 'tlscacert', kind: 'string' as const },
  { names: ['--tlscert'], key: 'tlscert', kind: 'string' as const },
  { names: ['--tlskey'], key: 'tlskey', kind: 'string' as const },
  { names: ['--insecure'], key: 'insecure', kind: 'bool' as const },
  { names: ['--max-builds'], key: 'maxBuilds', kind: 'string' as const },
  { names: ['--allow-insecure-entitlement'], key: 'allowInsecure', kind: 'list' as const },
];

export function packageVersion(): string {
  try {
    return JSON.parse(readFileSync(path.join(path.dirname(process.argv[1] ?? '.'), '..', 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

export async function serveCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, FLAGS);
  if (positional.length) throw new UsageError(`"mbuild serve" takes no arguments (got ${positional[0]})`);
  const addrs = ((flags.addr as string[]).length ? (flags.addr as string[]) : [`unix://${DEFAULT_SOCKET}`]).map((a) => parseAddress(a, '--addr'));
  const tls = readTls({ cacert: flags.tlscacert as string, cert: flags.tlscert as string, key: flags.tlskey as string }, '');
  for (const a of addrs) {
    if (a.kind !== 'tcp' || tls) continue;
    if (!flags.insecure) throw new UsageError(`--addr ${a.raw}: TCP needs mutual TLS (--tlscacert, --tlscert, --tlskey); --insecure allows plain TCP on a loopback address only`);
    if (!isLoopback(a.host)) throw new UsageError(`--addr ${a.raw}: --insecure is allowed on a loopback address only (127.0.0.1, ::1, localhost)`);
  }
  let maxBuilds = Math.max(1, os.availableParallelism());
  if (flags.maxBuilds !== undefined) {
    if (!/^[1-9]\d*$/.test(String(flags.maxBuilds))) throw new UsageError(`--max-builds ${flags.maxBuilds}: give a positive whole number`);
    maxBuilds = Number(flags.maxBuilds);
  }

  // buildkitd's flag: a client's --allow security.insecure needs the server's consent
  for (const e of flags.allowInsecure as string[]) if (e !== 'security.insecure') throw new UsageError(`--allow-insecure-entitlement ${e}: only security.insecure (network.host is always granted)`);
  const allowInsecure = (flags.allowInsecure as string[]).length > 0;

  const grpc = await loadGrpc();
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const service = new BuilderService({ root: path.resolve(root), maxBuilds, allowInsecure, version: packageVersion(), log }, grpc.status);
  await service.init();
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE, 'grpc.max_send_message_length': MAX_MESSAGE });
  server.addService(SERVICE_DEF as unknown as import('@grpc/grpc-js').ServiceDefinition, service.handlers());

  const sockets: string[] = [];
  for (const a of addrs) {
    if (a.kind === 'unix') {
      await prepareSocket(a);
      // no moment where the socket is open to all: it is made under a umask, then set to 0660
      const umask = process.umask(0o177);
      try {
        await bind(server, grpcTarget(a), grpc.ServerCredentials.createInsecure());
      } finally {
        process.umask(umask);
      }
      await fs.chmod(a.path, 0o660);
      sockets.push(a.path);
    } else {
      const creds = tls ? grpc.ServerCredentials.createSsl(tls.ca, [{ private_key: tls.key, cert_chain: tls.cert }], true) : grpc.ServerCredentials.createInsecure();
      await bind(server, grpcTarget(a), creds);
    }
    log(`listening on ${a.raw}${a.kind === 'tcp' ? (tls ? ' (mutual TLS)' : ' (plain TCP, loopback)') : ''}`);
  }
  log(`mbuild serve: pid ${process.pid}, store ${path.resolve(root)}, ${maxBuilds} build(s) at once`);

  return new Promise<number>((resolve) => {
    let signals = 0;
    const finish = async (code: number) => {
      for (const s of sockets) await fs.rm(s, { force: true }).catch(() => undefined);
      resolve(code);
    };
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        log(`${sig}: draining (${service.active} build(s) running; send another signal to interrupt them)`);
        service.drain();
        server.tryShutdown(() => {
          void service.idle().then(() => {
            log('drained, exiting');
            void finish(0);
          });
        });
      } else {
        log(`${sig}: interrupting the running builds`);
        service.interruptAll();
        void service.idle().then(() => {
          server.forceShutdown();
          void finish(1);
        });
      }
    };
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, onSignal);
  });
}

function bind(server: import('@grpc/grpc-js').Server, target: string, creds: import('@grpc/grpc-js').ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(target, creds, (err, port) => (err ? reject(new UsageError(`cannot listen on ${target}: ${err.message}`)) : resolve(port))),
  );
}

/** Makes the socket's folder; a socket file nobody answers on (a killed server's) is removed. */
async function prepareSocket(a: Extract<Address, { kind: 'unix' }>): Promise<void> {
  await fs.mkdir(path.dirname(a.path), { recursive: true, mode: 0o755 });
  const st = await fs.lstat(a.path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new UsageError(`--addr ${a.raw}: ${a.path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(a.path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new UsageError(`--addr ${a.raw}: another server is listening there`);
  await fs.rm(a.path, { force: true });
}
