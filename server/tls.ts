/** TLS material with docker's flag names: --tlscacert, --tlscert, --tlskey (or $MBUILD_CERT_PATH/{ca,cert,key}.pem). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../util/errors.js';

export interface TlsFiles {
  cacert?: string;
  cert?: string;
  key?: string;
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The three files, or undefined when none is given; some but not all is an error. */
export function readTls(files: TlsFiles, certPath = process.env.MBUILD_CERT_PATH): TlsMaterial | undefined {
  const f = { ...files };
  if (certPath && !f.cacert && !f.cert && !f.key) {
    f.cacert = path.join(certPath, 'ca.pem');
    f.cert = path.join(certPath, 'cert.pem');
    f.key = path.join(certPath, 'key.pem');
  }
  const given = (['cacert', 'cert', 'key'] as const).filter((k) => f[k]);
  if (given.length === 0) return undefined;
  if (given.length < 3) throw new UsageError('mutual TLS needs all of --tlscacert, --tlscert and --tlskey');
  const read = (flag: string, p: string) => {
    try {
      return readFileSync(p);
    } catch (err) {
      throw new UsageError(`--${flag} ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  return { ca: read('tlscacert', f.cacert!), cert: read('tlscert', f.cert!), key: read('tlskey', f.key!) };
}
