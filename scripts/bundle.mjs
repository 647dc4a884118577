// Bundles the CLI (run by `npm run build` after tsc) into one CommonJS file, dist/bundle/main.cjs,
// npm packages included except undici (large, and needed only by the commands that talk to a
// registry: it is required when that code first runs).
// - undici gets a bundle of its own, dist/bundle/undici.cjs, of just what mbuild uses
//   (scripts/undici-entry.cjs): required from node_modules it is ~100 files to resolve and read,
//   30-50 ms on the first registry request.
// - One CommonJS file: starting from ~100 ES modules cost ~40 ms of resolving and linking on every
//   command; a bundle of ES module chunks still cost 15-40 ms more per command than this file.
// - Each bundle gets a V8 code cache (scripts/code-cache.cjs), which bin/mbuild.js loads.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');
rmSync(outdir, { recursive: true, force: true });
// `import ... from 'undici'` in the CLI bundle loads the undici bundle beside it
// and `import('@grpc/grpc-js')` (only `serve` and --host) loads dist/bundle/grpc.cjs: a local
// build never reads grpc-js's ~0.5 MB
const undiciBeside = {
  name: 'undici-beside',
  setup(b) {
    b.onResolve({ filter: /^undici$/ }, () => ({ path: './undici.cjs', external: true }));
    b.onResolve({ filter: /^@grpc\/grpc-js$/ }, () => ({ path: './grpc.cjs', external: true }));
  },
};
const common = {
  absWorkingDir: root,
  outExtension: { '.js': '.cjs' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outdir,
  logLevel: 'warning',
};
try {
  await build({ ...common, entryPoints: { undici: 'scripts/undici-entry.cjs' } });
  await build({ ...common, entryPoints: { grpc: 'node_modules/@grpc/grpc-js/build/src/index.js' } });
  await build({
    ...common,
    entryPoints: { main: 'cli/main.ts' },
    plugins: [undiciBeside],
    // the sources are ES modules: import.meta.url becomes this file's URL
    banner: { js: 'const __mbuildModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': '__mbuildModuleUrl' },
  });
} catch (err) {
  console.error(`bundle: ${err.message}`);
  process.exit(1);
}
for (const name of ['main.cjs', 'undici.cjs', 'grpc.cjs']) {
  for (const mode of ['make', 'check']) {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'code-cache.cjs'), mode, join(outdir, name)], { stdio: 'inherit' });
    if (r.status !== 0) {
      // the launcher compiles from source without it: slower, still correct
      console.error(`bundle: no code cache for ${name}`);
      rmSync(join(outdir, `${name}.v8cache`), { force: true });
      break;
    }
  }
}
console.log('bundle: dist/bundle/main.cjs, undici.cjs, grpc.cjs (with V8 code caches)');
