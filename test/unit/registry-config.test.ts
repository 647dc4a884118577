/** References, platforms, challenges, settings (mirrors, insecure hosts) and Docker credentials. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parsePlatform, platformMatches, parseRemote, storeName, apiHost } from '../../registry/reference.js';
import { parseChallenges, Authenticator } from '../../registry/auth.js';
import { configureRegistry, isInsecure, isLoopback, parseMirrorFlag, registrySettings } from '../../registry/settings.js';
import { pullEndpoints, pushEndpoint } from '../../registry/mirrors.js';
import { credentialKey, eraseCredentials, getCredentials, storeCredentials } from '../../registry/credentials.js';

let work: string;
const saved = { ...process.env };
beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-registry-unit-'));
});
afterAll(async () => {
  process.env = saved;
  configureRegistry({});
  await fs.rm(work, { recursive: true, force: true });
});
beforeEach(() => {
  process.env.MBUILD_CONFIG = path.join(work, 'none.json');
  process.env.DOCKER_CONFIG = path.join(work, 'docker');
  configureRegistry({});
});

describe('references and platforms', () => {
  it('applies Docker defaults and keeps digests', () => {
    expect(parseRemote('busybox')).toEqual({ registry: 'docker.io', repository: 'library/busybox', tag: 'latest', digest: undefined });
    expect(storeName(parseRemote('127.0.0.1:5000/a/b:1'))).toBe('127.0.0.1:5000/a/b:1');
    const d = 'sha256:' + 'a'.repeat(64);
    expect(storeName(parseRemote(`busybox:1.36@${d}`))).toBe(`docker.io/library/busybox@${d}`);
    expect(apiHost('docker.io')).toBe('registry-1.docker.io');
    expect(() => parseRemote('busybox@sha256:../x')).toThrow(/invalid digest/);
  });

  it('parses and matches platforms like containerd', () => {
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('arm64')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/x86_64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/arm/v7')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(() => parsePlatform('linux/a/b/c')).toThrow(/invalid platform/);
    expect(platformMatches({ os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm64' })).toBe(true);
    expect(platformMatches({ os: 'linux', architecture: 'arm', variant: 'v6' }, { os: 'linux', architecture: 'arm', variant: 'v7' })).toBe(false);
    expect(platformMatches(undefined, { os: 'linux', architecture: 'amd64' })).toBe(false);
  });
});

describe('WWW-Authenticate', () => {
  it('parses Bearer and Basic challenges, quoted values with commas and escapes', () => {
    const c = parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"');
    expect(c).toEqual([{ scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } }]);
    expect(parseChallenges('Basic realm="x \\"y\\"", Bearer realm=https://t')).toEqual([
      { scheme: 'basic', params: { realm: 'x "y"' } },
      { scheme: 'bearer', params: { realm: 'https://t' } },
    ]);
    expect(parseChallenges(undefined)).toEqual([]);
  });

  it('refuses a token realm over plain http for an https registry (before any request)', async () => {
    const a = new Authenticator(new URL('https://registry.example'), 'registry.example', { username: 'u', password: 'p' });
    expect(a.learn('Bearer realm="http://auth.example/token",service="s"', ['repository:x:pull'])).toBe(true);
    await expect(a.header(['repository:x:pull'])).rejects.toThrow('refusing to fetch a token from http://auth.example/token (not https)');
  });
});

describe('settings', () => {
  it('treats loopback as insecure, and hosts named with --insecure-registry', () => {
    expect(isLoopback('127.3.4.5:5000')).toBe(true);
    expect(isLoopback('localhost:1')).toBe(true);
    expect(isLoopback('[::1]:5000')).toBe(true);
    expect(isLoopback('128.0.0.1')).toBe(false);
    expect(isInsecure('registry.lan:5000')).toBe(false);
    configureRegistry({ insecure: ['registry.lan:5000'] });
    expect(isInsecure('registry.lan:5000')).toBe(true);
    expect(isInsecure('registry.lan:5001')).toBe(false);
  });

  it('reads mirrors from the flag and the config file, flag first; mirrorFallback decides about the upstream', async () => {
    expect(parseMirrorFlag('docker.io=http://127.0.0.1:5000')).toEqual({ registry: 'docker.io', url: 'http://127.0.0.1:5000' });
    expect(parseMirrorFlag('http://m:1')).toEqual({ registry: 'docker.io', url: 'http://m:1' });
    expect(() => parseMirrorFlag('docker.io=ftp://x')).toThrow(/http/);
    expect(() => parseMirrorFlag('docker.io=http://u:p@x')).toThrow(/credentials/);
    await fs.writeFile(process.env.MBUILD_CONFIG!, JSON.stringify({ registryMirrors: { 'index.docker.io': 'https://mirror.example/prefix/' }, insecureRegistries: ['r.lan'] }));
    configureRegistry({ mirrors: ['docker.io=http://127.0.0.1:5000'] });
    expect(registrySettings().mirrors['docker.io']).toEqual(['http://127.0.0.1:5000', 'https://mirror.example/prefix/']);
    const eps = pullEndpoints('docker.io');
    expect(eps.map((e) => `${e.url.href} ${e.mirror}`)).toEqual(['http://127.0.0.1:5000/ true', 'https://mirror.example/prefix true', 'https://registry-1.docker.io/ false']);
    await fs.writeFile(process.env.MBUILD_CONFIG!, JSON.stringify({ registryMirrors: { 'docker.io': ['http://127.0.0.1:5000'] }, mirrorFallback: false }));
    configureRegistry({});
    expect(pullEndpoints('docker.io').map((e) => e.url.host)).toEqual(['127.0.0.1:5000']);
    // pushes never go to a mirror; a non-loopback registry is https without a plain-http fallback
    const p = pushEndpoint('ghcr.io');
    expect([p.url.href, p.httpFallback, p.mirror]).toEqual(['https://ghcr.io/', false, false]);
    expect(pushEndpoint('127.0.0.1:5999').httpFallback).toBe(true);
    await fs.writeFile(process.env.MBUILD_CONFIG!, '{ not json');
    configureRegistry({});
    expect(() => registrySettings()).toThrow(/is not valid JSON/);
  });
});

describe('Docker credentials', () => {
  it('reads auths (auth, username/password, identitytoken) by registry, Docker Hub under its v1 key', async () => {
    await fs.mkdir(process.env.DOCKER_CONFIG!, { recursive: true });
    await fs.writeFile(
      path.join(process.env.DOCKER_CONFIG!, 'config.json'),
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw:with:colons').toString('base64') },
          'http://r.lan:5000': { username: 'u2', password: 'p2' },
          'tok.example': { identitytoken: 'refresh-123' },
        },
      }),
    );
    expect(credentialKey('index.docker.io')).toBe('https://index.docker.io/v1/');
    expect(await getCredentials('docker.io')).toEqual({ username: 'hub', password: 'pw:with:colons' });
    expect(await getCredentials('r.lan:5000')).toEqual({ username: 'u2', password: 'p2' });
    expect(await getCredentials('tok.example')).toEqual({ identityToken: 'refresh-123' });
    expect(await getCredentials('other.example')).toBeUndefined();
  });

  it('stores, erases, and goes through credHelpers per registry', async () => {
    expect(await storeCredentials('r.lan', { username: 'a', password: 'b' })).toContain('config.json');
    expect(await getCredentials('r.lan')).toEqual({ username: 'a', password: 'b' });
    expect(await eraseCredentials('r.lan')).toBe(true);
    expect(await eraseCredentials('r.lan')).toBe(false);

    const bin = path.join(work, 'bin');
    await fs.mkdir(bin, { recursive: true });
    await fs.writeFile(path.join(bin, 'docker-credential-unit'), '#!/bin/sh\nread url\n[ "$1" = get ] && printf \'{"ServerURL":"%s","Username":"<token>","Secret":"idtok"}\' "$url"\n', { mode: 0o755 });
    process.env.PATH = `${bin}:${saved.PATH}`;
    await fs.writeFile(path.join(process.env.DOCKER_CONFIG!, 'config.json'), JSON.stringify({ credHelpers: { 'helped.example': 'unit' } }));
    expect(await getCredentials('helped.example')).toEqual({ identityToken: 'idtok' });
    expect(await getCredentials('unhelped.example')).toBeUndefined();
    await fs.writeFile(path.join(process.env.DOCKER_CONFIG!, 'config.json'), JSON.stringify({ credHelpers: { 'x.example': 'no-such-helper' } }));
    await expect(getCredentials('x.example')).rejects.toThrow('cannot run credential helper docker-credential-no-such-helper: ENOENT');
  });
});
