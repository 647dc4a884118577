#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript bundled into CommonJS files at install (npm run build), each
// with a V8 code cache made then (scripts/code-cache.cjs): compiling from the cache saves ~20 ms a
// command. A cache this node rejects, or a missing one, only means compiling from the source.
// CommonJS itself (bin/package.json): an ES module entry would start node's ESM loader, ~20 ms.
'use strict';
const { readFileSync } = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const { Script } = require('node:vm');

const loaded = new Map();

/** Loads a bundle as require() would, compiled with its code cache; its own ./*.cjs siblings too. */
function loadBundle(file) {
  const known = loaded.get(file);
  if (known) return known.exports;
  let cachedData;
  try {
    cachedData = readFileSync(`${file}.v8cache`);
  } catch {
    cachedData = undefined;
  }
  const script = new Script(Module.wrap(readFileSync(file, 'utf8')), { filename: file, cachedData });
  const mod = { exports: {}, filename: file };
  loaded.set(file, mod);
  const plain = Module.createRequire(file);
  const bundleRequire = (id) => (/^\.\/[\w-]+\.cjs$/.test(id) ? loadBundle(path.join(path.dirname(file), id)) : plain(id));
  Object.assign(bundleRequire, { resolve: plain.resolve, cache: plain.cache, main: require.main });
  script.runInThisContext().call(mod.exports, mod.exports, bundleRequire, mod, file, path.dirname(file));
  return mod.exports;
}

Promise.resolve()
  .then(() => loadBundle(path.join(__dirname, '..', 'dist', 'bundle', 'main.cjs')).main(process.argv.slice(2)))
  .then(
    (code) => { process.exitCode = code; },
    (err) => { console.error(`mbuild: ${err && err.stack ? err.stack : err}`); process.exitCode = 1; },
  );
