/** builder/attest's pure parts: Go build info, package databases, purls, provenance modes, the flag forms. */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO } from '../../helpers/cli.js';
import { Readable } from 'node:stream';
import { readGoBuildInfo, scanGoBuildInfo } from '../../../builder/attest/sbom/go-buildinfo.js';
import { isNodeModulePackageJson, parseApkInstalled, parseDpkgStatus, parseOsRelease, parsePackageJson } from '../../../builder/attest/sbom/package-dbs.js';
import { goPackages } from '../../../builder/attest/sbom/scan.js';
import { spdxDocument } from '../../../builder/attest/sbom/spdx.js';
import { imagePurl, purl } from '../../../builder/attest/sbom/purl.js';
import { provenancePredicate, type ProvenanceCapture } from '../../../builder/attest/provenance.js';
import { parseAttestFlags } from '../../../builder/attest/spec.js';
import { inTotoStatement } from '../../../builder/attest/attach.js';
import { redactCredentials } from '../../../builder/attest/vcs.js';

describe('Go build info', () => {
  it('reads what `go version -m` prints from a binary built by Go 1.19 (the committed fixture)', () => {
    const info = readGoBuildInfo(readFileSync(path.join(REPO, 'test/fixtures/attest/gohello')))!;
    expect(info.goVersion).toBe('go1.19.8');
    expect(info.path).toBe('example.com/gohello');
    expect(info.main).toEqual({ path: 'example.com/gohello', version: '(devel)' });
    expect(info.deps).toEqual([{ path: 'example.com/greet', version: 'v0.1.0', replace: { path: './greet', version: '(devel)' } }]);
    expect(info.settings).toMatchObject({ CGO_ENABLED: '0', GOARCH: 'amd64', GOOS: 'linux', '-trimpath': 'true' });
    expect(goPackages(info, 'app').map((p) => `${p.name}@${p.version}`)).toEqual(['example.com/gohello@(devel)', 'example.com/greet@v0.1.0', 'stdlib@go1.19.8']);
  });

  it('finds the same streaming the file in small chunks, keeping none of it', async () => {
    const bin = readFileSync(path.join(REPO, 'test/fixtures/attest/gohello'));
    const chunks: Buffer[] = [];
    for (let i = 0; i < bin.length; i += 4093) chunks.push(bin.subarray(i, i + 4093));
    expect(await scanGoBuildInfo(Readable.from(chunks))).toEqual(readGoBuildInfo(bin));
    expect(await scanGoBuildInfo(Readable.from([Buffer.from('#!/bin/sh\n')]))).toBeUndefined();
  });

  it('finds nothing in what is not a Go binary', () => {
    expect(readGoBuildInfo(Buffer.from('#!/bin/sh\necho hi\n'))).toBeUndefined();
    const elf = Buffer.alloc(4096);
    elf.write('\x7fELF', 0, 'latin1');
    expect(readGoBuildInfo(elf)).toBeUndefined();
  });
});

describe('package databases', () => {
  it('dpkg: installed packages only, continuation lines, the source package', () => {
    const pkgs = parseDpkgStatus('Package: a\nStatus: install ok installed\nVersion: 1\nSource: srca (1)\nDescription: x\n more\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n', 'var/lib/dpkg/status');
    expect(pkgs).toEqual([{ kind: 'deb', name: 'a', version: '1', source: 'srca', location: 'var/lib/dpkg/status' }]);
  });
  it('apk: P/V/A/L/U/o', () => {
    expect(parseApkInstalled('P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\nU:https://musl.libc.org/\no:musl\n\nP:x\n', 'lib/apk/db/installed')).toEqual([
      { kind: 'apk', name: 'musl', version: '1.2.4-r2', arch: 'x86_64', license: 'MIT', homepage: 'https://musl.libc.org/', location: 'lib/apk/db/installed' },
    ]);
  });
  it('node_modules: a package folder\'s own package.json, scoped or not', () => {
    expect(isNodeModulePackageJson('app/node_modules/a/package.json')).toBe(true);
    expect(isNodeModulePackageJson('app/node_modules/@s/a/package.json')).toBe(true);
    expect(isNodeModulePackageJson('app/node_modules/a/node_modules/b/package.json')).toBe(true);
    expect(isNodeModulePackageJson('app/node_modules/a/lib/package.json')).toBe(false);
    expect(isNodeModulePackageJson('app/package.json')).toBe(false);
    expect(parsePackageJson('{"name":"a","version":"1.0.0","license":{"type":"ISC"}}', 'x')).toMatchObject({ kind: 'npm', name: 'a', version: '1.0.0', license: 'ISC' });
    expect(parsePackageJson('{not json', 'x')).toBeUndefined();
  });
  it('os-release gives the distro qualifier', () => {
    const distro = parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')!;
    expect(distro).toEqual({ id: 'debian', versionId: '12' });
    const doc = spdxDocument([{ kind: 'deb', name: 'libc6', version: '2.36-9+deb12u4', arch: 'amd64', location: 'var/lib/dpkg/status' }], { created: '2023-11-14T22:13:20Z', tool: 'Tool: mbuild-test', distro });
    const pkgs = doc.packages as { externalRefs?: { referenceLocator: string }[] }[];
    expect(pkgs[0]!.externalRefs![0]!.referenceLocator).toBe('pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&distro=debian-12');
  });
});

describe('purls', () => {
  it('as BuildKit spells image references', () => {
    expect(imagePurl('busybox', { os: 'linux', architecture: 'amd64' })).toBe('pkg:docker/busybox@latest?platform=linux%2Famd64');
    expect(imagePurl('localhost:5000/a/b:1', { os: 'linux', architecture: 'arm', variant: 'v7' })).toBe('pkg:docker/localhost%3A5000/a/b@1?platform=linux%2Farm%2Fv7');
    const d = 'sha256:' + 'a'.repeat(64);
    expect(imagePurl(`alpine@${d}`)).toBe(`pkg:docker/alpine?digest=${d}`);
    expect(purl('npm', '@scope', 'x y', '1.0.0+build')).toBe('pkg:npm/%40scope/x+y@1.0.0+build');
  });
});

describe('provenance', () => {
  const capture: ProvenanceCapture = {
    args: { 'build-arg:TOKEN': 'abc', 'label:l': 'v', target: 'final' },
    filename: 'Dockerfile',
    locals: ['context', 'dockerfile'],
    secrets: [{ id: 'npmrc', optional: true }],
    ssh: [],
    images: [{ ref: 'busybox', digest: 'sha256:' + 'b'.repeat(64), platform: { os: 'linux', architecture: 'amd64' } }],
    builderPlatform: { os: 'linux', architecture: 'amd64' },
    invocationId: 'x',
    startedOn: '2023-11-14T22:13:20Z',
    finishedOn: '2023-11-14T22:13:20Z',
    dockerfile: Buffer.from('FROM busybox\nRUN true\n'),
    steps: [
      { op: { source: { identifier: 'docker-image://busybox' } }, inputs: [] },
      { op: { exec: { meta: { args: ['true'] } } }, inputs: [0], lines: [2, 2], layerIndex: 1 },
    ],
  };
  const layers = [1, 2].map((n) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:' + String(n).repeat(64), size: n }));

  it('mode=min keeps no build args, labels, secrets or steps, and says the request is incomplete', () => {
    const p = provenancePredicate(capture, { mode: 'min', version: 'v1' }, layers) as any;
    expect(p.buildDefinition.externalParameters.request).toEqual({ frontend: 'dockerfile.v0', args: { target: 'final' }, locals: [{ name: 'context' }, { name: 'dockerfile' }] });
    expect(p.buildDefinition.internalParameters).toEqual({ builderPlatform: 'linux/amd64' });
    expect(p.runDetails.metadata.buildkit_completeness).toEqual({ request: false, resolvedDependencies: false });
    expect(p.runDetails.metadata.buildkit_metadata).toEqual({});
  });

  it('mode=max has them all, and each image step\'s layer chain', () => {
    const p = provenancePredicate(capture, { mode: 'max', version: 'v1' }, layers) as any;
    expect(p.buildDefinition.externalParameters.request.args['build-arg:TOKEN']).toBe('abc');
    expect(p.buildDefinition.externalParameters.request.secrets).toEqual([{ id: 'npmrc', optional: true }]);
    expect(p.buildDefinition.internalParameters.buildConfig.llbDefinition[1]).toEqual({ id: 'step1', op: { exec: { meta: { args: ['true'] } } }, inputs: ['step0:0'] });
    expect(p.runDetails.metadata.buildkit_metadata.layers).toEqual({ 'step1:0': [layers] });
    expect(p.runDetails.metadata.buildkit_completeness.request).toBe(true);
  });

  it('vcs: attributes go to buildkit_metadata.vcs, in both modes', () => {
    const p = provenancePredicate({ ...capture, args: { 'vcs:source': 'https://example.invalid/r.git', 'vcs:revision': 'abc' } }, { mode: 'min', version: 'v1' }) as any;
    expect(p.runDetails.metadata.buildkit_metadata).toEqual({ vcs: { source: 'https://example.invalid/r.git', revision: 'abc' } });
    expect(p.buildDefinition.externalParameters.request.args).toBeUndefined();
    expect(redactCredentials('https://u:p@h/x.git')).toBe('https://xxxxx:xxxxx@h/x.git');
    expect(redactCredentials('git@github.com:o/r.git')).toBe('git@github.com:o/r.git');
  });

  it('version=v0.2 writes the older shape', () => {
    const p = provenancePredicate(capture, { mode: 'min', version: 'v0.2' }, layers) as any;
    expect(p.buildType).toBe('https://mobyproject.org/buildkit@v1');
    expect(p.materials).toEqual([{ uri: 'pkg:docker/busybox@latest?platform=linux%2Famd64', digest: { sha256: 'b'.repeat(64) } }]);
    expect(p.invocation.configSource).toEqual({ entryPoint: 'Dockerfile' });
  });

  it('statements name the image by purl with its digest', () => {
    const s = inTotoStatement({ predicateType: 't', predicate: {} }, { digest: 'sha256:' + 'c'.repeat(64), platform: { os: 'linux', architecture: 'amd64' }, names: ['docker.io/library/app:1'] });
    expect(s.subject).toEqual([{ name: 'pkg:docker/app@1?platform=linux%2Famd64', digest: { sha256: 'c'.repeat(64) } }]);
  });
});

describe('--provenance / --sbom / --attest', () => {
  it('reads buildx\'s forms', () => {
    expect(parseAttestFlags('true', undefined, [])).toEqual({ provenance: { mode: 'min', version: 'v1' } });
    expect(parseAttestFlags('mode=max,version=v0.2', 'true', [])).toEqual({ provenance: { mode: 'max', version: 'v0.2' }, sbom: {} });
    expect(parseAttestFlags(undefined, undefined, ['type=sbom', 'type=provenance,mode=max'])).toEqual({ provenance: { mode: 'max', version: 'v1' }, sbom: {} });
    // --provenance=false wins over --attest type=provenance (buildx appends it last)
    expect(parseAttestFlags('false', undefined, ['type=provenance'])).toEqual({});
    expect(parseAttestFlags(undefined, undefined, ['type=sbom,disabled=true'])).toEqual({});
  });
  it('refuses what it does not do, naming the key', () => {
    expect(() => parseAttestFlags('mode=most', undefined, [])).toThrow(/mode=most is not one of min, max/);
    expect(() => parseAttestFlags(undefined, 'generator=img', [])).toThrow(/the key generator= is not supported/);
    expect(() => parseAttestFlags(undefined, undefined, ['type=vuln'])).toThrow(/type=vuln is not supported/);
  });
});
