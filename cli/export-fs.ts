/** --output type=local|tar: the image's merged root filesystem as a directory or a tar stream. */
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

export async function exportFilesystem(snap: Layers, layers: Layer[], type: 'tar' | 'local', dest: string): Promise<void> {
  await snap.view(layers, async (root) => {
    if (type === 'local') {
      await fs.mkdir(dest, { recursive: true });
      await run('cp', ['-a', '--', `${root}/.`, dest]);
      return;
    }
    const toStdout = dest === '-';
    const file = toStdout ? '' : tempSibling(path.resolve(dest));
    const out = toStdout ? process.stdout : createWriteStream(file);
    const pass = new PassThrough();
    try {
      await Promise.all([writeLayerTar(root, pass).then(() => pass.end()), pipeline(pass, out)]);
      if (!toStdout) await fs.rename(file, path.resolve(dest));
    } catch (err) {
      if (!toStdout) await fs.rm(file, { force: true });
      throw err;
    }
  });
}

/**
 * A multi-platform build's root filesystems, one folder per platform (`linux_amd64/`, ...) in the
 * directory or the tar, as BuildKit's local and tar exporters write them.
 */
export async function exportFilesystems(snap: Layers, images: { platform: TargetPlatform; layers: Layer[] }[], type: 'tar' | 'local', dest: string): Promise<void> {
  if (type === 'local') {
    for (const img of images) await exportFilesystem(snap, img.layers, 'local', path.join(dest, platformFolder(img.platform)));
    return;
  }
  const tmp = await snap.store.mkTemp('platforms');
  try {
    for (const img of images) await exportFilesystem(snap, img.layers, 'local', path.join(tmp, platformFolder(img.platform)));
    const toStdout = dest === '-';
    const file = toStdout ? '' : tempSibling(path.resolve(dest));
    const out = toStdout ? process.stdout : createWriteStream(file);
    const pass = new PassThrough();
    try {
      await Promise.all([writeLayerTar(tmp, pass).then(() => pass.end()), pipeline(pass, out)]);
      if (!toStdout) await fs.rename(file, path.resolve(dest));
    } catch (err) {
      if (!toStdout) await fs.rm(file, { force: true });
      throw err;
    }
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
