/**
 * docs/security.md items 10, 11 and 15: image archives whose bytes, digests or sizes lie. Every
 * archive is made here; nothing it names may be committed, and the store must stay usable.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Store } from '../../store/store.js';
import { DigestMismatchError, MbuildError } from '../../util/errors.js';
import { BUSYBOX_TAR, Sentinel, buildText, errorLines, evilImageTar, exists, isRoot, mbuild, sha256, tarOf, type E } from './helpers.js';

let tmp: string;
let root: string;
let sentinel: Sentinel;
let n = 0;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-archives-'));
  root = path.join(tmp, 'root');
  sentinel = await Sentinel.make(tmp);
  const r = await mbuild(['--root', root, 'load', '-i', BUSYBOX_TAR]);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

beforeEach(async () => {
  await sentinel.check();
});

interface StoreState {
  blobs: string[];
  images: string;
  tmp: string[];
}

async function storeState(): Promise<StoreState> {
  return {
    blobs: (await fs.readdir(path.join(root, 'blobs', 'sha256'))).sort(),
    images: await fs.readFile(path.join(root, 'images.json'), 'utf8'),
    tmp: await fs.readdir(path.join(root, 'tmp')),
  };
}

/** `mbuild load` must fail with one clear line matching `message` and leave the store exactly as it was. */
async function expectRefused(file: string, message: RegExp): Promise<void> {
  const before = await storeState();
  const r = await mbuild(['--root', root, 'load', '-i', file]);
  expect(r.code).not.toBe(0);
  expect(errorLines(r)).toEqual([expect.stringMatching(message)]);
  expect(await storeState()).toEqual(before);
  const images = await mbuild(['--root', root, 'images']);
  expect(images.code).toBe(0);
  expect(images.stdout).toMatch(/^busybox\s+latest/m);
  await sentinel.check();
}

const layer = () => tarOf([{ name: 'hello', data: `hello ${++n}` }]);

describe.skipIf(!isRoot)('hostile archives', () => {
  it('item 10: a blob whose bytes or size do not match its digest is refused before anything is committed', async () => {
    const l = await layer();
    const flip = (digest: string, bytes: Buffer) => {
      if (digest !== sha256(l)) return bytes;
      const b = Buffer.from(bytes);
      b[600] ^= 0xff;
      return b;
    };
    await expectRefused(await evilImageTar(path.join(tmp, 'flip.tar'), 'flip', [l], { corrupt: flip }), /does not match its digest/);
    const longer = (digest: string, bytes: Buffer) => (digest === sha256(l) ? Buffer.concat([bytes, Buffer.alloc(512)]) : bytes);
    await expectRefused(await evilImageTar(path.join(tmp, 'longer.tar'), 'longer', [l], { corrupt: longer }), /does not match its digest/);

    // streaming into the content store: verified while it streams, nothing committed on a mismatch
    const own = await Store.open(path.join(tmp, 'inproc'));
    const data = Buffer.alloc(1 << 20, 7);
    const lie = await own.content.ingest(Readable.from([data]), { digest: sha256('something else'), size: data.length }).catch((e: unknown) => e);
    expect(lie).toBeInstanceOf(DigestMismatchError);
    const short = await own.content.ingest(Readable.from([data]), { digest: sha256(data), size: data.length - 1 }).catch((e: unknown) => e);
    expect(short).toBeInstanceOf(DigestMismatchError);
    expect(await fs.readdir(own.content.dir)).toEqual([]); // no blob, no temp file

    // a stored layer that rots later: its diff_id is checked while it is unpacked; no snapshot is kept
    const good = await layer();
    const ok = await mbuild(['--root', root, 'load', '-i', await evilImageTar(path.join(tmp, 'rot.tar'), 'rot', [good])]);
    expect(ok.code, ok.stderr).toBe(0);
    const blob = path.join(root, 'blobs', 'sha256', sha256(good).slice(7));
    const bytes = await fs.readFile(blob);
    bytes[600] ^= 0xff;
    await fs.writeFile(blob, bytes);
    const snapsBefore = await fs.readdir(path.join(root, 'snapshots')).catch(() => [] as string[]);
    const r = await buildText(root, tmp, 'FROM rot\nRUN true\n');
    expect(r.code).not.toBe(0);
    expect(errorLines(r)).toEqual([expect.stringMatching(/does not match diff_id/)]);
    const snapsAfter = (await fs.readdir(path.join(root, 'snapshots'))).filter((s) => !snapsBefore.includes(s));
    expect(snapsAfter.filter((s) => s !== 'empty' && !s.startsWith('c-'))).toEqual([]);
    expect(snapsAfter.filter((s) => s.startsWith('c-')).length).toBeLessThanOrEqual(1); // busybox's own layer only
    await mbuild(['--root', root, 'rmi', 'rot']);
  });

  it('item 11: malformed digests are refused before any path is built from them', async () => {
    const S = sentinel.dir;
    const evil = [`sha256:../../../../../../../..${S}/file`, 'sha256:' + 'A'.repeat(64), 'sha256:' + 'a'.repeat(63), 'sha512:' + 'a'.repeat(128), `sha256:${'a'.repeat(64)}/../../x`];
    for (const [i, digest] of evil.entries()) {
      // as the layer digest in a manifest
      const file = await evilImageTar(path.join(tmp, `bad-layer-${i}.tar`), `bad${i}`, [await layer()], { layerDigestOverride: digest });
      await expectRefused(file, /malformed digest/);
      // as the manifest digest in index.json
      const index: E[] = [
        { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
        { name: 'index.json', data: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 2 }] }) },
      ];
      const idx = path.join(tmp, `bad-index-${i}.tar`);
      await fs.writeFile(idx, await tarOf(index));
      await expectRefused(idx, /malformed digest/);
    }
    // on the command line and in the store's own files
    const inspect = await mbuild(['--root', root, 'inspect', `sha256:../../../../..${S}/file`]);
    expect(inspect.code).not.toBe(0);
    expect(errorLines(inspect)).toHaveLength(1);
    const own = await Store.open(path.join(tmp, 'inproc'));
    expect(() => own.content.path(`sha256:../../..${S}/file`)).toThrow(/malformed digest/);
    await expect(own.images.put({ name: 'docker.io/library/x:latest', digest: 'sha256:../x', created: '' })).rejects.toThrow(/malformed/);
    const imagesJson = path.join(root, 'images.json');
    const saved = await fs.readFile(imagesJson, 'utf8');
    const doc = JSON.parse(saved) as { images: unknown[] };
    doc.images.push({ name: 'docker.io/library/hostile:latest', digest: `sha256:../../../..${S}/file`, created: '' });
    await fs.writeFile(imagesJson, JSON.stringify(doc));
    const images = await mbuild(['--root', root, 'images']);
    expect(images.code, images.stderr).toBe(0); // the bad record names nothing; the rest still lists
    expect(images.stdout).toMatch(/^busybox\s+latest/m);
    expect(images.stdout).not.toContain('hostile');
    await fs.writeFile(imagesJson, saved);
    await sentinel.check();
  });

  it('item 15: giant manifests, indexes and configs are refused at 4 MiB', async () => {
    const pad = 'x'.repeat(5 << 20);
    await expectRefused(await evilImageTar(path.join(tmp, 'giant-m.tar'), 'giantm', [await layer()], { manifestExtra: { annotations: { pad } } }), /more than the 4194304 bytes allowed/);
    const giantIndex = path.join(tmp, 'giant-i.tar');
    await fs.writeFile(
      giantIndex,
      await tarOf([
        { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
        { name: 'index.json', data: JSON.stringify({ schemaVersion: 2, manifests: [], annotations: { pad } }) },
      ]),
    );
    await expectRefused(giantIndex, /index\.json is \d+ bytes, more than the 4194304 bytes allowed/);
    const giantDocker = path.join(tmp, 'giant-d.tar');
    await fs.writeFile(giantDocker, await tarOf([{ name: 'manifest.json', data: JSON.stringify([{ Config: 'c.json', RepoTags: ['x:y'], Layers: [], pad }]) }]));
    await expectRefused(giantDocker, /manifest\.json is \d+ bytes, more than the 4194304 bytes allowed/);

    // a giant manifest already in the store (say, written by an older version) is not read whole either
    const own = await Store.open(path.join(tmp, 'inproc'));
    const big = await own.content.putJson({ schemaVersion: 2, config: {}, layers: [], pad });
    await own.images.put({ name: 'docker.io/library/giant:latest', digest: big.digest, created: '' });
    const err = await own.resolveImage('giant').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MbuildError);
    expect((err as Error).message).toMatch(/more than the 4194304 allowed/);
    expect(await exists(path.join(root, 'tmp'))).toBe(true);
  });
});
