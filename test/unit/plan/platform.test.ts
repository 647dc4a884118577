import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { hostPlatform, platformArgs } from '../../../builder/plan/platform.js';

describe('platform', () => {
  it('names the host in OCI terms', () => {
    const p = hostPlatform();
    expect(p.os).toBe('linux');
    expect(p.architecture).toBe({ x64: 'amd64', arm64: 'arm64' }[os.arch() as 'x64'] ?? p.architecture);
    if (p.architecture === 'arm64') expect(p.variant).toBe('v8');
    else expect(p.variant).toBeUndefined();
  });

  it("gives BuildKit's predefined platform ARGs, build and target both the host", () => {
    const p = hostPlatform();
    const plat = `linux/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
    expect(platformArgs()).toEqual({
      TARGETPLATFORM: plat, TARGETOS: 'linux', TARGETARCH: p.architecture, TARGETVARIANT: p.variant ?? '',
      BUILDPLATFORM: plat, BUILDOS: 'linux', BUILDARCH: p.architecture, BUILDVARIANT: p.variant ?? '',
    });
  });
});
