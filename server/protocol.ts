/**
 * The `mbuild serve` wire protocol: a gRPC service written by hand instead of a .proto loaded at
 * run time (@grpc/proto-loader pulls in protobufjs: +3.2 MB on disk and a parse of the .proto at
 * every start). Each message is one frame: a 4-byte big-endian length, a JSON header of that
 * length, then raw bytes (file content, output archives) that never go through JSON or base64.
 */
import type { ManifestEntry } from './manifest.js';

export const SERVICE = 'mbuild.v1.Builder';

export interface Frame<T> {
  head: T;
  data?: Buffer;
}

export function encodeFrame<T>(f: Frame<T>): Buffer {
  const head = Buffer.from(JSON.stringify(f.head ?? {}));
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(head.length);
  return f.data?.length ? Buffer.concat([len, head, f.data]) : Buffer.concat([len, head]);
}

export function decodeFrame<T>(buf: Buffer): Frame<T> {
  if (buf.length < 4) throw new Error('short frame');
  const n = buf.readUInt32BE(0);
  if (4 + n > buf.length) throw new Error('frame header longer than the message');
  const head = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as T;
  return n + 4 < buf.length ? { head, data: buf.subarray(4 + n) } : { head };
}

export interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (v: Frame<unknown>) => Buffer;
  requestDeserialize: (b: Buffer) => Frame<unknown>;
  responseSerialize: (v: Frame<unknown>) => Buffer;
  responseDeserialize: (b: Buffer) => Frame<unknown>;
  originalName: string;
}

function method(name: string, requestStream: boolean, responseStream: boolean): MethodDef {
  return {
    path: `/${SERVICE}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: encodeFrame,
    requestDeserialize: decodeFrame,
    responseSerialize: encodeFrame,
    responseDeserialize: decodeFrame,
    originalName: name,
  };
}

/** The service: unary calls answer one frame; Upload streams in, Build and Exec stream both ways. */
export const SERVICE_DEF = {
  /** which of these sha256 digests the server's context store lacks */
  Missing: method('Missing', false, false),
  /** file content, one frame per chunk: head {sha256} (a frame with head {end: true} closes a file) */
  Upload: method('Upload', true, false),
  /** a build of an uploaded context: the request, then ssh agent traffic, go in; progress, output archives and the exit code stream back */
  Build: method('Build', true, true),
  /** another command on the server's store: the request, then stdin, go in; stdout, stderr and the exit code stream back */
  Exec: method('Exec', true, true),
  Images: method('Images', false, false),
  Inspect: method('Inspect', false, false),
  DiskUsage: method('DiskUsage', false, false),
  Prune: method('Prune', false, false),
  Info: method('Info', false, false),
} as const;

export type MethodName = keyof typeof SERVICE_DEF;

export interface MissingRequest {
  digests: string[];
}
export interface MissingReply {
  missing: string[];
}
export interface UploadChunk {
  sha256: string;
  /** the file's last chunk: the server checks the digest and commits it */
  end?: boolean;
}

/** What a remote build asks for: the CLI's build flags, resolved on the client. */
export interface BuildRequest {
  manifest: ManifestEntry[];
  /** the context folder's own mode and mtime */
  contextRoot?: { m: number; mt: number };
  /** names the repository (sha256 hex): the server keeps its context folder between builds */
  contextKey?: string;
  /** the Dockerfile's base name and text, and its `<name>.dockerignore` when it has one */
  dockerfileName: string;
  dockerfile: string;
  dockerfileIgnore?: string;
  buildArgs: Record<string, string>;
  /** the flags the server applies (cli/build-flags.ts REMOTE `server`), `[--name, value]`, checked by server/remote-flags.ts */
  flags: [string, string | boolean][];
  quiet: boolean;
  /** plain, or rawjson (relayed as it is) */
  progress: 'plain' | 'rawjson';
  /** --secret values, read on the client (the server keeps them in the build's private folder, never in its store) */
  secrets?: { id: string; value: string /* base64 */ }[];
  /** --ssh ids: each agent stays on the client; the server's socket for it forwards every connection over this call */
  ssh?: string[];
  /** the client's SOURCE_DATE_EPOCH: it pins the image's times, as in a local build */
  sourceDateEpoch?: string;
  /** archives the server writes and streams back: the -o spec without dest= and tar= (a `local` output travels as a `tar`) */
  outputs: { type: 'oci' | 'docker' | 'tar'; spec: string }[];
}

/** What the client sends on the Build call after the request: its ssh agents' side of each connection. */
export type BuildInput = { kind: 'ssh-data'; conn: number } | { kind: 'ssh-close'; conn: number };

/** One message of the Build stream. */
export type BuildEvent =
  | { kind: 'queued'; position: number }
  /** paths: the server's context folder and output files, which the client shows as its own */
  | { kind: 'started'; context?: string; outputs?: string[] }
  | { kind: 'stderr' } // data: bytes the build wrote to its stderr (progress)
  | { kind: 'stdout' } // data: bytes for the client's stdout (the image id with -q)
  | { kind: 'output'; index: number; end?: boolean } // data: a chunk of output archive `index`
  /** a RUN connected to the agent of --ssh id `ssh` (an index into the request's ssh list) */
  | { kind: 'ssh-open'; conn: number; ssh: number }
  | { kind: 'ssh-data'; conn: number } // data: bytes from the RUN to the agent
  | { kind: 'ssh-close'; conn: number }
  /** iid and metadata: what --iidfile and --metadata-file hold, written by the client */
  | { kind: 'exit'; code: number; iid?: string; metadata?: string };

/** Images, Inspect, DiskUsage and Prune run the CLI's own command on the server's store. */
export interface CommandRequest {
  args: string[];
}
export interface CommandReply {
  code: number;
  stdout: string;
  stderr: string;
}

export interface InfoReply {
  version: string;
  root: string;
  pid: number;
  maxBuilds: number;
  running: number;
  queued: number;
  draining: boolean;
}

/** Exec: load, save, push, pull, rmi, tag, history on the server (cli/remote.ts). */
export interface ExecRequest {
  command: string;
  args: string[];
}
/** after the request: stdin chunks, then `{ end: true }` */
export interface ExecInput {
  end?: boolean;
}
export type ExecEvent = { kind: 'stdout' } | { kind: 'stderr' } | { kind: 'exit'; code: number };
