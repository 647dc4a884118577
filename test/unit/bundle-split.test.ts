/**
 * The CLI bundle is split (scripts/bundle.mjs): a command loads the dispatch and what it uses, not
 * the builder, the server or the registry client. Pinned by what bin/mbuild.js reports loading
 * (MBUILD_TRACE=1) and by where the big dependencies sit, not by timings.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO } from '../helpers/cli.js';
import { BUNDLE, chunkSources, loadedBy, under } from '../helpers/bundle-loads.js';

function traced(args: string[]) {
  const r = spawnSync(process.execPath, [path.join(REPO, 'bin', 'mbuild.js'), ...args], {
    encoding: 'utf8',
    cwd: os.tmpdir(),
    env: { ...process.env, MBUILD_TRACE: '1', MBUILD_HOST: '' },
  });
  return { ...r, loaded: loadedBy(r.stderr) };
}

/** what a command that opens no store and talks to no server has no use for */
const HEAVY = ['builder/', 'snapshotter/', 'server/', 'registry/', 'store/', 'node_modules/', 'cli/remote', 'cli/rootless', 'cli/cmd-'];

describe('the split bundle', () => {
  it('mbuild --version loads the dispatch and the version command only', () => {
    const r = traced(['--version']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^mbuild version /);
    expect(r.loaded.sources).toContain('cli/main.ts');
    expect(r.loaded.sources).toContain('cli/cmd-version.ts');
    expect(under(r.loaded, HEAVY.filter((p) => p !== 'cli/cmd-').concat(['store/store.ts']))).toEqual(['store/default-root.ts']);
    expect(r.loaded.files).not.toContain('grpc.cjs');
    expect(r.loaded.files).not.toContain('undici.cjs');
  });

  it('mbuild --help and a usage error load the dispatch only', () => {
    for (const args of [['--help'], ['build', '--help'], ['no-such-command'], ['info']]) {
      const r = traced(args);
      expect(r.loaded.sources, args.join(' ')).toContain('cli/main.ts');
      expect(under(r.loaded, HEAVY), args.join(' ')).toEqual(['store/default-root.ts']);
      expect(r.loaded.files, args.join(' ')).not.toContain('grpc.cjs');
    }
  });

  it('grpc-js and undici are bundles of their own, required only by the server and registry chunks', () => {
    const chunks = chunkSources();
    const all = Object.values(chunks).flat();
    expect(all.filter((s) => s.includes('@grpc/') || s.includes('node_modules/undici'))).toEqual([]);
    const requiring = (bundle: string) => Object.keys(chunks).filter((f) => readFileSync(path.join(BUNDLE, f), 'utf8').includes(`require("./${bundle}")`));
    const grpcUsers = requiring('grpc.cjs');
    expect(grpcUsers.length).toBeGreaterThan(0);
    for (const f of grpcUsers) expect(chunks[f].every((s) => s.startsWith('server/')), `${f}: ${chunks[f].join(' ')}`).toBe(true);
    const undiciUsers = requiring('undici.cjs');
    expect(undiciUsers.length).toBeGreaterThan(0);
    for (const f of undiciUsers) expect(chunks[f].every((s) => s.startsWith('registry/')), `${f}: ${chunks[f].join(' ')}`).toBe(true);
    // grpc-js's own code is in grpc.cjs, without protobufjs (channelz and ORCA only, never on)
    const grpc = readFileSync(path.join(BUNDLE, 'grpc.cjs'), 'utf8');
    expect(grpc).toContain('Http2SubchannelConnector');
    expect(grpc).not.toContain('protobufjs');
    for (const f of Object.keys(chunks)) expect(readFileSync(path.join(BUNDLE, f), 'utf8'), f).not.toContain('class Http2SubchannelConnector');
  });

  it('the attestation and SBOM code is in chunks of its own', () => {
    const chunks = chunkSources();
    const main = chunks['main.cjs'];
    expect(main).toContain('cli/main.ts');
    const attest = Object.entries(chunks).filter(([, sources]) => sources.some((s) => s.startsWith('builder/attest/make') || s.startsWith('builder/attest/sbom/')));
    expect(attest.length).toBeGreaterThan(0);
    for (const [f, sources] of attest) expect(sources.filter((s) => s.startsWith('builder/executor/') || s.startsWith('cli/')), f).toEqual([]);
  });
});
