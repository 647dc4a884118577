/**
 * COPY/ADD --chmod: an octal mode (0 to 07777) or a symbolic one (`u+x`, `a=rX`, `go-w,u=rw`), as
 * BuildKit takes them (octal first; otherwise the chmod(1) grammar of tonistiigi/dchapes-mode with
 * a zero umask). A symbolic mode is applied to each copied entry's own mode; `X` gives execute
 * permission to directories and to files that already have an execute bit.
 */
import { MbuildError, type SourceRange } from '../../util/errors.js';

export interface Chmod {
  /** the mode itself, for an octal value */
  octal?: number;
  /** the mode an entry whose mode is `mode` gets */
  apply(mode: number, isDir: boolean): number;
}

const CLAUSE = /^([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)$/;
const WHO: Record<string, number> = { u: 0o4700, g: 0o2070, o: 0o0007 };

export function parseChmod(spec: string, what: string, range?: SourceRange): Chmod {
  if (/^[0-9]/.test(spec)) {
    // a value that looks numeric gets BuildKit's octal error
    const n = /^[0-7]+$/.test(spec) ? Number.parseInt(spec, 8) : NaN;
    if (!(n <= 0o7777)) throw new MbuildError('MBUILD_PARSE', `${what}: invalid chmod parameter: '${spec}'. it should be octal string and between 0 and 07777`, { range });
    return { octal: n, apply: () => n };
  }
  const clauses = spec.split(',').map((c) => {
    const m = CLAUSE.exec(c);
    if (!m) throw new MbuildError('MBUILD_PARSE', `invalid ${what} value "${spec}": use an octal mode such as 0755 or a symbolic one such as u+x or a=rX`, { range });
    const who = m[1]!.includes('a') || m[1] === '' ? 'ugo' : m[1]!;
    const mask = [...new Set(who)].reduce((acc, w) => acc | WHO[w]!, 0) | (m[1] === '' || m[1]!.includes('a') ? 0o1000 : 0);
    const ops = [...m[2]!.matchAll(/([-+=])([ugo]|[rwxXst]*)/g)].map((o) => ({ op: o[1]!, perm: o[2]! }));
    return { mask, ops };
  });
  return {
    apply(mode: number, isDir: boolean): number {
      let cur = mode & 0o7777;
      for (const { mask, ops } of clauses) {
        for (const { op, perm } of ops) {
          let bits = 0;
          if (/^[ugo]$/.test(perm)) {
            // copy another class's rwx bits
            const shift = perm === 'u' ? 6 : perm === 'g' ? 3 : 0;
            bits = ((cur >> shift) & 7) * 0o111;
          } else {
            for (const c of perm) {
              if (c === 'r') bits |= 0o444;
              else if (c === 'w') bits |= 0o222;
              else if (c === 'x') bits |= 0o111;
              else if (c === 'X' && (isDir || (cur & 0o111) !== 0)) bits |= 0o111;
              else if (c === 's') bits |= 0o6000;
              else if (c === 't') bits |= 0o1000;
            }
          }
          bits &= mask;
          if (op === '+') cur |= bits;
          else if (op === '-') cur &= ~bits;
          else cur = (cur & ~mask) | bits;
        }
      }
      return cur;
    },
  };
}
