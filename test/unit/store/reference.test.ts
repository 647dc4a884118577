import { describe, expect, it } from 'vitest';
import { familiarName, formatReference, normalizeName, parseReference } from '../../../store/reference.js';

const D = 'sha256:' + 'a'.repeat(64);

describe('image references', () => {
  it('fills in Docker Hub, library/ and :latest as docker does', () => {
    expect(normalizeName('busybox')).toBe('docker.io/library/busybox:latest');
    expect(normalizeName('index.docker.io/me/app:1')).toBe('docker.io/me/app:1');
    expect(normalizeName('localhost:5000/app')).toBe('localhost:5000/app:latest');
    expect(normalizeName('ghcr.io/o/r/img:v1.2')).toBe('ghcr.io/o/r/img:v1.2');
  });

  it('keeps a digest, with or without a tag', () => {
    expect(parseReference(`busybox@${D}`)).toEqual({ domain: 'docker.io', path: 'library/busybox', tag: undefined, digest: D });
    expect(formatReference(parseReference(`r.example:5000/a/b:t@${D}`))).toBe(`r.example:5000/a/b:t@${D}`);
  });

  it('a first component without a dot, colon or localhost is a Docker Hub path, not a host', () => {
    expect(parseReference('me/app')).toMatchObject({ domain: 'docker.io', path: 'me/app' });
  });

  it('refuses malformed references with one line saying what is wrong', () => {
    expect(() => parseReference('  ')).toThrow('empty image reference');
    expect(() => parseReference('Busybox')).toThrow('repository names must be lowercase');
    expect(() => parseReference('busybox:bad tag')).toThrow('invalid tag in reference "busybox:bad tag"');
    expect(() => parseReference('busybox@sha256:123')).toThrow('invalid digest in reference');
  });

  it('shows the short form users type', () => {
    expect(familiarName('docker.io/library/busybox:latest')).toBe('busybox:latest');
    expect(familiarName('docker.io/me/app:1')).toBe('me/app:1');
    expect(familiarName('localhost:5000/app:1')).toBe('localhost:5000/app:1');
  });
});
