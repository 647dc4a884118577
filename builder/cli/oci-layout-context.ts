/**
 * `--build-context NAME=oci-layout://PATH[:TAG|@DIGEST]`: an OCI image layout directory (or tar)
 * loaded into the store; FROM NAME / COPY --from=NAME then use that image by its manifest digest.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Store } from '../../store/store.js';
import { UsageError } from '../../util/errors.js';
import { targetPlatform } from '../../util/platform.js';

export async function loadOciLayoutContext(store: Store, spec: string): Promise<string> {
  let dir = spec;
  let tag: string | undefined;
  let digest: string | undefined;
  const at = spec.lastIndexOf('@');
  if (at > 0 && /^sha256:[a-f0-9]{64}$/.test(spec.slice(at + 1))) {
    digest = spec.slice(at + 1);
    dir = spec.slice(0, at);
  } else {
    const colon = spec.lastIndexOf(':');
    if (colon > spec.lastIndexOf('/')) {
      tag = spec.slice(colon + 1);
      dir = spec.slice(0, colon);
    }
  }
  const st = await fs.stat(dir).catch(() => null);
  if (!st) throw new UsageError(`--build-context oci-layout://${spec}: ${dir} does not exist`);
  let file = path.resolve(dir);
  const tmp = await store.mkTemp('layout-context');
  try {
    if (st.isDirectory()) {
      file = path.join(tmp, 'layout.tar');
      await promisify(execFile)('tar', ['-c', '-f', file, '-C', path.resolve(dir), '.']);
    }
    const { importArchive } = await import('../../store/archive/import.js');
    const loaded = await importArchive(store, file, { platform: targetPlatform() });
    let pick = loaded;
    if (digest) pick = loaded.filter((l) => l.digest === digest);
    else if (tag) pick = loaded.filter((l) => l.name?.endsWith(`:${tag}`));
    if (!pick.length) throw new UsageError(`--build-context oci-layout://${spec}: no image ${digest ?? `tagged ${tag}`} in the layout`);
    if (pick.length > 1 && new Set(pick.map((p) => p.digest)).size > 1) throw new UsageError(`--build-context oci-layout://${spec}: the layout holds several images: name one with :TAG or @DIGEST`);
    return pick[0].digest;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
