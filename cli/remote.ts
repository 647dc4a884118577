/**
 * The CLI against a server (`--host ADDR` or MBUILD_HOST): build, images, inspect, system df,
 * prune, load, save, push, pull, rmi, tag, history and info, with the output the local commands
 * give (the server runs the same commands on its store; load's archive streams up, save's down).
 * `run` stays local. Several addresses: the repository of the context (or of the current folder)
 * picks one.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { MbuildError, UsageError } from '../util/errors.js';
import { parseArgs } from '../util/args.js';
import { parseHostList, pickAddress, repositoryKey } from '../server/address.js';
import { Connection } from '../server/connection.js';
import type { CommandReply, ExecEvent, ExecInput, ExecRequest, Frame, InfoReply, MethodName } from '../server/protocol.js';
import { readTls, type TlsFiles } from '../server/tls.js';

export const REMOTE_COMMANDS = ['build', 'images', 'inspect', 'system', 'prune', 'info', 'load', 'save', 'push', 'pull', 'rmi', 'tag', 'history'];
/** commands that stream (server/service.ts Exec) */
const EXEC_COMMANDS = ['load', 'save', 'push', 'pull', 'rmi', 'tag', 'history'];

export async function remoteCommand(hosts: string, tlsFiles: TlsFiles, command: string, argv: string[]): Promise<number> {
  const list = parseHostList(hosts);
  if (command === 'run')
    throw new UsageError('"mbuild run" does not work with a server (--host / MBUILD_HOST): a container runs on this machine; bring the image here with "mbuild --host ADDR save IMAGE | mbuild load", then "mbuild run IMAGE"');
  if (!REMOTE_COMMANDS.includes(command)) throw new UsageError(`"mbuild ${command}" does not work with a server (--host / MBUILD_HOST): it runs on ${REMOTE_COMMANDS.join(', ')}`);
  const tls = readTls(tlsFiles);
  if (command === 'build') {
    const { remoteBuild } = await import('./remote-build.js');
    return remoteBuild(argv, { connect: async (contextDir, opts) => Connection.open(pickAddress(list, repositoryKey(contextDir)), tls, opts) });
  }
  const conn = await Connection.open(pickAddress(list, repositoryKey(process.cwd())), tls);
  try {
    if (command === 'info') return await info(conn, argv);
    if (EXEC_COMMANDS.includes(command)) return await exec(conn, command, argv);
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

/**
 * load, save and the registry and naming commands on the server: load's archive (-i FILE or stdin)
 * streams up as the command's stdin, save's tar streams down and is written here (-o FILE or stdout).
 */
async function exec(conn: Connection, command: string, argv: string[]): Promise<number> {
  let args = argv;
  let input: NodeJS.ReadableStream | undefined;
  let output: { file?: string } | undefined;
  if (command === 'load') {
    const { flags, positional } = parseArgs(argv, [{ names: ['-i', '--input'], key: 'input', kind: 'string' }, { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' }]);
    if (positional.length) throw new UsageError(`"mbuild load" takes no arguments (got ${positional[0]}): use -i FILE or stdin`);
    if (flags.input) {
      await fs.access(flags.input as string).catch(() => {
        throw new UsageError(`-i ${flags.input}: no such file`);
      });
      input = createReadStream(flags.input as string);
    } else {
      if (process.stdin.isTTY) throw new UsageError('requested load from stdin, but stdin is a terminal: use -i FILE or redirect a tar in');
      input = process.stdin;
    }
    args = flags.quiet ? ['--quiet'] : [];
  } else if (command === 'save') {
    const { flags, positional } = parseArgs(argv, [{ names: ['-o', '--output'], key: 'output', kind: 'string' }, { names: ['--format'], key: 'format', kind: 'string' }]);
    const file = flags.output as string | undefined;
    if ((file === undefined || file === '-') && process.stdout.isTTY) throw new UsageError('cowardly refusing to save to a terminal: use -o FILE or redirect stdout');
    output = { file: file === '-' ? undefined : file };
    args = [...(flags.format !== undefined ? [`--format=${flags.format}`] : []), '--', ...positional];
  }
  const call = conn.bidi<ExecRequest | ExecInput, ExecEvent>('Exec');
  call.write({ head: { command, args } });
  let cancelled = false;
  const onSignal = () => {
    cancelled = true;
    call.cancel();
  };
  process.once('SIGINT', onSignal);
  // stdin of the command: the archive to load, then its end
  const feeding = (async () => {
    if (input) {
      for await (const chunk of input) if (!call.write({ head: {}, data: chunk as Buffer })) await once(call, 'drain');
    }
    call.write({ head: { end: true } });
  })();
  feeding.catch(() => call.cancel());
  let out: NodeJS.WritableStream = process.stdout;
  let tmp: string | undefined;
  if (output?.file) {
    const abs = path.resolve(output.file);
    tmp = path.join(path.dirname(abs), `.tmp-${path.basename(abs)}-${process.pid}`);
    out = createWriteStream(tmp);
  }
  let code: number | undefined;
  try {
    for await (const frame of call as AsyncIterable<Frame<ExecEvent>>) {
      const ev = frame.head;
      if (ev.kind === 'stdout' && frame.data) {
        if (!out.write(frame.data)) await once(out, 'drain');
      } else if (ev.kind === 'stderr' && frame.data) process.stderr.write(frame.data);
      else if (ev.kind === 'exit') code = ev.code;
    }
    await feeding;
  } catch (e) {
    if (tmp) await fs.rm(tmp, { force: true });
    if (cancelled) return 130;
    throw e instanceof Error && 'code' in e && typeof (e as { code: unknown }).code === 'number' ? conn.error(e as import('@grpc/grpc-js').ServiceError) : e;
  } finally {
    process.off('SIGINT', onSignal);
  }
  if (tmp) {
    await new Promise<void>((resolve, reject) => (out as import('node:fs').WriteStream).end((e?: Error | null) => (e ? reject(e) : resolve())));
    if (code === 0) await fs.rename(tmp, path.resolve(output!.file!));
    else await fs.rm(tmp, { force: true });
  }
  if (code === undefined) throw new MbuildError('MBUILD_REMOTE', `the server at ${conn.address.raw} ended "${command}" without an exit code`);
  return code;
}
