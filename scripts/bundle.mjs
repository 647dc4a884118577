// Bundles the CLI (run by `npm run build` after tsc) into one CommonJS file, dist/bundle/main.cjs,
// npm packages included except undici and grpc (large, and needed only by the commands that talk
// to a registry or serve: they are required when that code first runs). Why one CommonJS file:
// starting from ~100 ES modules cost ~40 ms of resolving and linking on every command; a bundle
// of ES module chunks still cost 15-40 ms more per command than this file, whose code is compiled
// only as it is first called.
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
    outExtension: { '.js': '.cjs' },
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    external: ['undici', '@grpc/grpc-js'],
    // the sources are ES modules: import.meta.url becomes this file's URL
    banner: { js: 'const __mbuildModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': '__mbuildModuleUrl' },
    outdir,
    logLevel: 'warning',
  });
} catch (err) {
  console.error(`bundle: ${err.message}`);
  process.exit(1);
}
console.log('bundle: dist/bundle/main.cjs');
