/**
 * `-o` as buildx reads it: type=image,name=…,push=true and type=registry really push (a real
 * registry on 127.0.0.1, read back with skopeo), --metadata-file names the pushed digest, and the
 * compression / oci-mediatypes / annotation options shape what is pushed and exported.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, run, type CliResult } from '../helpers/cli.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

let work: string;
let root: string;
let ctx: string;
let reg: RunningRegistry;
const env = () => ({ MBUILD_CONFIG: path.join(work, 'no-config.json'), DOCKER_CONFIG: path.join(work, 'docker') });
const mb = (args: string[]): Promise<CliResult> => mbuild(['--root', root, ...args], { env: env() });
const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

async function remote(name: string): Promise<{ digest: string; manifest: { mediaType: string; layers: { mediaType: string }[]; annotations?: Record<string, string> } }> {
  const raw = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/${name}`]);
  expect(raw.code, raw.stderr).toBe(0);
  return { digest: sha(Buffer.from(raw.stdout)), manifest: JSON.parse(raw.stdout) };
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-cli-output-'));
  root = path.join(work, 'store');
  reg = await startRegistry();
  ctx = path.join(work, 'ctx');
  await fs.mkdir(ctx);
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo pushed > /p\n');
  expect((await mb(['load', '-i', BUSYBOX_TAR])).code).toBe(0);
}, 180_000);

afterAll(async () => {
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('-o type=image / type=registry', () => {
  it('type=image,name=…,push=true pushes, and --metadata-file names the pushed digest', async () => {
    const meta = path.join(work, 'meta.json');
    const r = await mb(['build', '--progress', 'plain', '-o', `type=image,name=${reg.host}/app/one:1,push=true`, '--metadata-file', meta, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const got = await remote('app/one:1');
    const m = JSON.parse(await fs.readFile(meta, 'utf8'));
    expect(m['containerimage.digest']).toBe(got.digest);
    expect(m['image.name']).toBe(`${reg.host}/app/one:1`);
    expect(m['containerimage.config.digest']).toMatch(/^sha256:[a-f0-9]{64}$/);
    // OCI media types and gzip layers by default: the manifest `mbuild push` would push
    expect(got.manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+gzip']);
    const again = await mb(['push', `${reg.host}/app/one:1`]);
    expect(again.stdout).toContain(got.digest);
    // oci-mediatypes=false: Docker's (as docker 20.10's BuildKit pushed)
    const docker = await mb(['build', '-q', '-o', `type=image,name=${reg.host}/app/docker:1,push=true,oci-mediatypes=false`, ctx]);
    expect(docker.code, docker.stderr).toBe(0);
    const d = await remote('app/docker:1');
    expect(d.manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(d.manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.docker.image.rootfs.diff.tar.gzip']);
    // the name from name= is also the local name
    expect((await mb(['images', `${reg.host}/app/one`])).stdout).toContain(`${reg.host}/app/one`);
  });

  it('type=registry with -t pushes; oci-mediatypes=true and compression=uncompressed shape the pushed manifest', async () => {
    const r = await mb(['build', '-q', '-t', `${reg.host}/app/two:1`, '-o', 'type=registry,compression=uncompressed', ctx]);
    expect(r.code, r.stderr).toBe(0);
    const got = await remote('app/two:1');
    expect(got.manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    // the new layer is uncompressed; the base's gzip layer stays as it is without force-compression (as BuildKit)
    expect(got.manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar']);
    const forced = await mb(['build', '-q', '-t', `${reg.host}/app/three:1`, '-o', 'type=registry,oci-mediatypes=true,compression=uncompressed,force-compression=true', ctx]);
    expect(forced.code, forced.stderr).toBe(0);
    expect((await remote('app/three:1')).manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar']);
    // skopeo can copy it out, every digest verified
    const out = path.join(work, 'three');
    const c = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/app/three:1`, `oci:${out}`]);
    expect(c.code, c.stderr).toBe(0);
  });

  it('--push is -o type=registry; --annotation lands on the pushed manifest (OCI media types then)', async () => {
    const r = await mb(['build', '-q', '--push', '-t', `${reg.host}/app/four:1`, '--annotation', 'org.opencontainers.image.title=four', '--annotation', 'manifest:x=y', ctx]);
    expect(r.code, r.stderr).toBe(0);
    const got = await remote('app/four:1');
    expect(got.manifest.annotations).toEqual({ 'org.opencontainers.image.title': 'four', x: 'y' });
    expect(got.manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });

  it('refuses a push without a name, a misspelt key, zstd, and index annotations, each in one line', async () => {
    const cases: [string[], RegExp][] = [
      [['-o', 'type=image,push=true'], /needs a name to push/],
      [['-o', `type=image,name=${reg.host}/x:1,pushh=true`], /--output type=image does not take pushh=/],
      [['-o', 'type=oci,dest=x.tar,compression=estargz'], /compression=estargz is not supported/],
      [['-o', 'type=oci,dest=x.tar,compression=zstd,oci-mediatypes=false'], /compression=zstd needs OCI media types/],
      [['--annotation', 'index:a=b'], /index annotations need an index/],
      [['-o', 'type=oci,dest=x.tar,oci-mediatypes=false,annotation.a=b'], /annotations need OCI media types/],
    ];
    for (const [args, re] of cases) {
      const r = await mb(['build', '-q', ...args, ctx]);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(re);
    }
  });
});

describe('push-by-digest and compression-level', () => {
  it('push-by-digest=true pushes the manifest by digest only: no tag in the registry, --metadata-file names it', async () => {
    const meta = path.join(work, 'bydigest.json');
    const r = await mb(['build', '-q', '-o', `type=image,name=${reg.host}/app/bydigest,push=true,push-by-digest=true`, '--metadata-file', meta, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const digest = JSON.parse(await fs.readFile(meta, 'utf8'))['containerimage.digest'];
    const got = await remote(`app/bydigest@${digest}`);
    expect(got.digest).toBe(digest);
    const tags = await run('skopeo', ['list-tags', '--tls-verify=false', `docker://${reg.host}/app/bydigest`]);
    expect(JSON.parse(tags.stdout || '{"Tags":[]}').Tags ?? []).toEqual([]);
    const tagged = await mb(['build', '-q', '-t', `${reg.host}/app/bydigest:1`, '-o', 'type=registry,push-by-digest=true', ctx]);
    expect(tagged.stderr.trim()).toBe(`error: --output push-by-digest=true: can't push tagged ref ${reg.host}/app/bydigest:1 by digest (name the repository only)`);
  });

  it('compression-level sets the gzip and zstd level of the layers the output compresses', async () => {
    const sizes: Record<string, number> = {};
    const big = path.join(work, 'ctx-big');
    await fs.mkdir(big, { recursive: true });
    // text that compresses differently at level 1 and 9
    await fs.writeFile(path.join(big, 'Dockerfile'), 'FROM busybox\nRUN i=0; while [ $i -lt 20000 ]; do echo "line $i $((i * 7919 % 10007))"; i=$((i+1)); done > /data\n');
    for (const [name, opts] of [['g1', 'compression-level=1'], ['g9', 'compression-level=9'], ['z1', 'compression=zstd,compression-level=1'], ['z19', 'compression=zstd,compression-level=19']]) {
      const out = path.join(work, `level-${name}`);
      const r = await mb(['build', '-q', '-o', `type=oci,dest=${out},tar=false,${opts}`, big]);
      expect(r.code, r.stderr).toBe(0);
      const index = JSON.parse(await fs.readFile(path.join(out, 'index.json'), 'utf8'));
      const manifest = JSON.parse(await fs.readFile(path.join(out, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
      const config = JSON.parse(await fs.readFile(path.join(out, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
      const layer = manifest.layers[1];
      const blob = path.join(out, 'blobs/sha256', layer.digest.slice(7));
      const plain = await run('sh', ['-c', `${name.startsWith('z') ? 'zstd -dcq' : 'gzip -dc'} "${blob}" | sha256sum`]);
      expect('sha256:' + plain.stdout.split(' ')[0]).toBe(config.rootfs.diff_ids[1]);
      sizes[name] = layer.size;
    }
    expect(sizes.g9).toBeLessThan(sizes.g1);
    expect(sizes.z19).toBeLessThan(sizes.z1);
  });
});

describe('compression=zstd', () => {
  it('writes zstd layers (force-compression: the base layer too) that decompress to their diff_ids; a registry takes them', async () => {
    const out = path.join(work, 'zstd');
    const r = await mb(['build', '-q', '-o', `type=oci,dest=${out},tar=false,compression=zstd,force-compression=true`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const index = JSON.parse(await fs.readFile(path.join(out, 'index.json'), 'utf8'));
    const manifest = JSON.parse(await fs.readFile(path.join(out, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    const config = JSON.parse(await fs.readFile(path.join(out, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+zstd']);
    for (const [i, l] of manifest.layers.entries()) {
      const blob = path.join(out, 'blobs/sha256', l.digest.slice(7));
      const plain = await run('sh', ['-c', `zstd -dcq "${blob}" | sha256sum`]);
      expect('sha256:' + plain.stdout.split(' ')[0]).toBe(config.rootfs.diff_ids[i]);
    }
    const p = await mb(['build', '-q', '-t', `${reg.host}/app/zstd:1`, '-o', 'type=registry,compression=zstd', ctx]);
    expect(p.code, p.stderr).toBe(0);
    expect((await remote('app/zstd:1')).manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd']);
    const c = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/app/zstd:1`, `oci:${path.join(work, 'zstd-copy')}`]);
    expect(c.code, c.stderr).toBe(0);
  });
});

describe('-o type=oci / type=docker', () => {
  it('tar=false writes the layout as a directory; name= names it; oci-mediatypes=false gives a Docker manifest', async () => {
    const dir = path.join(work, 'layout');
    const r = await mb(['build', '-q', '-o', `type=oci,dest=${dir},tar=false,name=example.com/a:1`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8'));
    expect(index.manifests[0].annotations['io.containerd.image.name']).toBe('example.com/a:1');
    expect(index.manifests[0].mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const tar = path.join(work, 'd.tar');
    const d = await mb(['build', '-q', '-o', `type=docker,dest=${tar},oci-mediatypes=false`, ctx]);
    expect(d.code, d.stderr).toBe(0);
    const list = await run('tar', ['-xOf', tar, 'index.json']);
    expect(JSON.parse(list.stdout).manifests[0].mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
  });

  /** The manifest an archive holds: its media type, its config's and its layers'. */
  async function archiveTypes(tar: string): Promise<string[]> {
    const index = JSON.parse((await run('tar', ['-xOf', tar, 'index.json'])).stdout);
    const m = JSON.parse((await run('tar', ['-xOf', tar, `blobs/sha256/${index.manifests[0].digest.slice(7)}`])).stdout);
    expect(index.manifests[0].mediaType).toBe(m.mediaType);
    return [m.mediaType, m.config.mediaType, ...m.layers.map((l: { mediaType: string }) => l.mediaType)];
  }

  it('type=docker defaults to Docker media types, type=oci to OCI ones (as BuildKit); zstd or annotations turn OCI on for docker', async () => {
    const docker = path.join(work, 'default-docker.tar');
    expect((await mb(['build', '-q', '-o', `type=docker,dest=${docker}`, ctx])).code).toBe(0);
    expect(await archiveTypes(docker)).toEqual([
      'application/vnd.docker.distribution.manifest.v2+json',
      'application/vnd.docker.container.image.v1+json',
      'application/vnd.docker.image.rootfs.diff.tar.gzip',
      'application/vnd.docker.image.rootfs.diff.tar.gzip',
    ]);
    const oci = path.join(work, 'default-oci.tar');
    expect((await mb(['build', '-q', '-o', `type=oci,dest=${oci}`, ctx])).code).toBe(0);
    expect(await archiveTypes(oci)).toEqual([
      'application/vnd.oci.image.manifest.v1+json',
      'application/vnd.oci.image.config.v1+json',
      'application/vnd.oci.image.layer.v1.tar+gzip',
      'application/vnd.oci.image.layer.v1.tar+gzip',
    ]);
    const dockerOci = path.join(work, 'docker-oci.tar');
    expect((await mb(['build', '-q', '-o', `type=docker,dest=${dockerOci},oci-mediatypes=true`, ctx])).code).toBe(0);
    expect((await archiveTypes(dockerOci))[0]).toBe('application/vnd.oci.image.manifest.v1+json');
    const zstd = path.join(work, 'docker-zstd.tar');
    expect((await mb(['build', '-q', '-o', `type=docker,dest=${zstd},compression=zstd`, ctx])).code).toBe(0);
    expect((await archiveTypes(zstd)).slice(0, 1)).toEqual(['application/vnd.oci.image.manifest.v1+json']);
    const annotated = path.join(work, 'docker-annotated.tar');
    expect((await mb(['build', '-q', '--annotation', 'a=b', '-o', `type=docker,dest=${annotated}`, ctx])).code).toBe(0);
    expect((await archiveTypes(annotated))[0]).toBe('application/vnd.oci.image.manifest.v1+json');
    // attestations need OCI media types: the image in the index is an OCI manifest
    const attested = path.join(work, 'docker-attested.tar');
    expect((await mb(['build', '-q', '--provenance=mode=min', '-o', `type=docker,dest=${attested}`, ctx])).code).toBe(0);
    const top = JSON.parse((await run('tar', ['-xOf', attested, 'index.json'])).stdout);
    const inner = JSON.parse((await run('tar', ['-xOf', attested, `blobs/sha256/${top.manifests[0].digest.slice(7)}`])).stdout);
    expect(inner.manifests.map((m: { mediaType: string }) => m.mediaType)).toEqual(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.manifest.v1+json']);
  });
});
