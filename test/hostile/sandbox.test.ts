/**
 * docs/security.md items 19–24, end to end: Dockerfiles and evil base images that try to leave the
 * RUN sandbox. (test/integration/sandbox.test.ts drives runSandboxed directly; these go through
 * the CLI, the way an untrusted build does.)
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, Sentinel, buildText, errorLines, exists, isRoot, loadEvil, mbuild, mountsAnywhere, runOutput, tarOf, type E } from './helpers.js';

let tmp: string;
let root: string;
let sentinel: Sentinel;
let S: string;
let n = 0;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-sandbox-'));
  root = path.join(tmp, 'root');
  sentinel = await Sentinel.make(tmp);
  S = sentinel.dir;
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  expect(mountsAnywhere(root)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(async () => {
  await sentinel.check();
});

const build = (dockerfile: string, files: Record<string, string> = {}) => buildText(root, tmp, dockerfile, ['--no-cache'], files);

/** host pids whose command line is exactly `argv` */
function procsWithArgv(argv: string[]): number[] {
  const want = argv.join('\0') + '\0';
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, 'utf8') === want;
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe.skipIf(!isRoot)('hostile RUN steps', () => {
  it('item 19: a RUN step sees only descriptors 0, 1 and 2', async () => {
    const r = await build('FROM busybox\nRUN ls /proc/self/fd && readlink /proc/self/fd/0\n');
    expect(r.code, r.stderr).toBe(0);
    // 3 is the directory ls itself is reading
    expect(runOutput(r)).toEqual(['0', '1', '2', '3', '/dev/null']);
  });

  it('item 20: an image whose /proc, /sys, /dev or /dev/pts is a symlink cannot redirect the sandbox mounts', async () => {
    const cases: [string, E[]][] = [
      ['proc', [{ name: 'proc', type: 'symlink', linkname: `${S}/proc` }]],
      ['sys', [{ name: 'sys', type: 'symlink', linkname: `../../../../../../../..${S}/dir` }]],
      ['dev', [{ name: 'dev', type: 'symlink', linkname: S }]],
      ['dev/pts', [{ name: 'dev/', type: 'directory' }, { name: 'dev/pts', type: 'symlink', linkname: `${S}/dir` }]],
      ['etc/hosts', [{ name: 'etc/hosts', type: 'symlink', linkname: `${S}/file` }]],
    ];
    for (const [what, layer] of cases) {
      const name = `evil-${what.replace('/', '-')}-${++n}`;
      const loaded = await loadEvil(root, tmp, name, [await tarOf(layer)]);
      expect(loaded.code, loaded.stderr).toBe(0);
      const r = await build(`FROM ${name}\nRUN cat /etc/hosts; ls /proc/1 > /dev/null && echo ran\n`);
      if (r.code !== 0) {
        expect(errorLines(r), `${what}: ${r.stderr}`).toHaveLength(1);
        expect(errorLines(r)[0]).toMatch(new RegExp(`/${what}\\b.*symlink|symlink.*/${what}\\b`));
      } else {
        expect(r.stderr).not.toContain('SENTINEL');
      }
      expect(mountsAnywhere(S), what).toEqual([]);
      await sentinel.check();
    }
  });

  it('item 21: background processes die with their step', async () => {
    const t0 = Date.now();
    const r = await build('FROM busybox\nRUN (sleep 1021 &) ; setsid sleep 1022 & nohup sleep 1023 > /dev/null 2>&1 & sleep 1024 > /dev/null 2>&1 & echo started\n');
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toContain('started');
    expect(Date.now() - t0).toBeLessThan(20_000); // the build does not wait for them
    for (const s of ['1021', '1022', '1023', '1024']) expect(procsWithArgv(['sleep', s]), `sleep ${s}`).toEqual([]);
  });

  it('item 22: a fresh /proc in a new PID namespace, with kcore/keys/sysrq masked and /proc/sys, /sys read-only', async () => {
    // (this host's kernel may lack /proc/kcore and /proc/sysrq-trigger; keys, interrupts and
    // timer_list have content on every host, so a missing mask shows)
    const sysctl = '/proc/sys/kernel/dmesg_restrict';
    const before = readFileSync(sysctl, 'utf8');
    const r = await build(
      'FROM busybox\nRUN for f in kcore keys interrupts timer_list; do cat /proc/$f 2>/dev/null | wc -c; done; ' +
        '(echo h > /proc/sysrq-trigger) 2>/dev/null && echo SYSRQ-WRITTEN; ' +
        // writes back the value it read: harmless even if /proc/sys were writable
        `(cat ${sysctl} > /tmp/v && cat /tmp/v > ${sysctl}) 2>/dev/null && echo SYSCTL-WRITTEN; ` +
        '(echo 1 > /sys/kernel/profiling) 2>/dev/null && echo SYS-WRITTEN; ' +
        "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep -cE '^[0-9]+$'\n",
    );
    expect(r.code, r.stderr).toBe(0);
    const out = runOutput(r).map((l) => l.trim());
    expect(out.slice(0, 4)).toEqual(['0', '0', '0', '0']);
    expect(out.filter((l) => /^\w+-WRITTEN$/.test(l))).toEqual([]);
    expect(out).toHaveLength(6);
    expect(out[4]).toMatch(/^\/bin\/sh -c /); // pid 1 is the step's own shell
    expect(Number(out[5])).toBeLessThanOrEqual(6); // only the step's processes
    expect(readFileSync(sysctl, 'utf8')).toBe(before);
  });

  it('item 23: users and groups come from parsing /etc/passwd and /etc/group; no code from the image is loaded', async () => {
    // a name-service module that would mark the host (or the image) if anything ever dlopen()ed it
    const marker = path.join(tmp, `nss-loaded-${process.pid}`);
    const src = path.join(tmp, 'nss.c');
    await fs.writeFile(src, `#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) { FILE *f = fopen("${marker}", "w"); if (f) { fputs("loaded", f); fclose(f); } }\nint _nss_evil_getpwnam_r(void) { pwn(); return 0; }\n`);
    const so = path.join(tmp, 'libnss_evil.so.2');
    execFileSync('cc', ['-shared', '-fPIC', '-o', so, src]);
    const lib = await fs.readFile(so);
    const layer: E[] = [
      { name: 'etc/nsswitch.conf', data: 'passwd: evil files\ngroup: evil files\nshadow: evil files\n' },
      { name: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nevil:x:4242:4243:evil:/home/evil:/bin/sh\n' },
      { name: 'etc/group', data: 'root:x:0:\nevil:x:4243:\nextra:x:4244:evil\n' },
      ...['lib', 'lib64', 'usr/lib', 'lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'].map((d) => ({ name: `${d}/libnss_evil.so.2`, data: lib, mode: 0o755 })),
    ];
    const name = `evil-nss-${++n}`;
    expect((await loadEvil(root, tmp, name, [await tarOf(layer)])).code).toBe(0);
    const out = path.join(tmp, 'nss-rootfs.tar');
    const r = await buildText(root, tmp, `FROM ${name}\nCOPY --chown=evil:evil f /f\nUSER evil\nRUN id -u; id -G; stat -c '%u:%g' /f\n`, ['--no-cache', '-o', `type=tar,dest=${out}`], { f: 'x' });
    expect(r.code, r.stderr).toBe(0);
    expect(runOutput(r)).toEqual(['4242', '4243 4244', '4242:4243']);
    expect(await exists(marker)).toBe(false);
    expect(execFileSync('tar', ['-tf', out], { encoding: 'utf8' })).not.toContain(`nss-loaded-${process.pid}`);
  });

  it("item 24: RUN gets Docker's default capabilities and nothing more", async () => {
    const r = await build("FROM busybox\nRUN grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status\nUSER 1000\nRUN grep -E '^Cap(Prm|Eff)' /proc/self/status\n");
    expect(r.code, r.stderr).toBe(0);
    const caps = Object.fromEntries(runOutput(r).map((l) => l.split(/:\s+/) as [string, string]));
    expect(runOutput(r)).toEqual([
      'CapInh:\t0000000000000000',
      'CapPrm:\t00000000a80425fb',
      'CapEff:\t00000000a80425fb',
      'CapBnd:\t00000000a80425fb',
      'CapAmb:\t0000000000000000',
      'CapPrm:\t0000000000000000',
      'CapEff:\t0000000000000000',
    ]);
    expect(caps.CapBnd).toBe('00000000a80425fb');
  });
});
