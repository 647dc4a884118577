// Bundles the CLI (run by `npm run build` after tsc) into dist/bundle/: main.cjs, the command
// dispatch, and one CommonJS chunk per piece of code that a command loads on its own (every
// `await import(...)` in the sources is a split point: `mbuild --version` reads ~60 kB of it, not the
// whole ~1 MB of a build, a server and a registry client).
// - esbuild's code splitting writes ES module chunks; each is turned into CommonJS here (esbuild's
//   ESM-to-CJS transform; `import("./x.cjs")` becomes a require in a promise). bin/mbuild.js loads
//   them: node's ES module loader costs 15-40 ms per command more than require-style loading, and
//   only a plain script can be compiled from a V8 code cache.
// - undici and @grpc/grpc-js are bundles of their own (undici.cjs: only what mbuild uses,
//   scripts/undici-entry.cjs; grpc.cjs), required by the chunks that talk to a registry or a
//   server: from node_modules they are hundreds of files to resolve and read.
// - Every .cjs gets a V8 code cache (scripts/code-cache.cjs), which bin/mbuild.js loads.
// - chunks.json names the sources each chunk holds (for tests and for finding what a command loads:
//   MBUILD_TRACE=1 prints each file bin/mbuild.js loads).
import { build, transform } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
// `import ... from 'undici'` loads the undici bundle beside the chunks, `@grpc/grpc-js` grpc.cjs
const siblingBundles = {
  name: 'sibling-bundles',
  setup(b) {
    b.onResolve({ filter: /^undici$/ }, () => ({ path: './undici.cjs', external: true }));
    b.onResolve({ filter: /^@grpc\/grpc-js$/ }, () => ({ path: './grpc.cjs', external: true }));
  },
};
// grpc-js requires @grpc/proto-loader (and with it protobufjs, ~330 kB) only to serve channelz or
// read ORCA load reports, which mbuild never turns on: left out of grpc.cjs, it stays a require
// from node_modules that never runs.
const protoLoaderOutside = {
  name: 'proto-loader-outside',
  setup(b) {
    b.onResolve({ filter: /^@grpc\/proto-loader$/ }, (a) => ({ path: a.path, external: true }));
  },
};
const common = {
  absWorkingDir: root,
  outExtension: { '.js': '.cjs' },
  bundle: true,
  platform: 'node',
  target: 'node20',
  outdir,
  logLevel: 'warning',
};
const chunks = {};
try {
  await build({ ...common, format: 'cjs', entryPoints: { undici: 'scripts/undici-entry.cjs' } });
  await build({ ...common, format: 'cjs', entryPoints: { grpc: 'node_modules/@grpc/grpc-js/build/src/index.js' }, plugins: [protoLoaderOutside] });
  const cli = await build({
    ...common,
    entryPoints: { main: 'cli/main.ts' },
    format: 'esm',
    splitting: true,
    chunkNames: '[name]-[hash]',
    write: false,
    metafile: true,
    plugins: [siblingBundles],
    // the sources are ES modules: import.meta.url becomes the chunk's file URL, made when asked
    // for (two modules use it; a URL made by each of the ~60 chunks a build loads costs ms)
    banner: { js: 'const __mbuildMeta = { get url() { return require("node:url").pathToFileURL(__filename).href; } };' },
    define: { 'import.meta.url': '__mbuildMeta.url' },
  });
  // a dynamic import of a CommonJS package gets only `default` in split ES module output (node's
  // own loader would offer its named exports too): import an ES module that re-exports it instead
  for (const [from, meta] of Object.entries(cli.metafile.inputs))
    for (const imp of meta.imports)
      if (imp.kind === 'dynamic-import' && cli.metafile.inputs[imp.path]?.format === 'cjs') throw new Error(`${from}: import('${imp.original}') of a CommonJS module: re-export it from a small ES module and import that`);
  for (const file of cli.outputFiles) {
    const cjs = await transform(file.text, { format: 'cjs', loader: 'js', platform: 'node', target: 'node20', logLevel: 'warning' });
    // a dynamic import of a sibling chunk: require it when the promise runs, as import() would
    const code = cjs.code.replace(/\bimport\("(\.\/[\w-]+\.cjs)"\)/g, 'Promise.resolve().then(() => require("$1"))');
    if (/\bimport\(["']\.\//.test(code)) throw new Error(`${basename(file.path)}: a dynamic import of a chunk was left as import()`);
    writeFileSync(file.path, code);
  }
  for (const [out, meta] of Object.entries(cli.metafile.outputs)) chunks[basename(out)] = Object.keys(meta.inputs).sort();
  writeFileSync(join(outdir, 'chunks.json'), `${JSON.stringify(chunks, null, 1)}\n`);
} catch (err) {
  console.error(`bundle: ${err.message}`);
  process.exit(1);
}
const files = readdirSync(outdir).filter((f) => f.endsWith('.cjs')).map((f) => join(outdir, f));
for (const mode of ['make', 'check']) {
  // one node for all files: the flags code-cache.cjs sets must not leak into anything else
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'code-cache.cjs'), mode, ...files], { stdio: 'inherit' });
  if (r.status !== 0) {
    // the launcher compiles from source without them: slower, still correct
    console.error('bundle: no code caches');
    for (const f of files) rmSync(`${f}.v8cache`, { force: true });
    break;
  }
}
console.log(`bundle: dist/bundle/main.cjs and ${files.length - 1} chunks and bundles (with V8 code caches)`);
