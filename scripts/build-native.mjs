// Compiles native/*.c into native/mbuild-helper with one cc line (run by `npm run build` after tsc).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcs = readdirSync(join(root, 'native'))
  .filter((f) => f.endsWith('.c'))
  .sort()
  .map((f) => join('native', f));
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

// the seccomp profile's C table, from native/seccomp-default.json
const gen = spawnSync(process.execPath, [join(root, 'scripts', 'gen-seccomp.mjs')], { stdio: 'inherit' });
if (gen.status !== 0) fail('generating the seccomp table failed');
if (!existsSync('/usr/include/seccomp.h')) {
  const hint = spawnSync('cc', ['-E', '-x', 'c', '-'], { input: '#include <seccomp.h>\n', stdio: ['pipe', 'ignore', 'ignore'] });
  if (hint.status !== 0) fail('libseccomp is missing: install it (Debian: `apt-get install libseccomp-dev`, or run scripts/setup.sh) and run `npm run build` again.');
}

const args = ['-O2', '-Wall', '-o', out, ...srcs, '-lseccomp'];
console.log(`build-native: cc ${args.join(' ')}`);
const r = spawnSync('cc', args, { cwd: root, stdio: 'inherit' });
if (r.error) fail(`cannot run cc: ${r.error.message}`);
if (r.status !== 0) fail(`cc failed (${r.signal ?? `exit ${r.status}`}) compiling ${srcs.join(' ')}`);
// the seccomp program a RUN step loads instead of building it (~25 ms of CPU each); see native/seccomp.c
const exp = spawnSync(join(root, out), ['seccomp-export'], { stdio: 'inherit' });
if (exp.status !== 0) fail('mbuild-helper seccomp-export failed');
