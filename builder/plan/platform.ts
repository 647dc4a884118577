/**
 * Platforms as the plan sees them (util/platform.ts decides them): the predefined platform ARGs of
 * a plan's target, and the platform a FROM --platform value names.
 */
import { UsageError } from '../../util/errors.js';
import { configPlatform, hostPlatform, isHostPlatform, parsePlatform, platformArgs, platformString, targetPlatform, type TargetPlatform } from '../../util/platform.js';

export { configPlatform, hostPlatform, isHostPlatform, platformArgs, platformString, targetPlatform, type TargetPlatform };

/**
 * A platform string (`os/arch[/variant]` as FROM --platform and --platform take it, or a bare
 * architecture), or undefined when it is not one.
 */
export function platformOf(spec: string): TargetPlatform | undefined {
  try {
    return parsePlatform(spec);
  } catch (err) {
    if (err instanceof UsageError) return undefined;
    throw err;
  }
}
