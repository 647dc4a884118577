/**
 * OCI annotations in every place BuildKit puts them (builder/executor/annotations.ts): image
 * manifests (per platform), the index's manifest descriptors, the index, and the OCI layout's
 * descriptor; through the store, -o type=oci and a push that skopeo reads back. FROM scratch builds
 * two platforms without emulation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mbuild, run, writeContext } from '../helpers/cli.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';

let work: string;
let root: string;
let ctx: string;
let reg: RunningRegistry;
let env: NodeJS.ProcessEnv;

const build = (args: string[]) => mbuild(['--root', root, 'build', '--progress', 'plain', ...args, ctx], { env });

async function layout(tar: string) {
  const dir = `${tar}.d`;
  await fs.mkdir(dir);
  expect((await run('tar', ['-xf', tar, '-C', dir])).code).toBe(0);
  const json = async (digest: string) => JSON.parse(await fs.readFile(path.join(dir, 'blobs', 'sha256', digest.slice(7)), 'utf8'));
  return { top: JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')), json };
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-annotations-'));
  root = path.join(work, 'root');
  env = { MBUILD_CONFIG: path.join(work, 'no-config.json'), DOCKER_CONFIG: path.join(work, 'docker') };
  ctx = await writeContext(work, { Dockerfile: 'FROM scratch\nCOPY f /f\n', f: 'hello\n' });
  reg = await startRegistry();
});

afterAll(async () => {
  await reg?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

describe('annotations', () => {
  it('two platforms: index, manifest descriptors, one platform\'s manifest, and the layout descriptor (-o type=oci)', async () => {
    const tar = path.join(work, 'multi.tar');
    const r = await build([
      '--platform', 'linux/amd64,linux/arm64',
      '--annotation', 'index:org.opencontainers.image.description=two platforms',
      '--annotation', 'manifest[linux/arm64]:org.opencontainers.image.title=arm',
      '--annotation', 'org.opencontainers.image.title=any',
      '--annotation', 'manifest-descriptor:d=1',
      '-o', `type=oci,dest=${tar},annotation-index-descriptor.top=yes,annotation-index.from-output=1`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const { top, json } = await layout(tar);
    expect(top.manifests[0].annotations).toMatchObject({ top: 'yes' });
    const index = await json(top.manifests[0].digest);
    expect(index.annotations).toEqual({ 'org.opencontainers.image.description': 'two platforms', 'from-output': '1' });
    const titles: Record<string, string> = {};
    for (const m of index.manifests) {
      expect(m.annotations).toEqual({ d: '1' });
      titles[m.platform.architecture] = (await json(m.digest)).annotations['org.opencontainers.image.title'];
    }
    expect(titles).toEqual({ amd64: 'any', arm64: 'arm' });
  });

  it('a push carries them: skopeo reads the index annotations from the registry', async () => {
    const name = `${reg.host}/ann/multi:1`;
    const r = await build(['--platform', 'linux/amd64,linux/arm64', '--annotation', 'index:org.opencontainers.image.description=pushed', '-t', name, '--push']);
    expect(r.code, r.stderr).toBe(0);
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(JSON.parse(raw.stdout).annotations).toEqual({ 'org.opencontainers.image.description': 'pushed' });
  });

  it('one platform: manifest-descriptor lands on index.json\'s descriptor; with --provenance the attested index takes index annotations', async () => {
    const one = path.join(work, 'one.tar');
    const r = await build(['--annotation', 'manifest-descriptor:d=2', '-o', `type=oci,dest=${one}`]);
    expect(r.code, r.stderr).toBe(0);
    expect((await layout(one)).top.manifests[0].annotations).toEqual({ d: '2' });
    const att = path.join(work, 'attested.tar');
    const a = await build(['--provenance=mode=min', '--annotation', 'index:i=3', '--annotation', 'manifest-descriptor:d=3', '-o', `type=oci,dest=${att}`]);
    expect(a.code, a.stderr).toBe(0);
    const { top, json } = await layout(att);
    const index = await json(top.manifests[0].digest);
    expect(index.annotations).toEqual({ i: '3' });
    expect(index.manifests[0].annotations).toEqual({ d: '3' });
    expect(index.manifests[1].platform).toEqual({ architecture: 'unknown', os: 'unknown' });
  });

  it('refuses what has no place, before building', async () => {
    const single = await build(['--annotation', 'index:i=1']);
    expect(single.code).not.toBe(0);
    expect(single.stderr).toMatch(/^error: --annotation index:i=1: index annotations need an index/m);
    const docker = await build(['--platform', 'linux/amd64', '--annotation', 'manifest-descriptor:d=1', '-o', `type=docker,dest=${path.join(work, 'd.tar')},oci-mediatypes=false`]);
    expect(docker.code).not.toBe(0);
    expect(docker.stderr).toMatch(/manifest-descriptor annotations need OCI media types/);
    expect(docker.stderr).not.toMatch(/^#\d+ \[/m);
  });
});
