// Compiles native/mbuild-helper.c (run by `npm run build` after tsc).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join('native', 'mbuild-helper.c');
const out = join('native', 'mbuild-helper');

function fail(msg) {
  console.error(`build-native: ${msg}`);
  process.exit(1);
}

if (process.platform !== 'linux') fail(`mbuild-helper needs Linux (this is ${process.platform})`);

const probe = spawnSync('cc', ['--version'], { stdio: 'ignore' });
if (probe.error) {
  fail(
    probe.error.code === 'ENOENT'
      ? 'no C compiler: `cc` was not found in PATH. Install one (e.g. `apt-get install gcc` or `apk add build-base`) and run `npm run build` again.'
      : `cannot run cc: ${probe.error.message}`,
  );
}

const args = ['-O2', '-Wall', '-o', out, src];
console.log(`build-native: cc ${args.join(' ')}`);
const r = spawnSync('cc', args, { cwd: root, stdio: 'inherit' });
if (r.error) fail(`cannot run cc: ${r.error.message}`);
if (r.status !== 0) fail(`cc failed (${r.signal ?? `exit ${r.status}`}) compiling ${src}`);
