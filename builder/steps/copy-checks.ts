/**
 * What COPY/ADD refuse before touching a file, given the expanded words: used by the step itself
 * and by `mbuild build --check` (which runs no step), so both refuse the same things alike.
 */
import type { CopyInstruction } from '../dockerfile/types.js';
import { MbuildError } from '../../util/errors.js';
import { parseChmod, type Chmod } from './chmod.js';
import { parseChecksum } from './download.js';
import { parseGitSource, type GitSource } from './git.js';

export interface CopySourcesPlan {
  gits: GitSource[];
  urls: string[];
  /** context (or --from) paths */
  local: string[];
  /** ADD --checksum as the download or git checkout checks it */
  checksum?: string;
  chmod?: Chmod;
  destIsDir: boolean;
}

/**
 * @param sources the expanded source words
 * @param rawDest the expanded destination
 * @param chmod the expanded --chmod value
 */
export function checkCopySources(ins: CopyInstruction, sources: string[], rawDest: string, chmod: string | undefined): CopySourcesPlan {
  const range = ins.range;
  const destIsDir = rawDest.endsWith('/') || rawDest === '.' || rawDest.endsWith('/.') || rawDest === '';
  if (sources.length > 1 && !destIsDir) {
    throw new MbuildError('MBUILD_COPY_DEST', `When using ${ins.kind.toUpperCase()} with more than one source file, the destination must be a directory and end with a /`, { range });
  }
  const parsedChmod = chmod !== undefined ? parseChmod(chmod, `${ins.kind.toUpperCase()} --chmod`, range) : undefined;
  const gits = ins.from === undefined ? sources.flatMap((s) => parseGitSource(s, range) ?? []) : [];
  const urls = ins.from === undefined ? sources.filter((s) => /^https?:\/\//.test(s) && !gits.some((g) => g.src === s)) : [];
  if (ins.kind === 'copy' && gits.length) throw new MbuildError('MBUILD_PARSE', "COPY: source can't be a git ref for COPY (use ADD)", { range });
  if (ins.kind === 'copy' && urls.length) throw new MbuildError('MBUILD_PARSE', "COPY: source can't be a URL for COPY (use ADD)", { range });
  const local = sources.filter((s) => !urls.includes(s) && !gits.some((g) => g.src === s));
  const checksum = checksumFor(ins, sources, urls, gits);
  for (const g of gits) {
    if (ins.keepGitDir !== undefined && g.keepGitDir !== undefined && ins.keepGitDir !== g.keepGitDir) throw new MbuildError('MBUILD_PARSE', `ADD ${g.src}: inconsistent keep-git-dir configuration`, { range });
    g.keepGitDir ??= ins.keepGitDir;
  }
  return { gits, urls, local, destIsDir, ...(checksum !== undefined ? { checksum } : {}), ...(parsedChmod ? { chmod: parsedChmod } : {}) };
}

/** ADD --checksum: only for one http(s) (or git) source, as BuildKit allows it. */
function checksumFor(ins: CopyInstruction, sources: string[], urls: string[], gits: GitSource[]): string | undefined {
  if (ins.checksum === undefined) return undefined;
  if (sources.length + (ins.sourceContents?.length ?? 0) !== 1) throw new MbuildError('MBUILD_PARSE', 'ADD --checksum can\'t be specified for multiple sources', { range: ins.range });
  if (urls.length + gits.length !== 1) throw new MbuildError('MBUILD_PARSE', 'ADD --checksum requires HTTP(S) or Git sources', { range: ins.range });
  // for git: a commit hash (or a prefix), checked by resolveGitCommit
  return urls.length ? parseChecksum(ins.checksum, ins.range) : ins.checksum;
}
