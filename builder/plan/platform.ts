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

/** `--platform`: only this machine's (building for another one is not done yet). */
export function checkTargetPlatform(want: string): void {
  const norm = want.trim().toLowerCase().replace(/^linux\/(amd64|arm64)\/v\d$/, 'linux/$1').replace(/^(amd64|arm64|arm|386)$/, 'linux/$1');
  const here = platformString(targetPlatform());
  if (want.includes(',')) throw new UsageError(`--platform ${want}: building for several platforms is not supported yet (only ${here})`);
  if (norm !== here) throw new UsageError(`--platform ${want}: mbuild builds only for this machine's platform (${here})`);
}
