/** Tars for tests, built with tar-stream exactly as listed (no cleaning of names): evil ones included; and read back. */
import { extract as tarExtract, pack as tarPack, type Header } from 'tar-stream';

export interface TarEntry {
  name: string;
  type?: 'file' | 'link' | 'symlink' | 'directory' | 'character-device' | 'block-device' | 'fifo';
  data?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

export async function tarOf(entries: TarEntry[], defaultMtime = new Date('2020-01-01T00:00:00Z')): Promise<Buffer> {
  const p = tarPack();
  const chunks: Buffer[] = [];
  const reading = (async () => {
    for await (const c of p as unknown as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const h = {
      name: e.name,
      type,
      // keep a falsy mode from being replaced by tar-stream's default
      mode: (e.mode ?? (type === 'directory' ? 0o755 : 0o644)) | 0o100000,
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? defaultMtime,
      linkname: e.linkname,
      devmajor: e.devmajor,
      devminor: e.devminor,
      pax: e.pax,
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') p.entry(h, e.data ?? '', cb);
      else p.entry(h, cb);
    });
  }
  p.finalize();
  await reading;
  return Buffer.concat(chunks);
}

/** The entries of a tar (bytes, uncompressed): header and data, in order. */
export async function readTar(tar: Buffer): Promise<{ header: Header; data: Buffer }[]> {
  const ex = tarExtract();
  const out: { header: Header; data: Buffer }[] = [];
  ex.end(tar);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out.push({ header: entry.header, data: Buffer.concat(chunks) });
  }
  return out;
}
