/**
 * The server's side of `--ssh` with `--host` (cli/remote-ssh.ts is the client's): a unix socket
 * per --ssh id in the build's private folder, given to the worker as the agent socket. Each
 * connection a RUN makes is numbered and relayed over the build's call to the client's agent.
 */
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { BuildEvent, BuildInput } from './protocol.js';

type Send = (head: BuildEvent, data?: Buffer) => Promise<void>;

export class ServerAgents {
  private readonly servers: net.Server[] = [];
  private readonly conns = new Map<number, net.Socket>();
  private next = 1;
  /** [id, socket path] for the worker's --ssh flags */
  readonly sockets: [string, string][] = [];

  private constructor(private readonly send: Send) {}

  static async listen(dir: string, ids: string[], send: Send): Promise<ServerAgents> {
    await fs.mkdir(dir, { mode: 0o700 });
    const a = new ServerAgents(send);
    try {
      for (const [i, id] of ids.entries()) {
        const sock = path.join(dir, `${i}.sock`);
        const server = net.createServer((c) => a.accept(c, i));
        a.servers.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(sock, () => resolve());
        });
        a.sockets.push([id, sock]);
      }
    } catch (err) {
      await a.close();
      throw err;
    }
    return a;
  }

  private accept(c: net.Socket, ssh: number): void {
    const conn = this.next++;
    this.conns.set(conn, c);
    // the RUN's bytes wait until the client has been told of the connection
    c.pause();
    void this.send({ kind: 'ssh-open', conn, ssh }).then(() => c.resume());
    c.on('data', (d: Buffer) => {
      c.pause();
      void this.send({ kind: 'ssh-data', conn }, d).finally(() => c.resume());
    });
    c.on('close', () => {
      if (this.conns.get(conn) !== c) return;
      this.conns.delete(conn);
      void this.send({ kind: 'ssh-close', conn });
    });
    c.on('error', () => c.destroy());
  }

  /** The client's side of a connection: its agent's bytes, or its end. */
  input(head: BuildInput | undefined, data?: Buffer): void {
    if (!head || typeof head.conn !== 'number') return;
    const c = this.conns.get(head.conn);
    if (!c) return;
    if (head.kind === 'ssh-data' && data) c.write(data);
    else if (head.kind === 'ssh-close') {
      this.conns.delete(head.conn);
      c.end();
    }
  }

  async close(): Promise<void> {
    for (const c of this.conns.values()) c.destroy();
    this.conns.clear();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
