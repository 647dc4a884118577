/**
 * `--ssh` with `--host`: the agents stay on the client. The server gives the build a socket per
 * --ssh id; each connection a RUN makes to it becomes `ssh-open` on the build's call, and the
 * client connects to its own agent (the user's socket, or an ssh-agent it starts holding the key
 * files) and relays the bytes both ways (`ssh-data`, `ssh-close`), as BuildKit's session does.
 */
import { statSync, promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { MbuildError } from '../util/errors.js';
import type { SshSource } from '../builder/steps/secrets.js';
import type { BuildInput, Frame } from '../server/protocol.js';

export class ClientAgents {
  private call?: ClientDuplexStream<Frame<BuildInput>, unknown>;
  private readonly conns = new Map<number, net.Socket>();

  private constructor(
    /** the agent socket of each --ssh id, in the request's order */
    private readonly upstreams: string[],
    private readonly agentPids: number[],
    private readonly tmp?: string,
  ) {}

  static async start(sources: SshSource[]): Promise<ClientAgents> {
    const upstreams: string[] = [];
    const pids: number[] = [];
    let tmp: string | undefined;
    try {
      for (const s of sources) {
        const socket = s.paths.find((p) => statSync(p).isSocket());
        if (socket) {
          upstreams.push(socket);
          continue;
        }
        tmp ??= await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-ssh-'));
        const sock = path.join(tmp, `${upstreams.length}.sock`);
        const { startKeyAgent } = await import('../builder/steps/run-mounts.js');
        pids.push(await startKeyAgent(sock, s.paths, (msg) => new MbuildError('MBUILD_RUN_MOUNT', `--ssh ${s.id}: ${msg}`)));
        upstreams.push(sock);
      }
    } catch (err) {
      await new ClientAgents(upstreams, pids, tmp).close();
      throw err;
    }
    return new ClientAgents(upstreams, pids, tmp);
  }

  attach(call: ClientDuplexStream<Frame<BuildInput>, unknown>): void {
    this.call = call;
  }

  /** A RUN connected to the server's socket for agent `ssh`: connect to ours. */
  open(conn: number, ssh: number): void {
    const up = this.upstreams[ssh];
    const send = (head: BuildInput, data?: Buffer) => {
      if (this.call && !this.call.writableEnded && !this.call.destroyed) this.call.write({ head, data });
    };
    if (up === undefined || this.conns.has(conn)) return send({ kind: 'ssh-close', conn });
    const sock = net.connect(up);
    this.conns.set(conn, sock);
    sock.on('data', (d: Buffer) => send({ kind: 'ssh-data', conn }, d));
    const gone = () => {
      if (this.conns.get(conn) !== sock) return;
      this.conns.delete(conn);
      send({ kind: 'ssh-close', conn });
    };
    sock.on('close', gone);
    sock.on('error', () => sock.destroy());
  }

  data(conn: number, data: Buffer | undefined): void {
    if (data) this.conns.get(conn)?.write(data);
  }

  closeConn(conn: number): void {
    const sock = this.conns.get(conn);
    this.conns.delete(conn);
    sock?.end();
  }

  async close(): Promise<void> {
    for (const s of this.conns.values()) s.destroy();
    this.conns.clear();
    for (const pid of this.agentPids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    if (this.tmp) await fs.rm(this.tmp, { recursive: true, force: true });
  }
}
