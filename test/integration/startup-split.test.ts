/**
 * What the commands of the benchmark's client rows load from the split bundle (scripts/bundle.mjs;
 * test/unit/bundle-split.test.ts has the commands that need no root): `images` on a store, a
 * rebuild whose steps are all cached, and a --host client. Pinned by what bin/mbuild.js reports
 * loading (MBUILD_TRACE=1), not by timings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, REPO, mbuild, mountsUnder, writeContext } from '../helpers/cli.js';
import { loadedBy, under } from '../helpers/bundle-loads.js';

let tmp: string;
let root: string;
const traced = (args: string[]) => mbuild(['--root', root, ...args], { env: { MBUILD_TRACE: '1', MBUILD_HOST: '' } });

/** what no command on the local store needs */
const REMOTE = ['server/', 'cli/remote'];
/** what a build that runs no step and exports nothing needs neither */
const STEP_RUNNING = ['builder/sandbox/run.ts', 'builder/sandbox/emulation.ts', 'builder/sandbox/cgroups.ts', 'builder/sandbox/network/', 'node_modules/tar-stream/', 'builder/attest/make.ts', 'builder/attest/sbom/', 'registry/', 'cli/rootless'];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-startup-'));
  root = path.join(tmp, 'root');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('what a command loads', () => {
  it('images reads the store, nothing of the builder, the server or the registry', async () => {
    const r = await traced(['images']);
    expect(r.code, r.stderr).toBe(0);
    const loaded = loadedBy(r.stderr);
    expect(loaded.sources).toContain('cli/cmd-images.ts');
    expect(loaded.sources).toContain('store/store.ts');
    expect(under(loaded, ['builder/', 'snapshotter/', 'registry/', 'node_modules/', ...REMOTE])).toEqual([]);
    expect(loaded.files).not.toContain('grpc.cjs');
    expect(loaded.files).not.toContain('undici.cjs');
  });

  it('a rebuild with every step cached loads no sandbox, tar, attestation or registry code; the first build does', async () => {
    const ctx = await writeContext(tmp, { Dockerfile: 'FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n' });
    const first = await traced(['build', '--progress', 'plain', '-t', 'noop', ctx]);
    expect(first.code, first.stderr).toBe(0);
    expect(loadedBy(first.stderr).sources).toEqual(expect.arrayContaining(['builder/sandbox/run.ts', 'node_modules/tar-stream/index.js']));
    const again = await traced(['build', '--progress', 'plain', '-t', 'noop', ctx]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('CACHED');
    const loaded = loadedBy(again.stderr);
    expect(loaded.sources).toContain('builder/executor/build.ts');
    expect(under(loaded, [...STEP_RUNNING, ...REMOTE])).toEqual([]);
    expect(loaded.files).not.toContain('grpc.cjs');
    expect(loaded.files).not.toContain('undici.cjs');
  }, 120_000);

  describe('a --host client', () => {
    let server: ChildProcess;
    let log = '';
    let host: string;
    beforeAll(async () => {
      host = `unix://${path.join(tmp, 's.sock')}`;
      server = spawn(path.join(REPO, 'bin/mbuild'), ['--root', path.join(tmp, 'server-root'), 'serve', '--addr', host], { stdio: ['ignore', 'ignore', 'pipe'] });
      server.stderr!.on('data', (d) => (log += d));
      const end = Date.now() + 30_000;
      while (!log.includes('listening on') && server.exitCode === null && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(server.exitCode, log).toBe(null);
    }, 60_000);
    afterAll(async () => {
      if (server.exitCode !== null) return;
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    });

    it('a server reads the whole bundle when it starts (an upgrade under it cannot mix versions)', async () => {
      // a server of its own: with MBUILD_TRACE=1 its workers' lines would reach the other test's client
      const traced = spawn(path.join(REPO, 'bin/mbuild'), ['--root', path.join(tmp, 'traced-root'), 'serve', '--addr', `unix://${path.join(tmp, 't.sock')}`], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, MBUILD_TRACE: '1' },
      });
      let tlog = '';
      traced.stderr!.on('data', (d) => (tlog += d));
      const end = Date.now() + 30_000;
      while (!tlog.includes('listening on') && traced.exitCode === null && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      const exited = new Promise((r) => traced.once('exit', r));
      traced.kill('SIGTERM');
      await exited;
      const held = /^mbuild-trace [\d.]+ ms hold (\d+) files /m.exec(tlog);
      expect(held, tlog).not.toBe(null);
      expect(Number(held![1])).toBeGreaterThan(50);
    }, 60_000);

    it('loads grpc-js and the client, not the store, the builder or the registry client', async () => {
      const r = await mbuild(['--host', host, 'images'], { env: { MBUILD_TRACE: '1' } });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^REPOSITORY/);
      const loaded = loadedBy(r.stderr);
      expect(loaded.files).toContain('grpc.cjs');
      expect(loaded.sources).toContain('cli/remote.ts');
      expect(under(loaded, ['builder/', 'snapshotter/', 'registry/', 'store/store.ts', 'server/serve.ts', 'server/service.ts'])).toEqual([]);
      expect(loaded.files).not.toContain('undici.cjs');
    });
  });
});
