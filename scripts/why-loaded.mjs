// `node scripts/why-loaded.mjs FROM TARGET...`: the chain of static imports by which the source
// FROM (e.g. cli/cmd-build.ts) pulls in each TARGET (e.g. builder/sandbox/run.ts,
// node_modules/tar-stream/index.js), or that it does not. A static import puts TARGET in the
// chunks every command that loads FROM reads (scripts/bundle.mjs splits only at import()); with
// MBUILD_TRACE=1 the launcher lists the chunks a command loads, dist/bundle/chunks.json their sources.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [from, ...targets] = process.argv.slice(2);
if (!from || !targets.length) {
  console.error('usage: node scripts/why-loaded.mjs FROM TARGET...');
  process.exit(2);
}
const r = await build({
  absWorkingDir: join(dirname(fileURLToPath(import.meta.url)), '..'),
  entryPoints: [from],
  bundle: true,
  format: 'esm',
  splitting: true,
  platform: 'node',
  target: 'node20',
  write: false,
  outdir: 'unused',
  metafile: true,
  logLevel: 'error',
  plugins: [{ name: 'siblings', setup: (b) => b.onResolve({ filter: /^undici$|^@grpc\/grpc-js$/ }, (a) => ({ path: a.path, external: true })) }],
});
const inputs = r.metafile.inputs;
// breadth first over static imports: the shortest chain to each file
const prev = new Map([[from, null]]);
for (const queue = [from]; queue.length; ) {
  const f = queue.shift();
  for (const i of inputs[f]?.imports ?? []) {
    if (i.kind !== 'import-statement' || i.external || prev.has(i.path)) continue;
    prev.set(i.path, f);
    queue.push(i.path);
  }
}
for (const t of targets) {
  const chain = [];
  for (let f = t; f; f = prev.get(f)) chain.unshift(f);
  console.log(prev.has(t) ? chain.join(' -> ') : `${t}: not statically imported by ${from}`);
}
