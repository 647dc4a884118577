#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript bundled into CommonJS chunks at install (npm run build,
// scripts/bundle.mjs), each with a V8 code cache made then (scripts/code-cache.cjs): compiling from
// the cache saves ~20 ms a command. A cache this node rejects, or a missing one, only means
// compiling from the source. A command loads main.cjs and the chunks it requires, nothing else.
// CommonJS itself (bin/package.json): an ES module entry would start node's ESM loader, ~20 ms.
// MBUILD_TRACE=1 (util/trace.ts) prints one line per file loaded: "mbuild-trace AT ms load FILE TOOK ms".
'use strict';
const { readFileSync, readdirSync } = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const { Script } = require('node:vm');

const dir = path.join(__dirname, '..', 'dist', 'bundle');
const trace = process.env.MBUILD_TRACE === '1' ? require('node:perf_hooks').performance : undefined;
/** name -> module, for each file of dist/bundle run so far */
const loaded = new Map();
/** name -> its source and code cache, read ahead by holdBundle() */
const held = new Map();
// one require for everything a chunk asks for that is not a sibling: node's modules, node_modules
const plain = Module.createRequire(path.join(dir, 'main.cjs'));
const bundleRequire = (id) => (/^\.\/[\w-]+\.cjs$/.test(id) ? load(id.slice(2)) : plain(id));
Object.assign(bundleRequire, { resolve: plain.resolve, cache: plain.cache, main: require.main });

function read(name) {
  const file = path.join(dir, name);
  let cachedData;
  try {
    cachedData = readFileSync(`${file}.v8cache`);
  } catch {
    cachedData = undefined;
  }
  let source;
  try {
    source = readFileSync(file, 'utf8');
  } catch (err) {
    // chunk names carry their content's hash: a rebuild or upgrade since this command started
    // removed the one it needs now
    if (err.code === 'ENOENT' && loaded.size) throw new Error(`${file} is gone: mbuild was rebuilt or upgraded while this command ran; run it again`);
    throw err;
  }
  return { source, cachedData };
}

/** Loads a file of dist/bundle as require() would, compiled with its code cache. */
function load(name) {
  const known = loaded.get(name);
  if (known) return known.exports;
  const start = trace?.now();
  const file = path.join(dir, name);
  const { source, cachedData } = held.get(name) ?? read(name);
  held.delete(name);
  const script = new Script(Module.wrap(source), { filename: file, cachedData });
  const mod = { exports: {}, filename: file };
  loaded.set(name, mod);
  script.runInThisContext().call(mod.exports, mod.exports, bundleRequire, mod, file, dir);
  if (trace) {
    const end = trace.now();
    process.stderr.write(`mbuild-trace ${end.toFixed(1)} ms load ${name} ${(end - start).toFixed(1)} ms\n`);
  }
  return mod.exports;
}

/**
 * Reads (does not run) every file of dist/bundle not loaded yet, for `mbuild serve`: a server that
 * runs for weeks keeps the code it started with when an upgrade replaces dist/bundle under it,
 * instead of loading a newer chunk beside older ones, or missing one.
 */
function holdBundle() {
  const start = trace?.now();
  for (const name of readdirSync(dir)) if (name.endsWith('.cjs') && !loaded.has(name) && !held.has(name)) held.set(name, read(name));
  if (trace) {
    const end = trace.now();
    process.stderr.write(`mbuild-trace ${end.toFixed(1)} ms hold ${held.size} files ${(end - start).toFixed(1)} ms\n`);
  }
}

Promise.resolve()
  .then(() => load('main.cjs').main(process.argv.slice(2), { holdBundle }))
  .then(
    (code) => { process.exitCode = code; },
    (err) => { console.error(`mbuild: ${err && err.stack ? err.stack : err}`); process.exitCode = 1; },
  );
