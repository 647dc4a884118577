/**
 * Issue 15: what a hostile RUN step could gain on the host beyond its own sandbox. Each test makes
 * the attack the way a Dockerfile would and checks it fails: setuid files and device nodes in the
 * store reached by another host user.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createServer, type Server } from 'node:net';
import { BUSYBOX_TAR, buildText, errorLines, isRoot, mbuild, runOutput } from './helpers.js';

let tmp: string;
let root: string;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-priv-'));
  // the store's parent is open to everyone: only ROOT's own mode may stand between a user and it
  await fs.chmod(tmp, 0o755);
  root = path.join(tmp, 'root');
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Files named `name` anywhere below dir (as root). */
async function findAll(dir: string, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.name === name) out.push(path.join(e.parentPath, e.name));
  }
  return out;
}

/**
 * Runs argv as the host user nobody. (Not setpriv: it execs the command while it still holds root's
 * capabilities, which reach through a 0700 directory; the capabilities go only at that exec.)
 */
function asNobody(argv: string[]): { code: number | null; out: string } {
  const r = spawnSync('runuser', ['-u', 'nobody', '--', ...argv], { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe.skipIf(!isRoot)('the store is root\'s', () => {
  it('a setuid-root binary or a device node made by RUN cannot be used by another host user', async () => {
    const r = await buildText(
      root,
      tmp,
      'FROM busybox\nRUN cp /bin/busybox /bin/suid-busybox && chmod 4755 /bin/suid-busybox && mknod /devnull-666 c 1 3 && chmod 666 /devnull-666\n',
      ['--no-cache', '-t', 'suid'],
    );
    expect(r.code, r.stderr).toBe(0);
    const suid = await findAll(root, 'suid-busybox');
    const dev = await findAll(root, 'devnull-666');
    expect(suid.length).toBeGreaterThan(0);
    expect(dev.length).toBeGreaterThan(0);
    for (const f of suid) {
      const st = await fs.stat(f);
      expect([st.uid, st.mode & 0o7777]).toEqual([0, 0o4755]); // the attack's file is there
      const run = asNobody([f, 'id', '-u']);
      expect(run.code, run.out).not.toBe(0);
      expect(run.out).toMatch(/Permission denied/);
    }
    for (const f of dev) {
      expect((await fs.stat(f)).isCharacterDevice()).toBe(true);
      const cat = asNobody(['cat', f]);
      expect(cat.code, cat.out).not.toBe(0);
      expect(cat.out).toMatch(/Permission denied/);
    }
    expect((await fs.stat(root)).mode & 0o777).toBe(0o700);
  });

  it('an existing store left open to others (0755) is made private when it is opened', async () => {
    await fs.chmod(root, 0o755);
    expect(asNobody(['ls', root]).code).toBe(0);
    const r = await mbuild(['--root', root, 'images']);
    expect(r.code, r.stderr).toBe(0);
    expect((await fs.stat(root)).mode & 0o777).toBe(0o700);
    expect(asNobody(['ls', root]).code).not.toBe(0);
  });
});

describe.skipIf(!isRoot)('no silent fallback to the host network', () => {
  let server: Server;
  let port = 0;
  let contacted = 0;
  beforeAll(async () => {
    // a service only the host itself should reach
    server = createServer((c) => {
      contacted++;
      c.end('HOST-LOOPBACK-SECRET\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => server.close());

  it('when the bridge cannot be set up, a RUN step fails with one clear line instead of reaching the host\'s loopback', async () => {
    // a subnet that clashes with lo's 127.0.0.0/8: the bridge cannot be made
    const env = { MBUILD_BRIDGE: 'mbtnofallback', MBUILD_SUBNET: '127.0.0.0/16' };
    const df = `FROM busybox\nRUN nc 127.0.0.1 ${port} </dev/null || echo unreachable\n`;
    const r = await buildText(root, tmp, df, ['--no-cache'], {}, env);
    expect(r.code).not.toBe(0);
    expect(errorLines(r)).toEqual([
      expect.stringMatching(/^error: Dockerfile:2: .*cannot set up the bridge network for RUN steps \(subnet 127\.0\.0\.0\/16 .*overlaps.*\); fix that, or choose --network none \(no network\) or --network host \(the host's\) explicitly$/),
    ]);
    expect(r.stderr).not.toContain('HOST-LOOPBACK-SECRET');
    // said explicitly, --network none runs the step without any network
    const none = await buildText(root, tmp, df, ['--no-cache', '--network', 'none'], {}, env);
    expect(none.code, none.stderr).toBe(0);
    expect(runOutput(none)).toContain('unreachable');
    expect(contacted).toBe(0);
  });
});

/** The syscall probe (syscall-probe.c beside this file), static, in a build context of its own. */
async function probeContext(): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(tmp, 'probe-'));
  const r = spawnSync('cc', ['-O2', '-static', '-o', path.join(ctx, 'probe'), path.join(import.meta.dirname, 'syscall-probe.c')], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return ctx;
}

async function buildIn(ctx: string, dockerfile: string, extra: string[] = []) {
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  return mbuild(['--root', root, 'build', '--progress', 'plain', '--no-cache', ...extra, ctx]);
}

/** "name result" lines of the probe → {name: result} */
function probeResults(r: { stderr: string }): Record<string, string> {
  return Object.fromEntries(runOutput(r).map((l) => l.split(' ')).filter((w) => w.length === 2) as [string, string][]);
}

describe.skipIf(!isRoot)("seccomp: Docker's default profile", () => {
  it('each blocked family fails with EPERM (clone3 with ENOSYS); ordinary calls and non-namespace forks still work', async () => {
    const ctx = await probeContext();
    const r = await buildIn(ctx, 'FROM busybox\nCOPY probe /probe\nRUN /probe && grep "^Seccomp:" /proc/self/status\n');
    expect(r.code, r.stderr).toBe(0);
    expect(probeResults(r)).toEqual({
      getpid: 'ok',
      fork: 'ok',
      // namespaces: a user namespace would give the step every capability inside it
      'unshare-user': 'EPERM',
      'unshare-mount': 'EPERM',
      'clone-newuser': 'EPERM',
      clone3: 'ENOSYS', // libc falls back to clone, whose flags the filter can see
      setns: 'EPERM',
      mount: 'EPERM',
      // keyrings: root's user keyring and the caller's session
      keyctl: 'EPERM',
      add_key: 'EPERM',
      request_key: 'EPERM',
      // kernel attack surface
      perf_event_open: 'EPERM',
      userfaultfd: 'EPERM',
      bpf: 'EPERM',
      io_uring_setup: 'EPERM',
      open_by_handle_at: 'EPERM',
      'personality-query': 'ok',
      'personality-norandom': 'EPERM',
      'socket-inet': 'ok',
      'socket-vsock': 'EPERM',
      // a syscall newer than the filter's libseccomp reads as not implemented, never EPERM
      fchmodat2: expect.stringMatching(/^(ok|ENOSYS)$/),
      'syscall-999': 'ENOSYS',
    });
    expect(runOutput(r)).toContain('Seccomp:\t2');
  });

  it('the busybox tools a hostile step would use fail the same way', async () => {
    const r = await buildText(
      root,
      tmp,
      'FROM busybox\nRUN unshare -U -r true 2>&1; echo unshare=$?; mkdir -p /mnt/cg && mount -t cgroup -o freezer cgroup /mnt/cg 2>&1; echo mount=$?; nsenter -t 1 -n true 2>&1; echo nsenter=$?\n',
      ['--no-cache'],
    );
    expect(r.code, r.stderr).toBe(0);
    const out = runOutput(r);
    expect(out).toEqual([
      'unshare: unshare(0x10000000): Operation not permitted',
      'unshare=1',
      'mount: permission denied (are you root?)',
      'mount=1',
      "nsenter: setns(): can't reassociate to namespace 'net': Operation not permitted",
      'nsenter=1',
    ]);
  });
});

describe.skipIf(!isRoot)('RUN --security=insecure', () => {
  it('is refused without --allow security.insecure, with one line naming the Dockerfile line and the flag', async () => {
    const r = await buildText(root, tmp, 'FROM busybox\nRUN true\nRUN --security=insecure true\n', ['--no-cache']);
    expect(r.code).not.toBe(0);
    expect(errorLines(r)).toEqual(['error: Dockerfile:3: RUN --security=insecure needs the security.insecure entitlement: build with --allow security.insecure']);
  });

  it('with --allow security.insecure: every capability and no seccomp filter, as BuildKit; the default step next to it stays sandboxed', async () => {
    const ctx = await probeContext();
    const r = await buildIn(
      ctx,
      'FROM busybox\nCOPY probe /probe\nRUN --security=insecure /probe keyctl unshare-user && grep -E "^(CapEff|Seccomp):" /proc/self/status\nRUN --security=sandbox /probe keyctl && grep -E "^(CapEff|Seccomp):" /proc/self/status\n',
      ['--allow', 'security.insecure'],
    );
    expect(r.code, r.stderr).toBe(0);
    const mine = readFileSync('/proc/self/status', 'utf8').match(/^CapBnd:\t(\w+)$/m)![1];
    expect(runOutput(r)).toEqual(['keyctl ok', 'unshare-user ok', `CapEff:\t${mine}`, 'Seccomp:\t0', 'keyctl EPERM', 'CapEff:\t00000000a80425fb', 'Seccomp:\t2']);
    // an unknown entitlement is a usage error
    const bad = await buildIn(ctx, 'FROM busybox\nRUN true\n', ['--allow', 'security.everything']);
    expect(errorLines(bad)).toEqual(['error: --allow security.everything: unknown entitlement (security.insecure or network.host)']);
  });

  it('each step gets a fresh session keyring, not the caller\'s', async () => {
    const ctx = await probeContext();
    const host = spawnSync(path.join(ctx, 'probe'), ['session-keyring'], { encoding: 'utf8' }).stdout.trim();
    expect(host).toMatch(/^session-keyring \d+$/);
    const r = await buildIn(ctx, 'FROM busybox\nCOPY probe /probe\nRUN --security=insecure /probe session-keyring\nRUN --security=insecure /probe session-keyring\n', ['--allow', 'security.insecure']);
    expect(r.code, r.stderr).toBe(0);
    const steps = runOutput(r).filter((l) => l.startsWith('session-keyring '));
    expect(steps).toHaveLength(2);
    expect(steps).not.toContain(host);
    expect(steps[0]).not.toBe(steps[1]);
  });
});

describe.skipIf(!isRoot)('cgroups as runc does them', () => {
  it('the step is in a cgroup of its own in every hierarchy (freezer, cpuset, blkio, name=systemd too) and sees only that', async () => {
    const marker = `${1000 + (process.pid % 1000)}.${Date.now() % 1000}`;
    const pending = buildText(root, tmp, `FROM busybox\nRUN cat /proc/self/cgroup; sleep ${marker}\n`, ['--no-cache']);
    let pid: number | undefined;
    const end = Date.now() + 30_000;
    while (pid === undefined && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      for (const e of await fs.readdir('/proc')) {
        if (!/^\d+$/.test(e)) continue;
        const cmd = await fs.readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
        if (cmd === `sleep\0${marker}\0`) pid = Number(e);
      }
    }
    expect(pid).toBeDefined();
    const hostView = (await fs.readFile(`/proc/${pid}/cgroup`, 'utf8')).trim().split('\n');
    process.kill(pid!, 'SIGKILL');
    const r = await pending;
    expect(r.code).not.toBe(0); // the sleep was killed
    const hierarchies = (await fs.readFile('/proc/self/cgroup', 'utf8')).trim().split('\n').map((l) => l.split(':').slice(0, 2).join(':'));
    expect(hostView.map((l) => l.split(':').slice(0, 2).join(':'))).toEqual(hierarchies);
    for (const line of hostView) expect(line).toMatch(/\/mbuild-\d+-\d+-[0-9a-f]+\/step$/);
    // inside, a cgroup namespace: every hierarchy's path is its root
    expect(runOutput(r).filter((l) => /^\d+:/.test(l))).toEqual(hierarchies.map((h) => `${h}:/`));
  });

  it('with every capability (insecure), a step that mounts its cgroups sees only its own leaf and cannot lift the limits set above it', async () => {
    const r = await buildText(
      root,
      tmp,
      'FROM busybox\nRUN --security=insecure mkdir -p /mnt/p /mnt/f && mount -t cgroup -o pids cgroup /mnt/p && mount -t cgroup -o freezer cgroup /mnt/f && ' +
        'echo dirs=$(find /mnt/p /mnt/f -mindepth 1 -type d | wc -l) && echo leaf-max=$(cat /mnt/p/pids.max) && (echo 100000 > /mnt/p/pids.max) 2>/dev/null; ' +
        'echo leaf-max-now=$(cat /mnt/p/pids.max); (i=0; while [ $i -lt 40 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo all-40-started) 2>&1 | grep -o -e "can.t fork" -e all-40-started | head -1\n',
      ['--no-cache', '--allow', 'security.insecure', '--pids-limit', '20'],
    );
    expect(r.code, r.stderr).toBe(0);
    const out = runOutput(r);
    expect(out).toContain('dirs=0'); // no other cgroup (of the host or of mbuild) to freeze or to write
    expect(out).toContain('leaf-max=max'); // the limit is not in the step's own cgroup...
    // ...and writing there (root may) does not lift the parent's: the 21st process cannot start
    expect(out.find((l) => l.startsWith('leaf-max-now='))).toMatch(/^leaf-max-now=(100000|max)$/);
    expect(out).toContain("can't fork");
    expect(out).not.toContain('all-40-started');
  });
});
