/** The client's connection to one server: grpc-js calls wrapped as promises, status codes as mbuild errors. */
import { MbuildError, UsageError } from '../util/errors.js';
import { grpcTarget, isLoopback, type Address } from './address.js';
import { loadGrpc, MAX_MESSAGE, type Grpc } from './grpc.js';
import { SERVICE_DEF, type Frame, type MethodName } from './protocol.js';
import type { TlsMaterial } from './tls.js';
import type * as grpc from '@grpc/grpc-js';

export class Connection {
  private constructor(
    readonly address: Address,
    readonly grpc: Grpc,
    private readonly client: grpc.Client,
  ) {}

  /** compress: gzip every message (--compress: a context sent over a slow link) */
  static async open(address: Address, tls: TlsMaterial | undefined, opts: { compress?: boolean } = {}): Promise<Connection> {
    const g = await loadGrpc();
    let creds: grpc.ChannelCredentials;
    if (address.kind === 'unix') creds = g.credentials.createInsecure();
    else if (tls) creds = g.credentials.createSsl(tls.ca, tls.key, tls.cert);
    else if (isLoopback(address.host)) creds = g.credentials.createInsecure();
    else throw new UsageError(`${address.raw}: a TCP server needs mutual TLS: give --tlscacert, --tlscert and --tlskey (or MBUILD_CERT_PATH)`);
    const client = new g.Client(grpcTarget(address), creds, {
      'grpc.max_receive_message_length': MAX_MESSAGE,
      'grpc.max_send_message_length': MAX_MESSAGE,
      ...(opts.compress ? { 'grpc.default_compression_algorithm': 2 /* gzip */ } : {}),
    });
    return new Connection(address, g, client);
  }

  close(): void {
    this.client.close();
  }

  unary<Req, Res>(name: MethodName, head: Req, data?: Buffer): Promise<Frame<Res>> {
    const m = SERVICE_DEF[name];
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<Frame<Req>, Frame<Res>>(m.path, m.requestSerialize as never, m.responseDeserialize as never, { head, data }, (err, value) =>
        err ? reject(this.error(err)) : resolve(value!),
      );
    });
  }

  clientStream<Req, Res>(name: MethodName): { call: grpc.ClientWritableStream<Frame<Req>>; done: Promise<Frame<Res>> } {
    const m = SERVICE_DEF[name];
    let call!: grpc.ClientWritableStream<Frame<Req>>;
    const done = new Promise<Frame<Res>>((resolve, reject) => {
      call = this.client.makeClientStreamRequest<Frame<Req>, Frame<Res>>(m.path, m.requestSerialize as never, m.responseDeserialize as never, (err, value) =>
        err ? reject(this.error(err)) : resolve(value!),
      );
    });
    return { call, done };
  }

  serverStream<Req, Res>(name: MethodName, head: Req): grpc.ClientReadableStream<Frame<Res>> {
    const m = SERVICE_DEF[name];
    return this.client.makeServerStreamRequest<Frame<Req>, Frame<Res>>(m.path, m.requestSerialize as never, m.responseDeserialize as never, { head }, new this.grpc.Metadata());
  }

  bidi<Req, Res>(name: MethodName): grpc.ClientDuplexStream<Frame<Req>, Frame<Res>> {
    const m = SERVICE_DEF[name];
    return this.client.makeBidiStreamRequest<Frame<Req>, Frame<Res>>(m.path, m.requestSerialize as never, m.responseDeserialize as never, new this.grpc.Metadata());
  }

  /** A failed call as one line naming the server. */
  error(err: grpc.ServiceError): Error {
    const s = this.grpc.status;
    if (err.code === s.INVALID_ARGUMENT) return new UsageError(err.details);
    if (err.code === s.UNAVAILABLE) {
      // grpc-js: "No connection established. Last error: Error: connect ENOENT /x. Resolution note: "
      const last = /Last error: (?:Error: )?(.*?)(?:\. Resolution note:.*)?$/s.exec(err.details)?.[1]?.trim();
      return new MbuildError('MBUILD_REMOTE', `cannot reach the mbuild server at ${this.address.raw}: ${last || err.details}`, { cause: err });
    }
    if (err.code === s.CANCELLED) return new MbuildError('MBUILD_REMOTE', `the call to ${this.address.raw} was cancelled`, { cause: err });
    return new MbuildError('MBUILD_REMOTE', `the mbuild server at ${this.address.raw}: ${err.details}`, { cause: err });
  }
}
