/**
 * RUN --mount on real builds: the cases recorded from docker build (test/fixtures/mount-cases,
 * scripts/record-mount-cases.sh), secrets that must not leak anywhere, cache mounts that persist,
 * share and lock, and the step's cache key.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { BUSYBOX_TAR, REPO, SHARED, imageTree, mbuild, mountsUnder, run, writeContext } from '../helpers/cli.js';
import { CacheMounts } from '../../store/cache-mounts.js';

const CASES = path.join(REPO, 'test/fixtures/mount-cases');
const IMAGETREE = path.join(SHARED, 'conformance/imagetree.py');
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
let tmp: string;
let root: string;
let agentSock: string;
let agentPid: number;

const context = (files: Record<string, string>): Promise<string> => writeContext(tmp, files);

async function build(ctx: string, extra: string[] = [], env?: NodeJS.ProcessEnv) {
  const out = path.join(tmp, `out-${Math.random().toString(36).slice(2)}.tar`);
  const r = await mbuild(['--root', root, 'build', '--progress', 'plain', '--output', `type=oci,dest=${out}`, ...extra, ctx], { env });
  if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stderr}`);
  return { ...(await imageTree(out)), stderr: r.stderr, stdout: r.stdout, out };
}

/** Every byte of an OCI archive: its files, and its gzip layers uncompressed. */
async function archiveBytes(tarPath: string): Promise<Buffer> {
  const dir = await fs.mkdtemp(path.join(tmp, 'unpacked-'));
  execFileSync('tar', ['-xf', tarPath, '-C', dir]);
  const parts: Buffer[] = [];
  const walk = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const b = await fs.readFile(p);
        parts.push(b);
        if (b[0] === 0x1f && b[1] === 0x8b) parts.push(gunzipSync(b));
      }
    }
  };
  await walk(dir);
  return Buffer.concat(parts);
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-mounts-'));
  root = path.join(tmp, 'root');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
  expect((await mbuild(['--root', `${root}-copy`, 'load', '-i', BUSYBOX_TAR], { env: { MBUILD_SNAPSHOTTER: 'copy' } })).code).toBe(0);
  agentSock = path.join(tmp, 'agent.sock');
  const out = execFileSync('ssh-agent', ['-s', '-a', agentSock]).toString();
  agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(out)![1]);
});

afterAll(async () => {
  process.kill(agentPid, 'SIGTERM');
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('cases recorded from docker build (BuildKit)', async () => {
  const names = (await fs.readdir(CASES)).sort();
  // every case with overlayfs, and those that need the most of the sandbox with the copy snapshotter too
  const runs = [...names.map((n) => [n, 'overlay']), ...['bind-context', 'secret', 'cache-mountpoints'].map((n) => [n, 'copy'])];
  for (const [name, snapshotter] of runs) {
    it(`${name} (${snapshotter})`, async () => {
      const dir = path.join(CASES, name);
      const c = JSON.parse(await fs.readFile(path.join(dir, 'case.json'), 'utf8')) as { args?: string[] };
      const expected = JSON.parse(await fs.readFile(path.join(dir, 'expected.json'), 'utf8')) as { error?: boolean };
      const args = (c.args ?? []).map((a) => a.replace('${CASE}', dir).replace('${AGENT}', agentSock));
      // the context as a checkout gives it (the recording used 0644 files, 0755 dirs)
      const ctx = path.join(tmp, `case-${name}-${snapshotter}`);
      // git keeps no empty folder: a case whose context is empty has none in a fresh clone
      await fs.mkdir(ctx, { recursive: true });
      if (existsSync(path.join(dir, 'context'))) await fs.cp(path.join(dir, 'context'), ctx, { recursive: true });
      execFileSync('sh', ['-c', `find "${ctx}" -type d -exec chmod 0755 {} + && find "${ctx}" -type f -exec chmod 0644 {} +`]);
      const out = path.join(tmp, `case-${name}-${snapshotter}.tar`);
      const env = snapshotter === 'copy' ? { MBUILD_SNAPSHOTTER: 'copy' } : undefined;
      const r = await mbuild(['--root', snapshotter === 'copy' ? `${root}-copy` : root, 'build', '-f', path.join(dir, 'Dockerfile'), ...args, '--output', `type=oci,dest=${out}`, ctx], { env });
      if (expected.error) {
        expect(r.code, r.stderr).not.toBe(0);
        expect(r.stderr).toMatch(/Dockerfile:2: /);
        return;
      }
      expect(r.code, r.stderr).toBe(0);
      const cmp = await run('python3', [IMAGETREE, 'compare', out, path.join(dir, 'expected.json')]);
      expect(cmp.stdout + cmp.stderr).toBe('');
      expect(cmp.code).toBe(0);
    });
  }
});

describe('secrets never leak', () => {
  const VALUE = 'tok-3b9f1c-never-anywhere';

  it('not in a layer, the config, the history, the store (cache keys), the output or an error', async () => {
    const secretFile = path.join(tmp, 'secret.txt');
    await fs.writeFile(secretFile, VALUE);
    const ctx = await context({
      Dockerfile: `FROM busybox
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len
RUN --mount=type=secret,id=tok,env=TOK,target=/etc/tok test "$TOK" = "$(cat /etc/tok)" && echo env-used > /env-used
`,
    });
    const img = await build(ctx, ['--secret', `id=tok,src=${secretFile}`]);
    expect(img.tree['len']).toMatchObject({ size: `${VALUE.length}\n`.length });
    expect(img.tree['env-used']).toBeDefined();
    expect(img.tree['run/secrets/tok']).toBeUndefined();
    expect(img.tree['etc/tok']).toBeUndefined();
    // layers (uncompressed), config with its history, manifest, index
    expect((await archiveBytes(img.out)).includes(VALUE)).toBe(false);
    expect(JSON.stringify(img.config)).not.toContain(VALUE);
    // the store: blobs, snapshots, cache entries and their keys
    const grep = await run('grep', ['-rl', '--', VALUE, root]);
    expect(grep.stdout).toBe('');
    expect(img.stderr + img.stdout).not.toContain(VALUE);

    // the key has the id, not the value: another value is a cache hit (as BuildKit)
    await fs.writeFile(secretFile, 'another-value');
    const again = await build(ctx, ['--secret', `id=tok,src=${secretFile}`]);
    expect(again.stderr).not.toMatch(/cache miss/);
  });

  it('an env= secret and a failing step: the error and the output name no value', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=tok,env=TOK sh -c \'test -n "$TOK" && exit 3\'\n' });
    const r = await mbuild(['--root', root, 'build', '--secret', 'id=tok,env=MY_TOKEN', ctx], { env: { MY_TOKEN: VALUE } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:2: RUN .* exited with code 3/);
    expect(r.stderr + r.stdout).not.toContain(VALUE);
    expect((await run('grep', ['-rl', '--', VALUE, root])).stdout).toBe('');
  });

  it('a required secret that is missing fails the step; an optional one is skipped', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n' });
    const r = await mbuild(['--root', root, 'build', ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:2: secret nope is required but was not given/);
    const ok = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=nope,env=NOPE sh -c \'test ! -e /run/secrets/nope && test -z "${NOPE+set}" && echo skipped > /r\'\n' });
    expect((await build(ok)).tree['r']).toBeDefined();
  });

  it('a secret file that is missing: the flag is refused, naming the file', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=g true\n' });
    const r = await mbuild(['--root', root, 'build', '--secret', `id=g,src=${tmp}/missing.txt`, ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--secret id=g: .*missing.txt is not a readable file/);
  });
});

describe('cache mounts', () => {
  it('persist across builds (even --no-cache), show in system df, go with prune --filter type=exec.cachemount', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/c sh -c \'n=$(cat /c/n 2>/dev/null || echo 0); echo $((n+1)) > /c/n; cp /c/n /seen\'\n' });
    const first = await build(ctx);
    expect(first.tree['c']).toMatchObject({ type: 'dir', mode: '0o755' });
    expect(first.tree['c/n']).toBeUndefined();
    const second = await build(ctx, ['--no-cache']);
    expect(second.tree['seen']).toMatchObject({ sha256: sha('2\n') });
    const df = await mbuild(['--root', root, 'system', 'df']);
    expect(df.stdout).toMatch(/^Cache mounts\s+[1-9]/m);
    const pr = await mbuild(['--root', root, 'prune', '--filter', 'type=exec.cachemount']);
    expect(pr.code, pr.stderr).toBe(0);
    expect(pr.stdout).toMatch(/Deleted cache mounts: [1-9]/);
    const third = await build(ctx, ['--no-cache']);
    expect(third.tree['seen']).toMatchObject({ sha256: sha('1\n') });
    const bad = await mbuild(['--root', root, 'prune', '--filter', 'until=24h']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--filter until=24h is not supported/);
  });

  it('two builds at once: a new shared cache is made once and keeps both writes; locked loses no update', async () => {
    const step = (tag: string) =>
      `FROM busybox\nRUN --mount=type=cache,id=both,target=/s touch /s/${tag}\nRUN --mount=type=cache,id=counter,target=/c,sharing=locked sh -c 'n=$(cat /c/n 2>/dev/null || echo 0); sleep 1; echo $((n+1)) > /c/n' # ${tag}\n`;
    const a = await context({ Dockerfile: step('a') });
    const b = await context({ Dockerfile: step('b') });
    await Promise.all([build(a), build(b)]);
    const check = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=cache,id=counter,target=/c,sharing=locked cp /c/n /n\nRUN --mount=type=cache,id=both,target=/s ls /s > /both\n' });
    const img = await build(check);
    expect(img.tree['both']).toMatchObject({ sha256: sha('a\nb\n') });
    expect(img.tree['n']).toMatchObject({ sha256: sha('2\n') });
  });

  it('shared gives one dir, private a free one, locked waits for the holder', async () => {
    const caches = new CacheMounts(path.join(tmp, 'cm-root'));
    const req = { id: 'x', mode: 0o755, uid: 0, gid: 0 };
    const seen: string[] = [];
    await caches.use({ ...req, sharing: 'shared' }, async (d1) => {
      await caches.use({ ...req, sharing: 'shared' }, async (d2) => void seen.push(d1 === d2 ? 'same' : 'different'));
      await caches.use({ ...req, sharing: 'private' }, async (d3) => void seen.push(d3 === d1 ? 'same' : 'private copy'));
    });
    await caches.use({ ...req, sharing: 'private' }, async (d) => void seen.push(path.basename(d)));
    const order: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const first = caches.use({ ...req, sharing: 'locked' }, async () => {
      order.push('first in');
      await held;
      order.push('first out');
    });
    while (order.length === 0) await new Promise((r) => setImmediate(r));
    const second = caches.use({ ...req, sharing: 'locked' }, async () => void order.push('second in'));
    await new Promise((r) => setTimeout(r, 200));
    release();
    await Promise.all([first, second]);
    expect(seen).toEqual(['same', 'private copy', 'data']);
    expect(order).toEqual(['first in', 'first out', 'second in']);
  });
});

describe('ssh', () => {
  it('a key file: an agent holding it is forwarded with the uid and mode of the mount, SSH_AUTH_SOCK set', async () => {
    const key = path.join(tmp, 'id_test');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=ssh,id=gh,uid=1000,mode=0660 test -S "$SSH_AUTH_SOCK" && ls -ln "$SSH_AUTH_SOCK" | awk \'{print $1, $3}\' > /sock\n' });
    const img = await build(ctx, ['--ssh', `gh=${key}`]);
    expect(img.tree['sock']).toMatchObject({ sha256: sha('srw-rw---- 1000\n') });
    expect(img.tree['run/buildkit']).toMatchObject({ type: 'dir' });
    expect(img.tree['run/buildkit/ssh_agent.0']).toBeUndefined();
  });

  it('a required agent that is missing fails the step', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=ssh,id=deploy,required true\n' });
    const r = await mbuild(['--root', root, 'build', ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:2: ssh agent deploy is required but was not given \(mbuild build --ssh deploy=SOCKET\)/);
  });
});

describe('the step key covers the mounts as BuildKit does', () => {
  it('bind content and mount options are in the key; other context files are not', async () => {
    const ctx = await context({
      Dockerfile: 'FROM busybox\nRUN --mount=type=bind,source=sub,target=/s cat /s/a > /a\n',
      'sub/a': 'one',
      other: 'x',
    });
    await build(ctx);
    await fs.writeFile(path.join(ctx, 'other'), 'y');
    expect((await build(ctx)).stderr).not.toMatch(/cache miss/);
    await fs.writeFile(path.join(ctx, 'sub/a'), 'two');
    const changed = await build(ctx);
    expect(changed.stderr).toMatch(/cache miss/);
    expect(changed.tree['a']).toMatchObject({ size: 3 });
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN --mount=type=bind,source=sub,target=/s,rw cat /s/a > /a\n');
    expect((await build(ctx)).stderr).toMatch(/cache miss/);
  });

  it('a mount in /dev (BuildKit\'s tmpfs on /dev/shm) leaves nothing in the layer', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=tmpfs,target=/dev/shm,size=128m grep -o " /dev/shm tmpfs [^ ]*size=131072k" /proc/mounts | cut -d" " -f2,3 > /shm\nRUN --mount=type=cache,target=/dev/cachex touch /dev/cachex/f\n' });
    const img = await build(ctx);
    expect(img.tree['shm']).toMatchObject({ sha256: sha('/dev/shm tmpfs\n') });
    expect(Object.keys(img.tree).filter((p) => p.startsWith('dev/'))).toEqual([]);
  });

  it('a #! here-document runs from /dev/pipes (BuildKit\'s read-only file mount); its text is in the key', async () => {
    const df = (word: string) => `FROM busybox\nRUN <<EOF\n#!/bin/sh\necho ${word} > /said; ls -l /dev/pipes/EOF | cut -c1-10 >> /said\nEOF\n`;
    const ctx = await context({ Dockerfile: df('one') });
    const img = await build(ctx);
    expect(img.tree['said']).toMatchObject({ sha256: sha('one\n-rwxr-xr-x\n') });
    expect(Object.keys(img.tree).filter((p) => p.startsWith('dev/'))).toEqual([]);
    await fs.writeFile(path.join(ctx, 'Dockerfile'), df('two'));
    const again = await build(ctx);
    expect(again.stderr).toMatch(/cache miss/);
    expect(again.tree['said']).toMatchObject({ sha256: sha('two\n-rwxr-xr-x\n') });
  });

  it('tmpfs size= is honoured', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=1m df -k /t | tail -1 | awk \'{print $2}\' > /size\n' });
    const img = await build(ctx);
    expect(img.tree['size']).toMatchObject({ sha256: sha('1024\n') });
  });

  it('an unknown option names the Dockerfile line', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\n\nRUN --mount=type=cache,target=/x,sharing=sometimes true\n' });
    const r = await mbuild(['--root', root, 'build', ctx]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:3: RUN --mount=type=cache,target=\/x,sharing=sometimes: unsupported sharing value "sometimes"/);
  });
});

describe('mbuild run --mount (docker run syntax)', () => {
  it('bind (read-only), tmpfs with size and mode, named volumes that persist and start as a copy of the image', async () => {
    const host = await context({ 'h.txt': 'fromhost\n' });
    const r = await mbuild([
      '--root', root, 'run', '--rm',
      '--mount', `type=bind,source=${host},target=/h,readonly`,
      '--mount', 'type=tmpfs,target=/t,tmpfs-size=2m,tmpfs-mode=0700',
      '--mount', 'type=volume,source=etcvol,target=/etc',
      '--mount', 'type=volume,target=/anon',
      'busybox', 'sh', '-c',
      'cat /h/h.txt; touch /h/x 2>/dev/null || echo read-only; ls -ld /t | cut -c1-10; df -k /t | tail -1 | awk \'{print $2}\'; test -s /etc/passwd && echo copied; echo kept > /etc/mine; echo gone > /anon/f',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('fromhost\nread-only\ndrwx------\n2048\ncopied\n');
    const again = await mbuild(['--root', root, 'run', '--mount', 'type=volume,source=etcvol,target=/etc', 'busybox', 'cat', '/etc/mine']);
    expect(again.stdout).toBe('kept\n');
    // the anonymous volume went with the run
    expect((await fs.readdir(path.join(root, 'volumes'))).sort()).toEqual(['etcvol']);
  });

  it("refuses what it does not do, in docker's words", async () => {
    const cases: [string, RegExp][] = [
      ['type=bind,target=/x', /source is required when specifying bind mount/],
      [`type=bind,source=${tmp}/nope,target=/x`, /bind source path does not exist/],
      ['type=volume,source=a,target=/x,volume-driver=nfs', /volume-driver is not supported/],
      ['type=npipe,target=/x', /type npipe is not supported/],
      ['type=tmpfs,source=/a,target=/x', /source must not be specified/],
      ['type=volume,source=a', /target is required/],
      ['type=volume,source=a/b,target=/x', /invalid characters for a local volume name/],
    ];
    for (const [spec, want] of cases) {
      const r = await mbuild(['--root', root, 'run', '--mount', spec, 'busybox', 'true']);
      expect(r.code, spec).not.toBe(0);
      expect(r.stderr, spec).toMatch(want);
    }
  });
});
