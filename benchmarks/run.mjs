#!/usr/bin/env node
// npm run bench [-- --runs N] [--only ID[,ID:variant]] [--tools mbuild,buildkit,legacy,buildah]
//   [--start-dockerd] [--install] [--network host] [--bases-root DIR] [--build-bases]
//   [--out DIR] [--update-readme] [--keep] [--wait-idle SEC] [--mbuild BIN] [--label TEXT] [--render DIR]
// See benchmarks/README.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh, must, which, median } from './lib/proc.mjs';
import { startDockerd, freePort } from './lib/daemons.mjs';
import { mbuildTool, dockerTools, buildahTool, findDockerCli, TOOL_NAMES, normalizeName } from './lib/tools.mjs';
import { SCENARIOS } from './lib/scenarios.mjs';
import { runScenario } from './lib/runner.mjs';
import { machineFacts, render, updateReadme } from './lib/report.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const NETNS_MARK = 'MBUILD_BENCH_IN_NETNS';
const CONTAINERS_DIRS = ['/run/containers', '/var/lib/containers']; // buildah's (containers/image's) host state

function parse(argv) {
  const o = { runs: 5, only: null, tools: [...TOOL_NAMES], startDockerd: false, install: false, network: null,
    basesRoot: process.env.MBUILD_ROOT || '/var/lib/mbuild', buildBases: false, out: join(here, 'results'),
    updateReadme: false, keep: false, mbuild: join(repo, 'bin/mbuild'), waitIdle: 0, label: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (argv[i + 1] === undefined) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--runs': o.runs = Number(val()); if (!(o.runs >= 1)) throw new Error('--runs must be ≥ 1'); break;
      case '--only': o.only = val().split(','); break;
      case '--tools': o.tools = val().split(','); break;
      case '--start-dockerd': o.startDockerd = true; break;
      case '--install': o.install = true; break;
      case '--network': o.network = val(); break;
      case '--bases-root': o.basesRoot = resolve(val()); break;
      case '--build-bases': o.buildBases = true; break;
      case '--out': o.out = resolve(val()); break;
      case '--update-readme': o.updateReadme = true; break;
      case '--keep': o.keep = true; break;
      case '--wait-idle': o.waitIdle = Number(val()); break;
      case '--mbuild': o.mbuild = resolve(val()); break;
      case '--label': o.label = val(); break;
      case '--render': o.render = resolve(val()); break;
      case '-h': case '--help':
        console.log(`usage: npm run bench -- [--runs N] [--only ${SCENARIOS.map((s) => s.id).join(',')}[:variant]] [--tools ${TOOL_NAMES.join(',')}]
  [--start-dockerd] [--install] [--network host] [--bases-root DIR] [--build-bases] [--out DIR] [--update-readme] [--keep] [--wait-idle SEC] [--mbuild BIN] [--label TEXT] [--render DIR]`);
        process.exit(0);
      default: throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  for (const t of o.tools) if (!TOOL_NAMES.includes(t)) throw new Error(`unknown tool ${t} (${TOOL_NAMES.join(', ')})`);
  for (const x of o.only ?? []) if (!SCENARIOS.some((s) => s.id === x.split(':')[0])) throw new Error(`unknown scenario ${x}`);
  return o;
}

const say = (m) => console.log(m);

// examples/bases' archive cache (NAME-KEY.oci.tar, kept by the myhttpserver test): the newest one for NAME
const BASES_CACHE = process.env.MBUILD_BASES_CACHE || '/var/cache/mbuild-bases';
function cachedBase(name) {
  const stem = `${name.replace(/[^a-z0-9]+/g, '-')}-`;
  if (!existsSync(BASES_CACHE)) return null;
  const hits = readdirSync(BASES_CACHE)
    .filter((f) => f.startsWith(stem) && /^[0-9a-f]{24}\.oci\.tar$/.test(f.slice(stem.length)))
    .map((f) => join(BASES_CACHE, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return hits[0] ?? null;
}

/** Host side: installs, base images (both need the network), then the run itself in a private netns. */
function preflight(o) {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (mbuild, dockerd and buildah do)');
  const pkgs = [];
  if (o.startDockerd && !which('dockerd') && !existsSync('/usr/sbin/dockerd')) pkgs.push('docker.io');
  if (o.install && !which('buildah') && o.tools.includes('buildah')) pkgs.push('buildah');
  if (!existsSync('/usr/bin/time')) pkgs.push('time'); // GNU time: mbuild's peak RSS
  if (pkgs.length) {
    say(`installing ${pkgs.join(' ')} (apt-get)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    if (sh('apt-get', ['install', '-y', '-qq', ...pkgs], { env }).code !== 0) {
      must('apt-get', ['update', '-qq'], { env });
      must('apt-get', ['install', '-y', '-qq', ...pkgs], { env });
    }
  }
  if (o.buildBases && existsSync(join(repo, 'examples/bases/build.sh'))) {
    say(`building the example base images into ${o.basesRoot} (examples/bases/build.sh)`);
    const r = spawnSync('bash', [join(repo, 'examples/bases/build.sh')], { stdio: 'inherit', env: { ...process.env, MBUILD_ROOT: o.basesRoot } });
    if (r.status !== 0) say('warning: examples/bases/build.sh failed; scenarios needing those bases will be skipped');
  }
}

async function main() {
  const o = parse(process.argv.slice(2));
  if (o.render) return report(o, JSON.parse(readFileSync(join(o.render, 'results.json'), 'utf8')));
  if (process.env[NETNS_MARK] !== '1') {
    preflight(o);
    // Everything else runs in fresh network and mount namespaces: dockerd's bridge and iptables
    // rules, buildah's netavark rules, the registry's port exist only there and vanish with them;
    // buildah's state dirs get a tmpfs (made as empty mount points here, removed after if empty).
    const made = CONTAINERS_DIRS.filter((p) => !existsSync(p));
    for (const p of made) mkdirSync(p, { recursive: true });
    const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', '--', process.execPath,
      fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, [NETNS_MARK]: '1' } });
    for (const p of made.reverse()) sh('rmdir', [p]);
    process.exit(r.status ?? 1);
  }
  must('ip', ['link', 'set', 'lo', 'up']);
  for (const p of CONTAINERS_DIRS) must('mount', ['-t', 'tmpfs', '-o', 'mode=0700', 'tmpfs', p]);
  const work = mkdtempSync(join(tmpdir(), 'mbuild-bench-'));
  let aborted = false;
  const onSignal = () => { aborted = true; say('interrupted: finishing the current run, then cleaning up'); };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const cleanups = [];
  try {
    await bench(o, work, cleanups, () => aborted);
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e) => say(`cleanup: ${e.message}`));
    if (o.keep) say(`work dir kept: ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

async function bench(o, work, cleanups, aborted) {
  const t0 = Date.now();
  // the tools
  const mbuildRoot = join(work, 'mbuild-root');
  const tools = [];
  const notes = [];
  const mbuild = mbuildTool({ repo: resolve(dirname(o.mbuild), '..'), bin: o.mbuild, root: mbuildRoot, network: o.network, label: o.label });
  if (o.tools.includes('mbuild')) tools.push(mbuild);
  const docker = findDockerCli();
  let dockerMissing = docker ? null : 'no docker CLI';
  let host = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
  if (docker && (o.tools.includes('buildkit') || o.tools.includes('legacy'))) {
    if (o.startDockerd) {
      say('starting dockerd (temp data-root and socket)');
      const d = await startDockerd(join(work, 'docker'), docker.cli);
      cleanups.push(d.stop);
      host = d.host;
    } else if (sh(docker.cli, ['-H', host, 'version']).code !== 0) {
      dockerMissing = `no docker daemon at ${host} (use --start-dockerd)`;
    } else {
      notes.push('docker push rows need --start-dockerd (the registry lives in the benchmark\'s own network namespace)');
    }
  }
  const registryPort = await freePort();
  for (const t of dockerTools({ cli: docker?.cli, buildkitOk: docker?.buildkit, host, configDir: join(work, 'docker-config'), network: o.network, missing: dockerMissing })) {
    if (!o.tools.includes(t.name)) continue;
    if (!o.startDockerd && !t.missing) t.pushMissing = 'skipped: needs --start-dockerd';
    tools.push(t);
  }
  if (o.tools.includes('buildah')) tools.push(buildahTool({ dir: join(work, 'buildah'), network: o.network }));
  cleanups.push(async () => sh('umount', ['-R', join(work, 'buildah')])); // buildah normally leaves none
  const present = tools.filter((t) => !t.missing);
  for (const t of tools) say(`${t.name.padEnd(8)} ${t.missing ? `not measured: ${t.missing}` : t.version}`);

  // base images: the bench's mbuild root is the source for every other tool's archives
  const archives = new Map();
  const getArchives = async (name) => {
    if (archives.has(name)) return archives.get(name);
    if (!mbuild.hasImage(name)) {
      const conformance = resolve(repo, '../shared/conformance/bases/busybox.oci.tar');
      if (normalizeName(name) === 'docker.io/library/busybox:latest' && existsSync(conformance)) mbuild.loadArchive(conformance);
      else if (sh(process.execPath, [o.mbuild, '--root', o.basesRoot, 'save', '-o', join(work, 'img.tar'), '--format', 'oci', name]).code === 0) {
        mbuild.loadArchive(join(work, 'img.tar'));
        rmSync(join(work, 'img.tar'));
      } else {
        const cached = cachedBase(name);
        if (!cached) throw new Error(`base image ${name} is neither in ${o.basesRoot} nor in ${BASES_CACHE} (build it with examples/bases/build.sh, or pass --build-bases)`);
        mbuild.loadArchive(cached);
      }
    }
    const dir = join(work, 'images');
    mkdirSync(dir, { recursive: true });
    const docker = join(dir, `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}.docker.tar`);
    mbuild.saveArchive(name, docker, 'docker');
    archives.set(name, { docker });
    return archives.get(name);
  };

  const selected = SCENARIOS.filter((s) => (o.only ? o.only.some((x) => x.split(':')[0] === s.id) : !s.optIn));
  const rows = [];
  const loads = [];
  const skippedScenarios = [];
  for (const sc of selected) {
    if (aborted()) break;
    const reason = sc.skip?.({ repo });
    if (reason) {
      say(`${sc.title}: ${reason}`);
      skippedScenarios.push({ title: sc.title, reason });
      continue;
    }
    const variantsFilter = o.only?.filter((x) => x.startsWith(`${sc.id}:`)).map((x) => x.split(':')[1]);
    const scTools = present.filter((t) => !sc.tools || sc.tools.includes(t.name));
    say(`== ${sc.title} (${scTools.map((t) => t.name).join(', ')})`);
    const scWork = join(work, sc.id);
    mkdirSync(scWork, { recursive: true });
    try {
      rows.push(...(await runScenario(sc, scTools, {
        runs: o.runs, work: scWork, repo, registryPort, archives: getArchives, say, aborted, loads, waitIdle: o.waitIdle,
        variantsFilter: variantsFilter?.length ? variantsFilter : null,
      })));
    } catch (e) {
      say(`${sc.title}: ${e.message}`);
      skippedScenarios.push({ title: sc.title, reason: `skipped: ${e.message.split('\n')[0]}` });
    }
    if (!o.keep) rmSync(scWork, { recursive: true, force: true }); // contexts are big
  }

  // report
  const shown = TOOL_NAMES.filter((t) => o.tools.includes(t) && rows.some((r) => r.tool === t));
  const versions = {
    toolVersions: [
      mbuild && `mbuild ${mbuild.version}`,
      tools.some((t) => t.name !== 'mbuild' && t.name !== 'buildah' && !t.missing) && `docker ${tools.find((t) => t.name === 'buildkit' || t.name === 'legacy').version}`,
      tools.some((t) => t.name === 'buildah' && !t.missing) && `buildah ${tools.find((t) => t.name === 'buildah').version}`,
    ].filter(Boolean).join(', '),
    network: o.network ? `--network ${o.network} for every tool`
      : `each tool's default (${[shown.includes('mbuild') && `mbuild: ${mbuild.defaultNetwork}`,
        (shown.includes('buildkit') || shown.includes('legacy')) && 'docker: a bridge per RUN step',
        shown.includes('buildah') && 'buildah: netavark'].filter(Boolean).join(', ')})`,
  };
  const facts = { ...machineFacts(versions), runs: o.runs, load: loads.length ? { median: median(loads), max: Math.max(...loads) } : null };
  const missingNotes = tools.filter((t) => t.missing).map((t) => `${t.name} not measured: ${t.missing}`);
  report(o, { facts, rows, shown, skippedScenarios, notes: [...notes, ...missingNotes] });
  say(`(${((Date.now() - t0) / 60000).toFixed(1)} min)`);
}

/** Writes results.md, results.json, chart.svg (and the README's table): from a run, or from --render DIR. */
function report(o, data) {
  const { text, svg } = render(data);
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'results.md'), text + '\n');
  writeFileSync(join(o.out, 'results.json'), JSON.stringify(data, null, 1) + '\n');
  writeFileSync(join(o.out, 'chart.svg'), svg);
  say(`\n${text}\n\nwrote ${join(o.out, 'results.md')}, results.json, chart.svg`);
  if (o.updateReadme) {
    const rel = relative(here, join(o.out, 'chart.svg'));
    const ok = updateReadme(join(here, 'README.md'), text.replace(/\n\n(?=\| scenario \| mbuild wall)/, `\n\n![chart](${rel})\n\n`));
    say(ok ? 'updated benchmarks/README.md' : 'benchmarks/README.md has no <!-- bench:start --> / <!-- bench:end --> markers');
  }
}

main().catch((e) => {
  console.error(`bench: ${e.message}`);
  process.exit(1);
});
