// Writes FILE.v8cache, a V8 code cache of the bundle FILE with every function compiled (run by
// scripts/bundle.mjs, one node process per file: the flags below must not leak into anything else).
// bin/mbuild.js compiles the bundle with it: ~20 ms less per command than parsing and compiling
// the source as functions are first called. A cache V8 rejects (another node) is simply not used.
'use strict';
const { readFileSync, writeFileSync, renameSync } = require('node:fs');
const { Script } = require('node:vm');
const { wrap } = require('node:module');
const { setFlagsFromString } = require('node:v8');

const [mode, file] = process.argv.slice(2);
const source = wrap(readFileSync(file, 'utf8'));
if (mode === 'make') {
  setFlagsFromString('--no-lazy'); // compile every function now, so all of them are in the cache
  const script = new Script(source, { filename: file });
  setFlagsFromString('--lazy');
  writeFileSync(`${file}.v8cache.tmp`, script.createCachedData());
  renameSync(`${file}.v8cache.tmp`, `${file}.v8cache`);
} else {
  // check: a fresh node with default flags accepts the cache
  const script = new Script(source, { filename: file, cachedData: readFileSync(`${file}.v8cache`) });
  if (script.cachedDataRejected) {
    console.error(`code cache for ${file} rejected by V8`);
    process.exit(1);
  }
}
