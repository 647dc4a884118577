/** The remote CLI's pure parts: addresses, routing a repository to a server, frames, manifests. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAddress, parseHostList, pickAddress, repositoryKey, grpcTarget } from '../../../server/address.js';
import { decodeFrame, encodeFrame } from '../../../server/protocol.js';
import { buildkitBytes } from '../../../cli/remote-build.js';
import { ContextStore, syncContext } from '../../../server/context-store.js';
import { contextManifest } from '../../../server/manifest.js';

describe('addresses', () => {
  it('parses unix and tcp addresses as docker writes them, and refuses others in one line', () => {
    expect(parseAddress('unix:///run/mbuild/mbuild.sock')).toMatchObject({ kind: 'unix', path: '/run/mbuild/mbuild.sock' });
    expect(parseAddress('tcp://10.0.0.5:1234')).toMatchObject({ kind: 'tcp', host: '10.0.0.5', port: 1234 });
    expect(grpcTarget(parseAddress('tcp://[::1]:99'))).toBe('[::1]:99');
    expect(() => parseAddress('http://x:1')).toThrow(/expected unix:\/\/\/PATH or tcp:\/\/HOST:PORT/);
    expect(() => parseAddress('tcp://x')).toThrow(/expected tcp:\/\/HOST:PORT/);
    expect(() => parseAddress('unix://relative.sock')).toThrow(/absolute path/);
  });

  it('routes a repository to the same server every time, and moves only the repositories of a removed server', () => {
    const hosts = parseHostList('tcp://a:1,tcp://b:1,tcp://c:1,tcp://d:1');
    const repos = Array.from({ length: 400 }, (_, i) => `git:https://git.example.com/team/repo-${i}`);
    const before = repos.map((r) => pickAddress(hosts, r).raw);
    expect(repos.map((r) => pickAddress(hosts, r).raw)).toEqual(before);
    // every server gets a share
    for (const h of hosts) expect(before.filter((b) => b === h.raw).length).toBeGreaterThan(50);
    const without = hosts.filter((h) => h.raw !== 'tcp://c:1');
    for (const [i, r] of repos.entries()) {
      const now = pickAddress(without, r).raw;
      if (before[i] !== 'tcp://c:1') expect(now).toBe(before[i]);
    }
  });

  it('names a repository by its git origin, so fresh clones elsewhere route alike', async () => {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-repokey-'));
    try {
      for (const d of ['one', 'two']) {
        const dir = path.join(tmp, d);
        await fs.mkdir(path.join(dir, 'sub'), { recursive: true });
        execFileSync('git', ['init', '-q', dir]);
        execFileSync('git', ['-C', dir, 'remote', 'add', 'origin', 'https://git.example.com/team/app.git']);
      }
      expect(repositoryKey(path.join(tmp, 'one', 'sub'))).toBe('git:https://git.example.com/team/app');
      expect(repositoryKey(path.join(tmp, 'two'))).toBe(repositoryKey(path.join(tmp, 'one')));
      await fs.mkdir(path.join(tmp, 'plain'));
      expect(repositoryKey(path.join(tmp, 'plain'))).toBe(`dir:${await fs.realpath(path.join(tmp, 'plain'))}`);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });
});

describe('wire format', () => {
  it('carries a JSON header and raw bytes in one frame', () => {
    const data = Buffer.from([0, 1, 2, 255]);
    const f = decodeFrame<{ a: number }>(encodeFrame({ head: { a: 1 }, data }));
    expect(f.head).toEqual({ a: 1 });
    expect(f.data).toEqual(data);
    expect(decodeFrame(encodeFrame({ head: { b: 'x' } }))).toEqual({ head: { b: 'x' } });
  });

  it("counts bytes as BuildKit's progress does", () => {
    expect(buildkitBytes(0)).toBe('0B');
    expect(buildkitBytes(65)).toBe('65B');
    expect(buildkitBytes(2340)).toBe('2.34kB');
    expect(buildkitBytes(123456)).toBe('123.5kB');
    expect(buildkitBytes(5_000_000)).toBe('5MB');
  });
});

describe('context manifest and the server copy', () => {
  it('describes what .dockerignore leaves, and the server rebuilds it with modes and mtimes', async () => {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-manifest-'));
    process.env.XDG_CACHE_HOME = path.join(tmp, 'cache');
    try {
      const ctx = path.join(tmp, 'ctx');
      await fs.mkdir(path.join(ctx, 'src'), { recursive: true });
      await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\n');
      await fs.writeFile(path.join(ctx, '.dockerignore'), 'secret.txt\n');
      await fs.writeFile(path.join(ctx, 'secret.txt'), 'no');
      await fs.writeFile(path.join(ctx, 'src/run.sh'), '#!/bin/sh\n', { mode: 0o750 });
      await fs.symlink('run.sh', path.join(ctx, 'src/link'));
      const when = new Date('2020-01-02T03:04:05Z');
      await fs.utimes(path.join(ctx, 'src/run.sh'), when, when);
      const { entries, sources } = await contextManifest(ctx, path.join(ctx, 'Dockerfile'));
      expect(entries.map((e) => e.p)).toEqual(['.dockerignore', 'Dockerfile', 'src', 'src/link', 'src/run.sh']);
      const run = entries.find((e) => e.p === 'src/run.sh')!;
      expect(run).toMatchObject({ t: 'f', m: 0o750, s: 10, mt: when.getTime() });

      const store = new ContextStore(path.join(tmp, 'root'));
      await store.init();
      expect((await store.missing([...sources.keys()])).sort()).toEqual([...sources.keys()].sort());
      for (const [sha, file] of sources) {
        const w = store.writer(sha);
        await w.write(await fs.readFile(file));
        await w.commit();
      }
      expect(await store.missing([...sources.keys()])).toEqual([]);
      const out = path.join(tmp, 'copy');
      await store.materialize(entries, out);
      const st = await fs.stat(path.join(out, 'src/run.sh'));
      expect(st.mode & 0o7777).toBe(0o750);
      expect(st.mtime.getTime()).toBe(when.getTime());
      expect(await fs.readlink(path.join(out, 'src/link'))).toBe('run.sh');
      await expect(fs.stat(path.join(out, 'secret.txt'))).rejects.toThrow();

      // content whose digest does not match is not committed
      const w = store.writer('0'.repeat(64));
      await w.write(Buffer.from('other'));
      await expect(w.commit()).rejects.toThrow(/has digest sha256:/);
    } finally {
      delete process.env.XDG_CACHE_HOME;
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });

  it('keeps a context folder between builds: unchanged files stay as they are, changes and removals apply', async () => {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-sync-'));
    try {
      const store = new ContextStore(path.join(tmp, 'root'));
      await store.init();
      const put = async (text: string) => {
        const sha = (await import('node:crypto')).createHash('sha256').update(text).digest('hex');
        const w = store.writer(sha);
        await w.write(Buffer.from(text));
        await w.commit();
        return sha;
      };
      const [a, b, c] = [await put('a'), await put('b'), await put('c')];
      const dir = path.join(tmp, 'ctx');
      const rec = `${dir}.json`;
      await syncContext(store, [{ p: 'd', t: 'd', m: 0o755, mt: 1000 }, { p: 'd/a', t: 'f', m: 0o644, mt: 2000, s: 1, h: a }, { p: 'gone', t: 'f', m: 0o644, mt: 2000, s: 1, h: b }, { p: 'x', t: 'd', m: 0o755, mt: 1000 }], dir, rec);
      const inoA = (await fs.stat(path.join(dir, 'd/a'))).ino;
      const ctimeA = (await fs.stat(path.join(dir, 'd/a'))).ctimeMs;
      // same content and time: untouched (its stat, so the hash cache's key, stays); a new time is set in place
      await syncContext(store, [{ p: 'd', t: 'd', m: 0o755, mt: 1000 }, { p: 'd/a', t: 'f', m: 0o644, mt: 2000, s: 1, h: a }, { p: 'x', t: 'l', m: 0o777, mt: 1000, l: 'd/a' }, { p: 'y', t: 'f', m: 0o600, mt: 3000, s: 1, h: c }], dir, rec);
      const st = await fs.stat(path.join(dir, 'd/a'));
      expect([st.ino, st.ctimeMs]).toEqual([inoA, ctimeA]);
      await expect(fs.stat(path.join(dir, 'gone'))).rejects.toThrow();
      expect(await fs.readlink(path.join(dir, 'x'))).toBe('d/a');
      expect(await fs.readFile(path.join(dir, 'y'), 'utf8')).toBe('c');
      expect((await fs.stat(path.join(dir, 'y'))).mode & 0o777).toBe(0o600);
      await syncContext(store, [{ p: 'd', t: 'd', m: 0o755, mt: 1000 }, { p: 'd/a', t: 'f', m: 0o644, mt: 9000, s: 1, h: a }], dir, rec);
      const moved = await fs.stat(path.join(dir, 'd/a'));
      expect(moved.ino).toBe(inoA);
      expect(moved.mtimeMs).toBe(9000);
      expect((await fs.readdir(dir)).sort()).toEqual(['d']);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });

  it('refuses a manifest that would write outside the folder or through a symlink', async () => {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-manifest-'));
    try {
      const store = new ContextStore(path.join(tmp, 'root'));
      await store.init();
      const h = 'a'.repeat(64);
      await expect(store.materialize([{ p: '../x', t: 'f', m: 0o644, mt: 0, h }], path.join(tmp, 'c1'))).rejects.toThrow(/invalid path/);
      await expect(store.materialize([{ p: '/etc/x', t: 'f', m: 0o644, mt: 0, h }], path.join(tmp, 'c2'))).rejects.toThrow(/invalid path/);
      await expect(
        store.materialize([{ p: 'l', t: 'l', m: 0o777, mt: 0, l: tmp }, { p: 'l/x', t: 'f', m: 0o644, mt: 0, h }], path.join(tmp, 'c3')),
      ).rejects.toThrow(/comes before its folder/);
      await expect(fs.stat(path.join(tmp, 'x'))).rejects.toThrow();
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });
});
