/** FROM --platform and per-plan platforms: each stage its platform, each plan its TARGET and BUILD ARGs. */
import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { planBuild } from '../../builder/plan/plan.js';
import { hostPlatform, isHostPlatform, parsePlatform } from '../../util/platform.js';

const plan = (text: string, platform?: string) => planBuild(parseDockerfile(text, 'Dockerfile'), platform ? { platform: parsePlatform(platform) } : {});
const host = hostPlatform();
const hostSpec = `${host.os}/${host.architecture}`;

describe('FROM --platform', () => {
  it('reads platforms as containerd normalizes them', () => {
    expect(isHostPlatform(parsePlatform(hostSpec))).toBe(true);
    expect(isHostPlatform(parsePlatform(hostSpec.toUpperCase()))).toBe(true);
    expect(parsePlatform('linux/aarch64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/arm')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(parsePlatform('local')).toEqual(host);
    expect(() => parsePlatform('linux/amd64/v1/x')).toThrow(/invalid platform/);
  });

  it('gives each stage its platform: FROM --platform, its base stage, else the plan target', () => {
    const p = plan(`FROM --platform=$BUILDPLATFORM busybox AS build\nFROM build AS more\nFROM --platform=linux/arm64 busybox AS arm\nFROM busybox\n`, 'linux/riscv64');
    expect(p.platform).toEqual({ os: 'linux', architecture: 'riscv64' });
    expect(p.stages.map((s) => s.platform.architecture)).toEqual([host.architecture, host.architecture, 'arm64', 'riscv64']);
    // TARGET* name the plan's target, BUILD* this machine
    expect(p.globalArgs.get('TARGETPLATFORM')).toBe('linux/riscv64');
    expect(p.globalArgs.get('TARGETARCH')).toBe('riscv64');
    expect(p.globalArgs.get('BUILDPLATFORM')).toBe(hostSpec);
    // an ARG can name the platform
    expect(plan('ARG P=linux/arm64\nFROM --platform=$P busybox\n').stages[0]!.platform).toEqual({ os: 'linux', architecture: 'arm64' });
  });

  it('refuses a value that is no platform, naming the line', () => {
    expect(() => plan('FROM busybox\nFROM --platform=linux/a/b/c busybox\n')).toThrow(
      expect.objectContaining({ code: 'MBUILD_PARSE', message: expect.stringMatching(/^FROM --platform=linux\/a\/b\/c: not a platform/), range: expect.objectContaining({ start: 2 }) }),
    );
  });
});

describe('index entries', () => {
  it('picks the wanted platform: arm64 with or without v8, arm by variant, an attestation entry only when asked for', async () => {
    const { pickPlatformEntry } = await import('../../util/platform.js');
    const entries = [
      { digest: 'att', platform: { os: 'unknown', architecture: 'unknown' } },
      { digest: 'amd', platform: { os: 'linux', architecture: 'amd64' } },
      { digest: 'arm64', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { digest: 'armv6', platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { digest: 'armv7', platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
    ];
    expect(pickPlatformEntry(entries, parsePlatform('linux/arm64'))?.digest).toBe('arm64');
    expect(pickPlatformEntry(entries, { os: 'linux', architecture: 'arm64', variant: 'v8' })?.digest).toBe('arm64');
    expect(pickPlatformEntry(entries, parsePlatform('linux/amd64'))?.digest).toBe('amd');
    expect(pickPlatformEntry(entries, parsePlatform('linux/arm/v7'))?.digest).toBe('armv7');
    expect(pickPlatformEntry(entries, parsePlatform('linux/s390x'))).toBeUndefined();
    expect(pickPlatformEntry(entries, { os: 'unknown', architecture: 'unknown' })?.digest).toBe('att'); // only when asked for
  });
});
