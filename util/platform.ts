/**
 * The one place that decides platforms: the machine mbuild runs on (the build platform), the
 * target platforms a build asks for (`--platform a,b`), how a platform string is read and written,
 * and which index entry serves which platform. Pulls (FROM, `mbuild pull`, nested indexes of loaded
 * archives), the predefined platform ARGs and the image config all take them from here, so they
 * always agree (an amd64 pull with TARGETARCH=arm64 cannot happen). A multi-platform build has one
 * plan per target platform; a stage's platform is its plan's target unless FROM --platform says
 * otherwise (builder/plan decides that per stage with the functions below).
 */
import os from 'node:os';
import { UsageError } from './errors.js';

export interface TargetPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips64el: 'mips64le' };

/** os/arch as Go names them; MBUILD_TEST_ARCH (tests only) pretends another machine. */
function hostArch(): string {
  return process.env.MBUILD_TEST_ARCH || ARCH[os.arch()] || os.arch();
}

/** This machine's platform (the build platform), normalized as containerd does (arm64 has no variant). */
export function hostPlatform(): TargetPlatform {
  const arch = hostArch();
  return { os: 'linux', architecture: arch, ...(arch === 'arm' ? { variant: 'v7' } : {}) };
}

/** The default target platform: the host's (a build without --platform, `mbuild pull` without one). */
export function targetPlatform(): TargetPlatform {
  return hostPlatform();
}

/** The platform written into an image config (arm64 images say variant v8, as BuildKit writes them). */
export function configPlatform(p: TargetPlatform = targetPlatform()): TargetPlatform {
  return p.architecture === 'arm64' && !p.variant ? { ...p, variant: 'v8' } : p;
}

export function platformString(p: TargetPlatform = targetPlatform()): string {
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}

/** `linux/arm64/v8`, `linux/amd64`, `arm64` (os linux), `local` (the host) → a platform, normalized like containerd. */
export function parsePlatform(s: string): TargetPlatform {
  if (s.trim() === 'local') return hostPlatform();
  const parts = s.trim().toLowerCase().split('/');
  if (parts.length === 1) parts.unshift('linux');
  if (parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) throw new UsageError(`invalid platform "${s}" (expected os/arch[/variant], e.g. linux/arm64)`);
  const [osName, archRaw, variantRaw] = parts;
  let arch = archRaw;
  let variant: string | undefined = variantRaw;
  if (arch === 'x86_64' || arch === 'x86-64') arch = 'amd64';
  if (arch === 'aarch64') arch = 'arm64';
  if (arch === 'x86' || arch === 'i386' || arch === 'i686') arch = '386';
  if (arch === 'armhf') [arch, variant] = ['arm', 'v7'];
  if (arch === 'armel') [arch, variant] = ['arm', 'v6'];
  if (arch === 'arm64' && (variant === 'v8' || variant === '8')) variant = undefined; // arm64 means v8
  if (arch === 'amd64' && variant === 'v1') variant = undefined;
  if (arch === 'arm' && variant === undefined) variant = 'v7';
  if (variant && /^\d+$/.test(variant)) variant = 'v' + variant;
  const p: TargetPlatform = { os: osName, architecture: arch };
  if (variant) p.variant = variant;
  return p;
}

/** `--platform a,b` (and the flag repeated): the target platforms, each once, in the order given. */
export function parsePlatformList(values: string[]): TargetPlatform[] {
  const out: TargetPlatform[] = [];
  for (const v of values.flatMap((x) => x.split(','))) {
    if (v.trim() === '') throw new UsageError(`--platform ${values.join(',')}: an empty platform`);
    const p = parsePlatform(v);
    if (!out.some((o) => samePlatform(o, p))) out.push(p);
  }
  return out;
}

export function samePlatform(a: TargetPlatform, b: TargetPlatform): boolean {
  return platformString(parsePlatform(platformString(a))) === platformString(parsePlatform(platformString(b)));
}

export function isHostPlatform(p: TargetPlatform): boolean {
  return samePlatform(p, hostPlatform());
}

/** Does an index entry's (or config's) platform serve `want`? arm64 entries with variant v8 count as arm64. */
export function platformMatches(have: TargetPlatform | undefined, want: TargetPlatform): boolean {
  if (!have || have.os !== want.os || have.architecture !== want.architecture) return false;
  const hv = have.architecture === 'arm64' && have.variant === 'v8' ? undefined : have.variant;
  const wv = want.architecture === 'arm64' && want.variant === 'v8' ? undefined : want.variant;
  if (wv === undefined) return true;
  return hv === wv;
}

/**
 * The entry of an index for `want` (containerd's matcher, enough of it): same os and architecture,
 * the wanted variant, or without a wanted variant an entry without one first. Attestation manifests
 * (platform unknown/unknown) never match.
 */
export function pickPlatformEntry<T extends { platform?: TargetPlatform }>(entries: T[], want: TargetPlatform): T | undefined {
  const matches = entries.filter((d) => platformMatches(d.platform, want));
  const wv = want.architecture === 'arm64' && want.variant === 'v8' ? undefined : want.variant;
  const rank = (d: T) => {
    const v = d.platform?.architecture === 'arm64' && d.platform.variant === 'v8' ? undefined : d.platform?.variant;
    return Number(Boolean(v) && v !== wv);
  };
  return [...matches].sort((a, b) => rank(a) - rank(b))[0];
}

/** BuildKit's predefined platform ARGs (global scope): TARGET* of the plan's target, BUILD* of this machine. */
export function platformArgs(target: TargetPlatform = targetPlatform()): Record<string, string> {
  const b = hostPlatform();
  return {
    TARGETPLATFORM: platformString(target), TARGETOS: target.os, TARGETARCH: target.architecture, TARGETVARIANT: target.variant ?? '',
    BUILDPLATFORM: platformString(b), BUILDOS: b.os, BUILDARCH: b.architecture, BUILDVARIANT: b.variant ?? '',
  };
}

/** `linux/arm64` → `linux_arm64`: the folder of a platform in a local output (as BuildKit names it). */
export function platformFolder(p: TargetPlatform): string {
  return platformString(p).replace(/\//g, '_');
}
