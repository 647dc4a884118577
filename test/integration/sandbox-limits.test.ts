/**
 * Resource limits (cgroups v1 and v2), per-RUN usage figures, and the sandbox's isolation seen from
 * real builds: pid 1, hostname, background processes, device nodes, symlinked /proc and /dev.
 * Builds use --network none so they leave the host's network alone.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StepCgroup, detectCgroups, formatBytes, parseCpus, parseMemory, parsePidsLimit } from '../../builder/sandbox/cgroups.js';
import { runSandboxed } from '../../builder/sandbox/run.js';
import { SandboxError, UsageError } from '../../util/errors.js';
import { BUSYBOX_TAR, mbuild, mountsUnder } from '../helpers/cli.js';

const isRoot = process.getuid?.() === 0;

describe('limit flags', () => {
  it('parses sizes, cpus and pids like docker', () => {
    expect(parseMemory('64m')).toBe(64 * 1024 * 1024);
    expect(parseMemory('1g')).toBe(1024 ** 3);
    expect(parseMemory('1.5G')).toBe(1.5 * 1024 ** 3);
    expect(parseMemory('6291456')).toBe(6291456);
    expect(parseMemory('64MB')).toBe(64 * 1024 * 1024);
    expect(() => parseMemory('1k')).toThrow(/minimum is 6m/);
    expect(() => parseMemory('lots')).toThrow(UsageError);
    expect(parseCpus('0.5')).toBe(0.5);
    expect(() => parseCpus('0')).toThrow(/0.01 to/);
    expect(() => parseCpus(String(os.availableParallelism() + 1))).toThrow(UsageError);
    expect(parsePidsLimit('100')).toBe(100);
    expect(parsePidsLimit('-1')).toBeUndefined();
    expect(parsePidsLimit('0')).toBeUndefined();
    expect(() => parsePidsLimit('x')).toThrow(UsageError);
    expect(formatBytes(64 * 1024 * 1024)).toBe('64MB');
    expect(formatBytes(3355443)).toBe('3.2MB');
    expect(formatBytes(512)).toBe('512B');
  });

  it('finds every v1 hierarchy below the process cgroup (freezer, name=systemd and a hybrid unified one too), also from a subtree mount', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mbuild-cg-'));
    try {
      writeFileSync(
        path.join(dir, 'mountinfo'),
        [
          '31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw',
          '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
          '36 31 0:33 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
          '39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids',
          '40 31 0:37 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer',
          '41 31 0:38 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd',
          '42 31 0:39 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate',
        ].join('\n'),
      );
      writeFileSync(path.join(dir, 'cgroup'), '6:name=systemd:/u\n5:freezer:/f\n4:memory:/a/b\n3:cpu,cpuacct:/docker/abc/x\n2:pids:/\n0::/u\n');
      const lay = detectCgroups(path.join(dir, 'mountinfo'), path.join(dir, 'cgroup'));
      if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return; // a v2 host reports v2 whatever the files say
      expect(lay?.version).toBe(1);
      expect(lay?.v1?.get('memory')).toBe('/sys/fs/cgroup/memory/a/b');
      expect(lay?.v1?.get('cpu')).toBe('/sys/fs/cgroup/cpu,cpuacct/x');
      expect(lay?.v1?.get('cpuacct')).toBe('/sys/fs/cgroup/cpu,cpuacct/x');
      expect(lay?.v1?.get('pids')).toBe('/sys/fs/cgroup/pids');
      expect(lay?.v1?.get('freezer')).toBe('/sys/fs/cgroup/freezer/f');
      expect(lay?.v1?.get('name=systemd')).toBe('/sys/fs/cgroup/systemd/u');
      expect(lay?.v1?.get('unified')).toBe('/sys/fs/cgroup/unified/u');
      expect([...lay!.v1!.keys()].sort()).toEqual(['cpu', 'cpuacct', 'freezer', 'memory', 'name=systemd', 'pids', 'unified']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!isRoot)('limits and isolation (root)', () => {
  let tmp: string;
  let root: string;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mbuild-limits-'));
    root = path.join(tmp, 'root');
    expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
  });

  afterAll(async () => {
    expect(await mountsUnder(tmp)).toEqual([]);
    rmSync(tmp, { recursive: true, force: true });
  });

  async function build(dockerfile: string, flags: string[] = [], files: Record<string, string | Buffer> = {}) {
    const ctx = mkdtempSync(path.join(tmp, 'ctx-'));
    writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile);
    for (const [n, c] of Object.entries(files)) writeFileSync(path.join(ctx, n), c);
    return mbuild(['--root', root, 'build', '--no-cache', '--progress', 'plain', '--network', 'none', ...flags, ctx]);
  }

  it('the step is pid 1 and sees only its own processes; its hostname is its own', async () => {
    const r = await build('FROM busybox\nRUN echo "pid=$$"; echo "procs=$(ls -d /proc/[0-9]* | wc -l)"; echo "host=$(hostname)"\n');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('pid=1');
    const procs = Number(/procs=(\d+)/.exec(r.stderr)![1]);
    expect(procs).toBeGreaterThan(0);
    expect(procs).toBeLessThanOrEqual(4); // sh, ls, wc and the subshell
    expect(r.stderr).toContain('host=mbuild');
    expect(os.hostname()).not.toBe('mbuild');
  });

  it('reports peak memory and CPU time of each RUN', async () => {
    const r = await build('FROM busybox\nRUN true\nRUN head -c 20m /dev/zero | tail > /dev/null\n');
    expect(r.code, r.stderr).toBe(0);
    const notes = [...r.stderr.matchAll(/^#\d+ peak memory ([\d.]+)(B|kB|MB|GB), cpu ([\d.]+)s$/gm)];
    expect(notes, r.stderr).toHaveLength(2);
    const mb = (n: RegExpMatchArray) => Number(n[1]) * { B: 1 / 1048576, kB: 1 / 1024, MB: 1, GB: 1024 }[n[2] as 'B']!;
    expect(mb(notes[1]!)).toBeGreaterThanOrEqual(20);
    expect(mb(notes[0]!)).toBeLessThan(mb(notes[1]!));
  });

  it('--memory makes a memory-hungry step fail with an OOM message', async () => {
    const r = await build('FROM busybox\nRUN head -c 300m /dev/zero | tail\n', ['--memory', '64m']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('killed by the OOM killer (memory limit 64MB)');
    // the same step fits without the limit (the machine has the memory)
    if (os.freemem() > 1.5 * 1024 ** 3) {
      const ok = await build('FROM busybox\nRUN head -c 300m /dev/zero | tail | wc -c\n');
      expect(ok.code, ok.stderr).toBe(0);
    }
  });

  it('--pids-limit stops a fork bomb', async () => {
    const r = await build('FROM busybox\nRUN for i in $(seq 60); do sleep 30 & done; wait\n', ['--pids-limit', '20']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/can't fork|Resource temporarily unavailable/);
  });

  it('--cpus caps the CPU time a busy step gets', async () => {
    const lower = path.join(tmp, 'bb');
    if (!existsSync(lower)) {
      mkdirSync(lower);
      const oci = path.join(tmp, 'oci');
      mkdirSync(oci);
      execFileSync('tar', ['-xf', BUSYBOX_TAR, '-C', oci]);
      const blobs = readdirSync(path.join(oci, 'blobs/sha256')).map((b) => path.join(oci, 'blobs/sha256', b));
      const layer = blobs.reduce((a, b) => (statSync(a).size > statSync(b).size ? a : b));
      execFileSync('tar', ['-xzf', layer, '-C', lower]);
    }
    const d = mkdtempSync(path.join(tmp, 'step-'));
    mkdirSync(path.join(d, 'u'));
    mkdirSync(path.join(d, 'w'));
    const r = await runSandboxed({
      lowerDirs: [lower],
      upperDir: path.join(d, 'u'),
      workDir: path.join(d, 'w'),
      args: ['/bin/sh', '-c', 'timeout 2 sh -c "while :; do :; done"; true'],
      env: ['PATH=/bin:/usr/bin'],
      cwd: '/',
      uid: 0,
      gid: 0,
      groups: [],
      hostname: 'cpu',
      network: 'none',
      hosts: '',
      limits: { cpus: 0.25 },
    });
    expect(r.exitCode).toBe(0);
    expect(r.usage?.cpuSeconds).toBeDefined();
    expect(r.usage!.cpuSeconds!).toBeGreaterThan(0.2);
    expect(r.usage!.cpuSeconds!).toBeLessThan(0.8); // 2 s at a quarter of a CPU is 0.5 s
  });

  it('a background process is gone after the step', async () => {
    const r = await build('FROM busybox\nRUN (sleep 1234 &) ; sleep 1233 & echo started\n');
    expect(r.code, r.stderr).toBe(0);
    const left = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return /^sleep\0123[34]\0$/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8'));
        } catch {
          return false;
        }
      });
    expect(left).toEqual([]);
  });

  it('a device node in an image cannot be read, whether made in an earlier step or the same one', async () => {
    // markers are computed so that the progress line showing the command does not contain them
    const r = await build(
      'FROM busybox\nRUN mknod /zero c 1 5 && mknod /mem c 1 1\n' +
        'RUN head -c 1 /zero >/dev/null && echo R$((1+1))ZERO; head -c 1 /mem >/dev/null && echo R$((1+1))MEM; ' +
        'mknod /tmp/z c 1 5 && head -c 1 /tmp/z >/dev/null && echo R$((1+1))NEW; echo checked-$((1+1))\n',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('checked-2');
    expect(r.stderr).not.toMatch(/R2(ZERO|MEM|NEW)/);
    expect(r.stderr).toMatch(/head: \/zero: (Permission denied|Operation not permitted)/);
  });

  it('kernel files are masked or read-only', async () => {
    const masked = ['kcore', 'keys', 'timer_list', 'interrupts'].filter((f) => existsSync(`/proc/${f}`));
    expect(masked.length).toBeGreaterThan(0);
    const checks = masked.map((f) => `echo "${f}=$(wc -c < /proc/${f})";`).join(' ');
    const r = await build(`FROM busybox\nRUN ${checks} echo x > /proc/sys/kernel/hostname && echo W$((1+1))PROC; echo x > /sys/kernel/uevent_helper && echo W$((1+1))SYS; true\n`);
    expect(r.code, r.stderr).toBe(0);
    for (const f of masked) expect(r.stderr).toContain(`${f}=0`);
    expect(r.stderr).not.toMatch(/W2(PROC|SYS)/);
    expect(r.stderr).toMatch(/\/proc\/sys\/kernel\/hostname: Read-only file system/);
  });

  for (const dir of ['proc', 'dev']) {
    it(`an image whose /${dir} is a symlink to a host path cannot mount anything there`, async () => {
      const target = mkdtempSync(path.join(tmp, `host-${dir}-`));
      writeFileSync(path.join(target, 'keep'), 'host file');
      const rootfs = mkdtempSync(path.join(tmp, 'rootfs-'));
      execFileSync('ln', ['-s', target, path.join(rootfs, dir)]);
      execFileSync('tar', ['-C', rootfs, '-cf', path.join(tmp, `${dir}.tar`), dir]);
      const tarBytes = readFileSync(path.join(tmp, `${dir}.tar`));
      const r = await build('FROM scratch\nADD root.tar /\nRUN ["/bin/true"]\n', [], { 'root.tar': tarBytes });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`/${dir} in the image is a symlink; refusing`));
      expect(await mountsUnder(target)).toEqual([]);
      expect(readdirSync(target)).toEqual(['keep']);
    });
  }
});

describe.skipIf(!isRoot)('cgroup v2', () => {
  // this host may be v1 with an empty v2 hierarchy mounted beside it: enough for the v2 code path
  const unified = ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'].find((d) => existsSync(path.join(d, 'cgroup.controllers')));

  it.skipIf(!unified)('creates, measures and removes a v2 cgroup; refuses a limit without its controller', async () => {
    const lay = { version: 2 as const, root: unified! };
    const cg = (await StepCgroup.create({}, lay))!;
    expect(cg).toBeDefined();
    const [procs] = cg.procsFiles();
    // the command's leaf below the parent that holds the limits
    expect(path.basename(path.dirname(procs!))).toBe('step');
    const dir = path.dirname(path.dirname(procs!));
    expect(path.basename(dir)).toMatch(/^mbuild-\d+-\d+-[0-9a-f]+$/);
    const child = spawn('sh', ['-c', 'read x; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'], { stdio: ['pipe', 'ignore', 'ignore'] });
    writeFileSync(procs!, String(child.pid));
    child.stdin.end('go\n');
    await new Promise((r) => child.on('close', r));
    const stats = await cg.stats();
    expect(stats.cpuSeconds).toBeGreaterThan(0);
    expect(stats.oomKilled).toBe(false);
    await cg.destroy();
    expect(existsSync(dir)).toBe(false);

    const controllers = readFileSync(path.join(unified!, 'cgroup.controllers'), 'utf8');
    if (!controllers.includes('memory')) {
      await expect(StepCgroup.create({ memory: 64 << 20 }, lay)).rejects.toThrow(SandboxError);
      // this process's (other mbuild processes on the host may be running steps meanwhile)
      expect(readdirSync(unified!).filter((e) => e.startsWith('mbuild-') && e.includes(`-${process.pid}-`))).toEqual([]);
    }
  });
});
