/**
 * Issue 15: what a hostile RUN step could gain on the host beyond its own sandbox. Each test makes
 * the attack the way a Dockerfile would and checks it fails: setuid files and device nodes in the
 * store reached by another host user.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
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
