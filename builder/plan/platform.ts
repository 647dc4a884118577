/** The build and target platform (mbuild builds for the machine it runs on). */
import os from 'node:os';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): { os: string; architecture: string; variant?: string } {
  const arch = ARCH[os.arch()] ?? os.arch();
  return { os: 'linux', architecture: arch, ...(arch === 'arm64' ? { variant: 'v8' } : {}) };
}

/** BuildKit's predefined platform ARGs (global scope). */
export function platformArgs(): Record<string, string> {
  const p = hostPlatform();
  const plat = `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
  return {
    TARGETPLATFORM: plat, TARGETOS: p.os, TARGETARCH: p.architecture, TARGETVARIANT: p.variant ?? '',
    BUILDPLATFORM: plat, BUILDOS: p.os, BUILDARCH: p.architecture, BUILDVARIANT: p.variant ?? '',
  };
}

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', x86: '386', i386: '386', aarch64: 'arm64', armhf: 'arm', armel: 'arm' };

/**
 * Is an OCI platform string (`os/arch[/variant]`, as FROM --platform takes it) the host's?
 * Architecture aliases and arm64's default v8 variant count as the same.
 */
export function isHostPlatform(spec: string): boolean {
  const [os = '', arch = '', variant, ...rest] = spec.toLowerCase().split('/');
  if (rest.length > 0) return false;
  const host = hostPlatform();
  const a = ARCH_ALIASES[arch] ?? arch;
  if (os !== host.os || a !== host.architecture) return false;
  const v = variant ?? (a === 'arm64' ? 'v8' : undefined);
  return v === (host.variant ?? undefined);
}
