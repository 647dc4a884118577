/**
 * Attestations as BuildKit attaches them, read back as a user would: --sbom lists the packages
 * really in the image (a dpkg status, an apk database, a Go binary built by a real Go toolchain,
 * node_modules package.json files), --provenance records the request and base images
 * (mode=min and mode=max), both sit in an attestation manifest of the index that `-o type=oci`
 * writes and that a push sends (skopeo copies it all back); and the same inputs built on two
 * stores with SOURCE_DATE_EPOCH give the same digests, with and without attestations.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, REPO, mbuild, run, type CliResult } from '../helpers/cli.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

let work: string;
let ctx: string;
let reg: RunningRegistry;
const env = () => ({ MBUILD_CONFIG: path.join(work, 'no-config.json'), DOCKER_CONFIG: path.join(work, 'docker') });
const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

const DOCKERFILE = `FROM busybox
ARG FOO
COPY gohello /usr/local/bin/gohello
COPY status /var/lib/dpkg/status
COPY installed /lib/apk/db/installed
COPY node_modules /app/node_modules
RUN echo built > /built
`;

const DPKG = `Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
Description: time zone and daylight-saving time data
 This package contains data required for the implementation of
 standard local time for many representative locations.
`;

const APK = `C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl

P:busybox-binsh
V:1.36.1-r5
A:x86_64
L:GPL-2.0-only
o:busybox
`;

interface Layout {
  dir: string;
  json<T = Record<string, any>>(digest: string): Promise<T>;
}

async function layout(dir: string): Promise<Layout> {
  return { dir, json: async (d) => JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', d.slice(7)), 'utf8')) };
}

async function untar(tar: string): Promise<Layout> {
  const dir = tar + '.d';
  await fs.mkdir(dir, { recursive: true });
  const x = await run('tar', ['-xf', tar, '-C', dir]);
  expect(x.code, x.stderr).toBe(0);
  return layout(dir);
}

/** The index's image entry and the statements of its attestation manifest. */
async function attestations(l: Layout, indexDigest: string) {
  const index = await l.json<{ manifests: { digest: string; platform: { architecture: string; os: string }; annotations?: Record<string, string> }[] }>(indexDigest);
  const image = index.manifests.find((m) => m.platform.architecture !== 'unknown')!;
  const att = index.manifests.find((m) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest')!;
  const manifest = await l.json<{ layers: { mediaType: string; digest: string; annotations: Record<string, string> }[] }>(att.digest);
  const statements = await Promise.all(manifest.layers.map((x) => l.json(x.digest)));
  const byType = (t: string) => statements.find((s) => s.predicateType === t);
  return { index, image, att, manifest, statements, sbom: byType('https://spdx.dev/Document'), provenance: byType('https://slsa.dev/provenance/v1') };
}

async function build(root: string, args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', ...args, ctx], { env: { ...env(), ...extraEnv } });
  expect(r.code, r.stderr).toBe(0);
  return r;
}

async function store(name: string): Promise<string> {
  const root = path.join(work, name);
  const l = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(l.code, l.stderr).toBe(0);
  return root;
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-attest-'));
  reg = await startRegistry();
  ctx = path.join(work, 'ctx');
  await fs.mkdir(path.join(ctx, 'node_modules/left-pad/lib'), { recursive: true });
  await fs.mkdir(path.join(ctx, 'node_modules/@scope/pkg'), { recursive: true });
  await fs.writeFile(path.join(ctx, 'Dockerfile'), DOCKERFILE);
  await fs.copyFile(path.join(REPO, 'test/fixtures/attest/gohello'), path.join(ctx, 'gohello'));
  await fs.chmod(path.join(ctx, 'gohello'), 0o755);
  await fs.writeFile(path.join(ctx, 'status'), DPKG);
  await fs.writeFile(path.join(ctx, 'installed'), APK);
  await fs.writeFile(path.join(ctx, 'node_modules/left-pad/package.json'), JSON.stringify({ name: 'left-pad', version: '1.3.0', license: 'WTFPL' }));
  // not a package: a package.json below a package's own folder
  await fs.writeFile(path.join(ctx, 'node_modules/left-pad/lib/package.json'), JSON.stringify({ name: 'inner', version: '0.0.1' }));
  await fs.writeFile(path.join(ctx, 'node_modules/@scope/pkg/package.json'), JSON.stringify({ name: '@scope/pkg', version: '2.0.0', license: { type: 'MIT' } }));
}, 180_000);

afterAll(async () => {
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('--sbom and --provenance', () => {
  it('-o type=oci: an index with the image and its attestation manifest; the SBOM lists what the image holds', async () => {
    const root = await store('one');
    const out = path.join(work, 'one.tar');
    await build(root, ['--sbom', '--provenance=mode=max', '--build-arg', 'FOO=bar', '--label', 'lbl=abc', '-t', 'attested:1', '-o', `type=oci,dest=${out}`]);
    const l = await untar(out);
    const top = JSON.parse(await fs.readFile(path.join(l.dir, 'index.json'), 'utf8'));
    expect(top.manifests[0].mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const a = await attestations(l, top.manifests[0].digest);
    expect(a.index.manifests).toHaveLength(2);
    expect(a.image.platform).toEqual({ architecture: 'amd64', os: 'linux' });
    expect(a.att.platform).toEqual({ architecture: 'unknown', os: 'unknown' });
    expect(a.att.annotations).toEqual({ 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': a.image.digest });
    expect(a.manifest.layers.map((x) => [x.mediaType, x.annotations['in-toto.io/predicate-type']])).toEqual([
      ['application/vnd.in-toto+json', 'https://spdx.dev/Document'],
      ['application/vnd.in-toto+json', 'https://slsa.dev/provenance/v1'],
    ]);
    for (const s of a.statements) {
      expect(s._type).toBe('https://in-toto.io/Statement/v1');
      expect(s.subject).toEqual([{ name: 'pkg:docker/attested@1?platform=linux%2Famd64', digest: { sha256: a.image.digest.slice(7) } }]);
    }

    const doc = a.sbom!.predicate;
    expect(doc.spdxVersion).toBe('SPDX-2.3');
    const pkgs = (doc.packages as { name: string; versionInfo?: string; sourceInfo?: string; externalRefs?: { referenceLocator: string }[] }[]).filter((p) => p.versionInfo);
    const found = pkgs.map((p) => `${p.externalRefs![0]!.referenceLocator} ${p.sourceInfo!.split(': ').pop()}`).sort();
    expect(found).toEqual([
      'pkg:apk/alpine/busybox-binsh@1.36.1-r5?arch=x86_64&upstream=busybox /lib/apk/db/installed',
      'pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64 /lib/apk/db/installed',
      'pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&upstream=glibc /var/lib/dpkg/status',
      'pkg:deb/debian/tzdata@2024a-0+deb12u1?arch=all /var/lib/dpkg/status',
      'pkg:golang/example.com/gohello@%28devel%29 /usr/local/bin/gohello',
      'pkg:golang/example.com/greet@v0.1.0 /usr/local/bin/gohello',
      'pkg:golang/stdlib@1.19.8 /usr/local/bin/gohello',
      'pkg:npm/%40scope/pkg@2.0.0 /app/node_modules/@scope/pkg/package.json',
      'pkg:npm/left-pad@1.3.0 /app/node_modules/left-pad/package.json',
    ]);
    expect(pkgs.find((p) => p.name === 'musl')).toMatchObject({ licenseDeclared: 'MIT' });

    const pred = a.provenance!.predicate;
    expect(pred.buildDefinition.buildType).toBe('https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md');
    expect(pred.buildDefinition.externalParameters.configSource).toEqual({ path: 'Dockerfile' });
    expect(pred.buildDefinition.externalParameters.request.frontend).toBe('dockerfile.v0');
    expect(pred.buildDefinition.externalParameters.request.args).toEqual({ 'build-arg:FOO': 'bar', 'label:lbl': 'abc' });
    expect(pred.buildDefinition.externalParameters.request.locals).toEqual([{ name: 'context' }, { name: 'dockerfile' }]);
    const busybox = JSON.parse(await fs.readFile(path.join(root, 'images.json'), 'utf8')).images.find((i: { name: string }) => i.name === 'docker.io/library/busybox:latest').digest;
    expect(pred.buildDefinition.resolvedDependencies).toEqual([{ uri: 'pkg:docker/busybox@latest?platform=linux%2Famd64', digest: { sha256: busybox.slice(7) } }]);
    expect(pred.runDetails.metadata.buildkit_completeness).toEqual({ request: true, resolvedDependencies: false });
    // mode=max: the steps, the Dockerfile, where each step is in it, and the layers they made
    const steps = pred.buildDefinition.internalParameters.buildConfig.llbDefinition;
    expect(steps.map((s: { id: string; inputs?: string[] }) => [s.id, s.inputs ?? []])).toEqual([
      ['step0', []],
      ['step1', ['step0:0']],
      ['step2', ['step1:0']],
      ['step3', ['step2:0']],
      ['step4', ['step3:0']],
      ['step5', ['step4:0']],
    ]);
    const source = pred.runDetails.metadata.buildkit_metadata.source;
    expect(Buffer.from(source.infos[0].data, 'base64').toString()).toBe(DOCKERFILE);
    expect(source.locations.step5.locations[0].ranges[0]).toEqual({ start: { line: 7 }, end: { line: 7 } });
    const image = await l.json<{ layers: { digest: string }[] }>(a.image.digest);
    const chain = pred.runDetails.metadata.buildkit_metadata.layers['step5:0'][0].map((d: { digest: string }) => d.digest);
    expect(chain).toEqual(image.layers.map((x) => x.digest));
    // the store keeps the image itself under its name
    const ins = await mbuild(['--root', root, 'run', '--rm', 'attested:1', '/usr/local/bin/gohello']);
    expect(ins.stdout).toBe('hello from gohello\n');
  }, 300_000);

  it('mode=min leaves out build args, labels and build steps, as BuildKit', async () => {
    const root = await store('min');
    const out = path.join(work, 'min.tar');
    await build(root, ['--attest', 'type=provenance,mode=min', '--build-arg', 'FOO=secret-ish', '-o', `type=oci,dest=${out}`]);
    const l = await untar(out);
    const top = JSON.parse(await fs.readFile(path.join(l.dir, 'index.json'), 'utf8'));
    const a = await attestations(l, top.manifests[0].digest);
    expect(a.statements).toHaveLength(1);
    const pred = a.provenance!.predicate;
    expect(JSON.stringify(pred)).not.toContain('secret-ish');
    expect(pred.buildDefinition.externalParameters.request.args).toBeUndefined();
    expect(pred.buildDefinition.internalParameters).toEqual({ builderPlatform: 'linux/amd64' });
    expect(pred.runDetails.metadata.buildkit_completeness.request).toBe(false);
    expect(pred.runDetails.metadata.buildkit_metadata).toEqual({});
    // no name: no subject (the reference annotation ties it to the image, as in BuildKit)
    expect(a.provenance!.subject).toEqual([]);
    // real times without SOURCE_DATE_EPOCH
    expect(Date.now() - Date.parse(pred.runDetails.metadata.finishedOn)).toBeLessThan(3_600_000);
  }, 300_000);

  it('-o type=local: the statements beside the files, every exported file a subject', async () => {
    const root = await store('local');
    const dest = path.join(work, 'local-out');
    await build(root, ['--sbom', '--provenance', '-o', `type=local,dest=${dest}`]);
    const sbom = JSON.parse(await fs.readFile(path.join(dest, 'sbom.spdx.json'), 'utf8'));
    const prov = JSON.parse(await fs.readFile(path.join(dest, 'provenance.json'), 'utf8'));
    expect(sbom.predicateType).toBe('https://spdx.dev/Document');
    expect(prov.predicateType).toBe('https://slsa.dev/provenance/v1');
    expect((await fs.stat(path.join(dest, 'provenance.json'))).mode & 0o777).toBe(0o600);
    const built = sbom.subject.find((x: { name: string }) => x.name === 'built');
    expect(built).toEqual({ name: 'built', digest: { sha256: createHash('sha256').update('built\n').digest('hex') } });
    expect(sbom.subject.map((x: { name: string }) => x.name)).toContain('usr/local/bin/gohello');
    expect((sbom.predicate.packages as { name: string }[]).map((p) => p.name)).toContain('libc6');
  }, 300_000);

  it('-o type=tar: the statement files in the tar beside the files, as type=local writes them; several platforms in each folder', async () => {
    const root = await store('tar');
    const out = path.join(work, 'attested.tar');
    await build(root, ['--sbom', '--provenance', '-o', `type=tar,dest=${out}`]);
    const list = (await run('tar', ['-tvf', out])).stdout;
    expect(list).toMatch(/^-rw------- \S+ +\d+ .* provenance\.json$/m);
    expect(list).toMatch(/ sbom\.spdx\.json$/m);
    expect(list).toMatch(/ usr\/local\/bin\/gohello$/m);
    const prov = JSON.parse((await run('tar', ['-xOf', out, 'provenance.json'])).stdout);
    expect(prov.predicateType).toBe('https://slsa.dev/provenance/v1');
    expect(prov.subject.find((x: { name: string }) => x.name === 'built')).toEqual({ name: 'built', digest: { sha256: createHash('sha256').update('built\n').digest('hex') } });
    // the statements are about the exported files, not about themselves
    expect(prov.subject.map((x: { name: string }) => x.name)).not.toContain('provenance.json');

    const dir = path.join(work, 'tar-multi-ctx');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\nARG TARGETARCH\nCOPY a /a\n');
    await fs.writeFile(path.join(dir, 'a'), 'a\n');
    const multi = path.join(work, 'attested-multi.tar');
    const r = await mbuild(['--root', root, 'build', '--progress', 'plain', '--provenance', '--platform', 'linux/amd64,linux/arm64', '-o', `type=tar,dest=${multi}`, dir], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const names = (await run('tar', ['-tf', multi])).stdout.split('\n').filter((n) => n && !n.endsWith('/')).map((n) => n.replace(/^\.\//, '')).sort();
    expect(names).toEqual(['linux_amd64/a', 'linux_amd64/provenance.json', 'linux_arm64/a', 'linux_arm64/provenance.json']);
    const arm = JSON.parse((await run('tar', ['-xOf', multi, 'linux_arm64/provenance.json'])).stdout);
    expect(arm.subject).toEqual([{ name: 'a', digest: { sha256: createHash('sha256').update('a\n').digest('hex') } }]);
  }, 300_000);

  it('a context in a git work tree: buildx\'s git facts land in buildkit_metadata.vcs, credentials redacted', async () => {
    const root = await store('vcs');
    const repo = path.join(work, 'repo');
    await fs.mkdir(path.join(repo, 'app'), { recursive: true });
    await fs.writeFile(path.join(repo, 'app/Dockerfile'), 'FROM busybox\nRUN echo vcs > /v\n');
    const git = async (...args: string[]) => {
      const r = await run('git', ['-C', repo, '-c', 'user.email=t@example.invalid', '-c', 'user.name=t', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    await git('init', '-q');
    await git('remote', 'add', 'origin', 'https://user:token@example.invalid/org/repo.git');
    await git('add', '.');
    await git('commit', '-q', '-m', 'one');
    const head = await git('rev-parse', 'HEAD');
    const out = path.join(work, 'vcs.tar');
    const r = await mbuild(['--root', root, 'build', '--provenance', '-o', `type=oci,dest=${out}`, path.join(repo, 'app')], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const l = await untar(out);
    const a = await attestations(l, JSON.parse(await fs.readFile(path.join(l.dir, 'index.json'), 'utf8')).manifests[0].digest);
    expect(a.provenance!.predicate.runDetails.metadata.buildkit_metadata.vcs).toEqual({
      source: 'https://xxxxx:xxxxx@example.invalid/org/repo.git',
      revision: head,
      'localdir:context': 'app',
      'localdir:dockerfile': 'app',
    });
    expect(a.provenance!.predicate.buildDefinition.externalParameters.request.args).toBeUndefined();
  }, 300_000);

  it('a push sends the index; skopeo copies every manifest and the SBOM reads back', async () => {
    const root = await store('push');
    const name = `${reg.host}/attest/app:1`;
    const meta = path.join(work, 'push-meta.json');
    await build(root, ['--sbom', '--provenance', '-t', name, '--push', '--metadata-file', meta]);
    const raw = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${name}`]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(JSON.parse(raw.stdout).mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(JSON.parse(await fs.readFile(meta, 'utf8'))['containerimage.digest']).toBe(sha(Buffer.from(raw.stdout)));
    const dir = path.join(work, 'copied');
    const c = await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${name}`, `oci:${dir}:app`]);
    expect(c.code, c.stderr).toBe(0);
    const l = await layout(dir);
    const top = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    const a = await attestations(l, top.manifests[0].digest);
    const names = (a.sbom!.predicate.packages as { name: string }[]).map((p) => p.name);
    expect(names).toEqual(expect.arrayContaining(['libc6', 'musl', 'example.com/gohello', 'stdlib', 'left-pad', '@scope/pkg']));
    expect(a.provenance!.subject[0].name).toBe(`pkg:docker/${reg.host.replace(':', '%3A')}/attest/app@1?platform=linux%2Famd64`);
  }, 300_000);

  it('the store keeps the attested index under the name: a later push, save and load carry the attestations', async () => {
    const root = await store('stored');
    const name = `${reg.host}/attest/stored:1`;
    await build(root, ['--sbom', '--provenance', '--annotation', 'index:org.example.kept=yes', '-t', name]);
    // images, inspect and run pick the platform image, never the attestation manifest
    const ins = JSON.parse((await mbuild(['--root', root, 'inspect', name])).stdout)[0];
    expect(ins.Architecture).toBe('amd64');
    expect(ins.Platforms).toEqual(['linux/amd64']);
    expect((await mbuild(['--root', root, 'images', name])).stdout).toMatch(/attest\/stored +1 +[a-f0-9]{12} /);
    expect((await mbuild(['--root', root, 'run', '--rm', name, 'cat', '/built'])).stdout).toBe('built\n');
    const p = await mbuild(['--root', root, 'push', name], { env: env() });
    expect(p.code, p.stderr).toBe(0);
    const raw = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${name}`]);
    expect(raw.code, raw.stderr).toBe(0);
    const index = JSON.parse(raw.stdout);
    expect(index.manifests.map((m: { platform: { os: string; architecture: string } }) => `${m.platform.os}/${m.platform.architecture}`)).toEqual(['linux/amd64', 'unknown/unknown']);
    expect(index.manifests[1].annotations).toEqual({ 'vnd.docker.reference.digest': index.manifests[0].digest, 'vnd.docker.reference.type': 'attestation-manifest' });
    expect(index.annotations).toEqual({ 'org.example.kept': 'yes' });
    expect(p.stdout).toBe(`${name}: digest: ${sha(Buffer.from(raw.stdout))}\n`);
    // save (OCI) keeps them; loaded into another store and pushed again, the same index
    const saved = path.join(work, 'stored.tar');
    expect((await mbuild(['--root', root, 'save', '--format', 'oci', '-o', saved, name])).code).toBe(0);
    const l = await untar(saved);
    const top = JSON.parse(await fs.readFile(path.join(l.dir, 'index.json'), 'utf8'));
    const a = await attestations(l, top.manifests[0].digest);
    expect(a.provenance!.subject[0].digest.sha256).toBe(a.image.digest.slice(7));
    expect((a.sbom!.predicate.packages as { name: string }[]).map((x) => x.name)).toEqual(expect.arrayContaining(['libc6', 'musl']));
    const other = path.join(work, 'stored-other');
    expect((await mbuild(['--root', other, 'load', '-i', saved])).code).toBe(0);
    const name2 = `${reg.host}/attest/stored:2`;
    expect((await mbuild(['--root', other, 'tag', name, name2])).code).toBe(0);
    expect((await mbuild(['--root', other, 'push', name2], { env: env() })).code).toBe(0);
    const raw2 = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${name2}`]);
    expect(raw2.stdout).toBe(raw.stdout);
  }, 300_000);

  it('several platforms: the stored index holds each platform and its attestation manifest', async () => {
    const root = await store('stored-multi');
    const dir = path.join(work, 'multi-ctx');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\nARG TARGETARCH\nCOPY a /a\n');
    await fs.writeFile(path.join(dir, 'a'), 'a\n');
    const name = `${reg.host}/attest/multi:1`;
    const iid = path.join(work, 'multi.iid');
    const r = await mbuild(['--root', root, 'build', '--progress', 'plain', '--provenance', '--platform', 'linux/amd64,linux/arm64', '-t', name, '--iidfile', iid, dir], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const ins = JSON.parse((await mbuild(['--root', root, 'inspect', name])).stdout)[0];
    expect(ins.Platforms).toEqual(['linux/amd64', 'linux/arm64/v8']);
    // the image's ID is the index the name holds
    expect(ins.Index).toBe(await fs.readFile(iid, 'utf8'));
    expect((await mbuild(['--root', root, 'push', name], { env: env() })).code).toBe(0);
    const raw = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${name}`]);
    const index = JSON.parse(raw.stdout);
    expect(sha(Buffer.from(raw.stdout))).toBe(ins.Index);
    expect(index.manifests.map((m: { platform: { os: string; architecture: string } }) => `${m.platform.os}/${m.platform.architecture}`)).toEqual(['linux/amd64', 'linux/arm64', 'unknown/unknown', 'unknown/unknown']);
    expect(index.manifests.slice(2).map((m: { annotations: Record<string, string> }) => m.annotations['vnd.docker.reference.digest'])).toEqual(index.manifests.slice(0, 2).map((m: { digest: string }) => m.digest));
  }, 300_000);

  it('the same inputs on two stores give the same index digest (SOURCE_DATE_EPOCH), and the same image without attestations', async () => {
    const digests: string[] = [];
    const plain: string[] = [];
    for (const n of ['a', 'b']) {
      const root = await store(`repro-${n}`);
      const sde = { SOURCE_DATE_EPOCH: '1700000000' };
      const out = path.join(work, `repro-${n}.tar`);
      await build(root, ['--sbom', '--provenance=mode=max', '-t', 'repro:1', '-o', `type=oci,dest=${out}`], sde);
      digests.push(JSON.parse(await fs.readFile(path.join((await untar(out)).dir, 'index.json'), 'utf8')).manifests[0].digest);
      const out2 = path.join(work, `plain-${n}.tar`);
      // --no-cache: the RUN really runs again (new file times), still the same layers
      await build(root, ['--no-cache', '-t', 'repro:2', '-o', `type=oci,dest=${out2}`], sde);
      plain.push(JSON.parse(await fs.readFile(path.join((await untar(out2)).dir, 'index.json'), 'utf8')).manifests[0].digest);
    }
    expect(digests[0]).toMatch(/^sha256:/);
    expect(digests[1]).toBe(digests[0]);
    expect(plain[1]).toBe(plain[0]);
    const l = await untar(path.join(work, 'repro-a.tar'));
    const a = await attestations(l, digests[0]!);
    expect(a.provenance!.predicate.runDetails.metadata.startedOn).toBe('2023-11-14T22:13:20Z');
    expect(a.sbom!.predicate.creationInfo.created).toBe('2023-11-14T22:13:20Z');
  }, 600_000);
});
