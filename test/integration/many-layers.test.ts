/**
 * One layer limit for every overlay (snapshotter/mount.ts): RUN, COPY and WORKDIR mount 150 layers
 * and more through the same mounter (lowerdir+ on Linux >= 6.8, else short links).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX_TAR, imageTree, mbuild, mountsUnder } from '../helpers/cli.js';

let tmp: string;
let root: string;

async function build(files: Record<string, string>) {
  const ctx = await fs.mkdtemp(path.join(tmp, 'ctx-'));
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(ctx, name), content);
  const out = path.join(tmp, `out-${Math.random().toString(36).slice(2)}.tar`);
  const r = await mbuild(['--root', root, 'build', '--output', `type=oci,dest=${out}`, ctx]);
  if (r.code !== 0) throw new Error(`build failed (${r.code}):\n${r.stderr.split('\n').slice(-15).join('\n')}`);
  return imageTree(out);
}

const N = 150;
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-layers-'));
  root = path.join(tmp, 'root');
  expect((await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR])).code).toBe(0);
});

afterAll(async () => {
  expect(await mountsUnder(tmp)).toEqual([]);
  await fs.rm(tmp, { recursive: true, force: true });
});

describe(`${N} layers`, () => {
  it(`${N} COPY steps, a WORKDIR and a RUN over all of them build`, async () => {
    const files: Record<string, string> = {};
    for (const i of range(N)) files[`f${i}`] = `${i}\n`;
    const steps = range(N).map((i) => `COPY f${i} /data/f${i}`).join('\n');
    const img = await build({ ...files, Dockerfile: `FROM busybox\n${steps}\nWORKDIR /made/here\nRUN cat /data/f1 /data/f${N} > /sum\n` });
    expect(img.layers).toBe(1 + N + 2);
    expect(img.tree[`data/f${N}`]).toMatchObject({ type: 'file', size: String(N).length + 1 });
    expect(img.tree['made/here']).toMatchObject({ type: 'dir' });
    expect(img.tree['sum']).toMatchObject({ type: 'file', size: 2 + String(N).length + 1 });
  }, 300_000);

  it(`${N} RUN steps build`, async () => {
    const steps = range(N).map((i) => `RUN echo ${i} > /r${i}`).join('\n');
    const img = await build({ Dockerfile: `FROM busybox\n${steps}\nRUN cat /r1 /r${N} > /sum\n` });
    expect(img.layers).toBe(1 + N + 1);
    expect(img.tree['sum']).toMatchObject({ type: 'file', size: 2 + String(N).length + 1 });
  }, 300_000);
});
