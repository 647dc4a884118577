/**
 * An arm64 image for the emulation tests, made without mbuild's platform support: Debian's
 * busybox-static:arm64 (fetched by examples/bases/foreign-debs.sh, kept in its cache) as one layer,
 * an image config saying linux/arm64/v8, in an OCI layout tar for `mbuild load`.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { REPO, run } from './cli.js';

const APPLETS = ['sh', 'uname', 'cat', 'echo', 'ls', 'true', 'false', 'mkdir', 'sleep', 'wget', 'httpd', 'od', 'head'];

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Writes DIR/busybox-arm64.oci.tar (an image named `name`) and returns its path. */
export async function arm64BusyboxArchive(dir: string, name: string): Promise<string> {
  const cache = path.join(process.env.MBUILD_BASES_CACHE ?? '/var/cache/mbuild-bases', 'debs-arm64');
  const deb = (await must('bash', [path.join(REPO, 'examples/bases/foreign-debs.sh'), 'arm64', cache, 'busybox-static'])).trim();
  const x = path.join(dir, 'deb');
  await must('dpkg-deb', ['-x', deb, x]);
  const rootfs = path.join(dir, 'rootfs');
  await fs.mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await fs.mkdir(path.join(rootfs, 'tmp'), { mode: 0o1777 });
  await fs.copyFile(path.join(x, 'bin/busybox'), path.join(rootfs, 'bin/busybox'));
  await fs.chmod(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const a of APPLETS) await fs.symlink('busybox', path.join(rootfs, 'bin', a));
  await fs.mkdir(path.join(rootfs, 'etc'));
  await fs.writeFile(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await fs.writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  const layout = path.join(dir, 'layout');
  const blobs = path.join(layout, 'blobs/sha256');
  await fs.mkdir(blobs, { recursive: true });
  const layerFile = path.join(dir, 'layer.tar');
  await must('tar', ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', '--mtime=@0', '-C', rootfs, '-cf', layerFile, '.']);
  const layer = await fs.readFile(layerFile);
  const blob = async (b: Buffer | string) => {
    const d = sha(b);
    await fs.writeFile(path.join(blobs, d), b);
    return { digest: `sha256:${d}`, size: Buffer.byteLength(b) };
  };
  const layerDesc = await blob(layer);
  const config = JSON.stringify({
    architecture: 'arm64', variant: 'v8', os: 'linux', created: '1970-01-01T00:00:00Z',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [layerDesc.digest] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: 'busybox-static:arm64 from Debian' }],
  });
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await blob(config)) },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layerDesc }],
  });
  const m = await blob(manifest);
  await fs.writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' }, annotations: { 'io.containerd.image.name': name } }],
  }));
  const out = path.join(dir, 'busybox-arm64.oci.tar');
  await must('tar', ['-C', layout, '-cf', out, '.']);
  return out;
}
