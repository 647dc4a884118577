/**
 * docs/security.md items 25 and 28: SIGKILL (and SIGINT) of builds and loads at several points.
 * After each: no process of the killed command survives (the child under `unshare` and the RUN
 * sandbox die too), no mount mentioning the store is left in any mount namespace, half-finished
 * work is swept by the next command, `mbuild images` and a fresh build work.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { REPO } from '../helpers/cli.js';
import { BUSYBOX_TAR, buildText, isRoot, mbuild, mountsAnywhere, processTree, survivors, tarOf, waitUntil, type Proc } from './helpers.js';

let tmp: string;
let root: string;
let fresh = 0;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-faults-'));
  root = path.join(tmp, 'root');
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  expect(mountsAnywhere(root)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `launcher`: 'js' is node bin/mbuild.js (re-executes itself under unshare), 'sh' the bin/mbuild command (execs node under unshare). */
function start(args: string[], launcher: 'js' | 'sh' = 'js'): Running {
  const [cmd, pre] = launcher === 'js' ? [process.execPath, [path.join(REPO, 'bin/mbuild.js')]] : [path.join(REPO, 'bin/mbuild'), []];
  const child = spawn(cmd, [...pre, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  child.stdout!.resume();
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stderr: () => err, exited };
}

async function startBuild(dockerfile: string, launcher: 'js' | 'sh' = 'js'): Promise<Running> {
  const ctx = await fs.mkdtemp(path.join(tmp, 'ctx-'));
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  return start(['build', '--no-cache', '--progress', 'plain', ctx], launcher);
}

/** Wait for `ready`, snapshot the process tree, send `signal` to the command itself, wait until the whole tree is gone. */
async function interrupt(run: Running, ready: () => boolean | Promise<boolean>, signal: NodeJS.Signals = 'SIGKILL'): Promise<Proc[]> {
  await waitUntil('the point to interrupt at', ready, 60_000);
  const tree = processTree(run.child.pid!);
  // the RUN sandbox's state dir (in os.tmpdir(), outside the store): a killed helper cannot remove it
  const stateDirs = new Set(mountsAnywhere(root).map((l) => /\s(\/\S*\/mbuild-run-[^/\s]+)\/rootfs\s/.exec(l)?.[1]).filter((d): d is string => d !== undefined));
  run.child.kill(signal);
  await run.exited;
  await waitUntil(`every process of the interrupted command to end: ${JSON.stringify(survivors(tree))}`, () => survivors(tree).length === 0, 5_000);
  expect(mountsAnywhere(root)).toEqual([]);
  for (const d of stateDirs) await fs.rm(d, { recursive: true, force: true });
  return tree;
}

async function leftovers(): Promise<string[]> {
  const ls = async (d: string) => (await fs.readdir(path.join(root, d)).catch(() => [] as string[])).map((n) => `${d}/${n}`);
  return [
    ...(await ls('blobs/sha256')).filter((n) => n.includes('/.tmp-')),
    ...(await ls('tmp')),
    ...(await ls('snapshots')).filter((n) => /\/(b|tmp)-/.test(n)),
    ...(await ls('run')),
    ...(await ls('')).filter((n) => n.includes('.tmp-')),
  ];
}

/** The store works after the fault: images lists, leftovers are swept, every blob verifies, a fresh build succeeds. */
async function expectRecovered(): Promise<void> {
  const images = await mbuild(['--root', root, 'images']);
  expect(images.code, images.stderr).toBe(0);
  expect(images.stdout).toMatch(/^busybox\s+latest/m);
  expect(await leftovers()).toEqual([]);
  JSON.parse(await fs.readFile(path.join(root, 'images.json'), 'utf8'));
  for (const n of await fs.readdir(path.join(root, 'blobs', 'sha256'))) {
    const h = createHash('sha256');
    for await (const c of (await fs.open(path.join(root, 'blobs', 'sha256', n))).createReadStream()) h.update(c as Buffer);
    expect(h.digest('hex'), `blob ${n}`).toBe(n);
  }
  const tag = `fresh-${++fresh}`;
  const b = await buildText(root, tmp, `FROM busybox\nRUN echo fresh ${fresh} > /f\n`, ['-t', tag]);
  expect(b.code, b.stderr).toBe(0);
  expect((await mbuild(['--root', root, 'images'])).stdout).toContain(tag);
  expect(mountsAnywhere(root)).toEqual([]);
}

describe.skipIf(!isRoot)('faults: interrupted builds and loads', () => {
  it('item 25: SIGKILL mid-RUN kills the step and the child under unshare; the store recovers', async () => {
    const run = await startBuild('FROM busybox\nRUN echo started-$((20+5)) && sleep 30\n');
    let sawMounts = false;
    const tree = await interrupt(run, () => {
      if (!run.stderr().includes('started-25')) return false;
      sawMounts = mountsAnywhere(root).length > 0; // the step's overlay, in its private namespace
      return true;
    });
    expect(sawMounts).toBe(true);
    expect(tree.map((p) => p.cmd)).toEqual(expect.arrayContaining(['sleep 30', expect.stringMatching(/mbuild-helper run$/)]));
    expect(tree.filter((p) => p.cmd.includes('bin/mbuild.js')).length).toBeGreaterThanOrEqual(2); // the CLI and its re-executed child
    expect((await leftovers()).some((l) => /snapshots\/b-/.test(l))).toBe(true); // the killed step's layer, swept next
    await expectRecovered();
  });

  it('item 25: the bin/mbuild command is one process in its own mount namespace; SIGKILL mid-RUN leaves no mount', async () => {
    const run = await startBuild('FROM busybox\nRUN echo started-$((20+6)) && sleep 30\n', 'sh');
    let sawMounts = false;
    let buildNs = '';
    const tree = await interrupt(run, async () => {
      if (!run.stderr().includes('started-26')) return false;
      sawMounts = mountsAnywhere(root).length > 0;
      buildNs = await fs.readlink(`/proc/${run.child.pid}/ns/mnt`);
      return true;
    });
    expect(buildNs).toMatch(/^mnt:/);
    expect(buildNs).not.toBe(await fs.readlink('/proc/self/ns/mnt'));
    expect(sawMounts).toBe(true);
    expect(tree.map((p) => p.cmd)).toEqual(expect.arrayContaining(['sleep 30', expect.stringMatching(/mbuild-helper run$/)]));
    // the shell exec'd unshare, which exec'd node: the command's own pid is the build
    expect(tree[0]!.cmd).toMatch(/node .*bin\/mbuild\.js --root/);
    expect(tree.filter((p) => p.cmd.includes('bin/mbuild.js')).length).toBe(1);
    await expectRecovered();
  });

  it('item 25: SIGKILL mid-commit, while a large layer is exported, leaves no half-written blob', async () => {
    const run = await startBuild('FROM busybox\nRUN head -c 200m /dev/urandom > /big\n');
    let seen = 0;
    await interrupt(run, () => {
      if (!run.stderr().includes('exporting layers')) return false;
      seen ||= Date.now();
      return Date.now() - seen > 300; // well into writing the 200 MB layer blob
    });
    expect(run.stderr()).not.toMatch(/^built /m);
    expect((await leftovers()).some((l) => l.includes('/.tmp-'))).toBe(true);
    await expectRecovered();
    // whatever of the 200 MB step was kept (the build cache) goes with prune --all
    const pruned = await mbuild(['--root', root, 'prune', '--all']);
    expect(pruned.code, pruned.stderr).toBe(0);
    const { treeBytes } = await import('../../store/usage.js');
    expect(await treeBytes(root)).toBeLessThan(50 << 20);
  });

  it('item 25: SIGKILL mid-load of a big archive leaves nothing half-committed', async () => {
    // an OCI layout with one 256 MiB uncompressed layer, written here
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
    const size = 256 << 20;
    const header = (await tarOf([{ name: 'big', data: Buffer.alloc(0) }])).subarray(0, 512);
    const hdr = Buffer.from(header);
    hdr.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
    hdr.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of hdr) sum += b;
    hdr.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const layerParts = () => [hdr, ...Array.from({ length: size / chunk.length }, () => chunk), Buffer.alloc(1024)];
    const h = createHash('sha256');
    for (const p of layerParts()) h.update(p);
    const layerDigest = 'sha256:' + h.digest('hex');
    const layerSize = layerParts().reduce((a, b) => a + b.length, 0);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layerDigest] } }));
    const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layerSize }],
      }),
    );
    const index = JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length, annotations: { 'io.containerd.image.name': 'docker.io/library/big:latest' } }] });
    const { pack } = await import('tar-stream');
    const p = pack();
    const file = path.join(tmp, 'big.tar');
    const out = createWriteStream(file);
    p.pipe(out);
    const add = (name: string, data: Buffer | string) => new Promise<void>((res, rej) => p.entry({ name }, data, (e) => (e ? rej(e) : res())));
    await add('oci-layout', '{"imageLayoutVersion":"1.0.0"}');
    await add('index.json', index);
    await add(`blobs/sha256/${sha(config).slice(7)}`, config);
    await add(`blobs/sha256/${sha(manifest).slice(7)}`, manifest);
    const entry = p.entry({ name: `blobs/sha256/${layerDigest.slice(7)}`, size: layerSize });
    for (const part of layerParts()) if (!entry.write(part)) await once(entry, 'drain');
    entry.end();
    p.finalize();
    await once(out, 'close');

    const run = start(['load', '-i', file]);
    const spooled = async () => {
      for (const d of await fs.readdir(path.join(root, 'tmp')).catch(() => [] as string[])) {
        for (const f of await fs.readdir(path.join(root, 'tmp', d)).catch(() => [] as string[])) {
          if (((await fs.stat(path.join(root, 'tmp', d, f)).catch(() => null))?.size ?? 0) > 32 << 20) return true;
        }
      }
      return false;
    };
    await interrupt(run, spooled);
    expect((await leftovers()).some((l) => l.startsWith('tmp/load-'))).toBe(true);
    await expectRecovered();
    expect((await mbuild(['--root', root, 'images'])).stdout).not.toMatch(/^big\s/m);
    await fs.rm(file);
  });

  it('item 28: every mount a build makes is gone when it succeeds, fails or is interrupted (SIGINT)', async () => {
    const files = { 'a.txt': 'a', 'dir/b.txt': 'b' };
    const ok = await buildText(root, tmp, 'FROM busybox\nCOPY a.txt /a\nWORKDIR /w\nCOPY dir /d\nRUN cat /a /d/b.txt\nUSER nobody\nRUN id\n', ['--no-cache'], files);
    expect(ok.code, ok.stderr).toBe(0);
    expect(mountsAnywhere(root)).toEqual([]);
    const failed = await buildText(root, tmp, 'FROM busybox\nCOPY a.txt /a\nRUN exit 3\n', ['--no-cache'], files);
    expect(failed.code).not.toBe(0);
    expect(mountsAnywhere(root)).toEqual([]);
    const run = await startBuild('FROM busybox\nRUN echo started-$((20+8)) && sleep 30\n');
    await interrupt(run, () => run.stderr().includes('started-28'), 'SIGINT');
    expect(await run.exited).not.toBe(0);
    // SIGKILL while the builder itself has an overlay mounted (a large COPY; snapshotter/mount.ts
    // withMounted mounts it at snapshots/tmp-PID-mnt-*): the mount lived only
    // in the build's private mount namespace, so it is gone with the process
    const ctx = await fs.mkdtemp(path.join(tmp, 'ctx-'));
    // (a RUN after it: a COPY that is the stage's last change is written as a tar, with no mount)
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY big /big\nRUN true\n');
    const big = await fs.open(path.join(ctx, 'big'), 'w');
    await big.truncate(768 << 20); // sparse: instant to make, slow enough to copy
    await big.close();
    const copying = start(['build', '--no-cache', ctx]);
    await interrupt(copying, () => mountsAnywhere(root).some((l) => l.includes('-mnt-')));
    await expectRecovered();
  });
});
