/**
 * bin/mbuild.js compiles the bundles from V8 code caches made at install: a cache this node rejects
 * (another node version, a damaged file) or a missing one must only cost time, never the command.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let copy: string;

beforeAll(() => {
  copy = mkdtempSync(path.join(os.tmpdir(), 'mbuild-launcher-'));
  cpSync(path.join(REPO, 'bin'), path.join(copy, 'bin'), { recursive: true });
  cpSync(path.join(REPO, 'dist', 'bundle'), path.join(copy, 'dist', 'bundle'), { recursive: true });
  cpSync(path.join(REPO, 'package.json'), path.join(copy, 'package.json'));
  symlinkSync(path.join(REPO, 'node_modules'), path.join(copy, 'node_modules'));
});
afterAll(() => rmSync(copy, { recursive: true, force: true }));

const help = () => spawnSync(process.execPath, [path.join(copy, 'bin', 'mbuild.js'), '--help'], { encoding: 'utf8' });

describe('the launcher and its code caches', () => {
  it('the install made a cache for each bundle', () => {
    const files = readdirSync(path.join(REPO, 'dist/bundle')).filter((f) => f.endsWith('.cjs'));
    expect(files).toEqual(expect.arrayContaining(['main.cjs', 'grpc.cjs', 'undici.cjs']));
    for (const f of files) expect(existsSync(path.join(REPO, 'dist/bundle', `${f}.v8cache`)), f).toBe(true);
  });

  it('runs a command whose chunks all have damaged caches', () => {
    const dir = path.join(copy, 'dist/bundle');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.v8cache'))) writeFileSync(path.join(dir, f), 'not a code cache');
    const r = spawnSync(process.execPath, [path.join(copy, 'bin', 'mbuild.js'), '--version'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^mbuild version /);
  });

  it('runs with a damaged cache and with none', () => {
    writeFileSync(path.join(copy, 'dist/bundle/main.cjs.v8cache'), 'not a code cache');
    let r = help();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: mbuild/);
    rmSync(path.join(copy, 'dist/bundle/main.cjs.v8cache'));
    r = help();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: mbuild/);
  });

  it('a chunk removed under a command (a rebuild or upgrade meanwhile) is one clear error line', () => {
    const dir = path.join(copy, 'dist/bundle');
    const version = readdirSync(dir).find((f) => /^cmd-version-\w+\.cjs$/.test(f));
    expect(version).toBeDefined();
    rmSync(path.join(dir, version!));
    const r = spawnSync(process.execPath, [path.join(copy, 'bin', 'mbuild.js'), '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: .*cmd-version-\w+\.cjs is gone: mbuild was rebuilt or upgraded while this command ran; run it again$/m);
    cpSync(path.join(REPO, 'dist/bundle', version!), path.join(dir, version!));
  });

  it('a failing command still exits with its own code and one error line', () => {
    const r = spawnSync(process.execPath, [path.join(copy, 'bin', 'mbuild.js'), 'no-such-command'], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: /);
  });
});
