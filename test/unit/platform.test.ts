import { afterEach, describe, expect, it, vi } from 'vitest';

describe('one platform for pulls, ARGs and the config', () => {
  afterEach(() => {
    delete process.env.MBUILD_TEST_ARCH;
    vi.resetModules();
  });
  it('pulls what TARGETARCH says (on an arm64 machine, both are arm64)', async () => {
    process.env.MBUILD_TEST_ARCH = 'arm64';
    vi.resetModules();
    const { DEFAULT_PLATFORM } = await import('../../registry/reference.js');
    const { platformArgs, configPlatform } = await import('../../builder/plan/platform.js');
    const { baseState } = await import('../../builder/steps/state.js');
    expect(DEFAULT_PLATFORM).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(platformArgs()).toMatchObject({ TARGETARCH: 'arm64', TARGETPLATFORM: 'linux/arm64', TARGETVARIANT: '', BUILDARCH: 'arm64' });
    expect(configPlatform()).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    // FROM scratch takes the machine's platform too
    expect(baseState(undefined, [], 'scratch')).toMatchObject({ architecture: 'arm64', variant: 'v8' });
  });
  it('--platform lists: each platform once, in order; an empty one is refused', async () => {
    const { parsePlatformList } = await import('../../util/platform.js');
    expect(parsePlatformList(['linux/amd64,linux/arm64', 'linux/arm64/v8', 'linux/arm/v7'])).toEqual([
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ]);
    expect(() => parsePlatformList(['linux/amd64,'])).toThrow(/an empty platform/);
    expect(() => parsePlatformList(['linux/amd64/v1/x'])).toThrow(/invalid platform/);
  });
  it('BuildKit-style args for a foreign target: TARGET* the target, BUILD* the machine', async () => {
    process.env.MBUILD_TEST_ARCH = 'amd64';
    vi.resetModules();
    const { platformArgs, configPlatform } = await import('../../util/platform.js');
    expect(platformArgs({ os: 'linux', architecture: 'arm', variant: 'v7' })).toEqual({
      TARGETPLATFORM: 'linux/arm/v7', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7',
      BUILDPLATFORM: 'linux/amd64', BUILDOS: 'linux', BUILDARCH: 'amd64', BUILDVARIANT: '',
    });
    expect(configPlatform({ os: 'linux', architecture: 'arm64' })).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
  });
});
