import { execFileSync, spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeFields, findOpaqueDirs, helperPath } from '../../util/native-helper.js';
import { runSandboxed, type SandboxSpec } from '../../builder/sandbox/run.js';
import { SandboxError } from '../../util/errors.js';

const isRoot = process.getuid?.() === 0;
const BUSYBOX_OCI = '/work/shared/conformance/bases/busybox.oci.tar';

interface Outcome {
  exitCode: number;
  signal?: string;
  stdout: string;
  stderr: string;
  upper: string;
}

function readMounts(): string {
  return readFileSync('/proc/self/mounts', 'utf8');
}

/** host pids whose argv is exactly `argv` */
function findProcs(argv: string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8') === want) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** all entries below dir, relative, sorted */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) walk(r);
    }
  };
  walk('');
  return out.sort();
}

describe.skipIf(!isRoot)('RUN sandbox (root)', () => {
  let base: string;
  let busybox: string; // the extracted busybox layer
  let minimal: string; // only /bin: no /etc, /proc, /dev, /sys
  let counter = 0;
  let mountsBefore: string;

  beforeAll(() => {
    if (!existsSync(helperPath())) execFileSync('node', ['scripts/build-native.mjs'], { stdio: 'inherit' });
    base = mkdtempSync(join(tmpdir(), 'mbuild-sandbox-test-'));
    const oci = join(base, 'oci');
    mkdirSync(oci);
    execFileSync('tar', ['-xf', BUSYBOX_OCI, '-C', oci]);
    const blob = (d: string): string => join(oci, 'blobs', ...d.split(':'));
    const index = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { layers: { digest: string }[] };
    expect(manifest.layers).toHaveLength(1);
    busybox = join(base, 'busybox');
    mkdirSync(busybox);
    execFileSync('tar', ['-xzf', blob(manifest.layers[0]!.digest), '-C', busybox]);
    minimal = join(base, 'minimal');
    mkdirSync(minimal);
    cpSync(join(busybox, 'bin'), join(minimal, 'bin'), { recursive: true, verbatimSymlinks: true });
  });

  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  beforeEach(() => {
    mountsBefore = readMounts();
  });
  afterEach(() => {
    // nothing a step mounts is ever visible on the host
    expect(readMounts()).toBe(mountsBefore);
  });

  function layerDirs(): { upperDir: string; workDir: string } {
    const d = join(base, `step-${++counter}`);
    mkdirSync(join(d, 'upper'), { recursive: true });
    mkdirSync(join(d, 'work'));
    return { upperDir: join(d, 'upper'), workDir: join(d, 'work') };
  }

  function spec(script: string | string[], over: Partial<SandboxSpec> = {}): SandboxSpec {
    return {
      lowerDirs: [busybox],
      ...layerDirs(),
      args: typeof script === 'string' ? ['/bin/sh', '-c', script] : script,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      uid: 0,
      gid: 0,
      groups: [],
      hostname: 'mbuild-test',
      network: 'none',
      hosts: '127.0.0.1 localhost\n::1 localhost\n',
      resolvConf: 'nameserver 192.0.2.53\n',
      ...over,
    };
  }

  async function run(script: string | string[], over: Partial<SandboxSpec> = {}): Promise<Outcome> {
    const s = spec(script, over);
    let stdout = '';
    let stderr = '';
    const r = await runSandboxed({
      ...s,
      onOutput: (chunk, stream) => {
        if (stream === 'stdout') stdout += chunk.toString();
        else stderr += chunk.toString();
      },
    });
    return { ...r, stdout, stderr, upper: s.upperDir };
  }

  it('streams stdout and stderr separately', async () => {
    const r = await run('echo hi; echo oops >&2');
    expect(r).toMatchObject({ exitCode: 0, stdout: 'hi\n', stderr: 'oops\n' });
    expect(r.signal).toBeUndefined();
  });

  it('propagates the exit code', async () => {
    expect((await run('exit 3')).exitCode).toBe(3);
    expect((await run('exit 125')).exitCode).toBe(125); // not mistaken for a sandbox failure
  });

  it('runs the command as pid 1 and shows only its own processes', async () => {
    expect((await run('echo $$')).stdout).toBe('1\n');
    const r = await run('ls -d /proc/[0-9]*; echo ---; ps');
    const [pids, ps] = r.stdout.split('---\n');
    const list = pids!.trim().split('\n');
    expect(list).toContain('/proc/1');
    expect(list.length).toBeLessThanOrEqual(3);
    expect(ps!.trim().split('\n').length).toBeLessThanOrEqual(3); // header, sh, ps
  });

  it('sets the hostname and mounts hosts, resolv.conf and hostname', async () => {
    const r = await run('hostname; cat /etc/hosts /etc/resolv.conf /etc/hostname');
    expect(r.stdout).toBe('mbuild-test\n127.0.0.1 localhost\n::1 localhost\nnameserver 192.0.2.53\nmbuild-test\n');
  });

  it('network none has only lo, and it is up', async () => {
    const r = await run('ls /sys/class/net; cat /sys/class/net/lo/flags');
    const [names, flags] = r.stdout.trim().split('\n');
    expect(names).toBe('lo');
    expect(Number(flags) & 1).toBe(1); // IFF_UP
  });

  it('network host sees the host interfaces', async () => {
    const r = await run('ls /sys/class/net', { network: 'host' });
    expect(r.stdout.trim().split('\n').sort()).toEqual(readdirSync('/sys/class/net').sort());
  });

  it('writes land in the upper dir; the lower dir is untouched', async () => {
    const r = await run('echo data > /root/new.txt; echo more >> /etc/passwd');
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(r.upper, 'root/new.txt'), 'utf8')).toBe('data\n');
    expect(readFileSync(join(r.upper, 'etc/passwd'), 'utf8')).toMatch(/more\n$/);
    expect(existsSync(join(busybox, 'root/new.txt'))).toBe(false);
    expect(readFileSync(join(busybox, 'etc/passwd'), 'utf8')).not.toContain('more');
  });

  it('deleting a lower file leaves a whiteout in the upper dir', async () => {
    const r = await run('rm /etc/group');
    expect(r.exitCode).toBe(0);
    const st = lstatSync(join(r.upper, 'etc/group'));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(0);
    expect(existsSync(join(busybox, 'etc/group'))).toBe(true);
  });

  it('reports the upper dir\'s opaque directories as find-opaque reads them', async () => {
    const r = await run('rm -rf /sbin && mkdir -p /sbin/new /fresh/sub');
    expect(r.exitCode).toBe(0);
    expect(r.opaqueDirs).toEqual(['sbin']);
    expect(await findOpaqueDirs(r.upper)).toEqual(r.opaqueDirs);
    expect((await run('true')).opaqueDirs).toEqual([]);
  });

  it('bridge protocol: the command starts only after the network is configured; an abort means it never runs', async () => {
    // the helper forks the command early (it sets itself up while the caller plugs in eth0); here the
    // caller aborts instead of sending an address
    const { upperDir, workDir } = layerDirs();
    const state = mkdtempSync(join(base, 'state-'));
    for (const f of ['hosts', 'resolv.conf', 'hostname']) writeFileSync(join(state, f), '');
    mkdirSync(join(state, 'rootfs'));
    mkdirSync(join(state, 'empty'));
    const fields = ['nonce', 'n0', 'state', state, 'cwd', '/', 'uid', '0', 'gid', '0', 'hostname', 'h', 'network', 'bridge',
      'upper', upperDir, 'work', workDir, 'lower', busybox, 'env', 'PATH=/bin', 'arg', '/bin/sh', 'arg', '-c', 'arg', 'touch /ran'];
    const child = spawn(helperPath(), ['run'], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'], env: {} });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString('latin1');
      if (stderr.includes(':netns:')) (child.stdio[3] as Writable).end(encodeFields(['abort', 'no address for you']));
    });
    child.stdin!.end(encodeFields(fields));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(stderr).toMatch(/\0MBUILD-HELPER:n0:error:.*no address for you/);
    expect(code).not.toBe(0);
    expect(existsSync(join(upperDir, 'ran'))).toBe(false);
    rmSync(state, { recursive: true, force: true });
  });

  it('leaves no mount stubs in the layer (image with /etc but no /etc/hosts)', async () => {
    const r = await run('true');
    expect(r.exitCode).toBe(0);
    expect(tree(r.upper)).toEqual([]);
  });

  it('leaves no mount stubs when the image lacks /etc, /proc, /dev and /sys', async () => {
    const r = await run('ls / >/dev/null; cat /etc/hosts >/dev/null; ls /proc/1 >/dev/null', { lowerDirs: [minimal] });
    expect(r.exitCode).toBe(0);
    expect(tree(r.upper)).toEqual([]);
    // files the step creates next to a stub are kept
    const r2 = await run('echo x > /etc/mine', { lowerDirs: [minimal] });
    expect(tree(r2.upper)).toEqual(['etc', 'etc/mine']);
  });

  it('scratch (no lower dirs): missing command is 127 and no stubs remain', async () => {
    const r = await run(['/bin/sh', '-c', 'true'], { lowerDirs: [] });
    expect(r.exitCode).toBe(127);
    expect(r.stderr).toContain('exec /bin/sh: no such file or directory');
    expect(tree(r.upper)).toEqual([]);
  });

  it('creates a missing working directory (root-owned, 0755) and keeps it', async () => {
    const r = await run('pwd; touch x', { cwd: '/srv/app/sub', uid: 1000, gid: 1000 });
    expect(r.stdout).toBe('/srv/app/sub\n');
    expect(r.exitCode).not.toBe(0); // uid 1000 cannot write in a root-owned 0755 dir
    const st = statSync(join(r.upper, 'srv/app/sub'));
    expect(st.mode & 0o7777).toBe(0o755);
    expect(st.uid).toBe(0);
  });

  it('kills background processes when the step ends', async () => {
    const r = await run('sleep 4711 & echo started');
    expect(r.stdout).toBe('started\n');
    expect(findProcs(['sleep', '4711'])).toEqual([]);
  });

  it('applies uid, gid and supplementary groups, without capabilities', async () => {
    const r = await run('id -u; id -g; id -G; grep -E "^Cap(Eff|Bnd)" /proc/self/status', { uid: 1000, gid: 1001, groups: [10, 1002] });
    const [u, g, gs, eff, bnd] = r.stdout.trim().split('\n');
    expect(u).toBe('1000');
    expect(g).toBe('1001');
    expect(gs!.split(' ').sort()).toEqual(['10', '1001', '1002']);
    expect(eff).toMatch(/0000000000000000$/);
    expect(bnd).toMatch(/00000000a80425fb$/);
  });

  it('root gets exactly Docker\'s default capabilities', async () => {
    const r = await run('grep -E "^Cap(Eff|Prm|Inh)" /proc/self/status');
    expect(r.stdout).toBe('CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n');
  });

  it('only fds 0, 1, 2 are open; stdin is /dev/null', async () => {
    const r = await run('ls /proc/self/fd; cat; echo end');
    expect(r.stdout).toBe('0\n1\n2\n3\nend\n'); // 3 is ls's own directory handle
  });

  it('masks and write-protects sensitive kernel files', async () => {
    const r = await run(
      'wc -c < /proc/keys; echo 3 > /proc/sys/vm/drop_caches && echo wrote; echo 1 > /sys/kernel/profiling && echo wrote2; ls /sys/firmware | wc -l',
    );
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]!.trim()).toBe('0');
    expect(r.stdout).not.toContain('wrote');
    expect(lines[lines.length - 1]!.trim()).toBe('0');
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it('device nodes made in the step cannot be opened; /dev/null works', async () => {
    const r = await run('echo ok > /dev/null && echo null-ok; mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem && echo read-mem');
    expect(r.stdout).toContain('null-ok');
    expect(r.stdout).not.toContain('read-mem');
    expect(r.stderr).toMatch(/Permission denied/);
  });

  it('looks argv[0] up in PATH and passes the environment', async () => {
    const r = await run(['sh', '-c', 'echo $FOO'], { env: ['PATH=/bin', 'FOO=bar'] });
    expect(r.stdout).toBe('bar\n');
  });

  it('reports exec failures like Docker (127 / 126)', async () => {
    const missing = await run(['/nonexistent']);
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toContain('exec /nonexistent: no such file or directory');
    const notInPath = await run(['no-such-cmd']);
    expect(notInPath.exitCode).toBe(127);
    expect(notInPath.stderr).toContain('exec: "no-such-cmd": executable file not found in $PATH');
    const notExec = await run(['/etc/passwd']);
    expect(notExec.exitCode).toBe(126);
    expect(notExec.stderr).toContain('exec /etc/passwd: permission denied');
  });

  it('reports a command killed by a signal as 128+n', async () => {
    const p = run(['sleep', '4713']);
    const pid = await waitFor('sleep 4713', () => findProcs(['sleep', '4713'])[0]);
    process.kill(pid, 'SIGKILL');
    const r = await p;
    expect(r.exitCode).toBe(137);
    expect(r.signal).toBe('SIGKILL');
  });

  it('refuses an image whose /proc is a symlink to a host path', async () => {
    const hostDir = mkdtempSync(join(tmpdir(), 'mbuild-xyz-'));
    writeFileSync(join(hostDir, 'marker'), 'host');
    const evil = join(base, 'evil-proc');
    mkdirSync(evil);
    symlinkSync(hostDir, join(evil, 'proc'));
    try {
      const err = await run('echo should-not-run', { lowerDirs: [evil, busybox] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SandboxError);
      expect((err as Error).message).toMatch(/\/proc .*symlink/);
      expect(readdirSync(hostDir)).toEqual(['marker']);
      expect(readMounts()).not.toContain(hostDir);
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  it('refuses an image whose /dev is a symlink', async () => {
    const evil = join(base, 'evil-dev');
    mkdirSync(evil);
    symlinkSync('../../../../../dev', join(evil, 'dev'));
    await expect(run('true', { lowerDirs: [evil, busybox] })).rejects.toThrow(/\/dev .*symlink/);
  });

  it('resolves a symlinked /etc/hosts inside the image, never on the host', async () => {
    const hostFile = join(mkdtempSync(join(tmpdir(), 'mbuild-hosts-')), 'hosts');
    writeFileSync(hostFile, 'host content\n');
    const layer = join(base, 'etc-links');
    mkdirSync(join(layer, 'etc'), { recursive: true });
    writeFileSync(join(layer, 'etc/hosts.real'), 'image hosts\n');
    symlinkSync('/etc/hosts.real', join(layer, 'etc/hosts')); // absolute, in scope
    symlinkSync(hostFile, join(layer, 'etc/resolv.conf')); // absolute host path: dangling inside the image
    try {
      const r = await run('cat /etc/hosts; cat /etc/resolv.conf || echo no-resolv', { lowerDirs: [layer, busybox] });
      expect(r.stdout).toBe('127.0.0.1 localhost\n::1 localhost\nno-resolv\n');
      expect(readFileSync(hostFile, 'utf8')).toBe('host content\n');
      expect(readFileSync(join(layer, 'etc/hosts.real'), 'utf8')).toBe('image hosts\n');
    } finally {
      rmSync(join(hostFile, '..'), { recursive: true, force: true });
    }
  });

  it('an image whose /etc is a symlink to a host dir gets no stubs there', async () => {
    const victim = mkdtempSync(join(tmpdir(), 'mbuild-victim-etc-'));
    const layer = join(base, 'etc-symlink');
    mkdirSync(layer);
    symlinkSync(victim, join(layer, 'etc'));
    try {
      const r = await run('cat /etc/hosts 2>/dev/null || echo no-hosts', { lowerDirs: [layer, busybox] });
      expect(r.stdout).toBe('no-hosts\n');
      expect(readdirSync(victim)).toEqual([]);
    } finally {
      rmSync(victim, { recursive: true, force: true });
    }
  });

  it('stub cleanup never follows what the step left in the upper dir', async () => {
    const victim = mkdtempSync(join(tmpdir(), 'mbuild-victim-'));
    writeFileSync(join(victim, 'hosts'), ''); // looks just like a stub
    try {
      const r = await run(`mv /etc /etc2 && ln -s ${victim} /etc && echo moved`, { lowerDirs: [minimal] });
      expect(r.stdout).toBe('moved\n');
      expect(readdirSync(victim)).toEqual(['hosts']);
      expect(lstatSync(join(r.upper, 'etc')).isSymbolicLink()).toBe(true);
    } finally {
      rmSync(victim, { recursive: true, force: true });
    }
  });

  it('handles more layers than fit in one page of mount options', async () => {
    const lowers: string[] = [];
    for (let i = 0; i < 80; i++) {
      const d = join(base, 'many', `layer-${'x'.repeat(60)}-${i}`);
      mkdirSync(d, { recursive: true });
      if (i === 5) writeFileSync(join(d, 'from-layer-5'), '5');
      lowers.push(d);
    }
    const r = await run('ls /from-layer-5 && echo ok', { lowerDirs: [...lowers, busybox] });
    expect(r.stdout).toBe('/from-layer-5\nok\n');
  });

  it('SIGKILL of the helper takes the whole step down and leaks no mount', async () => {
    const p = run(['sleep', '4714']);
    p.catch(() => undefined);
    await waitFor('sleep 4714', () => findProcs(['sleep', '4714'])[0]);
    const helpers = findProcs([helperPath(), 'run']);
    expect(helpers.length).toBeGreaterThan(0);
    for (const h of helpers) process.kill(h, 'SIGKILL');
    await expect(p).rejects.toThrow(SandboxError);
    await waitFor('sleep 4714 to die', () => (findProcs(['sleep', '4714']).length === 0 ? true : undefined));
  });
});
