/**
 * A two-platform busybox (linux/amd64 + linux/arm64) as an OCI layout tar holding one image index,
 * made offline from Debian's busybox-static packages (`apt-get download busybox-static:arm64`, with
 * arm64 added as a foreign dpkg architecture), so multi-platform tests need no registry and no
 * Docker Hub. RUN steps of the arm64 image need qemu-user-static (installed here when missing).
 * The tar is cached in /var/cache/mbuild-test; `mbuild load -i` of it names the index.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';

const CACHE = '/var/cache/mbuild-test';
export const MULTI_BUSYBOX_TAR = path.join(CACHE, 'busybox-multi.oci.tar');
/** the name the index carries in the archive */
export const MULTI_BUSYBOX = 'docker.io/library/mbusybox:multi';

const APPLETS = ['sh', 'uname', 'cat', 'echo', 'ls', 'mkdir', 'touch', 'true', 'false', 'sleep', 'cp', 'rm', 'env', 'id', 'head', 'tr', 'sed', 'grep', 'wc', 'date', 'od', 'test', '[', 'printf', 'dd', 'md5sum', 'sha256sum'];

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { cwd: opts.cwd, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** qemu-user-static and binfmt-support (scripts/setup.sh lists them too). */
export function ensureQemu(): void {
  if (existsSync('/usr/bin/qemu-aarch64-static')) return;
  try {
    sh('apt-get', ['install', '-y', '-qq', 'qemu-user-static', 'binfmt-support']);
  } catch {
    sh('apt-get', ['update', '-qq']);
    sh('apt-get', ['install', '-y', '-qq', 'qemu-user-static', 'binfmt-support']);
  }
}

async function debFor(arch: 'amd64' | 'arm64'): Promise<string> {
  await fs.mkdir(CACHE, { recursive: true });
  const find = async () => (await fs.readdir(CACHE)).find((f) => f.startsWith('busybox-static_') && f.endsWith(`_${arch}.deb`));
  let deb = await find();
  if (!deb) {
    if (arch !== 'amd64' && !sh('dpkg', ['--print-foreign-architectures']).split('\n').includes(arch)) {
      sh('dpkg', ['--add-architecture', arch]);
      sh('apt-get', ['update', '-qq']);
    }
    try {
      sh('apt-get', ['download', `busybox-static:${arch}`], { cwd: CACHE });
    } catch {
      sh('apt-get', ['update', '-qq']);
      sh('apt-get', ['download', `busybox-static:${arch}`], { cwd: CACHE });
    }
    deb = await find();
    if (!deb) throw new Error(`apt-get download busybox-static:${arch} left no .deb in ${CACHE}`);
  }
  return path.join(CACHE, deb);
}

const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

/** One platform's image into the layout's blobs; returns its manifest descriptor. */
async function platformImage(work: string, blobs: string, arch: 'amd64' | 'arm64'): Promise<Record<string, unknown>> {
  const root = path.join(work, `root-${arch}`);
  await fs.mkdir(root, { recursive: true });
  sh('dpkg-deb', ['-x', await debFor(arch), root]);
  await fs.rm(path.join(root, 'usr'), { recursive: true, force: true });
  for (const a of APPLETS) await fs.symlink('busybox', path.join(root, 'bin', a)).catch(() => undefined);
  for (const d of ['tmp', 'etc', 'root']) await fs.mkdir(path.join(root, d), { recursive: true });
  await fs.chmod(path.join(root, 'tmp'), 0o1777);
  await fs.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await fs.writeFile(path.join(root, 'etc/group'), 'root:x:0:\n');
  const layerFile = path.join(work, `layer-${arch}.tar`);
  sh('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', layerFile, 'bin', 'etc', 'root', 'tmp']);
  const layer = await fs.readFile(layerFile);
  const put = async (b: Buffer) => {
    await fs.writeFile(path.join(blobs, sha(b).slice(7)), b);
    return { digest: sha(b), size: b.length };
  };
  const layerDesc = await put(layer);
  const platform = arch === 'arm64' ? { architecture: 'arm64', os: 'linux', variant: 'v8' } : { architecture: 'amd64', os: 'linux' };
  const config = Buffer.from(JSON.stringify({
    ...platform,
    created: '1970-01-01T00:00:00Z',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [layerDesc.digest] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: `busybox-static ${arch} (test/helpers/multiarch.ts)` }],
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await put(config)) },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layerDesc }],
  }));
  return { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...(await put(manifest)), platform };
}

/** The path of the two-platform busybox layout tar (made once, then cached). */
export async function multiBusyboxTar(): Promise<string> {
  ensureQemu();
  if (existsSync(MULTI_BUSYBOX_TAR)) return MULTI_BUSYBOX_TAR;
  const work = await fs.mkdtemp(path.join(CACHE, 'make-'));
  try {
    const layout = path.join(work, 'layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    await fs.mkdir(blobs, { recursive: true });
    const manifests = [await platformImage(work, blobs, 'amd64'), await platformImage(work, blobs, 'arm64')];
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }));
    await fs.writeFile(path.join(blobs, sha(index).slice(7)), index);
    await fs.writeFile(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha(index), size: index.length, annotations: { 'io.containerd.image.name': MULTI_BUSYBOX, 'org.opencontainers.image.ref.name': 'multi' } }],
    }));
    const tmp = `${MULTI_BUSYBOX_TAR}.tmp-${process.pid}`;
    sh('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', layout, '-cf', tmp, 'blobs', 'index.json', 'oci-layout']);
    await fs.rename(tmp, MULTI_BUSYBOX_TAR);
    return MULTI_BUSYBOX_TAR;
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
