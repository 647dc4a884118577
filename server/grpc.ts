/**
 * grpc-js, for the commands that talk to a server (`serve`, `--host`) only: server/ modules are
 * loaded by a dynamic import from the CLI, and grpc-js is a bundle of its own
 * (dist/bundle/grpc.cjs, scripts/bundle.mjs) that a local build never reads.
 */
import * as grpcJs from '@grpc/grpc-js';

export type Grpc = typeof grpcJs;

export async function loadGrpc(): Promise<Grpc> {
  return grpcJs;
}

/** Message size limit both ways: a manifest of a big context is one message. */
export const MAX_MESSAGE = 512 * 1024 * 1024;
