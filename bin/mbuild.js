#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript bundled into one CommonJS file at install (npm run build).
// CommonJS here too (bin/package.json): an ES module entry would start node's ESM loader, ~20 ms.
'use strict';
Promise.resolve()
  .then(() => require('../dist/bundle/main.cjs').main(process.argv.slice(2)))
  .then(
    (code) => { process.exitCode = code; },
    (err) => { console.error(`mbuild: ${err && err.stack ? err.stack : err}`); process.exitCode = 1; },
  );
