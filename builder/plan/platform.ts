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
