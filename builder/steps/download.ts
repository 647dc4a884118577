/**
 * ADD <url>: download into the store's temp area, following redirects as Docker does (loaded lazily:
 * only builds with URLs pay for the HTTP client).
 */
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Store } from '../../store/store.js';
import { MbuildError } from '../../util/errors.js';

export async function downloadToFile(store: Store, url: string): Promise<{ file: string; name: string; mtime?: Date }> {
  const { send } = await import('../../registry/transport.js');
  const dir = await store.mkTemp('add');
  const name = decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop() ?? '') || 'index.html';
  const file = path.join(dir, 'download');
  try {
    const res = await send(new URL(url), { method: 'GET', maxRedirects: 10, plainWeb: true });
    if (res.status >= 300) {
      res.body.resume();
      throw new MbuildError('MBUILD_ADD_URL', `ADD ${url}: the server answered ${res.status}`);
    }
    await pipeline(res.body as unknown as Readable, createWriteStream(file, { mode: 0o600 }));
    const lm = res.headers['last-modified'];
    const mtime = typeof lm === 'string' && !Number.isNaN(Date.parse(lm)) ? new Date(lm) : undefined;
    return { file, name, mtime };
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    if (err instanceof MbuildError) throw err;
    throw new MbuildError('MBUILD_ADD_URL', `ADD ${url}: ${(err as Error).message}`, { cause: err });
  }
}
