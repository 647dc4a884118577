import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { configPlatform, platformArgs, targetPlatform } from '../../../builder/plan/platform.js';

describe('platform', () => {
  it('names the host in OCI terms (util/platform.ts decides it)', () => {
    const p = targetPlatform();
    expect(p.os).toBe('linux');
    expect(p.architecture).toBe({ x64: 'amd64', arm64: 'arm64' }[os.arch() as 'x64'] ?? p.architecture);
    // pulls and ARGs use containerd's normal form (arm64 has no variant); the config says v8 on arm64
    if (p.architecture === 'arm64') expect(configPlatform().variant).toBe('v8');
    else expect(configPlatform().variant).toBeUndefined();
    expect(p.variant).toBeUndefined();
  });

  it("gives BuildKit's predefined platform ARGs, build and target both the host", () => {
    const p = targetPlatform();
    const plat = `linux/${p.architecture}`;
    expect(platformArgs()).toEqual({
      TARGETPLATFORM: plat, TARGETOS: 'linux', TARGETARCH: p.architecture, TARGETVARIANT: '',
      BUILDPLATFORM: plat, BUILDOS: 'linux', BUILDARCH: p.architecture, BUILDVARIANT: '',
    });
  });
});
