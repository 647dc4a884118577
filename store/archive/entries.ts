/** Path rules for names inside image archives (tar entry names, manifest.json paths, link targets). */
import path from 'node:path';
import { UnsafeArchiveError } from '../../util/errors.js';

/** What the OCI layout calls a blob path: `blobs/sha256/<64 lowercase hex>`. */
export const BLOB_PATH_RE = /^blobs\/sha256\/([a-f0-9]{64})$/;

/**
 * The canonical form of a name inside an archive: no leading `./`, no empty or `.` components,
 * no trailing slash. Absolute names, `..` components, NUL bytes and empty names are refused.
 */
export function safeEntryName(raw: unknown, what = 'archive entry'): string {
  if (typeof raw !== 'string' || raw === '') throw new UnsafeArchiveError(`${what} has no name`);
  const shown = JSON.stringify(raw).slice(0, 200);
  if (raw.includes('\0')) throw new UnsafeArchiveError(`${what} ${shown} contains a NUL byte`);
  if (raw.startsWith('/')) throw new UnsafeArchiveError(`${what} ${shown} is an absolute path`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeArchiveError(`${what} ${shown} contains ".."`);
  if (parts.length === 0) throw new UnsafeArchiveError(`${what} ${shown} names the archive root`);
  return parts.join('/');
}

/** `./`, `.`: the directory entry `tar -C dir .` writes for the archive's root. */
export function isArchiveRoot(raw: string): boolean {
  return raw !== '' && !raw.startsWith('/') && raw.split('/').every((p) => p === '' || p === '.');
}

/**
 * Where a symlink entry named `name` with target `linkname` points, as an archive name, or
 * undefined when it points outside the archive (absolute target, or more `..` than its depth).
 */
export function symlinkTarget(name: string, linkname: string): string | undefined {
  if (!linkname || linkname.startsWith('/') || linkname.includes('\0')) return undefined;
  const joined = path.posix.normalize(path.posix.join(path.posix.dirname(name), linkname));
  if (joined === '..' || joined.startsWith('../') || joined === '.' || joined.startsWith('/')) return undefined;
  return joined.replace(/\/+$/, '');
}
