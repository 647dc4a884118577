// The builders under test, behind one shape: { name, label, missing, version, ensureImage, build, push }.
// Every tool gets the same Dockerfile and context; only the command line differs.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sh, must, timed, which } from './proc.mjs';

export const TOOL_NAMES = ['mbuild', 'buildkit', 'legacy', 'buildah'];
export const LABELS = { mbuild: 'mbuild', buildkit: 'BuildKit', legacy: 'docker legacy', buildah: 'buildah' };

// GNU time reports the peak RSS of the process it runs (and of what that one waited for) without
// touching it; a node preload hook cost mbuild's runs 5-10 ms each, which docker's runs never paid.
const gnuTime = () => (existsSync('/usr/bin/time') ? '/usr/bin/time' : null);

/** docker.io/library/busybox:latest for "busybox" (enough of Docker's normalisation for base names). */
export function normalizeName(name) {
  let [repo, tag] = [name, 'latest'];
  const at = name.lastIndexOf(':');
  if (at > name.lastIndexOf('/')) [repo, tag] = [name.slice(0, at), name.slice(at + 1)];
  const first = repo.split('/')[0];
  const hasDomain = repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasDomain) repo = repo.includes('/') ? `docker.io/${repo}` : `docker.io/library/${repo}`;
  return `${repo}:${tag}`;
}

export function mbuildTool({ repo, bin, root, network, label }) {
  // freshRunner() points the tool at a new, empty store (a CI runner's first build)
  let current = root;
  let fresh = 0;
  const mb = (args) => ['--root', current, ...args];
  // a .js launcher runs under this node; anything else (bin/mbuild, the package's command) is run as is
  const viaNode = bin.endsWith('.js');
  const exe = viaNode ? process.execPath : bin;
  const argv = (args) => (viaNode ? [bin, ...args] : args);
  const version = (() => {
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version;
    const head = sh('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']).stdout;
    const dirty = sh('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no']).stdout ? '+changes' : '';
    return `${pkg} (${head || 'no git'}${dirty})`;
  })();
  const usage = sh(exe, argv(['--help'])).out;
  const unpacked = new Set();
  const withRss = async (args, log) => {
    const rssFile = `${log}.rss`;
    rmSync(rssFile, { force: true });
    const time = gnuTime();
    const r = time
      ? await timed(time, ['-q', '-f', '%M', '-o', rssFile, exe, ...argv(mb(args))], { log })
      : await timed(exe, argv(mb(args)), { log });
    const kb = existsSync(rssFile) ? Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) : NaN;
    return { ...r, rssKb: kb > 0 ? kb : null };
  };
  // its RUN network default, from its own usage text: the flag is in `mbuild build --help` (older
  // versions: "(default host)"; now the modes, "default, bridge, host or none", where default is
  // the bridge and never falls back to the host's network)
  const buildUsage = sh(exe, argv(['build', '--help'])).out;
  const netHelp = buildUsage.match(/--network \S+\s+network for RUN steps(.*)/)?.[1] ?? '';
  const defaultNetwork = netHelp.match(/\(default (\w+)/)?.[1] ?? (/^: default, bridge\b/.test(netHelp) ? 'bridge' : 'unknown');
  return {
    name: 'mbuild',
    missing: null,
    version: label ?? version,
    defaultNetwork,
    pushMissing: /^\s+push\b/m.test(usage) ? null : 'skipped: `mbuild push` is not available yet',
    run: (args) => sh(exe, argv(mb(args))),
    hasImage: (name) => sh(exe, argv(mb(['inspect', name]))).code === 0,
    loadArchive: (file) => must(exe, argv(mb(['load', '-i', file]))),
    saveArchive: (name, file, format) => must(exe, argv(mb(['save', '-o', file, '--format', format, name]))),
    // The image is in the bench root already (the other tools' archives come from it). `docker load`
    // and `buildah pull` unpack layers as they load; mbuild unpacks on first use, so an untimed
    // build that mounts the image does it here, out of the cold runs.
    ensureImage(name) {
      if (unpacked.has(name)) return;
      const ctx = `${root}-unpack`;
      mkdirSync(ctx, { recursive: true });
      writeFileSync(join(ctx, 'f'), 'x\n');
      writeFileSync(join(ctx, 'Dockerfile'), `FROM ${name}\nCOPY f /.mbuild-bench-unpack\n`);
      const r = sh(exe, argv(mb(['build', '-q', ctx])));
      if (r.code !== 0) throw new Error(`mbuild could not use ${name}: ${r.out.split('\n').pop()}`);
      unpacked.add(name);
    },
    build: ({ ctx, dockerfile, tag, noCache, log, output }) =>
      withRss(['build', '--progress', 'plain', ...(noCache ? ['--no-cache'] : []), ...(network ? ['--network', network] : []),
        ...(output ? ['-o', `type=oci,dest=${output}`] : []), '-f', dockerfile, '-t', tag, ctx], log),
    push: ({ image, log }) => withRss(['push', image], log),
    exportCache: ({ ctx, dockerfile, ref, log }) =>
      withRss(['build', '--progress', 'plain', '--cache-to', `type=registry,ref=${ref},mode=max`, '-f', dockerfile, ctx], log),
    async freshRunner(images, archives) {
      if (current !== root) rmSync(current, { recursive: true, force: true });
      current = `${root}-runner${++fresh}`;
      unpacked.clear();
      for (const name of images) {
        must(exe, argv(mb(['load', '-i', archives[name].docker])));
        this.ensureImage(name);
      }
    },
    importCache: ({ ctx, dockerfile, ref, tag, log }) =>
      withRss(['build', '--progress', 'plain', ...(network ? ['--network', network] : []), '--cache-from', ref, '-f', dockerfile, '-t', tag, ctx], log),
    // `mbuild serve` on the bench store (benchmarks/lib/server-runs.mjs): builds go to it with --host
    async serve({ dir, maxBuilds, log }) {
      const { startServer } = await import('./server-runs.mjs');
      return startServer({ exe, argv: argv(mb(['serve', '--addr', `unix://${join(dir, 's.sock')}`, '--max-builds', String(maxBuilds)])), host: `unix://${join(dir, 's.sock')}`, log });
    },
    remoteBuild: ({ host, ctx, dockerfile, tag, noCache, log, env }) =>
      timed(exe, argv(['--host', host, 'build', '--progress', 'plain', ...(noCache ? ['--no-cache'] : []), ...(network ? ['--network', network] : []), '-f', dockerfile, '-t', tag, ctx]), { log, env: { ...process.env, ...env } }),
  };
}

/** Picks a docker CLI that can drive both builders: Debian's 20.10 has BuildKit built in; a newer one needs buildx. */
export function findDockerCli() {
  for (const c of ['/usr/bin/docker', which('docker')]) {
    if (!c || !existsSync(c)) continue;
    const major = Number(sh(c, ['--version']).stdout.match(/version (\d+)/)?.[1] ?? 0);
    const buildkit = major < 23 || sh(c, ['buildx', 'version']).code === 0;
    return { cli: c, buildkit };
  }
  return null;
}

export function dockerTools({ cli, buildkitOk, host, configDir, network, missing }) {
  mkdirSync(configDir, { recursive: true });
  const env = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: configDir };
  const d = (args, extra = {}) => sh(cli, args, { env: { ...env, ...extra } });
  const version = missing ? '' : `${d(['version', '--format', '{{.Server.Version}}']).stdout} (client ${d(['version', '--format', '{{.Client.Version}}']).stdout})`;
  const ensureImage = (name, archives) => {
    if (d(['image', 'inspect', name]).code === 0) return;
    const r = d(['load', '-i', archives.docker]);
    if (r.code !== 0) throw new Error(`docker load of ${name}: ${r.out}`);
  };
  const mk = (name, buildkit) => ({
    name,
    missing: missing ?? (buildkit && !buildkitOk ? `${cli} has no BuildKit (no buildx plugin)` : null),
    version,
    pushMissing: null,
    ensureImage,
    build: ({ ctx, dockerfile, tag, noCache, log }) =>
      timed(cli, ['build', ...(buildkit ? ['--progress=plain'] : []), ...(noCache ? ['--no-cache'] : []),
        ...(network ? ['--network', network] : []), '-f', dockerfile, '-t', tag, ctx],
      { env: { ...env, DOCKER_BUILDKIT: buildkit ? '1' : '0' }, log }),
    push: ({ image, log }) => timed(cli, ['push', image], { env, log }),
    // BuildKit in docker 20.10 exports a registry cache only inline: the image, built with
    // BUILDKIT_INLINE_CACHE=1 and pushed, is the cache
    exportCache: buildkit
      ? async ({ ctx, dockerfile, ref, log }) => {
        const r = await timed(cli, ['build', '--progress=plain', '--build-arg', 'BUILDKIT_INLINE_CACHE=1', ...(network ? ['--network', network] : []), '-f', dockerfile, '-t', ref, ctx],
          { env: { ...env, DOCKER_BUILDKIT: '1' }, log });
        return r.code !== 0 ? r : timed(cli, ['push', ref], { env, log: `${log}.push` });
      }
      : undefined,
    // no build cache, no result image, the base images kept (as loaded on a runner)
    async freshRunner() {
      d(['builder', 'prune', '-af']);
      for (const img of d(['images', '--format', '{{.Repository}}:{{.Tag}}']).stdout.split('\n')) {
        if (img.startsWith('bench/') || img.includes('/bench/')) d(['rmi', '-f', img]);
      }
    },
    importCache: ({ ctx, dockerfile, ref, tag, log }) =>
      timed(cli, ['build', '--progress=plain', ...(network ? ['--network', network] : []), '--cache-from', ref, '-f', dockerfile, '-t', tag, ctx],
        { env: { ...env, DOCKER_BUILDKIT: '1' }, log }),
  });
  return [mk('buildkit', true), mk('legacy', false)];
}

export function buildahTool({ dir, network }) {
  const bin = which('buildah');
  const base = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'overlay'];
  const b = (args) => sh(bin, [...base, ...args]);
  return {
    name: 'buildah',
    missing: bin ? null : 'buildah is not installed (apt-get install buildah, or run with --install)',
    version: bin ? sh(bin, ['--version']).stdout.replace(/^buildah version /, '') : '',
    pushMissing: null,
    ensureImage(name, archives) {
      const full = normalizeName(name);
      if (b(['inspect', '--type', 'image', full]).code === 0) return;
      const r = b(['pull', '-q', `docker-archive:${archives.docker}`]);
      if (r.code !== 0) throw new Error(`buildah pull of ${name}: ${r.out}`);
      const id = r.stdout.split('\n').pop();
      must(bin, [...base, 'tag', id, full]);
    },
    // --layers: keep per-step images so a warm build can hit a cache (buildah's own default is no cache at all)
    build: ({ ctx, dockerfile, tag, noCache, log }) =>
      timed(bin, [...base, 'build', '--pull=never', '--layers', ...(noCache ? ['--no-cache'] : []),
        ...(network ? ['--network', network] : []), '-f', dockerfile, '-t', tag, ctx], { log }),
    push: ({ image, log }) => timed(bin, [...base, 'push', '--tls-verify=false', image], { log }),
  };
}
