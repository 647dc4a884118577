/** Reading the Dockerfile, for a build and for `mbuild build --check` alike. */
import { promises as fs } from 'node:fs';
import { MbuildError } from '../../util/errors.js';

export async function readDockerfile(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new MbuildError('MBUILD_NO_DOCKERFILE', `cannot read the Dockerfile ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
