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
