/**
 * Which parts of the CLI a command loads: bin/mbuild.js prints "mbuild-trace AT ms load FILE TOOK ms"
 * for each file of dist/bundle it reads (MBUILD_TRACE=1), and dist/bundle/chunks.json
 * (scripts/bundle.mjs) names the sources each chunk holds. For the tests that pin the bundle's split.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO } from './cli.js';

export const BUNDLE = path.join(REPO, 'dist', 'bundle');

/** chunk file name -> the sources (repo-relative, node_modules/...) it holds */
export function chunkSources(): Record<string, string[]> {
  return JSON.parse(readFileSync(path.join(BUNDLE, 'chunks.json'), 'utf8')) as Record<string, string[]>;
}

export interface Loaded {
  /** dist/bundle files read, in order (chunks, main.cjs, grpc.cjs, undici.cjs) */
  files: string[];
  /** the sources those chunks hold */
  sources: string[];
}

/** The files a traced command's stderr says it loaded, and the sources in them. */
export function loadedBy(stderr: string): Loaded {
  const files = [...stderr.matchAll(/^mbuild-trace [\d.]+ ms load (\S+) [\d.]+ ms$/gm)].map((m) => m[1]);
  const chunks = chunkSources();
  return { files, sources: files.flatMap((f) => chunks[f] ?? []) };
}

/** The sources of `loaded` under any of `prefixes` (empty when the command kept out of them). */
export function under(loaded: Loaded, prefixes: string[]): string[] {
  return loaded.sources.filter((s) => prefixes.some((p) => s.startsWith(p)));
}
