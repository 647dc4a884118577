/**
 * --output type=local|tar: the image's merged root filesystem as a directory or a tar stream.
 * `decorate` adds files beside the exported ones (the attestations' statement files, as BuildKit's
 * local and tar exporters write them): a tar is then made of a local copy so they are in it too.
 */
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import type { Layer } from '../snapshotter/snapshotter.js';
import type { Layers } from '../snapshotter/layers.js';
import { writeLayerTar } from '../snapshotter/diff/layer-tar.js';
import { tempSibling } from '../store/fsutil.js';
import { platformFolder, type TargetPlatform } from '../util/platform.js';

const run = promisify(execFile);

/** Writes the files of `dir` as a tar to dest (a file, written under a temp name, or "-": stdout). */
async function tarOf(dir: string, dest: string): Promise<void> {
  const toStdout = dest === '-';
  const file = toStdout ? '' : tempSibling(path.resolve(dest));
  const out = toStdout ? process.stdout : createWriteStream(file);
  const pass = new PassThrough();
  try {
    await Promise.all([writeLayerTar(dir, pass).then(() => pass.end()), pipeline(pass, out)]);
    if (!toStdout) await fs.rename(file, path.resolve(dest));
  } catch (err) {
    if (!toStdout) await fs.rm(file, { force: true });
    throw err;
  }
}

export async function exportFilesystem(snap: Layers, layers: Layer[], type: 'tar' | 'local', dest: string, decorate?: (dir: string) => Promise<void>): Promise<void> {
  if (type === 'tar' && decorate) return exportFilesystems(snap, [{ layers }], 'tar', dest, (dir) => decorate(dir));
  await snap.view(layers, async (root) => {
    if (type === 'local') {
      await fs.mkdir(dest, { recursive: true });
      await run('cp', ['-a', '--', `${root}/.`, dest]);
      return;
    }
    await tarOf(root, dest);
  });
  if (decorate) await decorate(dest);
}

/**
 * A multi-platform build's root filesystems, one folder per platform (`linux_amd64/`, ...) in the
 * directory or the tar, as BuildKit's local and tar exporters write them; an image without a
 * platform is the whole output (a single-platform tar with files added).
 */
export async function exportFilesystems(snap: Layers, images: { platform?: TargetPlatform; layers: Layer[] }[], type: 'tar' | 'local', dest: string, decorate?: (dir: string, k: number) => Promise<void>): Promise<void> {
  const folder = (base: string, img: { platform?: TargetPlatform }) => (img.platform ? path.join(base, platformFolder(img.platform)) : base);
  if (type === 'local') {
    for (const [k, img] of images.entries()) await exportFilesystem(snap, img.layers, 'local', folder(dest, img), decorate && ((dir) => decorate(dir, k)));
    return;
  }
  const tmp = await snap.store.mkTemp('platforms');
  try {
    for (const [k, img] of images.entries()) await exportFilesystem(snap, img.layers, 'local', folder(tmp, img), decorate && ((dir) => decorate(dir, k)));
    await tarOf(tmp, dest);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
