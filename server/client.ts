/**
 * The CLI against a server (`--host ADDR` or MBUILD_HOST): build, images, inspect, system df,
 * prune and info, with the output the local commands give (the server runs the same commands on
 * its store). Several addresses: the repository of the context (or of the current folder) picks one.
 */
import { MbuildError, UsageError } from '../util/errors.js';
import { parseHostList, pickAddress, repositoryKey } from './address.js';
import { Connection } from './connection.js';
import type { CommandReply, InfoReply, MethodName } from './protocol.js';
import { readTls, type TlsFiles } from './tls.js';

export const REMOTE_COMMANDS = ['build', 'images', 'inspect', 'system', 'prune', 'info'];

export async function remoteCommand(hosts: string, tlsFiles: TlsFiles, command: string, argv: string[]): Promise<number> {
  const list = parseHostList(hosts);
  if (!REMOTE_COMMANDS.includes(command)) throw new UsageError(`"mbuild ${command}" does not work with a server (--host / MBUILD_HOST) yet: it runs on ${REMOTE_COMMANDS.join(', ')}`);
  const tls = readTls(tlsFiles);
  if (command === 'build') {
    const { remoteBuild } = await import('./remote-build.js');
    return remoteBuild(argv, async (contextDir) => Connection.open(pickAddress(list, repositoryKey(contextDir)), tls));
  }
  const conn = await Connection.open(pickAddress(list, repositoryKey(process.cwd())), tls);
  try {
    if (command === 'info') return await info(conn, argv);
    let method: MethodName;
    let args = argv;
    if (command === 'images') method = 'Images';
    else if (command === 'inspect') method = 'Inspect';
    else if (command === 'prune') method = 'Prune';
    else {
      const [sub, ...rest] = argv;
      if (sub === 'df') method = 'DiskUsage';
      else if (sub === 'prune') method = 'Prune';
      else throw new UsageError(`"mbuild system" needs a subcommand: df or prune${sub ? ` (got ${sub})` : ''}`);
      args = rest;
    }
    const { head } = await conn.unary<{ args: string[] }, CommandReply>(method, { args });
    process.stdout.write(head.stdout);
    process.stderr.write(head.stderr);
    return head.code;
  } finally {
    conn.close();
  }
}

async function info(conn: Connection, argv: string[]): Promise<number> {
  if (argv.length) throw new UsageError(`"mbuild info" takes no arguments (got ${argv[0]})`);
  const { head } = await conn.unary<object, InfoReply>('Info', {});
  if (!head || typeof head.version !== 'string') throw new MbuildError('MBUILD_REMOTE', `${conn.address.raw} did not answer as an mbuild server`);
  process.stdout.write(
    `Server: ${conn.address.raw}\n Version: ${head.version}\n Store: ${head.root}\n Pid: ${head.pid}\n` +
      ` Builds: ${head.running} running, ${head.queued} queued, ${head.maxBuilds} at once\n` +
      (head.draining ? ' Draining: yes (shutting down)\n' : ''),
  );
  return 0;
}
