/** FROM --platform: the host's platform (however written) builds; another one is refused, naming the line. */
import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { planBuild } from '../../builder/plan/plan.js';
import { isHostPlatform, targetPlatform as hostPlatform } from '../../builder/plan/platform.js';

const plan = (text: string) => planBuild(parseDockerfile(text, 'Dockerfile'));
const host = hostPlatform();
const foreign = host.architecture === 'amd64' ? 'linux/arm64' : 'linux/amd64';

describe('FROM --platform', () => {
  it('accepts the host platform, as written or through BUILDPLATFORM/TARGETPLATFORM', () => {
    const hostSpec = `${host.os}/${host.architecture}`;
    expect(isHostPlatform(hostSpec)).toBe(true);
    expect(isHostPlatform(hostSpec.toUpperCase())).toBe(true);
    if (host.architecture === 'amd64') expect(isHostPlatform('linux/x86_64')).toBe(true);
    expect(() => plan(`FROM --platform=${hostSpec} busybox\nFROM --platform=$BUILDPLATFORM busybox\nFROM --platform=\${TARGETPLATFORM} busybox AS x\n`)).not.toThrow();
    expect(() => plan('ARG P\nFROM --platform=$P busybox\n')).not.toThrow();
  });

  it('refuses another platform clearly instead of building for the host', () => {
    expect(isHostPlatform(foreign)).toBe(false);
    expect(isHostPlatform('windows/amd64')).toBe(false);
    expect(isHostPlatform(`${host.os}/${host.architecture}/v7/extra`)).toBe(false);
    expect(() => plan(`FROM busybox\nFROM --platform=${foreign} busybox\n`)).toThrow(
      expect.objectContaining({ code: 'MBUILD_UNSUPPORTED', message: expect.stringMatching(new RegExp(`^FROM --platform=${foreign}: building for a platform other than this machine's .* is not supported yet$`)), range: expect.objectContaining({ start: 2 }) }),
    );
    expect(() => plan(`ARG ARCH=${foreign.split('/')[1]}\nFROM --platform=linux/$ARCH busybox\n`)).toThrow(/not supported yet/);
  });
});
