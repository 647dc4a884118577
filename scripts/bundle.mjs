// Bundles the CLI (run by `npm run build` after tsc): one ESM entry plus chunks that load on demand
// (the registry client, the sandbox, ...), npm packages left external. Starting from ~100 separate
// modules costs ~40 ms of module resolution and loading on every command; a bundle costs a few.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');
rmSync(outdir, { recursive: true, force: true });
try {
  await build({
    absWorkingDir: root,
    entryPoints: { main: 'builder/cli/main.ts' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outdir,
    logLevel: 'warning',
  });
} catch (err) {
  console.error(`bundle: ${err.message}`);
  process.exit(1);
}
console.log('bundle: dist/bundle/main.js');
