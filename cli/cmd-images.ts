/** Image commands on the local store: load, save, images, tag, rmi, inspect, history. */
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from '../util/args.js';
import { Store } from '../store/store.js';
import { familiarName, normalizeName, parseReference } from '../store/reference.js';
import { UsageError, ImageNotFoundError, MbuildError } from '../util/errors.js';
import { humanBytes } from '../util/format.js';
import { forgetImageId, knownImages, resolveImageArg, resolvePlatform } from './image-ref.js';
import { platformString } from '../util/platform.js';

export async function loadCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [{ names: ['-i', '--input'], key: 'input', kind: 'string' }, { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' }]);
  if (positional.length) throw new UsageError(`"mbuild load" takes no arguments (got ${positional[0]}): use -i FILE or stdin`);
  let input = flags.input as string | undefined;
  const store = await Store.open(root);
  let spooled: string | undefined;
  try {
    if (!input) {
      // `mbuild load < image.tar`, as docker load reads stdin
      if (process.stdin.isTTY) throw new UsageError('requested load from stdin, but stdin is a terminal: use -i FILE or redirect a tar in');
      spooled = await store.mkTemp('stdin');
      input = path.join(spooled, 'image.tar');
      await new Promise<void>((resolve, reject) => {
        const out = createWriteStream(input!);
        process.stdin.pipe(out);
        out.on('finish', resolve);
        out.on('error', reject);
        process.stdin.on('error', reject);
      });
      if ((await fs.stat(input)).size === 0) throw new UsageError('requested load from stdin, but stdin is empty');
    }
    const { importArchive } = await import('../store/archive/import.js');
    const loaded = await importArchive(store, input);
    for (const l of loaded) process.stdout.write(l.name ? `Loaded image: ${familiarName(l.name)}\n` : `Loaded image ID: ${l.digest}\n`);
    return 0;
  } finally {
    if (spooled) await fs.rm(spooled, { recursive: true, force: true });
  }
}

export async function saveCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-o', '--output'], key: 'output', kind: 'string' },
    { names: ['--format'], key: 'format', kind: 'string' },
  ]);
  if (positional.length !== 1) throw new UsageError('"mbuild save" needs one image (name or ID)');
  const dest = (flags.output as string | undefined) ?? '-';
  if (dest === '-' && process.stdout.isTTY) throw new UsageError('cowardly refusing to save to a terminal: use -o FILE or redirect stdout');
  const format = (flags.format as string | undefined) ?? 'docker';
  if (format !== 'docker' && format !== 'oci') throw new UsageError(`--format ${format}: use docker or oci`);
  const store = await Store.open(root);
  const img = await resolveImageArg(store, positional[0]);
  // saved by name: that name; by ID: every name the image has (as docker save does)
  const byName = img.names.find((n) => n === normalizeNameSafe(positional[0]));
  const names = byName ? [byName] : img.names;
  const { exportImage } = await import('../store/archive/export.js');
  const { distributable } = await import('../store/compress.js');
  const { distributableIndex } = await import('../store/compress.js');
  // a multi-platform image saves whole as OCI (a docker archive holds one platform: this machine's)
  const complete = img.indexDigest ? (await Promise.all((await store.content.readJson<{ manifests: { digest: string }[] }>(img.indexDigest)).manifests.map((d) => store.content.has(d.digest)))).every(Boolean) : false;
  const whole = img.indexDigest && complete && format === 'oci' ? await distributableIndex(store, img.indexDigest) : undefined;
  const { manifestDigest } = whole ? { manifestDigest: whole.digest } : await distributable(store, img.manifestDigest);
  await exportImage(store, { manifestDigest, names }, { type: format, dest });
  return 0;
}

function normalizeNameSafe(s: string): string | undefined {
  try {
    return normalizeName(s);
  } catch {
    return undefined;
  }
}

function ago(iso: string | undefined): string {
  const s = iso ? Math.max(0, (Date.now() - Date.parse(iso)) / 1000) : NaN;
  if (!Number.isFinite(s)) return 'N/A';
  if (s < 60) return `${Math.floor(s)} seconds ago`;
  if (s < 3600) return `${Math.floor(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} hours ago`;
  if (s < 86400 * 14) return `${Math.floor(s / 86400)} days ago`;
  if (s < 86400 * 60) return `${Math.floor(s / 86400 / 7)} weeks ago`;
  if (s < 86400 * 730) return `${Math.floor(s / 86400 / 30)} months ago`;
  return `${Math.floor(s / 86400 / 365)} years ago`;
}

function table(rows: string[][]): void {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) process.stdout.write(r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c] + 3))).join('') + '\n');
}

function splitName(name: string): { repo: string; tag: string } {
  const fam = familiarName(name);
  const colon = fam.lastIndexOf(':');
  return colon > fam.lastIndexOf('/') ? { repo: fam.slice(0, colon), tag: fam.slice(colon + 1) } : { repo: fam, tag: '<none>' };
}

/** `images [REPOSITORY[:TAG]]`: docker's filter (the tag part may hold * wildcards, as may the repository). */
function matcher(arg: string | undefined): (name: string | undefined) => boolean {
  if (!arg) return () => true;
  const glob = (p: string) => new RegExp('^' + p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*') + '$');
  const colon = arg.lastIndexOf(':');
  const hasTag = colon > arg.lastIndexOf('/');
  const repoPat = hasTag ? arg.slice(0, colon) : arg;
  const tagPat = hasTag ? arg.slice(colon + 1) : undefined;
  const repoRe = glob(repoPat);
  return (name) => {
    if (!name) return false;
    const { repo, tag } = splitName(name);
    const full = splitName(name).repo;
    const canonicalRepo = name.slice(0, name.lastIndexOf(':') > name.lastIndexOf('/') ? name.lastIndexOf(':') : name.length);
    return (repoRe.test(repo) || repoRe.test(full) || repoRe.test(canonicalRepo)) && (tagPat === undefined || glob(tagPat).test(tag));
  };
}

export async function imagesCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' },
    { names: ['--digests'], key: 'digests', kind: 'bool' },
    { names: ['--no-trunc'], key: 'noTrunc', kind: 'bool' },
    { names: ['-a', '--all'], key: 'all', kind: 'bool' },
  ]);
  if (positional.length > 1) throw new UsageError('"mbuild images" takes at most one REPOSITORY[:TAG]');
  const match = matcher(positional[0]);
  const store = await Store.open(root);
  const header = ['REPOSITORY', 'TAG', ...(flags.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
  const rows: string[][] = [header];
  const seenIds = new Set<string>();
  for (const [id, e] of await knownImages(store)) {
    const names = e.names.length ? e.names.filter(match) : positional[0] ? [] : [undefined];
    if (!names.length) continue;
    const img = await resolvePlatform(store, e.manifest).catch(() => undefined);
    if (!img) continue;
    let size = img.manifest.layers.reduce((a, l) => a + l.size, 0);
    if (img.indexDigest) {
      // a multi-platform image: what its platforms in the store hold together
      size = 0;
      for (const d of await store.indexEntries(img.indexDigest)) {
        const m = await store.content.readJson<{ layers: { size: number }[] }>(d.digest).catch(() => undefined);
        size += m?.layers.reduce((a, l) => a + l.size, 0) ?? 0;
      }
    }
    const shown = flags.noTrunc ? id : id.slice(7, 19);
    if (flags.quiet) {
      if (!seenIds.has(id)) process.stdout.write(shown + '\n');
      seenIds.add(id);
      continue;
    }
    for (const n of names) {
      const { repo, tag } = n ? splitName(n) : { repo: '<none>', tag: '<none>' };
      rows.push([repo, tag, ...(flags.digests ? [e.manifest] : []), shown, ago(img.config.created), humanBytes(size)]);
    }
  }
  if (!flags.quiet) table(rows);
  return 0;
}

export async function tagCommand(root: string, argv: string[]): Promise<number> {
  const { positional } = parseArgs(argv, []);
  if (positional.length !== 2) throw new UsageError('"mbuild tag" needs 2 arguments: SOURCE_IMAGE TARGET_IMAGE');
  const store = await Store.open(root);
  const img = await resolveImageArg(store, positional[0]);
  const target = normalizeName(positional[1]);
  if (parseReference(target).digest) throw new UsageError(`mbuild tag ${positional[1]}: a target name cannot hold a digest`);
  await store.images.put({ name: target, digest: img.indexDigest ?? img.manifestDigest, created: new Date().toISOString() });
  return 0;
}

export async function rmiCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-f', '--force'], key: 'force', kind: 'bool' },
  ]);
  if (!positional.length) throw new UsageError('"mbuild rmi" needs at least one image (name or ID)');
  const store = await Store.open(root);
  let code = 0;
  for (const arg of positional) {
    try {
      const asName = normalizeNameSafe(arg);
      if (asName && (await store.images.get(asName))) {
        await store.images.remove(asName);
        process.stdout.write(`Untagged: ${familiarName(asName)}\n`);
        continue;
      }
      // an image ID (or unique prefix): every name goes, and the image with them
      const img = await resolveImageArg(store, arg);
      if (img.names.length > 1 && !flags.force) throw new MbuildError('MBUILD_CONFLICT', `unable to delete ${img.id.slice(7, 19)} (must be forced): the image has ${img.names.length} names (${img.names.map(familiarName).join(', ')})`);
      for (const n of img.names) {
        await store.images.remove(n);
        process.stdout.write(`Untagged: ${familiarName(n)}\n`);
      }
      await forgetImageId(store, img.id);
      process.stdout.write(`Deleted: ${img.id}\n`);
    } catch (err) {
      if (!(err instanceof MbuildError)) throw err;
      process.stderr.write(`error: ${err instanceof ImageNotFoundError ? new ImageNotFoundError(arg).message : err.message}\n`);
      code = 1;
    }
  }
  return code;
}

export async function inspectCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-f', '--format'], key: 'format', kind: 'string' },
    { names: ['--type'], key: 'type', kind: 'string' },
  ]);
  if (!positional.length) throw new UsageError('"mbuild inspect" needs at least one image (name or ID)');
  if (flags.type !== undefined && flags.type !== 'image') throw new UsageError(`--type ${String(flags.type)}: mbuild has only images`);
  const store = await Store.open(root);
  const out: Record<string, unknown>[] = [];
  let code = 0;
  for (const arg of positional) {
    try {
      const img = await resolveImageArg(store, arg);
      out.push({
        Id: img.id,
        RepoTags: img.names.map(familiarName),
        RepoDigests: [],
        Digest: img.manifestDigest,
        Parent: '',
        Comment: '',
        Created: img.config.created,
        Author: img.config.author ?? '',
        Config: img.config.config ?? {},
        Architecture: img.config.architecture,
        ...(img.config.variant ? { Variant: img.config.variant } : {}),
        Os: img.config.os,
        Size: img.manifest.layers.reduce((a, l) => a + l.size, 0),
        RootFS: img.config.rootfs,
        History: img.config.history ?? [],
        Manifest: img.manifest,
        // a multi-platform image: its index and the platforms it holds (the fields above are one platform's)
        ...(img.indexDigest ? { Index: img.indexDigest, Platforms: (await store.indexEntries(img.indexDigest)).map((e) => platformString(e.platform!)) } : {}),
      });
    } catch (err) {
      if (!(err instanceof MbuildError)) throw err;
      process.stderr.write(`error: ${err.message}\n`);
      code = 1;
    }
  }
  if (flags.format !== undefined) {
    const { renderTemplate } = await import('./go-template.js');
    for (const o of out) process.stdout.write(renderTemplate(flags.format as string, o) + '\n');
  } else process.stdout.write(JSON.stringify(out, null, 4) + '\n');
  return code;
}

export async function historyCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool' },
    { names: ['--no-trunc'], key: 'noTrunc', kind: 'bool' },
    { names: ['-H', '--human'], key: 'human', kind: 'bool' },
  ]);
  if (positional.length !== 1) throw new UsageError('"mbuild history" needs one image (name or ID)');
  const store = await Store.open(root);
  const img = await resolveImageArg(store, positional[0]);
  const human = flags.human !== false;
  const history = [...(img.config.history ?? [])];
  // the layers in order, matched to the history entries that made one
  const sizes = img.manifest.layers.map((l) => l.size);
  let li = 0;
  const rows = history.map((h) => ({ h, size: h.empty_layer ? 0 : (sizes[li++] ?? 0) })).reverse();
  const id = flags.noTrunc ? img.id : img.id.slice(7, 19);
  if (flags.quiet) {
    process.stdout.write(rows.map((_, i) => (i === 0 ? id : '<missing>')).join('\n') + '\n');
    return 0;
  }
  const trunc = (s: string, n: number) => (flags.noTrunc || s.length <= n ? s : s.slice(0, n - 1) + '…');
  table([
    ['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'],
    ...rows.map(({ h, size }, i) => [
      i === 0 ? id : '<missing>',
      human ? ago(h.created) : (h.created ?? ''),
      trunc((h.created_by ?? '').replace(/\s+/g, ' '), 45),
      human ? humanBytes(size) : String(size),
      h.comment ?? '',
    ]),
  ]);
  return 0;
}
