/**
 * Multi-platform builds (issue 17): `--platform linux/amd64,linux/arm64` gives an OCI image index
 * whose arm64 image ran its RUN steps under qemu-user (uname -m says aarch64) and whose amd64 image
 * ran natively; a `FROM --platform=$BUILDPLATFORM` stage runs once for both; the index is stored
 * under the name, exported (oci, local per platform; docker refused), pushed to a real registry
 * (skopeo reads and copies every platform), pulled back, and `mbuild run --platform` picks a platform;
 * with --sbom/--provenance each platform gets its own attestation manifest about its own build.
 * The base is a two-platform busybox made offline from Debian's packages (test/helpers/multiarch.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mbuild, run, writeContext, type CliResult } from '../helpers/cli.js';
import { MULTI_BUSYBOX, multiBusyboxTar } from '../helpers/multiarch.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

let work: string;
let root: string;
let env: NodeJS.ProcessEnv;
let reg: RunningRegistry;

function mb(args: string[], r = root): Promise<CliResult> {
  return mbuild(['--root', r, ...args], { env });
}

async function ok(args: string[], r = root): Promise<CliResult> {
  const res = await mb(args, r);
  expect(res.code, res.stderr).toBe(0);
  return res;
}

const host = os.arch() === 'arm64' ? { arch: 'arm64', uname: 'aarch64' } : { arch: 'amd64', uname: 'x86_64' };

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-multiarch-'));
  env = { MBUILD_CONFIG: path.join(work, 'no-config.json'), DOCKER_CONFIG: path.join(work, 'docker') };
  root = path.join(work, 'root');
  const tar = await multiBusyboxTar();
  await ok(['load', '-i', tar]);
  reg = await startRegistry();
}, 300_000);

afterAll(async () => {
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const readIndex = async (dir: string) => {
  const top = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
  const blob = (d: string) => fs.readFile(path.join(dir, 'blobs', 'sha256', d.slice(7)), 'utf8');
  expect(top.manifests).toHaveLength(1);
  expect(top.manifests[0].mediaType).toBe('application/vnd.oci.image.index.v1+json');
  return { top, index: JSON.parse(await blob(top.manifests[0].digest)), blob };
};

describe('multi-platform builds', () => {
  it('builds linux/amd64 and linux/arm64 into one index; each RUN ran as its platform', async () => {
    const ctx = await writeContext(work, {
      Dockerfile: `FROM ${MULTI_BUSYBOX}\nARG TARGETPLATFORM\nARG TARGETARCH\nARG BUILDPLATFORM\nRUN uname -m > /arch && echo "$TARGETPLATFORM $TARGETARCH $BUILDPLATFORM" > /args\n`,
    });
    const r = await ok(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', 'multi:1', '-o', `type=oci,dest=${path.join(work, 'multi.tar')}`, '-o', `type=local,dest=${path.join(work, 'fs')}`, '--metadata-file', path.join(work, 'meta.json'), '--iidfile', path.join(work, 'iid'), ctx]);
    // every step says its platform, as BuildKit's do
    expect(r.stderr).toMatch(/\[linux\/arm64 stage-0 5\/5\] RUN uname -m/);
    expect(r.stderr).toMatch(/\[linux\/amd64 stage-0 5\/5\] RUN uname -m/);

    // -o type=local: a folder per platform
    expect(await fs.readFile(path.join(work, 'fs/linux_arm64/arch'), 'utf8')).toBe('aarch64\n');
    expect(await fs.readFile(path.join(work, 'fs/linux_amd64/arch'), 'utf8')).toBe('x86_64\n');
    expect(await fs.readFile(path.join(work, 'fs/linux_arm64/args'), 'utf8')).toBe(`linux/arm64 arm64 linux/${host.arch}\n`);
    expect(await fs.readFile(path.join(work, 'fs/linux_amd64/args'), 'utf8')).toBe(`linux/amd64 amd64 linux/${host.arch}\n`);

    // -o type=oci: the index, its two manifests with their platforms and configs
    const dir = path.join(work, 'multi-layout');
    await fs.mkdir(dir);
    expect((await run('tar', ['-xf', path.join(work, 'multi.tar'), '-C', dir])).code).toBe(0);
    const { top, index, blob } = await readIndex(dir);
    // the build's ID and metadata name the index (as buildx's for a multi-platform image)
    const meta = JSON.parse(await fs.readFile(path.join(work, 'meta.json'), 'utf8'));
    expect(meta['containerimage.descriptor'].mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(meta['containerimage.config.digest']).toBeUndefined();
    expect(await fs.readFile(path.join(work, 'iid'), 'utf8')).toBe(meta['containerimage.digest']);
    expect(top.manifests[0].annotations['io.containerd.image.name']).toBe('docker.io/library/multi:1');
    expect(index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    for (const m of index.manifests) {
      const cfg = JSON.parse(await blob(JSON.parse(await blob(m.digest)).config.digest));
      expect(cfg.architecture).toBe(m.platform.architecture);
    }

    // the name holds the index: images lists it, inspect shows this machine's image and the platforms
    const images = await ok(['images', 'multi']);
    expect(images.stdout).toMatch(/multi\s+1\s+[0-9a-f]{12}/);
    const insp = JSON.parse((await ok(['inspect', 'multi:1'])).stdout)[0];
    expect(insp.Architecture).toBe(host.arch);
    expect(insp.Platforms).toEqual(['linux/amd64', 'linux/arm64/v8']);
    expect(insp.Id).toMatch(/^sha256:/);

    // run picks this machine's image, or the one --platform asks for (emulated)
    expect((await ok(['run', 'multi:1', 'cat', '/arch'])).stdout).toBe(`${host.uname}\n`);
    expect((await ok(['run', '--platform', 'linux/arm64', 'multi:1', 'uname', '-m'])).stdout).toBe('aarch64\n');
    const none = await mb(['run', '--platform', 'linux/s390x', 'multi:1', 'true']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no linux\/s390x image/);
  }, 600_000);

  it('runs a FROM --platform=$BUILDPLATFORM stage once, natively, for every target platform', async () => {
    const ctx = await writeContext(work, {
      Dockerfile: [
        `FROM --platform=$BUILDPLATFORM ${MULTI_BUSYBOX} AS build`,
        'RUN uname -m > /buildarch && head -c 16 /dev/urandom | od -An -tx1 > /rand',
        'ARG TARGETARCH',
        'RUN echo "built on $(uname -m) for $TARGETARCH" > /out',
        `FROM ${MULTI_BUSYBOX}`,
        'COPY --from=build /buildarch /rand /out /',
        'RUN uname -m > /arch',
        '',
      ].join('\n'),
    });
    const r = await ok(['build', '--progress', 'plain', '--platform', 'linux/amd64', '--platform', 'linux/arm64', '-o', `type=local,dest=${path.join(work, 'cross')}`, ctx]);
    const read = (p: string, f: string) => fs.readFile(path.join(work, 'cross', p, f), 'utf8');
    // the stage that does not read TARGETARCH is one step: the same random bytes in both images
    expect(await read('linux_amd64', 'rand')).toBe(await read('linux_arm64', 'rand'));
    expect(await read('linux_arm64', 'buildarch')).toBe(`${host.uname}\n`);
    // the step that reads TARGETARCH runs per target, but natively
    expect(await read('linux_arm64', 'out')).toBe(`built on ${host.uname} for arm64\n`);
    expect(await read('linux_amd64', 'out')).toBe(`built on ${host.uname} for amd64\n`);
    expect(await read('linux_arm64', 'arch')).toBe('aarch64\n');
    // the shared RUN shows in both platforms' steps, but ran once: one ran (cache miss, measured), the other took its layer
    const ids = [...r.stderr.matchAll(/^(#\d+) \[linux\/(?:amd64|arm64) build 2\/4\] RUN uname -m > \/buildarch/gm)].map((m) => m[1]);
    expect(ids).toHaveLength(2);
    const ran = ids.filter((id) => r.stderr.includes(`${id} cache miss`));
    expect(ran).toHaveLength(1);
    expect(r.stderr).toContain(`${ran[0]} peak memory`);
    expect(r.stderr).toMatch(new RegExp(`^${ids.find((id) => id !== ran[0])} CACHED`, 'm'));

    // --no-cache: the shared step runs again (nothing from the build above is taken), still once
    const before = await read('linux_amd64', 'rand');
    const n = await ok(['build', '--progress', 'plain', '--no-cache', '--platform', 'linux/amd64', '--platform', 'linux/arm64', '-o', `type=local,dest=${path.join(work, 'cross-nc')}`, ctx]);
    const readNc = (p: string, f: string) => fs.readFile(path.join(work, 'cross-nc', p, f), 'utf8');
    expect(await readNc('linux_amd64', 'rand')).not.toBe(before);
    expect(await readNc('linux_arm64', 'rand')).toBe(await readNc('linux_amd64', 'rand'));
    expect(await readNc('linux_arm64', 'out')).toBe(`built on ${host.uname} for arm64\n`);
    const ncIds = [...n.stderr.matchAll(/^(#\d+) \[linux\/(?:amd64|arm64) build 2\/4\] RUN uname -m > \/buildarch/gm)].map((m) => m[1]);
    expect(ncIds).toHaveLength(2);
    expect(ncIds.filter((id) => n.stderr.includes(`${id} peak memory`))).toHaveLength(1);
    expect(n.stderr).toMatch(new RegExp(`^(${ncIds.join('|')}) CACHED: built by another build at the same time`, 'm'));
    // the steps that are not shared all ran, for each platform
    expect(n.stderr.match(/^#\d+ CACHED DONE/gm)).toHaveLength(1);
  }, 600_000);

  it('builds for one foreign platform (FROM --platform or --platform) and refuses a docker archive of several', async () => {
    const ctx = await writeContext(work, { Dockerfile: `FROM --platform=linux/arm64 ${MULTI_BUSYBOX}\nRUN uname -m > /arch\n` });
    await ok(['build', '-o', `type=local,dest=${path.join(work, 'arm')}`, ctx]);
    expect(await fs.readFile(path.join(work, 'arm/arch'), 'utf8')).toBe('aarch64\n');

    const ctx2 = await writeContext(work, { Dockerfile: `FROM ${MULTI_BUSYBOX}\nRUN uname -m > /arch\n` });
    await ok(['build', '--platform', 'linux/arm64', '-t', 'armonly', ctx2]);
    const insp = JSON.parse((await ok(['inspect', 'armonly'])).stdout)[0];
    expect(insp.Architecture).toBe('arm64');

    const refused = await mb(['build', '--platform', 'linux/amd64,linux/arm64', '-o', `type=docker,dest=${path.join(work, 'd.tar')}`, ctx2]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^error: --output type=docker cannot hold an image for several platforms/m);
    await expect(fs.access(path.join(work, 'd.tar'))).rejects.toThrow();
  }, 600_000);

  it('--sbom --provenance for two platforms: per platform its image and its attestation manifest, each about its own build', async () => {
    // a package only each platform's layers hold, and a step only the arm64 plan has
    const ctx = await writeContext(work, {
      Dockerfile: [
        `FROM ${MULTI_BUSYBOX}`,
        'ARG TARGETARCH',
        'RUN mkdir -p /app/node_modules/pkg-$TARGETARCH && echo "{\\"name\\":\\"pkg-$TARGETARCH\\",\\"version\\":\\"1.0.0\\"}" > /app/node_modules/pkg-$TARGETARCH/package.json',
        'RUN uname -m > /arch',
        '',
      ].join('\n'),
    });
    const out = path.join(work, 'attested.tar');
    const local = path.join(work, 'attested-fs');
    await ok(['build', '--platform', 'linux/amd64,linux/arm64', '--sbom', '--provenance=mode=max', '-t', 'attested:1', '-o', `type=oci,dest=${out}`, '-o', `type=local,dest=${local}`, ctx]);
    const dir = path.join(work, 'attested-layout');
    await fs.mkdir(dir);
    expect((await run('tar', ['-xf', out, '-C', dir])).code).toBe(0);
    const { index, blob } = await readIndex(dir);
    // BuildKit's order: the images, then their attestation manifests
    expect(index.manifests).toHaveLength(4);
    const [amd, arm, ...atts] = index.manifests as { digest: string; platform: Record<string, string>; annotations?: Record<string, string> }[];
    expect([amd!.platform.architecture, arm!.platform.architecture]).toEqual(['amd64', 'arm64']);
    for (const [k, img] of [amd!, arm!].entries()) {
      const att = atts[k]!;
      expect(att.platform).toEqual({ architecture: 'unknown', os: 'unknown' });
      expect(att.annotations).toEqual({ 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': img.digest });
      const arch = img.platform.architecture!;
      const purl = `pkg:docker/attested@1?platform=linux%2F${arch}${img.platform.variant ? `%2F${img.platform.variant}` : ''}`;
      const manifest = JSON.parse(await blob(att.digest));
      const statements = await Promise.all(manifest.layers.map(async (l: { digest: string }) => JSON.parse(await blob(l.digest))));
      expect(statements.map((s) => s.predicateType)).toEqual(['https://spdx.dev/Document', 'https://slsa.dev/provenance/v1']);
      // each statement is about its own platform's image
      for (const s of statements) expect(s.subject).toEqual([{ name: purl, digest: { sha256: img.digest.slice(7) } }]);
      // the SBOM is from that platform's layers
      const names = (statements[0].predicate.packages as { name: string }[]).map((p) => p.name);
      expect(names).toContain(`pkg-${arch}`);
      expect(names).not.toContain(`pkg-${arch === 'amd64' ? 'arm64' : 'amd64'}`);
      // the provenance is that platform's build: its base image's platform, its steps' layers
      const pred = statements[1].predicate;
      const deps = pred.buildDefinition.resolvedDependencies as { uri: string; digest: { sha256: string } }[];
      expect(deps).toHaveLength(1);
      expect(deps[0]!.uri).toContain(`platform=linux%2F${arch}`);
      const image = JSON.parse(await blob(img.digest));
      const layers = pred.runDetails.metadata.buildkit_metadata.layers as Record<string, { digest: string }[][]>;
      const last = Object.keys(layers).sort().pop()!;
      expect(layers[last]![0]!.map((d) => d.digest)).toEqual(image.layers.map((x: { digest: string }) => x.digest));
    }
    // -o type=local: each platform's folder has its statements, about the files of that folder
    for (const arch of ['amd64', 'arm64']) {
      const sbom = JSON.parse(await fs.readFile(path.join(local, `linux_${arch}`, 'sbom.spdx.json'), 'utf8'));
      expect(sbom.subject.map((x: { name: string }) => x.name)).toContain(`app/node_modules/pkg-${arch}/package.json`);
      expect((sbom.predicate.packages as { name: string }[]).map((p) => p.name)).toContain(`pkg-${arch}`);
      const prov = JSON.parse(await fs.readFile(path.join(local, `linux_${arch}`, 'provenance.json'), 'utf8'));
      expect(prov.predicate.buildDefinition.resolvedDependencies[0].uri).toContain(`platform=linux%2F${arch}`);
    }
    // --push: the registry gets the same four manifests; skopeo copies them all
    const name = `${reg.host}/multi/attested:1`;
    await ok(['build', '--platform', 'linux/amd64,linux/arm64', '--sbom', '--provenance=mode=max', '-t', name, '--push', ctx]);
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`]);
    expect(raw.code, raw.stderr).toBe(0);
    const pushed = JSON.parse(raw.stdout);
    expect(pushed.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)).toEqual(['amd64', 'arm64', 'unknown', 'unknown']);
    expect(pushed.manifests.slice(2).map((m: { annotations: Record<string, string> }) => m.annotations['vnd.docker.reference.digest'])).toEqual(pushed.manifests.slice(0, 2).map((m: { digest: string }) => m.digest));
    const copied = path.join(work, 'attested-copied');
    const cp = await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${name}`, `oci:${copied}:x`]);
    expect(cp.code, cp.stderr).toBe(0);
    for (const m of pushed.manifests) await fs.access(path.join(copied, 'blobs', 'sha256', m.digest.slice(7)));

    // SOURCE_DATE_EPOCH: the same inputs on two stores give the same attested index
    const indexDigest = async (r: string, tar: string) => {
      await ok(['build', '--platform', 'linux/amd64,linux/arm64', '--sbom', '--provenance=mode=max', '--build-arg', 'SOURCE_DATE_EPOCH=1700000000', '-t', 'attested:1', '-o', `type=oci,dest=${tar}`, ctx], r);
      const d = path.join(work, `${path.basename(tar)}-layout`);
      await fs.mkdir(d);
      expect((await run('tar', ['-xf', tar, '-C', d])).code).toBe(0);
      return (await readIndex(d)).top.manifests[0].digest as string;
    };
    const second = path.join(work, 'attested-second');
    await ok(['load', '-i', await multiBusyboxTar()], second);
    expect(await indexDigest(second, path.join(work, 'repro-b.tar'))).toBe(await indexDigest(root, path.join(work, 'repro-a.tar')));
  }, 600_000);

  it('--cache-from a multi-platform image (inline cache): each platform reads its own entry, no step runs', async () => {
    const df = `FROM ${MULTI_BUSYBOX}\nARG TARGETARCH\nRUN echo "built-for-$TARGETARCH" > /which\n`;
    const ctx = await writeContext(work, { Dockerfile: df });
    const name = `${reg.host}/multi/cached:1`;
    await ok(['build', '--platform', 'linux/amd64,linux/arm64', '--cache-to', 'type=inline', '-t', name, '--push', ctx]);
    // a fresh runner: an empty store with only the base, a fresh copy of the context
    const fresh = path.join(work, 'cache-fresh');
    await ok(['load', '-i', await multiBusyboxTar()], fresh);
    const ctx2 = await writeContext(work, { Dockerfile: df });
    const r = await ok(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '--cache-from', name, '-t', 'cached:2', ctx2], fresh);
    for (const arch of ['amd64', 'arm64']) expect(r.stderr).toMatch(new RegExp(`#(\\d+) \\[linux/${arch} stage-0 3/3\\] RUN echo[^\\n]*\\n#\\1 CACHED`));
    expect(r.stderr).not.toMatch(/#\d+ [\d.]+ built-for/);
    expect(r.stderr).toMatch(/^#1 2 steps of 2 platforms DONE/m);
    expect((await ok(['run', '--rm', '--platform', 'linux/arm64', 'cached:2', 'cat', '/which'], fresh)).stdout).toBe('built-for-arm64\n');
  }, 600_000);

  it('pushes every manifest and the index; skopeo reads and copies them; pull and run take a platform back', async () => {
    const ctx = await writeContext(work, { Dockerfile: `FROM ${MULTI_BUSYBOX}\nRUN uname -m > /arch\n` });
    const name = `${reg.host}/multi/app:1`;
    await ok(['build', '--platform', 'linux/amd64,linux/arm64', '-t', name, '--push', ctx]);
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`]);
    expect(raw.code, raw.stderr).toBe(0);
    const index = JSON.parse(raw.stdout);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    // skopeo copies every platform into a layout; the arm64 layer holds aarch64's file
    const out = path.join(work, 'copied');
    const cp = await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${name}`, `oci:${out}:x`]);
    expect(cp.code, cp.stderr).toBe(0);
    for (const m of index.manifests) await fs.access(path.join(out, 'blobs', 'sha256', m.digest.slice(7)));

    // mbuild push of a stored multi-platform image: every platform (layers compressed), then the index
    const name2 = `${reg.host}/multi/app:2`;
    await ok(['tag', name, name2]);
    await ok(['push', name2]);
    const raw2 = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name2}`])).stdout);
    expect(raw2.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)).toEqual(['amd64', 'arm64']);

    // a fresh store pulls the arm64 image of the index, runs it (emulated), then the amd64 one too
    const fresh = path.join(work, 'fresh');
    await ok(['pull', '--platform', 'linux/arm64', name], fresh);
    expect((await ok(['run', '--platform', 'linux/arm64', name, 'cat', '/arch'], fresh)).stdout).toBe('aarch64\n');
    await ok(['pull', '--platform', 'linux/amd64', name], fresh);
    expect((await ok(['run', '--platform', 'linux/amd64', name, 'cat', '/arch'], fresh)).stdout).toBe('x86_64\n');
    expect((await ok(['run', '--platform', 'linux/arm64', name, 'cat', '/arch'], fresh)).stdout).toBe('aarch64\n');

    // save of the multi-platform image (OCI) loads back as the index into another store
    const saved = path.join(work, 'saved.tar');
    await ok(['save', '--format', 'oci', '-o', saved, name]);
    const other = path.join(work, 'other');
    await ok(['load', '-i', saved], other);
    expect((await ok(['run', '--platform', 'linux/arm64', name, 'cat', '/arch'], other)).stdout).toBe('aarch64\n');
    expect((await ok(['run', '--platform', 'linux/amd64', name, 'cat', '/arch'], other)).stdout).toBe('x86_64\n');
  }, 600_000);
});
