import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../util/error-codes.js';
import { MbuildError, RegistryAuthError } from '../../util/errors.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The rows of the README's "Error codes" table: code -> meaning. */
function readmeTable(): Record<string, string> {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.split('\n## Error codes\n')[1]?.split('\n## ')[0] ?? '';
  const rows: Record<string, string> = {};
  for (const m of section.matchAll(/^\| `(MBUILD_[A-Z0-9_]+)` \| (.*) \|$/gm)) rows[m[1]!] = m[2]!.replace(/\\\|/g, '|');
  return rows;
}

describe('error codes', () => {
  it('the README table lists exactly the codes of util/error-codes.ts, with the same meanings', () => {
    expect(readmeTable()).toEqual(ERROR_CODES);
  });

  it('an error keeps its code and class name, and points at its Dockerfile line', () => {
    const e = new MbuildError('MBUILD_PARSE', 'unknown instruction: FORM', { range: { start: 3, end: 3 } });
    expect([e.code, e.name, String(e)]).toEqual(['MBUILD_PARSE', 'MbuildError', 'Dockerfile:3: unknown instruction: FORM']);
    const a = new RegistryAuthError('r.example: unauthorized', 401);
    expect([a.code, a.name, a.status, a instanceof MbuildError]).toEqual(['MBUILD_REGISTRY_AUTH', 'RegistryAuthError', 401, true]);
  });
});
