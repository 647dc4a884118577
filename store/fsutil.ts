import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** A temp name next to `dest`, so that rename() is atomic on the same filesystem. */
export function tempSibling(dest: string): string {
  return path.join(path.dirname(dest), `.tmp-${path.basename(dest)}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Write a whole file crash-safely: temp file, fsync, rename, fsync dir. `durable: false` keeps the
 * rename (readers see the old file or the new one, never a part) but not the fsyncs, for records
 * that can be lost in a power cut without harm.
 */
export async function writeFileAtomic(dest: string, data: string | Buffer, mode = 0o644, opts: { durable?: boolean } = {}): Promise<void> {
  const durable = opts.durable ?? true;
  await fs.mkdir(path.dirname(dest), { recursive: true });
  const tmp = tempSibling(dest);
  try {
    const fh = await fs.open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      if (durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { force: true }); // e.g. ENOSPC half-way: no partial temp file stays behind
    throw err;
  }
  if (durable) await syncDir(path.dirname(dest));
}

export async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    /* some filesystems refuse fsync on directories */
  } finally {
    await fh.close();
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}
