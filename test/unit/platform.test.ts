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
  it('--platform accepts only this machine (and says which that is)', async () => {
    process.env.MBUILD_TEST_ARCH = 'amd64';
    vi.resetModules();
    const { checkTargetPlatform } = await import('../../builder/plan/platform.js');
    expect(() => checkTargetPlatform('linux/amd64')).not.toThrow();
    expect(() => checkTargetPlatform('amd64')).not.toThrow();
    expect(() => checkTargetPlatform('linux/arm64')).toThrow(/only for this machine's platform \(linux\/amd64\)/);
    expect(() => checkTargetPlatform('linux/amd64,linux/arm64')).toThrow(/several platforms/);
  });
});
