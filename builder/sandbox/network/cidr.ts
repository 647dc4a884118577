/** IPv4 subnets as numbers. */
import { UsageError } from '../../../util/errors.js';

export interface Subnet {
  /** network address */
  base: number;
  prefix: number;
}

export function ipToInt(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "10.88.0.0/16" (host bits are cleared); a bare address is a /32. Undefined when malformed. */
export function tryParseCidr(s: string): Subnet | undefined {
  const [addr, len] = s.split('/');
  const ip = ipToInt(addr ?? '');
  const prefix = len === undefined ? 32 : /^\d{1,2}$/.test(len) ? Number(len) : NaN;
  if (ip === undefined || !(prefix >= 0 && prefix <= 32)) return undefined;
  return { base: (ip & mask(prefix)) >>> 0, prefix };
}

export function parseSubnet(s: string): Subnet {
  const sn = tryParseCidr(s);
  if (!sn || !s.includes('/')) throw new UsageError(`invalid subnet "${s}": use CIDR notation such as 10.88.0.0/16`);
  if (sn.prefix < 8 || sn.prefix > 28) throw new UsageError(`subnet ${s}: the prefix length must be between 8 and 28`);
  return sn;
}

export function formatSubnet(s: Subnet): string {
  return `${intToIp(s.base)}/${s.prefix}`;
}

export function size(s: Subnet): number {
  return 2 ** (32 - s.prefix);
}

export function contains(s: Subnet, ip: number): boolean {
  return ((ip & mask(s.prefix)) >>> 0) === s.base;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.base & mask(p)) >>> 0) === ((b.base & mask(p)) >>> 0);
}

/** The gateway (the bridge's own address) is the first host address. */
export function gatewayOf(s: Subnet): number {
  return s.base + 1;
}

/** Subnets tried in order when none is configured, as Docker's default pools do. */
export const CANDIDATE_SUBNETS = [
  ...Array.from({ length: 12 }, (_, i) => `10.${88 + i}.0.0/16`),
  ...Array.from({ length: 4 }, (_, i) => `172.${28 + i}.0.0/16`),
  ...Array.from({ length: 8 }, (_, i) => `192.168.${232 + i}.0/24`),
];
