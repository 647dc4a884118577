/**
 * The files of an image's final filesystem that a scanner asks for, read from its layer blobs
 * without unpacking: layers are walked from the top down, and a path counts only in the highest
 * layer that has it, unless a whiteout (`.wh.NAME`), an opaque directory (`.wh..wh..opq`) or a
 * non-directory above hides it. Regular files only; links are not followed.
 */
import type { Readable } from 'node:stream';
import { extract as tarExtract } from 'tar-stream';
import type { Store } from '../../../store/store.js';
import type { Descriptor } from '../../../store/oci.js';
import { decompressStream } from '../../../snapshotter/diff/decompress.js';
import { openLayerBlob } from '../../../store/layer-blobs.js';
import { MbuildError } from '../../../util/errors.js';

/** How to read a file the scanner wants (given its path, mode and size), or undefined: skipped unread. */
export type FileReader<T> = (path: string, mode: number, size: number) => ((data: Readable) => Promise<T | undefined>) | undefined;

/** Larger files are not read (no package database or Go binary a scanner reads is this big). */
const MAX_FILE = 512 << 20;

function clean(name: string): string {
  return name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}

function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let i = p.indexOf('/'); i > 0; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i));
  return out;
}

/** A reader that keeps the whole file. */
export async function wholeFile(data: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of data) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every file `req` wants, from the image's layers (bottom first in `layers`), as the image shows it. */
export async function readImageFiles<T>(store: Store, layers: Descriptor[], reader: FileReader<T>, onFile: (path: string, value: T) => void | Promise<void>): Promise<void> {
  const seen = new Set<string>();
  const blocked = new Set<string>(); // whiteouts and non-directories of upper layers
  const opaque = new Set<string>(); // directories whose lower contents are gone
  const hidden = (p: string) => seen.has(p) || blocked.has(p) || ancestors(p).some((a) => blocked.has(a) || opaque.has(a));
  for (const layer of [...layers].reverse()) {
    const newBlocked: string[] = [];
    const newOpaque: string[] = [];
    const ex = tarExtract({ allowUnknownFormat: true } as Parameters<typeof tarExtract>[0]);
    const input = await decompressStream(await openLayerBlob(store, layer.digest));
    input.on('error', (err) => ex.destroy(err));
    input.pipe(ex);
    try {
      for await (const entry of ex) {
        const h = entry.header;
        const p = clean(h.name);
        const base = p.slice(p.lastIndexOf('/') + 1);
        const dir = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
        if (base === '.wh..wh..opq') newOpaque.push(dir);
        else if (base.startsWith('.wh.')) newBlocked.push(dir ? `${dir}/${base.slice(4)}` : base.slice(4));
        else if (p && !hidden(p)) {
          seen.add(p);
          if (h.type !== 'directory') newBlocked.push(p);
          const mode = h.mode ?? 0;
          const size = h.size ?? 0;
          const read = h.type === 'file' && size <= MAX_FILE ? reader(p, mode, size) : undefined;
          if (read) {
            const value = await read(entry as unknown as Readable);
            entry.resume(); // a reader that stopped early: the rest is skipped
            if (value !== undefined) await onFile(p, value);
            continue;
          }
        }
        entry.resume();
      }
    } catch (err) {
      input.destroy();
      throw new MbuildError('MBUILD_STORE', `cannot read layer ${layer.digest} for the SBOM: ${(err as Error).message}`, { cause: err });
    }
    for (const b of newBlocked) blocked.add(b);
    for (const o of newOpaque) opaque.add(o);
  }
}
