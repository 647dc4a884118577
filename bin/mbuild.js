#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript bundled into dist/bundle/ at install (npm run build).
import('../dist/bundle/main.js').then((m) => m.main(process.argv.slice(2))).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(`mbuild: ${err && err.stack ? err.stack : err}`); process.exitCode = 1; },
);
