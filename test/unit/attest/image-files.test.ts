/** The image's final files as a scanner sees them through its layers: whiteouts, opaque directories, replaced paths. */
import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { readImageFiles, wholeFile } from '../../../builder/attest/sbom/image-files.js';
import type { Store } from '../../../store/store.js';

async function tar(entries: { name: string; data?: string; type?: 'file' | 'directory' | 'symlink'; linkname?: string }[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) p.entry({ name: e.name, type: e.type ?? 'file', mode: 0o644, linkname: e.linkname }, e.data ?? '');
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('readImageFiles', () => {
  it('takes each path from the highest layer that has it, and honours whiteouts and opaque directories', async () => {
    const layers = [
      await tar([
        { name: 'var/lib/dpkg/status', data: 'lower' },
        { name: 'etc/removed', data: 'x' },
        { name: 'opt/app/old', data: 'x' },
        { name: 'srv/dir/inner', data: 'x' },
      ]),
      gzipSync(
        await tar([
          { name: 'var/lib/dpkg/status', data: 'upper' },
          { name: 'etc/.wh.removed' },
          { name: 'opt/app/.wh..wh..opq' },
          { name: 'opt/app/new', data: 'y' },
          { name: 'srv/dir', type: 'symlink', linkname: '/elsewhere' },
        ]),
      ),
    ];
    const store = { content: { has: async () => true, open: (d: string) => Readable.from([layers[Number(d)]!]) } } as unknown as Store;
    const got: Record<string, string> = {};
    await readImageFiles(store, layers.map((_, i) => ({ mediaType: 'x', digest: String(i), size: 0 })), () => wholeFile, (p, data) => {
      got[p] = data.toString();
    });
    expect(got).toEqual({ 'var/lib/dpkg/status': 'upper', 'opt/app/new': 'y' });
  });
});
