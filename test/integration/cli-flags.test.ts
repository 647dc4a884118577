/**
 * Every flag `mbuild build` accepts (cli/build-flags.ts) has an effect a user can see, or
 * a refusal in one line: this file walks the whole table, and fails when a flag is added to the
 * table without a case here. Flags whose effect is pinned by another test file name that file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, mbuild, run, type CliResult, writeContext } from '../helpers/cli.js';
import { flagCases } from '../helpers/flag-cases.js';
import { BUILD_FLAGS } from '../../cli/build-flags.js';

let work: string;
let root: string;
const mb = (args: string[], input?: string): Promise<CliResult> => mbuild(['--root', root, ...args], { input });

const { ctxWith, build, inspect, refused, coveredBy } = flagCases(mb, () => work);

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-cli-flags-'));
  root = path.join(work, 'store');
  expect((await mb(['load', '-i', BUSYBOX_TAR])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const CASES: Record<string, () => Promise<void> | void> = {
  async tag() {
    const r = await build('FROM busybox\n', ['-t', 'flags/tag:1', '-t', 'flags/tag:2']);
    expect(r.code, r.stderr).toBe(0);
    expect((await inspect('flags/tag:1')).RepoTags).toEqual(['flags/tag:1', 'flags/tag:2']);
  },
  async file() {
    // -f - : the Dockerfile from stdin, the context from the directory
    const dir = await ctxWith('FROM scratch\n', { 'data.txt': 'from the context\n' });
    const r = await mb(['build', '-q', '-t', 'flags/file', '-f', '-', dir], 'FROM busybox\nCOPY data.txt /\nRUN cat /data.txt\n');
    expect(r.code, r.stderr).toBe(0);
    const out = await mb(['run', 'flags/file', 'cat', '/data.txt']);
    expect(out.stdout).toBe('from the context\n');
  },
  async buildArg() {
    const r = await build('FROM busybox\nARG A\nRUN echo "a=$A"\n', ['--build-arg', 'A=given']);
    expect(r.stdout + r.stderr).toContain('a=given');
  },
  async buildContext() {
    // docker-image:// replaces FROM NAME and COPY --from=NAME
    const r = await build('FROM base\nCOPY --from=tools /bin/busybox /copied\nRUN test -x /copied && echo ok-context\n', ['--build-context', 'base=docker-image://busybox', '--build-context', 'tools=docker-image://busybox:latest']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('ok-context');
    // oci-layout:// loads a layout directory
    const layout = path.join(work, 'layout');
    await fs.mkdir(layout);
    expect((await run('tar', ['-xf', BUSYBOX_TAR, '-C', layout])).code).toBe(0);
    const o = await build('FROM base\nRUN echo ok-layout\n', ['--build-context', `base=oci-layout://${layout}`]);
    expect(o.code, o.stderr).toBe(0);
    expect(o.stderr).toContain('ok-layout');
    // a directory: its own .dockerignore applies, owners are 0:0; COPY --from, RUN --mount from= and
    // FROM read it; a stage of that name is replaced (its failing RUN never runs)
    const proj = await writeContext(work, { 'a.txt': 'dir-context\n', 'skip.log': 'ignored\n', 'sub/b.txt': 'deep\n', '.dockerignore': '*.log\n' });
    await fs.chown(path.join(proj, 'a.txt'), 1234, 1234);
    const d = await build(
      'FROM busybox AS proj\nRUN echo replaced-stage-ran && false\nFROM proj AS files\nFROM busybox\nCOPY --from=proj / /p/\nCOPY --from=files /sub/b.txt /b.txt\n' +
        'RUN --mount=from=proj,target=/m echo "m=$(cat /m/a.txt) p=$(ls /p | tr "\\n" " ")b=$(cat /b.txt) own=$(stat -c %u:%g /p/a.txt)"\n',
      ['--no-cache', '--build-context', `proj=${proj}`],
    );
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain('[context proj] load from client');
    expect(d.stderr).toContain('m=dir-context p=a.txt sub b=deep own=0:0');
    expect(d.stderr).not.toContain('replaced-stage-ran');
    // git and http(s) sources: a repository checked out, a download as one file named "context" (BuildKit's)
    const site = path.join(work, 'ctx-site');
    const wt = path.join(work, 'ctx-git');
    await fs.mkdir(path.join(wt, 'sub'), { recursive: true });
    await fs.mkdir(site, { recursive: true });
    await fs.writeFile(path.join(wt, 'sub', 'g.txt'), 'from-git\n');
    await fs.writeFile(path.join(site, 'blob.bin'), 'from-http\n');
    const git = (args: string[], cwd = wt) => run('git', ['-c', 'user.email=t@e', '-c', 'user.name=t', ...args], { cwd });
    for (const a of [['init', '-q', '-b', 'main'], ['add', '.'], ['commit', '-qm', 'ctx']]) expect((await git(a)).code).toBe(0);
    expect((await git(['clone', '-q', '--bare', wt, path.join(site, 'repo.git')], work)).code).toBe(0);
    expect((await git(['update-server-info'], path.join(site, 'repo.git'))).code).toBe(0);
    const { createServer } = await import('node:http');
    const srv = createServer((req, res) => {
      fs.readFile(path.join(site, decodeURIComponent(new URL(req.url!, 'http://x').pathname))).then((b) => res.writeHead(200).end(b), () => res.writeHead(404).end());
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(srv.address() as import('node:net').AddressInfo).port}`;
    try {
      const u = await build('FROM busybox\nCOPY --from=g /g.txt /g.txt\nCOPY --from=h /context /h.txt\nRUN cat /g.txt /h.txt\n', ['--no-cache', '--build-context', `g=${base}/repo.git#main:sub`, '--build-context', `h=${base}/blob.bin`]);
      expect(u.code, u.stderr).toBe(0);
      expect(u.stderr).toMatch(/from-git\n.*from-http/s);
    } finally {
      await new Promise((r) => srv.close(r));
    }
    await refused(['--build-context', `x=${path.join(work, 'no-such-dir')}`], /--build-context x: failed to get build context x: .* does not exist/);
    await refused(['--build-context', 'context=/tmp'], /--build-context context=\/tmp: replacing the main context this way is not supported/);
  },
  async target() {
    const r = await build('FROM busybox AS a\nRUN echo in-a\nFROM busybox AS b\nRUN echo in-b\n', ['--target', 'a']);
    expect(r.stderr).toContain('in-a');
    expect(r.stderr).not.toContain('in-b');
  },
  async label() {
    const r = await build('FROM busybox\nLABEL from=file\n', ['-t', 'flags/label', '--label', 'from=cli', '--label', 'other=x']);
    expect(r.code, r.stderr).toBe(0);
    const img = await inspect('flags/label');
    expect(img.Config.Labels).toEqual({ from: 'cli', other: 'x' });
    // in the config, not in the history (as BuildKit)
    expect(JSON.stringify(img.History)).not.toContain('other=x');
  },
  async annotation() {
    const r = await build('FROM busybox\n', ['-t', 'flags/ann', '--annotation', 'org.opencontainers.image.source=https://example.com/x']);
    expect(r.code, r.stderr).toBe(0);
    expect((await inspect('flags/ann')).Manifest.annotations).toEqual({ 'org.opencontainers.image.source': 'https://example.com/x' });
    await refused(['--annotation', 'index:a=b'], /index annotations need an index/);
    await refused(['--annotation', 'manifest[linux/s390x]:a=b'], /this build makes no linux\/s390x image/);
  },
  async network() {
    const r = await build('FROM busybox\nRUN ls /sys/class/net\n', ['--network', 'none', '--no-cache']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/#\d+ [\d.]+ lo\n/);
    expect(r.stderr).not.toContain('eth0');
    await refused(['--network', 'macvlan'], /--network macvlan is not supported/);
  },
  async addHost() {
    const r = await build('FROM busybox\nRUN cat /etc/hosts\n', ['--add-host', 'db.internal:10.1.2.3', '--add-host', 'v6:::1']);
    expect(r.stderr).toMatch(/10\.1\.2\.3\tdb\.internal/);
    expect(r.stderr).toMatch(/::1\tv6/);
    await refused(['--add-host', 'nohost'], /--add-host nohost: expected HOST:IP/);
    await refused(['--add-host', 'db:10.1.2'], /--add-host db:10.1.2: invalid IP address "10.1.2"/);
    // host-gateway: the host as the step reaches it, the gateway of its bridge network
    const g = await build('FROM busybox\nRUN grep gw.internal /etc/hosts; ip route | grep default\n', ['--no-cache', '--add-host', 'gw.internal:host-gateway', '--add-host', 'b6=[::1]']);
    expect(g.code, g.stderr).toBe(0);
    const gw = /default via ([\d.]+)/.exec(g.stderr)?.[1];
    expect(gw).toBeDefined();
    expect(g.stderr).toContain(`${gw}\tgw.internal`);
  },
  memory: coveredBy('test/integration/sandbox-limits.test.ts', "'--memory'"),
  cpus: coveredBy('test/integration/sandbox-limits.test.ts', '--cpus'),
  pidsLimit: coveredBy('test/integration/sandbox-limits.test.ts', "'--pids-limit'"),
  output: coveredBy('test/integration/cli-output.test.ts', 'type=image,name='),
  push: coveredBy('test/integration/cli-output.test.ts', "'--push'"),
  async load() {
    // the store is where --load puts images: the name is there
    const r = await build('FROM busybox\n', ['--load', '-t', 'flags/load']);
    expect(r.code, r.stderr).toBe(0);
    expect((await mb(['images', 'flags/load'])).stdout).toContain('flags/load');
  },
  async iidfile() {
    const f = path.join(work, 'iid');
    const r = await build('FROM busybox\nRUN echo iid\n', ['-q', '--iidfile', f]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(f, 'utf8')).toBe(r.stdout.trim());
  },
  async metadataFile() {
    const f = path.join(work, 'meta.json');
    const r = await build('FROM busybox\n', ['-q', '-t', 'flags/meta', '--metadata-file', f]);
    expect(r.code, r.stderr).toBe(0);
    const meta = JSON.parse(await fs.readFile(f, 'utf8'));
    const img = await inspect('flags/meta');
    expect(meta).toMatchObject({ 'containerimage.digest': img.Digest, 'containerimage.config.digest': img.Id, 'image.name': 'docker.io/flags/meta:latest' });
  },
  async noCache() {
    const df = 'FROM busybox\nRUN echo cached-or-not\n';
    const dir = await ctxWith(df);
    expect((await mb(['build', '--progress', 'plain', dir])).code).toBe(0);
    expect((await mb(['build', '--progress', 'plain', dir])).stderr).toContain('CACHED');
    expect((await mb(['build', '--progress', 'plain', '--no-cache', dir])).stderr).not.toContain('CACHED');
  },
  async noCacheFilter() {
    const dir = await ctxWith('FROM busybox AS a\nRUN echo stage-a\nFROM busybox AS b\nRUN echo stage-b\nCOPY --from=a /bin/sh /sh\n');
    expect((await mb(['build', '--progress', 'plain', dir])).code).toBe(0);
    const r = await mb(['build', '--progress', 'plain', '--no-cache-filter', 'a', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/#\d+ [\d.]+ stage-a/); // ran again
    expect(r.stderr).not.toMatch(/#\d+ [\d.]+ stage-b/); // still cached
    await refused(['--no-cache-filter', 'nosuch'], /--no-cache-filter nosuch: no stage of that name/);
  },
  pull: coveredBy('test/integration/registry.test.ts', "'--pull'"),
  cacheFrom: coveredBy('test/integration/shared-cache.test.ts', "'--cache-from'"),
  cacheTo: coveredBy('test/integration/shared-cache.test.ts', "'--cache-to'"),
  async platform() {
    const here = os.arch() === 'arm64' ? 'arm64' : 'amd64';
    expect((await build('FROM busybox\n', ['--platform', `linux/${here}`])).code).toBe(0);
    // another platform (no RUN, so no emulation): the image says it; TARGETARCH names it
    const r = await build('FROM scratch\nARG TARGETARCH\nCOPY --chmod=644 <<EOF /arch\n$TARGETARCH\nEOF\n', ['-t', 'flags/platform', '--platform', 'linux/arm64,linux/riscv64', '--platform', 'linux/riscv64', '-o', `type=local,dest=${path.join(work, 'plat')}`]);
    expect(r.code, r.stderr).toBe(0);
    // several platforms: the name holds an index of both (each once)
    expect((await inspect('flags/platform')).Platforms).toEqual(['linux/arm64/v8', 'linux/riscv64']);
    expect(await fs.readFile(path.join(work, 'plat/linux_riscv64/arch'), 'utf8')).toBe('riscv64\n');
    expect(await fs.readFile(path.join(work, 'plat/linux_arm64/arch'), 'utf8')).toBe('arm64\n');
    await refused(['--platform', 'linux/amd64,'], /--platform linux\/amd64,: an empty platform/);
    await refused(['--platform', 'linux/amd64,linux/arm64', '-o', `type=docker,dest=${path.join(work, 'x.tar')}`], /--output type=docker cannot hold an image for several platforms/);
    await refused(['--platform', 'linux/a/b/c'], /invalid platform "linux\/a\/b\/c"/);
  },
  async provenance() {
    expect((await build('FROM busybox\n', ['--provenance=false'])).code).toBe(0);
    // alone it takes no value (buildx's --provenance): the context after it stays the context
    const out = path.join(work, 'prov.tar');
    const r = await build('FROM busybox\n', ['-o', `type=oci,dest=${out}`, '--provenance']);
    expect(r.code, r.stderr).toBe(0);
    expect((await run('tar', ['-xOf', out, 'index.json'])).stdout).toContain('application/vnd.oci.image.index.v1+json');
    await refused(['--provenance=mode=max'], /^error: --provenance needs a name or an output that carries attestations: -t NAME \(the store keeps them under it\), --push, -o type=registry, -o type=oci\|docker or -o type=local\|tar/);
    await refused(['--provenance=mode=most', '--push'], /--provenance=mode=most: mode=most is not one of min, max/);
    await refused(['--provenance=filename=p.json', '--push'], /the key filename= is not supported/);
    await refused(['--provenance', '-o', 'type=local,dest=-'], /--output type=local,dest=-: a directory cannot be written to stdout \(use type=tar/);
    coveredBy('test/integration/attest.test.ts', "'--provenance=mode=max'")();
  },
  async sbom() {
    expect((await build('FROM busybox\n', ['--sbom=false'])).code).toBe(0);
    await refused(['--sbom=generator=docker/buildkit-syft-scanner', '--push'], /--sbom=generator=docker\/buildkit-syft-scanner: the key generator= is not supported/);
    await refused(['--sbom', '-o', 'type=oci,dest=/tmp/x.tar,oci-mediatypes=false'], /oci-mediatypes=false cannot carry attestations/);
    coveredBy('test/integration/attest.test.ts', "'--sbom'")();
  },
  async attest() {
    expect((await build('FROM busybox\n', ['--attest', 'type=provenance,disabled=true'])).code).toBe(0);
    await refused(['--attest', 'type=vuln', '--push'], /--attest type=vuln: type=vuln is not supported \(provenance or sbom\)/);
    coveredBy('test/integration/attest.test.ts', "'type=provenance,mode=min'")();
  },
  async progress() {
    const dir = await ctxWith('FROM busybox\nRUN echo raw-json\n');
    const r = await mb(['build', '--progress', 'rawjson', '--no-cache', dir]);
    expect(r.code, r.stderr).toBe(0);
    const objs = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
    const vertex = objs.flatMap((o) => o.vertexes ?? []).find((v: { name: string }) => v.name.includes('RUN echo raw-json'));
    expect(vertex.digest).toMatch(/^sha256:/);
    const logs = objs.flatMap((o) => o.logs ?? []).filter((l: { vertex: string }) => l.vertex === vertex.digest);
    expect(Buffer.from(logs.map((l: { data: string }) => l.data).join(''), 'base64').toString()).toContain('raw-json');
    expect(objs.flatMap((o) => o.vertexes ?? []).some((v: { digest: string; completed?: string }) => v.digest === vertex.digest && v.completed)).toBe(true);
    const q = await mb(['build', '--progress', 'quiet', dir]);
    expect(q.stderr).toBe('');
    expect(q.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    // BUILDKIT_PROGRESS is the default
    const env = await mbuild(['--root', root, 'build', dir], { env: { BUILDKIT_PROGRESS: 'rawjson' } });
    expect(JSON.parse(env.stderr.split('\n')[0])).toHaveProperty('vertexes');
    await refused(['--progress', 'fancy'], /--progress fancy: use auto, plain, tty, rawjson or quiet/);
  },
  async quiet() {
    const r = await build('FROM busybox\n', ['-q']);
    expect(r.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
  },
  async jobs() {
    // one step at a time: the two stages' RUN output never interleaves
    const r = await build('FROM busybox AS a\nRUN echo a-start; sleep 1; echo a-end\nFROM busybox AS b\nRUN echo b-start; sleep 1; echo b-end\nFROM busybox\nCOPY --from=a /bin/true /a\nCOPY --from=b /bin/true /b\n', ['--jobs', '1']);
    expect(r.code, r.stderr).toBe(0);
    const order = [...r.stderr.matchAll(/#\d+ [\d.]+ ([ab])-(start|end)\n/g)].map((m) => m[1] + m[2]);
    expect([['astart', 'aend', 'bstart', 'bend'], ['bstart', 'bend', 'astart', 'aend']]).toContainEqual(order);
    await refused(['--jobs', '0'], /--jobs 0: give a positive whole number/);
  },
  check: coveredBy('test/integration/checks.test.ts', "'--check'"),
  async call() {
    // --call check is --check (the report on stdout, exit 1 when something is found); build is the default
    const dir = await ctxWith('FROM busybox\nMAINTAINER me\n');
    const c = await mb(['build', '--call', 'check', dir]);
    expect(c.code).toBe(1);
    expect(c.stdout).toContain('WARNING: MaintainerDeprecated');
    const b = await build('FROM busybox\n', ['--call', 'build']);
    expect(b.code, b.stderr).toBe(0);
    // outline and targets: from the Dockerfile alone, on stdout, as buildx prints them
    const df = await ctxWith('ARG BASE=busybox\n# app the served app\nFROM $BASE AS app\n# PORT where it listens\nARG PORT=80\nRUN --mount=type=secret,id=token,required true\nFROM app AS test\n');
    const o = await mb(['build', '--call', 'outline', '--target', 'app', '--build-arg', 'PORT=8080', df]);
    expect(o.code, o.stderr).toBe(0);
    expect(o.stdout).toBe('TARGET:      app\nDESCRIPTION: the served app\n\nBUILD ARG   VALUE     DESCRIPTION\nBASE        busybox   \nPORT        8080      where it listens\n\nSECRET   REQUIRED\ntoken    true\n\n');
    expect(o.stderr).toBe('');
    const t = await mb(['build', '--call', 'targets', df]);
    expect(t.stdout).toBe('TARGET         DESCRIPTION\napp            the served app\ntest (default) \n');
    const j = await mb(['build', '--call', 'targets,format=json', df]);
    expect(JSON.parse(j.stdout).targets.map((x: { name: string }) => x.name)).toEqual(['app', 'test']);
    expect(JSON.parse((await mb(['build', '--call', 'outline,format=json', df])).stdout).args.map((a: { name: string; value: string }) => `${a.name}=${a.value}`)).toEqual(['BASE=busybox', 'PORT=80']);
    await refused(['--call', 'subrequests.describe'], /--call subrequests.describe: subrequests.describe is not supported \(build, check, outline or targets/);
    await refused(['--call', 'outline,format=yaml'], /--call outline,format=yaml: format=yaml is not json or text/);
    await refused(['--call', 'check,error=true'], /--call check,error=true: the option error= is not supported for check/);
    await refused(['--call', 'outline', '--target', 'nope'], /target stage "nope" could not be found/);
  },
  secret: coveredBy('test/integration/run-mount.test.ts', "'--secret'"),
  ssh: coveredBy('test/integration/run-mount.test.ts', "'--ssh'"),
  allow: coveredBy('test/hostile/privileges.test.ts', "'--allow', 'security.insecure'"),
  async rm() {
    expect((await build('FROM busybox\n', ['--rm', '--force-rm'])).code).toBe(0);
  },
  forceRm: () => undefined, // with rm above: intermediate containers are never kept, as --rm asks
  async compress() {
    const r = await build('FROM busybox\n', ['--compress']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('NOTE: --compress has no effect');
  },
  async disableContentTrust() {
    expect((await build('FROM busybox\n', ['--disable-content-trust=true'])).code).toBe(0);
  },
  async isolation() {
    expect((await build('FROM busybox\n', ['--isolation', 'default'])).code).toBe(0);
    await refused(['--isolation', 'hyperv'], /--isolation hyperv is not supported on Linux/);
  },
  async shmSize() {
    const r = await build('FROM busybox\nRUN df -k /dev/shm\n', ['--shm-size', '128m', '--no-cache']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/tmpfs +131072 +\d+ +\d+ +\d+% \/dev\/shm/);
    await refused(['--shm-size', 'lots'], /--shm-size lots: expected a size/);
  },
  async ulimit() {
    const r = await build('FROM busybox\nRUN echo "n=$(ulimit -n) hn=$(ulimit -Hn) c=$(ulimit -c)"\n', ['--ulimit', 'nofile=1000:2000', '--ulimit', 'core=-1', '--no-cache']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('n=1000 hn=2000 c=unlimited');
    await refused(['--ulimit', 'files=1'], /--ulimit files=1: expected NAME=SOFT\[:HARD\]/);
  },
  squash: () => refused(['--squash'], /--squash is not supported/),
  securityOpt: () => refused(['--security-opt', 'seccomp=unconfined'], /--security-opt is not supported/),
  cgroupParent: () => refused(['--cgroup-parent', 'x'], /--cgroup-parent is not supported/),
  cpuShares: () => refused(['--cpu-shares', '512'], /--cpu-shares is not supported: use --cpus/),
  cpuPeriod: () => refused(['--cpu-period', '100000'], /--cpu-period is not supported: use --cpus/),
  cpuQuota: () => refused(['--cpu-quota', '50000'], /--cpu-quota is not supported: use --cpus/),
  cpusetCpus: () => refused(['--cpuset-cpus', '0'], /--cpuset-cpus is not supported/),
  cpusetMems: () => refused(['--cpuset-mems', '0'], /--cpuset-mems is not supported/),
  memorySwap: () => refused(['--memory-swap', '1g'], /--memory-swap is not supported/),
  stream: () => refused(['--stream'], /--stream is not supported/),
};

describe('every build flag has an effect or a clear refusal', () => {
  it('each flag of the table has a case here (and no case names a flag that is gone)', () => {
    expect(Object.keys(CASES).sort()).toEqual(BUILD_FLAGS.map((f) => f.key).sort());
  });
  for (const f of BUILD_FLAGS) {
    it(`${f.names.join(', ')}`, async () => {
      await CASES[f.key]!();
    }, 120_000);
  }
  it('an unknown flag is refused in one line naming it', async () => {
    await refused(['--no-such-flag'], /unknown flag: --no-such-flag/);
  });
});
