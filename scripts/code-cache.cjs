// `code-cache.cjs make|check FILE...`: writes FILE.v8cache, a V8 code cache of each bundle FILE
// with every function compiled (run by scripts/bundle.mjs in a node process of its own: the
// flags below must not leak into anything else). bin/mbuild.js compiles the bundles with them:
// less time per command than parsing and compiling the source as functions are first called.
// A cache V8 rejects (another node) is simply not used.
'use strict';
const { readFileSync, writeFileSync, renameSync } = require('node:fs');
const { Script } = require('node:vm');
const { wrap } = require('node:module');
const { setFlagsFromString } = require('node:v8');

const [mode, ...files] = process.argv.slice(2);
for (const file of files) {
  const source = wrap(readFileSync(file, 'utf8'));
  if (mode === 'make') {
    setFlagsFromString('--no-lazy'); // compile every function now, so all of them are in the cache
    const script = new Script(source, { filename: file });
    setFlagsFromString('--lazy'); // the cache records the flags: a default node must accept it
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
}
