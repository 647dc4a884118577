/** Image commands on the local store: load, save, images, rmi, inspect. */
import { parseArgs } from './args.js';
import { Store } from '../../store/store.js';
import { familiarName, normalizeName } from '../../store/reference.js';
import { UsageError, ImageNotFoundError } from '../../util/errors.js';
import { humanBytes } from '../../util/format.js';

export async function loadCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [{ names: ['-i', '--input'], key: 'input', kind: 'string' }, { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' }]);
  const input = (flags.input as string | undefined) ?? positional[0];
  if (!input) throw new UsageError('"mbuild load" needs -i FILE');
  const store = await Store.open(root);
  const { importArchive } = await import('../../store/archive/import.js');
  const loaded = await importArchive(store, input);
  for (const l of loaded) process.stdout.write(l.name ? `Loaded image: ${familiarName(l.name)}\n` : `Loaded image ID: ${l.digest}\n`);
  return 0;
}

export async function saveCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-o', '--output'], key: 'output', kind: 'string' },
    { names: ['--format'], key: 'format', kind: 'string' },
  ]);
  if (positional.length !== 1) throw new UsageError('"mbuild save" needs one image name');
  const dest = (flags.output as string | undefined) ?? '-';
  const format = (flags.format as string | undefined) ?? 'docker';
  if (format !== 'docker' && format !== 'oci') throw new UsageError(`--format ${format}: use docker or oci`);
  const store = await Store.open(root);
  const img = await store.requireImage(positional[0]);
  const names = img.name ? [img.name] : [];
  const { exportImage } = await import('../../store/archive/export.js');
  const { distributable } = await import('../../store/compress.js');
  const { manifestDigest } = await distributable(store, img.manifestDigest);
  await exportImage(store, { manifestDigest, names }, { type: format, dest });
  return 0;
}

function ago(iso: string): string {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return 'unknown';
  if (s < 60) return `${Math.floor(s)} seconds ago`;
  if (s < 3600) return `${Math.floor(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} hours ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

export async function imagesCommand(root: string, argv: string[]): Promise<number> {
  const { flags } = parseArgs(argv, [{ names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' }]);
  const store = await Store.open(root);
  const rows: string[][] = [['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE']];
  for (const rec of await store.images.list()) {
    const img = await store.resolveImage(rec.digest);
    if (!img) continue;
    const fam = familiarName(rec.name);
    const colon = fam.lastIndexOf(':');
    const repo = colon > fam.lastIndexOf('/') ? fam.slice(0, colon) : fam;
    const tag = colon > fam.lastIndexOf('/') ? fam.slice(colon + 1) : '<none>';
    const size = img.manifest.layers.reduce((a, l) => a + l.size, 0);
    const id = img.configDigest.slice(7, 19);
    if (flags.quiet) {
      process.stdout.write(id + '\n');
      continue;
    }
    rows.push([repo, tag, id, img.config.created ? ago(img.config.created) : 'unknown', humanBytes(size)]);
  }
  if (!flags.quiet) {
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const r of rows) process.stdout.write(r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c] + 3))).join('') + '\n');
  }
  return 0;
}

export async function rmiCommand(root: string, argv: string[]): Promise<number> {
  const { positional } = parseArgs(argv, [{ names: ['-f', '--force'], key: 'force', kind: 'bool' }]);
  if (!positional.length) throw new UsageError('"mbuild rmi" needs at least one image name');
  const store = await Store.open(root);
  let code = 0;
  for (const name of positional) {
    if (await store.images.remove(normalizeName(name))) process.stdout.write(`Untagged: ${familiarName(normalizeName(name))}\n`);
    else {
      process.stderr.write(`error: ${new ImageNotFoundError(name).message}\n`);
      code = 1;
    }
  }
  return code;
}

export async function inspectCommand(root: string, argv: string[]): Promise<number> {
  const { positional } = parseArgs(argv, []);
  if (positional.length !== 1) throw new UsageError('"mbuild inspect" needs one image name');
  const store = await Store.open(root);
  const img = await store.requireImage(positional[0]);
  const names = (await store.images.list()).filter((r) => r.digest === img.manifestDigest).map((r) => familiarName(r.name));
  const out = {
    Id: img.configDigest,
    RepoTags: names,
    Digest: img.manifestDigest,
    Created: img.config.created,
    Author: img.config.author,
    Architecture: img.config.architecture,
    Os: img.config.os,
    Config: img.config.config ?? {},
    RootFS: img.config.rootfs,
    History: img.config.history ?? [],
    Size: img.manifest.layers.reduce((a, l) => a + l.size, 0),
    Manifest: img.manifest,
  };
  process.stdout.write(JSON.stringify([out], null, 2) + '\n');
  return 0;
}
