#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript compiled to dist/ at install time.
import('../dist/builder/cli/main.js').then((m) => m.main(process.argv.slice(2))).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(`mbuild: ${err && err.stack ? err.stack : err}`); process.exitCode = 1; },
);
