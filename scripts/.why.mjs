import { build } from 'esbuild';
const r = await build({ absWorkingDir: process.cwd(), entryPoints: { main: 'cli/main.ts' }, bundle: true, format: 'esm', splitting: true, platform: 'node', target: 'node20', write: false, outdir: '/tmp/sm/w', metafile: true, logLevel: 'error',
  plugins: [{ name: 'x', setup(b) { b.onResolve({ filter: /^undici$|^@grpc\/grpc-js$/ }, (a) => ({ path: a.path, external: true })); } }] });
const inputs = r.metafile.inputs;
// BFS over static imports from a root; print chain to each target
const [root, ...targets] = process.argv.slice(2);
const prev = new Map([[root, null]]); const q = [root];
while (q.length) { const f = q.shift(); for (const i of inputs[f]?.imports ?? []) { if (i.kind !== 'import-statement' || i.external) continue; if (!prev.has(i.path)) { prev.set(i.path, f); q.push(i.path); } } }
for (const t of targets) { const chain = []; for (let f = t; f; f = prev.get(f)) chain.unshift(f); console.log(prev.has(t) ? chain.join(' -> ') : `${t}: not statically reachable`); }
