/**
 * The remote CLI beyond the basics of serve.test.ts: every build flag of cli/build-flags.ts has
 * an effect through a server, or a refusal in one line (this file walks the table, as
 * cli-flags.test.ts does for local builds, and fails when a flag is added without a case here);
 * --ssh agents stay on the client; load, save, tag, rmi, history, push and pull run on the
 * server's store; run is refused; a step two clients need at once runs once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, REPO, mbuild, mountsUnder, run, type CliResult } from '../helpers/cli.js';
import { startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { flagCases } from '../helpers/flag-cases.js';
import { BUILD_FLAGS, REMOTE } from '../../cli/build-flags.js';

let tmp: string;
let root: string;
let host: string;
let server: ChildProcess;
let serverLog = '';
let reg: RunningRegistry;
let env: NodeJS.ProcessEnv;

const remote = (args: string[], input?: string): Promise<CliResult> => mbuild(['--host', host, ...args], { input, env });
const { ctxWith, build, inspect, refused, coveredBy } = flagCases(remote, () => tmp);

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-serve-remote-'));
  root = path.join(tmp, 'root');
  host = `unix://${path.join(tmp, 's.sock')}`;
  env = { XDG_CACHE_HOME: path.join(tmp, 'client-cache'), MBUILD_CONFIG: path.join(tmp, 'no-config.json'), DOCKER_CONFIG: path.join(tmp, 'docker') };
  reg = await startRegistry();
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
  server = spawn(path.join(REPO, 'bin/mbuild'), ['--root', root, 'serve', '--addr', host, '--max-builds', '4'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  server.stderr!.on('data', (d) => (serverLog += d));
  await until(() => serverLog.includes('listening on') || server.exitCode !== null, 30_000);
  expect(server.exitCode, serverLog).toBe(null);
}, 180_000);

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  await reg?.stop();
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

/** busybox in the test registry (for --pull, --build-context and the cache) */
let pushedBase: string | undefined;
async function baseInRegistry(): Promise<string> {
  if (pushedBase) return pushedBase;
  const name = `${reg.host}/remote/base:1`;
  expect((await remote(['tag', 'busybox', name])).code).toBe(0);
  const p = await remote(['push', name]);
  expect(p.code, p.stderr).toBe(0);
  return (pushedBase = name);
}

const CASES: Record<string, () => Promise<void> | void> = {
  async tag() {
    const r = await build('FROM busybox\n', ['-t', 'remote/tag:1', '-t', 'remote/tag:2']);
    expect(r.code, r.stderr).toBe(0);
    expect((await inspect('remote/tag:1')).RepoTags).toEqual(['remote/tag:1', 'remote/tag:2']);
  },
  async file() {
    // -f - : the Dockerfile from the client's stdin; -f FILE outside the context with its .dockerignore
    const dir = await ctxWith('FROM scratch\n', { 'data.txt': 'from the context\n', 'skip.txt': 'x' });
    const r = await remote(['build', '-q', '-f', '-', dir], 'FROM busybox\nCOPY data.txt /\nRUN cat /data.txt\n');
    expect(r.code, r.stderr).toBe(0);
    const df = path.join(tmp, 'Other.Dockerfile');
    await fs.writeFile(df, 'FROM busybox\nCOPY . /c\nRUN ls /c\n');
    await fs.writeFile(df + '.dockerignore', 'skip.txt\n');
    const f = await remote(['build', '--progress', 'plain', '--no-cache', '-f', df, dir]);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stderr).toMatch(/#\d+ [\d.]+ data\.txt\n/);
    expect(f.stderr).not.toMatch(/skip\.txt/);
  },
  async buildArg() {
    env.FROM_ENV = 'from-client-env';
    const r = await build('FROM busybox\nARG A\nARG FROM_ENV\nRUN echo "a=$A e=$FROM_ENV"\n', ['--build-arg', 'A=given', '--build-arg', 'FROM_ENV']);
    delete env.FROM_ENV;
    expect(r.stderr).toContain('a=given e=from-client-env');
  },
  async buildContext() {
    const base = await baseInRegistry();
    const r = await build('FROM base\nRUN echo ok-context\n', ['--build-context', `base=docker-image://${base}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('ok-context');
    await refused(['--build-context', `x=oci-layout://${tmp}`], /--build-context x=oci-layout:.*only docker-image:\/\/REF/);
    await refused(['--build-context', 'x=./dir'], /only docker-image:\/\/REF/);
  },
  async target() {
    const r = await build('FROM busybox AS a\nRUN echo in-a\nFROM busybox AS b\nRUN echo in-b\n', ['--target', 'a']);
    expect(r.stderr).toContain('in-a');
    expect(r.stderr).not.toContain('in-b');
  },
  async label() {
    const r = await build('FROM busybox\n', ['-t', 'remote/label', '--label', 'from=cli']);
    expect(r.code, r.stderr).toBe(0);
    expect((await inspect('remote/label')).Config.Labels).toEqual({ from: 'cli' });
  },
  async annotation() {
    const r = await build('FROM busybox\n', ['-t', 'remote/ann', '--annotation', 'org.opencontainers.image.source=https://example.com/x']);
    expect(r.code, r.stderr).toBe(0);
    expect((await inspect('remote/ann')).Manifest.annotations).toEqual({ 'org.opencontainers.image.source': 'https://example.com/x' });
    await refused(['--annotation', 'index:a=b'], /index annotations need an index/);
    await refused(['--annotation', 'manifest[linux/s390x]:a=b'], /this build makes no linux\/s390x image/);
  },
  async network() {
    const r = await build('FROM busybox\nRUN ls /sys/class/net\n', ['--network', 'none', '--no-cache']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('eth0');
    await refused(['--network', 'macvlan'], /--network macvlan is not supported/);
  },
  async addHost() {
    const r = await build('FROM busybox\nRUN cat /etc/hosts\n', ['--add-host', 'db.internal:10.1.2.3']);
    expect(r.stderr).toMatch(/10\.1\.2\.3\tdb\.internal/);
  },
  async shmSize() {
    const r = await build('FROM busybox\nRUN df -k /dev/shm\n', ['--shm-size', '128m', '--no-cache']);
    expect(r.stderr).toMatch(/tmpfs +131072 +\d+ +\d+ +\d+% \/dev\/shm/);
  },
  async ulimit() {
    const r = await build('FROM busybox\nRUN echo "n=$(ulimit -n) hn=$(ulimit -Hn)"\n', ['--ulimit', 'nofile=1000:2000', '--no-cache']);
    expect(r.stderr).toContain('n=1000 hn=2000');
  },
  async memory() {
    expect((await build('FROM busybox\nRUN true\n', ['--memory', '256m', '--no-cache'])).code).toBe(0);
    await refused(['--memory', 'lots'], /invalid --memory value "lots"/);
  },
  async cpus() {
    expect((await build('FROM busybox\nRUN true\n', ['--cpus', '0.5', '--no-cache'])).code).toBe(0);
    await refused(['--cpus', 'many'], /invalid --cpus value "many"/);
  },
  async pidsLimit() {
    // more processes than allowed: the RUN fails on the server
    const r = await build('FROM busybox\nRUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done; wait\n', ['--pids-limit', '4', '--no-cache']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/can't fork|Resource temporarily unavailable|fork/);
  },
  async output() {
    const dir = await ctxWith('FROM busybox\nRUN echo out > /out.txt\n');
    const oci = path.join(tmp, 'o.tar');
    const loc = path.join(tmp, 'loc');
    const layout = path.join(tmp, 'layout');
    const r = await remote(['build', '--progress', 'plain', '-o', `type=oci,dest=${oci},compression=uncompressed`, '-o', `type=local,dest=${loc}`, '-o', `type=docker,dest=${layout},tar=false`, '-o', 'type=image,"name=remote/out:a,remote/out:b"', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(loc, 'out.txt'), 'utf8')).toBe('out\n');
    expect((await fs.stat(path.join(layout, 'index.json'))).isFile()).toBe(true);
    const index = JSON.parse((await run('tar', ['-xOf', oci, 'index.json'])).stdout);
    const manifest = JSON.parse((await run('tar', ['-xOf', oci, `blobs/sha256/${index.manifests[0].digest.slice(7)}`])).stdout);
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toContain('application/vnd.oci.image.layer.v1.tar');
    // the progress names the client's paths, not the server's
    expect(r.stderr).toContain(`exporting to oci ${oci}`);
    expect((await inspect('remote/out:a')).RepoTags).toEqual(['remote/out:a', 'remote/out:b']);
    // a tar on stdout
    const t = await remote(['build', '-q', '-o', '-', dir]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout.length).toBeGreaterThan(10_000);
    await refused(['-o', 'type=oci,dest=x.tar,compression=estargz'], /compression=estargz is not supported/);
  },
  async push() {
    const r = await build('FROM busybox\nRUN echo pushed > /p\n', ['--push', '-t', `${reg.host}/remote/pushed:1`]);
    expect(r.code, r.stderr).toBe(0);
    const check = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/remote/pushed:1`]);
    expect(JSON.parse(check.stdout).layers.length).toBeGreaterThan(1);
  },
  async load() {
    const r = await build('FROM busybox\n', ['--load', '-t', 'remote/load']);
    expect(r.code, r.stderr).toBe(0);
    expect((await remote(['images', 'remote/load'])).stdout).toContain('remote/load');
  },
  async iidfile() {
    const f = path.join(tmp, 'iid');
    const r = await build('FROM busybox\nRUN echo iid\n', ['-q', '--iidfile', f]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(f, 'utf8')).toBe(r.stdout.trim());
  },
  async metadataFile() {
    const f = path.join(tmp, 'meta.json');
    const r = await build('FROM busybox\n', ['-q', '-t', 'remote/meta', '--metadata-file', f]);
    expect(r.code, r.stderr).toBe(0);
    const img = await inspect('remote/meta');
    expect(JSON.parse(await fs.readFile(f, 'utf8'))).toMatchObject({ 'containerimage.digest': img.Digest, 'containerimage.config.digest': img.Id, 'image.name': 'docker.io/remote/meta:latest' });
  },
  async noCache() {
    const dir = await ctxWith('FROM busybox\nRUN echo cached-or-not\n');
    expect((await remote(['build', '--progress', 'plain', dir])).code).toBe(0);
    expect((await remote(['build', '--progress', 'plain', dir])).stderr).toContain('CACHED');
    expect((await remote(['build', '--progress', 'plain', '--no-cache', dir])).stderr).not.toContain('CACHED');
  },
  async noCacheFilter() {
    const dir = await ctxWith('FROM busybox AS a\nRUN echo stage-a\nFROM busybox AS b\nRUN echo stage-b\nCOPY --from=a /bin/sh /sh\n');
    expect((await remote(['build', '--progress', 'plain', dir])).code).toBe(0);
    const r = await remote(['build', '--progress', 'plain', '--no-cache-filter', 'a', dir]);
    expect(r.stderr).toMatch(/#\d+ [\d.]+ stage-a/);
    expect(r.stderr).not.toMatch(/#\d+ [\d.]+ stage-b/);
  },
  async cacheFrom() {
    await refused(['--cache-from', `type=local,src=${tmp}`], /type=local is not available with --host/);
  },
  async cacheTo() {
    // the server exports; its own cache emptied, the next build imports and runs nothing
    const dir = await ctxWith('FROM busybox\nRUN echo via-registry-cache > /c\n');
    const ref = `${reg.host}/remote/cache:main`;
    const a = await remote(['build', '--progress', 'plain', '--cache-to', `type=registry,ref=${ref}`, dir]);
    expect(a.code, a.stderr).toBe(0);
    expect((await remote(['prune', '--all'])).code).toBe(0);
    const b = await remote(['build', '--progress', 'plain', '--cache-from', ref, dir]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/CACHED \[stage-0 2\/2\] RUN echo via-registry-cache|#\d+ CACHED/);
    expect(b.stderr).not.toMatch(/#\d+ [\d.]+ via-registry-cache/);
    await refused(['--cache-to', `type=local,dest=${tmp}/c`], /type=local is not available with --host/);
  },
  async pull() {
    const base = await baseInRegistry();
    const r = await build(`FROM ${base}\n`, ['--pull']);
    expect(r.code, r.stderr).toBe(0);
  },
  async platform() {
    expect((await build('FROM busybox\n', ['--platform', `linux/${os.arch() === 'arm64' ? 'arm64' : 'amd64'}`])).code).toBe(0);
    await refused(['--platform', 'nonsense'], /nonsense/);
  },
  async provenance() {
    expect((await build('FROM busybox\n', ['--provenance=false'])).code).toBe(0);
  },
  async sbom() {
    expect((await build('FROM busybox\n', ['--sbom=false'])).code).toBe(0);
  },
  async attest() {
    expect((await build('FROM busybox\n', ['--attest', 'type=provenance,disabled=true'])).code).toBe(0);
  },
  async progress() {
    const dir = await ctxWith('FROM busybox\nRUN echo raw-json\n');
    const r = await remote(['build', '--progress', 'rawjson', '--no-cache', dir]);
    expect(r.code, r.stderr).toBe(0);
    const objs = r.stderr.trim().split('\n').map((l) => JSON.parse(l));
    expect(objs[0].vertexes[0].name).toBe('[internal] load build context');
    const vertex = objs.flatMap((o) => o.vertexes ?? []).find((v: { name: string }) => v.name.includes('RUN echo raw-json'));
    const logs = objs.flatMap((o) => o.logs ?? []).filter((l: { vertex: string }) => l.vertex === vertex.digest);
    expect(Buffer.from(logs.map((l: { data: string }) => l.data).join(''), 'base64').toString()).toContain('raw-json');
    const q = await remote(['build', '--progress', 'quiet', dir]);
    expect(q.stderr).toBe('');
    expect(q.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    await refused(['--progress', 'fancy'], /--progress fancy: use auto, plain, tty, rawjson or quiet/);
  },
  async quiet() {
    const r = await build('FROM busybox\n', ['-q']);
    expect(r.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    expect(r.stderr).toBe('');
  },
  async jobs() {
    expect((await build('FROM busybox\n', ['--jobs', '1'])).code).toBe(0);
    await refused(['--jobs', '0'], /--jobs 0: give a positive whole number/);
  },
  async allow() {
    // a client may not take all capabilities on a server that did not consent (buildkitd's rule)
    await refused(['--allow', 'security.insecure'], /this server was not started with --allow-insecure-entitlement security.insecure/);
    expect((await build('FROM busybox\n', ['--allow', 'network.host'])).code).toBe(0);
  },
  secret: coveredBy('test/integration/serve.test.ts', "'--secret'"),
  async ssh() {
    // a static agent client in the image asks the forwarded agent for its keys: the client's key file
    const src = path.join(tmp, 'agentq.c');
    await fs.writeFile(src, AGENT_QUERY);
    const dir = await ctxWith('FROM busybox\nCOPY agentq /agentq\nRUN --mount=type=ssh,id=deploy /agentq\n');
    execFileSync('cc', ['-static', '-O2', '-o', path.join(dir, 'agentq'), src]);
    const key = path.join(tmp, 'id_remote');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'key-on-the-client', '-f', key]);
    const r = await remote(['build', '--progress', 'plain', '--no-cache', '--ssh', `deploy=${key}`, dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/#\d+ [\d.]+ identities: 1\n/);
    expect(r.stderr).toMatch(/#\d+ [\d.]+ comment: key-on-the-client\n/);
    // the client's own agent socket, through $SSH_AUTH_SOCK
    const agent = execFileSync('ssh-agent', ['-s', '-a', path.join(tmp, 'agent.sock')]).toString();
    const pid = Number(/SSH_AGENT_PID=(\d+)/.exec(agent)![1]);
    try {
      execFileSync('ssh-add', ['-q', key], { env: { ...process.env, SSH_AUTH_SOCK: path.join(tmp, 'agent.sock') } });
      const d = await ctxWith('FROM busybox\nCOPY agentq /agentq\nRUN --mount=type=ssh /agentq\n', {});
      await fs.copyFile(path.join(dir, 'agentq'), path.join(d, 'agentq'));
      env.SSH_AUTH_SOCK = path.join(tmp, 'agent.sock');
      const s = await remote(['build', '--progress', 'plain', '--no-cache', '--ssh', 'default', d]);
      delete env.SSH_AUTH_SOCK;
      expect(s.code, s.stderr).toBe(0);
      expect(s.stderr).toMatch(/comment: key-on-the-client/);
    } finally {
      process.kill(pid);
    }
    await refused(['--ssh', 'default=/nonexistent'], /--ssh default: \/nonexistent is neither an agent socket nor a key file/);
  },
  async check() {
    const r = await build('from busybox as Base\n', ['--check']);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/StageNameCasing|FromAsCasing/);
  },
  async call() {
    const r = await build('from busybox as Base\n', ['--call', 'check']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/StageNameCasing|FromAsCasing/);
    // outline and targets come back on stdout as locally
    const t = await build('# app the app\nFROM busybox AS app\nARG V=1\nFROM app\n', ['--call', 'targets']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toBe('TARGET    DESCRIPTION\napp       the app\n(default) \n');
    const o = await build('FROM busybox AS app\n# V the version\nARG V=1\n', ['--call', 'outline,format=json', '--build-arg', 'V=2']);
    expect(JSON.parse(o.stdout).args).toEqual([{ name: 'V', description: 'the version', value: '2', location: { ranges: [{ start: { line: 3 }, end: { line: 3 } }] } }]);
    await refused(['--call', 'subrequests.describe'], /subrequests.describe is not supported/);
  },
  async rm() {
    expect((await build('FROM busybox\n', ['--rm', '--force-rm'])).code).toBe(0);
  },
  forceRm: () => undefined, // with rm above
  async compress() {
    const r = await build('FROM busybox\nCOPY big /big\n', ['--compress'], { big: 'a'.repeat(200_000) });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/transferring context: [\d.]+kB done \(gzip\)/);
  },
  async disableContentTrust() {
    expect((await build('FROM busybox\n', ['--disable-content-trust=true'])).code).toBe(0);
  },
  async isolation() {
    expect((await build('FROM busybox\n', ['--isolation', 'default'])).code).toBe(0);
    await refused(['--isolation', 'hyperv'], /--isolation hyperv is not supported on Linux/);
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

/** Asks $SSH_AUTH_SOCK for its identities (SSH2_AGENTC_REQUEST_IDENTITIES) and prints their count and comments. */
const AGENT_QUERY = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static int readn(int fd, unsigned char *b, size_t n) { size_t g = 0; while (g < n) { ssize_t r = read(fd, b + g, n - g); if (r <= 0) return -1; g += r; } return 0; }
static unsigned u32(const unsigned char *p) { return (unsigned)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
int main(void) {
  const char *p = getenv("SSH_AUTH_SOCK"); if (!p) return 2;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0); struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, p, sizeof a.sun_path - 1); if (connect(fd, (void *)&a, sizeof a)) return 3;
  unsigned char req[5] = { 0, 0, 0, 1, 11 }; if (write(fd, req, 5) != 5) return 4;
  unsigned char h[4]; if (readn(fd, h, 4)) return 5;
  unsigned n = u32(h); unsigned char *b = malloc(n); if (readn(fd, b, n) || b[0] != 12) return 6;
  unsigned cnt = u32(b + 1), off = 5;
  printf("identities: %u\\n", cnt);
  for (unsigned i = 0; i < cnt; i++) { off += 4 + u32(b + off); unsigned cl = u32(b + off); off += 4; printf("comment: %.*s\\n", (int)cl, b + off); off += cl; }
  return 0;
}
`;

describe('every build flag through a server: an effect or a refusal in one line', () => {
  it('each flag of the table has a case here and a REMOTE row', () => {
    expect(Object.keys(CASES).sort()).toEqual(BUILD_FLAGS.map((f) => f.key).sort());
    expect(Object.keys(REMOTE).sort()).toEqual(BUILD_FLAGS.map((f) => f.key).sort());
  });
  for (const f of BUILD_FLAGS) {
    it(`${f.names.join(', ')} (${REMOTE[f.key]})`, async () => {
      await CASES[f.key]!();
    }, 180_000);
  }
  it('an unknown flag is refused in one line naming it', async () => {
    await refused(['--no-such-flag'], /unknown flag: --no-such-flag/);
  });
});

/** The client on a pseudo-terminal (test/helpers/pty-drive.py): its last frame, escapes removed, and all it wrote. */
async function remoteOnTty(args: string[], extraEnv: Record<string, string> = {}): Promise<{ screen: string; raw: string; code: number }> {
  const r = await run('python3', [path.join(REPO, 'test/helpers/pty-drive.py'), path.join(REPO, 'bin/mbuild'), '--host', host, ...args], { env: { ...env, COLUMNS: '100', ...extraEnv } });
  const code = Number(/EXIT (-?\d+)/.exec(r.stderr)?.[1]);
  const last = r.stdout.split(/\x1b\[\d+A/).pop() ?? '';
  return { screen: last.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, ''), raw: r.stdout, code };
}

describe('--progress tty through a server: the live display a local build draws', () => {
  it('auto on a terminal draws it from the server\'s events: running lines, then steps collapsed, CACHED, the transfer', async () => {
    const dir = await ctxWith('FROM busybox\nRUN for i in 1 2 3 4 5; do echo tty-line $i; sleep 0.3; done\n', { 'a.txt': 'hello\n' });
    const r = await remoteOnTty(['build', '-t', 'remote/tty:1', dir]);
    expect(r.code, r.raw).toBe(0);
    expect(r.raw).not.toMatch(/^#\d+ /m); // not the plain form
    // while it ran: the step's latest lines under it
    expect(r.raw.split(/\x1b\[\d+A/).some((f) => f.includes('RUN for i in') && f.includes(' => => # tty-line 2'))).toBe(true);
    const lines = r.screen.trim().split('\n');
    expect(lines[0]).toMatch(/^\[\+\] Building \d+\.\ds \(\d+\/\d+\) FINISHED$/);
    expect(r.screen).toMatch(/ => \[internal\] load build context +\d+\.\ds\n => => transferring context: [\d.]+k?B done\n/);
    expect(r.screen).toMatch(/ => \[stage-0 2\/2\] RUN for i in 1 2 3 4 5; do echo tty-line \$i; sleep 0\.3\.\.\. +\d+\.\ds\n => => peak memory [\d.]+[kMG]?B, cpu [\d.]+s\n/);
    expect(r.screen).not.toContain('=> => # tty-line');
    expect(lines.every((l) => l.length <= 100)).toBe(true);
    const again = await remoteOnTty(['build', '--progress', 'tty', dir]);
    expect(again.code).toBe(0);
    expect(again.screen).toMatch(/ => CACHED \[stage-0 2\/2\] RUN for i in/);
  }, 180_000);
  it('a failed step keeps its last lines, and the error follows the last frame', async () => {
    const dir = await ctxWith('FROM busybox\nRUN echo tty-before-fail; exit 3\n');
    const r = await remoteOnTty(['build', dir]);
    expect(r.code).toBe(1);
    expect(r.screen).toMatch(/ => ERROR \[stage-0 2\/2\] RUN echo tty-before-fail; exit 3 +\d+\.\ds\n(.*\n)* => => # tty-before-fail\n/);
    expect(r.screen).toMatch(/\nerror: Dockerfile:2: RUN echo tty-before-fail; exit 3 exited with code 3\n/);
  }, 180_000);
  it('Ctrl-C cancels the build and the display shows the step it cancelled', async () => {
    const dir = await ctxWith('FROM busybox\nRUN echo tty-$((2+2))-started; sleep 30\n');
    const r = await remoteOnTty(['build', '--no-cache', dir], { INTERRUPT_ON: 'tty-4-started' });
    expect(r.code).not.toBe(0);
    expect(r.screen).toMatch(/ => CANCELED \[stage-0 2\/2\] RUN echo tty-\$\(\(2\+2\)\)-started; sleep 30/);
  }, 180_000);
  it('plain stays plain: on a terminal when asked, and auto when stderr is not one', async () => {
    const dir = await ctxWith('FROM busybox\nRUN echo plain-here\n');
    const r = await remoteOnTty(['build', '--progress', 'plain', '--no-cache', dir]);
    expect(r.code).toBe(0);
    expect(r.raw).toMatch(/^#1 \[internal\] load build context\r?$/m);
    expect(r.raw).not.toContain('[+] Building');
    const piped = await remote(['build', '--no-cache', dir]);
    expect(piped.stderr).toMatch(/^#1 \[internal\] load build context$/m);
    expect(piped.stderr).toMatch(/^#\d+ [\d.]+ plain-here$/m);
  }, 180_000);
});

describe('the other commands on a server', () => {
  it('save streams the image down, load streams it up; tag, rmi and history work on the server store', async () => {
    const dir = await ctxWith('FROM busybox\nRUN echo saved > /s\n');
    expect((await remote(['build', '-q', '-t', 'remote/saved:1', dir])).code).toBe(0);
    const file = path.join(tmp, 'saved.tar');
    const s = await remote(['save', '-o', file, 'remote/saved:1']);
    expect(s.code, s.stderr).toBe(0);
    const local = path.join(tmp, 'local-root');
    const l = await mbuild(['--root', local, 'load', '-i', file]);
    expect(l.stdout).toBe('Loaded image: remote/saved:1\n');
    expect((await mbuild(['--root', local, 'run', '--rm', 'remote/saved:1', 'cat', '/s'])).stdout).toBe('saved\n');
    // stdout, as save without -o
    const piped = await run('sh', ['-c', `"$0" --host "$1" save remote/saved:1 | wc -c`, path.join(REPO, 'bin/mbuild'), host], { env });
    expect(Number(piped.stdout.trim())).toBe((await fs.stat(file)).size);

    expect((await remote(['tag', 'remote/saved:1', 'remote/retagged:2'])).code).toBe(0);
    expect((await remote(['images', 'remote/retagged'])).stdout).toContain('remote/retagged');
    const h = await remote(['history', 'remote/retagged:2']);
    expect(h.stdout).toMatch(/RUN \/bin\/sh -c echo saved > \/s/);
    const rmi = await remote(['rmi', 'remote/retagged:2', 'remote/saved:1']);
    expect(rmi.code, rmi.stderr).toBe(0);
    expect(rmi.stdout).toContain('Untagged: remote/retagged:2');
    expect((await remote(['images', '-q', 'remote/saved'])).stdout).toBe('');

    // load from a file and from stdin
    const li = await remote(['load', '-i', file]);
    expect(li.stdout).toBe('Loaded image: remote/saved:1\n');
    expect((await remote(['rmi', 'remote/saved:1'])).code).toBe(0);
    const ls = await run('sh', ['-c', `"$0" --host "$1" load < "$2"`, path.join(REPO, 'bin/mbuild'), host, file], { env });
    expect(ls.stdout).toBe('Loaded image: remote/saved:1\n');
  }, 180_000);

  it('push and pull run on the server, with its registry access', async () => {
    const name = `${reg.host}/remote/pp:1`;
    expect((await remote(['tag', 'busybox', name])).code).toBe(0);
    const p = await remote(['push', name]);
    expect(p.code, p.stderr).toBe(0);
    expect((await remote(['rmi', name])).code).toBe(0);
    const q = await remote(['pull', '-q', name]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout.trim()).toBe(name);
    expect((await remote(['images', `${reg.host}/remote/pp`])).stdout).toContain('remote/pp');
  }, 180_000);

  it('refuses run in one line that says how to run the image here', async () => {
    const r = await remote(['run', 'busybox', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/"mbuild run" does not work with a server .*save IMAGE \| mbuild load/);
  });

  it('a step two clients need at once runs once on the server', async () => {
    const df = 'FROM busybox\nRUN sleep 2; head -c 32 /dev/urandom | od -x > /random; echo ran-shared-remote\n';
    const [a, b] = await Promise.all([ctxWith(df), ctxWith(df)]);
    const [ra, rb] = await Promise.all([remote(['build', '--progress', 'plain', '-t', 'remote/dedup-a', a]), remote(['build', '--progress', 'plain', '-t', 'remote/dedup-b', b])]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    expect([ra, rb].filter((r) => /#\d+ [\d.]+ ran-shared-remote\n/.test(r.stderr))).toHaveLength(1);
    expect((await inspect('remote/dedup-a')).RootFS.Layers).toEqual((await inspect('remote/dedup-b')).RootFS.Layers);
  }, 180_000);
});
