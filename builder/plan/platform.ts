/** The build and target platform (mbuild builds for the machine it runs on: util/platform.ts decides). */
import { UsageError } from '../../util/errors.js';
import { configPlatform, platformString, targetPlatform } from '../../util/platform.js';

export { configPlatform, targetPlatform };

/** BuildKit's predefined platform ARGs (global scope). */
export function platformArgs(): Record<string, string> {
  const p = targetPlatform();
  const plat = platformString(p);
  return {
    TARGETPLATFORM: plat, TARGETOS: p.os, TARGETARCH: p.architecture, TARGETVARIANT: p.variant ?? '',
    BUILDPLATFORM: plat, BUILDOS: p.os, BUILDARCH: p.architecture, BUILDVARIANT: p.variant ?? '',
  };
}

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', x86: '386', i386: '386', aarch64: 'arm64', armhf: 'arm', armel: 'arm' };

/**
 * Is a platform string (`os/arch[/variant]` as FROM --platform and --platform take it, or a bare
 * architecture) this machine's? Architecture aliases and the default variants count as the same.
 */
export function isHostPlatform(spec: string): boolean {
  const parts = spec.trim().toLowerCase().split('/');
  if (parts.length === 1) parts.unshift('linux');
  const [os = '', arch = '', variant, ...rest] = parts;
  if (rest.length > 0) return false;
  const host = targetPlatform();
  const a = ARCH_ALIASES[arch] ?? arch;
  if (os !== host.os || a !== host.architecture) return false;
  const defaultVariant = a === 'arm64' ? 'v8' : a === 'amd64' ? 'v1' : undefined;
  return (variant ?? defaultVariant) === (host.variant ?? defaultVariant);
}

/** `--platform`: only this machine's (building for another one is not done yet). */
export function checkTargetPlatform(want: string): void {
  const here = platformString(targetPlatform());
  if (want.includes(',')) throw new UsageError(`--platform ${want}: building for several platforms is not supported yet (only ${here})`);
  if (!isHostPlatform(want)) throw new UsageError(`--platform ${want}: mbuild builds only for this machine's platform (${here})`);
}
