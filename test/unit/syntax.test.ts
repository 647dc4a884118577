import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { checkFrontend, isBuiltinFrontend } from '../../builder/dockerfile/syntax.js';

describe('# syntax= and BUILDKIT_SYNTAX', () => {
  it('docker/dockerfile and docker/dockerfile-upstream at any tag or digest are the built-in frontend', () => {
    for (const ref of ['docker/dockerfile:1', 'docker/dockerfile:1.7-labs', 'docker.io/docker/dockerfile:1.4', 'docker/dockerfile', 'docker/dockerfile:1@sha256:' + 'a'.repeat(64), 'docker/dockerfile-upstream:master', 'index.docker.io/docker/dockerfile:experimental', ' docker/dockerfile:1 --some-frontend-arg'])
      expect(isBuiltinFrontend(ref), ref).toBe(true);
    for (const ref of ['tonistiigi/dockerfile:runmount20180618', 'ghcr.io/docker/dockerfile:1', 'docker/dockerfile-fork:1', 'example.com/frontend']) expect(isBuiltinFrontend(ref), ref).toBe(false);
  });
  it('refuses another frontend, naming the line and how to build with the standard one', () => {
    const df = parseDockerfile('# syntax=example.com/frontend:2\nFROM scratch\n', 'Dockerfile');
    expect(() => checkFrontend(df, {})).toThrow(/^# syntax=example\.com\/frontend:2: mbuild reads Dockerfiles with its own frontend .* --build-arg BUILDKIT_SYNTAX=docker\/dockerfile:1$/);
    try {
      checkFrontend(df, {});
    } catch (e) {
      expect((e as { range?: unknown }).range).toMatchObject({ start: 1, end: 1 });
    }
  });
  it('BUILDKIT_SYNTAX replaces the directive, as BuildKit lets it', () => {
    const df = parseDockerfile('# syntax=example.com/frontend:2\nFROM scratch\n');
    expect(() => checkFrontend(df, { BUILDKIT_SYNTAX: 'docker/dockerfile:1' })).not.toThrow();
    expect(() => checkFrontend(parseDockerfile('FROM scratch\n'), { BUILDKIT_SYNTAX: 'other/frontend' })).toThrow(/^--build-arg BUILDKIT_SYNTAX=other\/frontend: /);
    expect(() => checkFrontend(parseDockerfile('# syntax=docker/dockerfile:1\nFROM scratch\n'), {})).not.toThrow();
  });
});
