/**
 * The one place that decides the platform mbuild builds for: the machine it runs on. Pulls (FROM,
 * `mbuild pull`, nested indexes of loaded archives), the predefined platform ARGs and the image
 * config all take it from here, so they always agree (an amd64 pull with TARGETARCH=arm64 cannot happen).
 */
import os from 'node:os';

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

/** The platform to pull and match, normalized as containerd does (arm64 has no variant). */
export function targetPlatform(): TargetPlatform {
  const arch = hostArch();
  return { os: 'linux', architecture: arch, ...(arch === 'arm' ? { variant: 'v7' } : {}) };
}

/** The platform written into an image config (arm64 images say variant v8, as BuildKit writes them). */
export function configPlatform(): TargetPlatform {
  const p = targetPlatform();
  return p.architecture === 'arm64' ? { ...p, variant: 'v8' } : p;
}

export function platformString(p: TargetPlatform = targetPlatform()): string {
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}
