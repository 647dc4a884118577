/**
 * EXPOSE port specs as BuildKit reads them (dockerfile2llb/convert_expose.go): each expanded word
 * is `[ip:][hostPort:]containerPort[/proto]`, where the ports may be ranges (`8000-8010`). Only the
 * container side ends up in the image (`8000/tcp` ... `8010/tcp`); the ip and host port are
 * validated and dropped (the ExposeInvalidFormat check warns about them).
 */
import { isIP } from 'node:net';
import { expandWords, goQuote, type EnvLookup, type EscapeToken } from '../expand/shell-word.js';

export class PortSpecError extends Error {}

/** What one spec says, for the checks (ExposeProtoCasing, ExposeInvalidFormat). */
export interface PortSpec {
  raw: string;
  ip: string;
  hostPort: string;
  /** The protocol as written ("tcp" when none was). */
  proto: string;
  /** `port/proto` entries, proto lower-cased. */
  ports: string[];
}

/**
 * EXPOSE's words as dispatchExpose handles them: each is expanded and split into fields
 * (`ENV PORTS="80 443"` then `EXPOSE $PORTS` exposes two ports), then parsed.
 */
export function exposedPorts(words: string[], env: EnvLookup, escape: EscapeToken = '\\'): string[] {
  return parsePorts(words.flatMap((w) => expandWords(w, env, escape)));
}

/** All specs' ports in order; throws PortSpecError with BuildKit's message. */
export function parsePorts(specs: string[]): string[] {
  return specs.flatMap((s) => parsePortSpec(s).ports);
}

export function parsePortSpec(rawPort: string): PortSpec {
  let [ip, hostPort, containerPort] = splitParts(rawPort);
  let proto: string;
  try {
    [proto, containerPort] = splitProtoPort(containerPort);
  } catch (e) {
    throw new PortSpecError(`invalid port: ${goQuote(rawPort)}: ${(e as Error).message}`);
  }
  const spec = { raw: rawPort, ip, hostPort, proto };

  if (ip !== '' && ip[0] === '[') ip = stripBrackets(ip);
  if (ip !== '' && !isGoIP(ip)) throw new PortSpecError('invalid IP address: ' + ip);

  let range: [number, number];
  try {
    range = parsePortRange(containerPort);
  } catch {
    throw new PortSpecError('invalid containerPort: ' + containerPort);
  }
  const [start, end] = range;
  if (hostPort !== '') {
    let host: [number, number];
    try {
      host = parsePortRange(hostPort);
    } catch {
      throw new PortSpecError('invalid hostPort: ' + hostPort);
    }
    // a host range is allowed with a single container port (the range to allocate from)
    if (end - start !== host[1] - host[0] && end !== start) {
      throw new PortSpecError(`invalid ranges specified for container and host Ports: ${containerPort} and ${hostPort}`);
    }
  }
  const ports: string[] = [];
  for (let p = start; p <= end; p++) ports.push(`${p}/${proto.toLowerCase()}`);
  return { ...spec, ports };
}

function splitParts(raw: string): [string, string, string] {
  const parts = raw.split(':');
  switch (parts.length) {
    case 1:
      return ['', '', parts[0]!];
    case 2:
      return ['', parts[0]!, parts[1]!];
    case 3:
      return [parts[0]!, parts[1]!, parts[2]!];
    default: {
      const n = parts.length;
      return [parts.slice(0, n - 2).join(':'), parts[n - 2]!, parts[n - 1]!];
    }
  }
}

function splitProtoPort(raw: string): [string, string] {
  const slash = raw.indexOf('/');
  const port = slash < 0 ? raw : raw.slice(0, slash);
  const proto = slash < 0 ? '' : raw.slice(slash + 1);
  if (port === '') throw new Error('no port specified');
  switch (proto.toLowerCase()) {
    case '':
      return ['tcp', port];
    case 'tcp':
    case 'udp':
    case 'sctp':
      return [proto, port];
    default:
      throw new Error('invalid proto: ' + proto);
  }
}

function parsePortRange(ports: string): [number, number] {
  if (ports === '') throw new Error('empty string specified for ports');
  const dash = ports.indexOf('-');
  const start = dash < 0 ? ports : ports.slice(0, dash);
  const end = dash < 0 ? '' : ports.slice(dash + 1);
  const startPort = parsePortNumber(start);
  if (dash < 0 || start === end) return [startPort, startPort];
  const endPort = parsePortNumber(end);
  if (endPort < startPort) throw new Error('invalid port range: ' + ports);
  return [startPort, endPort];
}

/** Go's strconv.ParseInt(s, 10, 0) limited to 0-65535. */
function parsePortNumber(raw: string): number {
  if (!/^[+-]?[0-9]+$/.test(raw)) throw new Error(raw === '' ? 'value is empty' : 'invalid syntax');
  const n = Number(raw);
  if (n < 0 || n > 65535) throw new Error('value out of range (0–65535)');
  return n;
}

/** `[addr]` as Go's net.SplitHostPort(ip + ":") sees it: the address inside the brackets. */
function stripBrackets(ip: string): string {
  const hostport = ip + ':';
  const end = hostport.indexOf(']');
  const bad = (why: string) => new PortSpecError(`invalid IP address ${ip}: address ${hostport}: ${why}`);
  if (end < 0) throw bad("missing ']' in address");
  if (hostport[end + 1] !== ':' || hostport.slice(end + 2).includes(':')) throw bad('too many colons in address');
  const host = hostport.slice(1, end);
  if (host.includes('[')) throw bad("unexpected '[' in address");
  if (hostport.slice(end + 1).includes(']')) throw bad("unexpected ']' in address");
  return host;
}

/** Go's net.ParseIP: IPv4 dotted quads or IPv6, no zone. */
function isGoIP(s: string): boolean {
  return !s.includes('%') && isIP(s) !== 0;
}
