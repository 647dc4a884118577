/**
 * BuildKit's own parser and lexer vectors, run against mbuild's parser and expander:
 *  - the data files copied into ../shared/buildkit-vectors (envVarTest, wordsTest, the 33 parser
 *    testfiles with their `result` dumps, the 4 negative testfiles, testfile-line), read the way
 *    BuildKit's lex_test.go and parser_test.go read them;
 *  - the table-driven Go tests that go with them (lexer, parser, directives, JSON, heredoc,
 *    instruction, flag (bflag) and EXPOSE tables), transcribed in ./buildkit-tables.ts.
 * One test prints "N passed, M failed" and fails on any miss, naming each.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { envLookupFrom, expandWord, expandWords } from '../../builder/expand/shell-word.js';
import { dumpNode, parseAst } from '../../builder/dockerfile/ast.js';
import { tableVectors, type Vector } from './buildkit-tables.js';

const ROOT = path.resolve(__dirname, '../../../shared/buildkit-vectors/frontend/dockerfile');

/** envVarTest: `PLATFORM | source | expected`; W lines are Windows-only and not run (as on Linux). */
function envVarVectors(): Vector[] {
  const file = path.join(ROOT, 'shell/envVarTest');
  const env = envLookupFrom(['PWD=/home', 'SHELL=bash', 'KOREAN=한국어', 'NULL=']);
  const out: Vector[] = [];
  readFileSync(file, 'utf8').split('\n').forEach((raw, i) => {
    if (raw.startsWith('#')) return;
    const line = raw.trim();
    if (line === '') return;
    const parts = line.split('|');
    if (parts.length !== 3) throw new Error(`envVarTest:${i + 1}: expected 3 fields`);
    const [platform, source, expected] = parts.map((p) => p.trim()) as [string, string, string];
    if (platform === 'W') return;
    out.push({
      name: `envVarTest:${i + 1} ${source}`,
      run: () => {
        let got: string;
        try {
          got = expandWord(source, env);
        } catch (e) {
          return expected === 'error' ? undefined : `error ${(e as Error).message}`;
        }
        if (expected === 'error') return `expected an error, got ${JSON.stringify(got)}`;
        return got === expected ? undefined : `got ${JSON.stringify(got)}, want ${JSON.stringify(expected)}`;
      },
    });
  });
  return out;
}

/**
 * wordsTest: `ENV k=v` lines add to the environment; others are `word | w1,w2`. (BuildKit's loop
 * also names a RawQuotes+SkipUnsetEnv mode, but it re-reads the already consumed file, so only the
 * normal mode ever runs; so here.)
 */
function wordsVectors(): Vector[] {
  const envs: string[] = [];
  const out: Vector[] = [];
  readFileSync(path.join(ROOT, 'shell/wordsTest'), 'utf8').split('\n').forEach((line, i) => {
    if (line.startsWith('#') || line === '') return;
    if (line.startsWith('ENV ')) {
      envs.push(line.slice(3).replace(/^ +/, ''));
      return;
    }
    const parts = line.split('|');
    if (parts.length !== 2) throw new Error(`wordsTest:${i + 1}: expected one |`);
    const test = parts[0]!.trim();
    const expected = parts[1]!.replace(/^ +/, '').split(',');
    const env = envLookupFrom([...envs]);
    out.push({
      name: `wordsTest:${i + 1} ${test}`,
      run: () => {
        let got: string[];
        try {
          got = expandWords(test, env);
        } catch {
          got = ['error'];
        }
        return JSON.stringify(got) === JSON.stringify(expected) ? undefined : `got ${JSON.stringify(got)}, want ${JSON.stringify(expected)}`;
      },
    });
  });
  return out;
}

/** testfiles/NAME: the AST dump of Dockerfile equals `result`. */
function testfileVectors(): Vector[] {
  const dir = path.join(ROOT, 'parser/testfiles');
  return readdirSync(dir).sort().map((name) => ({
    name: `testfiles/${name}`,
    run: () => {
      const want = readFileSync(path.join(dir, name, 'result'), 'utf8');
      const ast = parseAst(readFileSync(path.join(dir, name, 'Dockerfile'), 'utf8'));
      const got = ast.nodes.map((n) => `(${dumpNode(n)})\n`).join('');
      return got === want ? undefined : `dump differs:\n${got}\nwant:\n${want}`;
    },
  }));
}

/** testfiles-negative/NAME: the parser refuses the Dockerfile. */
function negativeVectors(): Vector[] {
  const dir = path.join(ROOT, 'parser/testfiles-negative');
  return readdirSync(dir).sort().map((name) => ({
    name: `testfiles-negative/${name}`,
    run: () => {
      try {
        parseAst(readFileSync(path.join(dir, name, 'Dockerfile'), 'utf8'));
      } catch {
        return undefined;
      }
      return 'parsed without an error';
    },
  }));
}

/** testfile-line: the line ranges of its three instructions. */
function lineVectors(): Vector[] {
  return [{
    name: 'testfile-line',
    run: () => {
      const ast = parseAst(readFileSync(path.join(ROOT, 'parser/testfile-line/Dockerfile'), 'utf8'));
      const got = JSON.stringify(ast.nodes.map((n) => [n.startLine, n.endLine]));
      const want = JSON.stringify([[5, 5], [11, 12], [17, 31]]);
      return got === want ? undefined : `ranges ${got}, want ${want}`;
    },
  }];
}

export function allVectors(): Vector[] {
  return [...envVarVectors(), ...wordsVectors(), ...testfileVectors(), ...negativeVectors(), ...lineVectors(), ...tableVectors()];
}

describe('BuildKit vectors', () => {
  it('finds the vector files', () => {
    expect(existsSync(ROOT)).toBe(true);
  });

  it('all pass', () => {
    const vectors = allVectors();
    const failures: string[] = [];
    for (const v of vectors) {
      let why: string | undefined;
      try {
        why = v.run();
      } catch (e) {
        why = `threw ${(e as Error).message}`;
      }
      if (why !== undefined) failures.push(`${v.name}: ${why}`);
    }
    console.log(`BuildKit vectors: ${vectors.length - failures.length} passed, ${failures.length} failed`);
    for (const f of failures) console.log(`  FAIL ${f}`);
    expect(vectors.length).toBeGreaterThanOrEqual(550);
    expect(failures).toEqual([]);
  });
});
