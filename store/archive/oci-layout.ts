/** Plan the import of an OCI image layout (oci-layout, index.json, blobs/sha256/...). */
import { MbuildError } from '../../util/errors.js';
import type { Descriptor, Platform } from '../oci.js';
import { formatReference, parseReference } from '../reference.js';
import {
  badArchive,
  blobFor,
  checkDescriptor,
  checkDiffIds,
  checkManifest,
  isImageConfigType,
  isIndexType,
  isManifestType,
  isObject,
  readBlobJson,
  type BlobFile,
  type PlanOptions,
  type PlannedImage,
} from './plan.js';
import type { SpooledArchive } from './spool.js';

export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
const MAX_INDEX_DEPTH = 4;

/** A canonical `domain/path:tag` name, or undefined when the reference has no tag (digest only). */
function taggedName(ref: string): string | undefined {
  const r = parseReference(ref);
  if (!r.tag) return undefined;
  return formatReference({ domain: r.domain, path: r.path, tag: r.tag });
}

/**
 * The image name a top-level index.json descriptor carries: containerd's full-name annotation,
 * else the OCI ref.name when it is a whole reference (`busybox:latest`, `ghcr.io/a/b:1`). A bare
 * tag such as `latest` names no image.
 */
export function nameFromAnnotations(ann: Record<string, string> | undefined, onProgress: (m: string) => void): string | undefined {
  const full = ann?.[ANNOTATION_IMAGE_NAME];
  if (full) return taggedName(full);
  const ref = ann?.[ANNOTATION_REF_NAME];
  if (ref && /[/:]/.test(ref)) {
    try {
      return taggedName(ref);
    } catch {
      onProgress(`ignoring ${ANNOTATION_REF_NAME} "${ref.slice(0, 100)}": not an image reference`);
    }
  }
  return undefined;
}

function platformString(p: Platform | undefined): string {
  if (!p) return 'unknown';
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}

/** What kind of thing a descriptor points at, by media type, else by looking at its JSON. */
async function kindOf(sp: SpooledArchive, d: Descriptor, what: string): Promise<'index' | 'manifest' | 'other'> {
  if (isIndexType(d.mediaType)) return 'index';
  if (isManifestType(d.mediaType)) return 'manifest';
  if (d.mediaType) return 'other';
  const json = await readBlobJson(sp, d, what);
  if (isObject(json) && Array.isArray(json.manifests)) return 'index';
  if (isObject(json) && isObject(json.config)) return 'manifest';
  return 'other';
}

/** The manifest for `want` in a (possibly nested) index. */
async function pickPlatform(sp: SpooledArchive, d: Descriptor, want: Platform, depth: number): Promise<Descriptor> {
  if (depth > MAX_INDEX_DEPTH) throw badArchive(`indexes nested more than ${MAX_INDEX_DEPTH} deep`);
  const json = await readBlobJson(sp, d, 'index');
  if (!isObject(json) || !Array.isArray(json.manifests)) throw badArchive(`index ${d.digest} has no manifests list`);
  const all = json.manifests.map((m, i) => checkDescriptor(m, `entry ${i + 1} of index ${d.digest}`));
  const matches = all.filter((m) => m.platform?.os === want.os && m.platform.architecture === want.architecture);
  // exact variant first; without a wanted variant, entries without one first
  matches.sort((a, b) => Number(a.platform?.variant !== want.variant) - Number(b.platform?.variant !== want.variant));
  for (const m of matches) {
    const kind = await kindOf(sp, m, 'manifest');
    if (kind === 'manifest') return m;
    if (kind === 'index') return pickPlatform(sp, m, want, depth + 1);
  }
  const have = [...new Set(all.map((m) => platformString(m.platform)))].join(', ');
  throw new MbuildError('MBUILD_NO_MATCHING_PLATFORM', `index ${d.digest} has no ${platformString(want)} image (it has: ${have || 'nothing'})`);
}

/** Verify one image manifest and everything it references; return what to commit. */
async function planManifest(sp: SpooledArchive, d: Descriptor): Promise<{ manifest: BlobFile; blobs: BlobFile[] }> {
  const what = `manifest ${d.digest}`;
  const manifestFile = blobFor(sp, d, 'manifest');
  const manifest = checkManifest(await readBlobJson(sp, d, 'manifest'), what);
  if (manifest.mediaType && d.mediaType && manifest.mediaType !== d.mediaType) {
    throw badArchive(`${what} says its mediaType is ${manifest.mediaType}, but index.json says ${d.mediaType}`);
  }
  const blobs: BlobFile[] = [];
  const cfg = manifest.config;
  const cfgFile = blobFor(sp, cfg, `config of ${what}`);
  if (isImageConfigType(cfg.mediaType)) {
    checkDiffIds(await readBlobJson(sp, cfg, `config of ${what}`), manifest.layers.length, `config ${cfg.digest}`);
  }
  blobs.push({ digest: cfg.digest, size: cfg.size, file: cfgFile.file });
  manifest.layers.forEach((l, i) => {
    const f = blobFor(sp, l, `layer ${i + 1} of ${what}`);
    blobs.push({ digest: l.digest, size: l.size, file: f.file });
  });
  return { manifest: { digest: d.digest, size: d.size, file: manifestFile.file }, blobs };
}

/**
 * An index whose archive holds two or more complete platform images, or one with its complete
 * attestation manifest, is kept whole (the index, its complete manifests, their configs and layers;
 * attestation manifests too when complete): a name keeps its attestations, as the build's does.
 * Otherwise undefined: the platform's manifest is picked as before (a single image in an index).
 */
async function planWholeIndex(sp: SpooledArchive, d: Descriptor): Promise<Omit<PlannedImage, 'names'> | undefined> {
  const json = await readBlobJson(sp, d, 'index');
  if (!isObject(json) || !Array.isArray(json.manifests)) return undefined;
  const blobs: BlobFile[] = [];
  let platforms = 0;
  let attestations = 0;
  for (const [i, raw] of json.manifests.entries()) {
    const m = checkDescriptor(raw, `entry ${i + 1} of index ${d.digest}`);
    if (!sp.blob(m.digest) || (await kindOf(sp, m, 'manifest')) !== 'manifest') continue;
    const planned = await planManifest(sp, m).catch((err: unknown) => {
      if (err instanceof MbuildError && err.code === 'MBUILD_BAD_ARCHIVE') return undefined; // incomplete: left out
      throw err;
    });
    if (!planned) continue;
    if (m.platform && m.platform.os !== 'unknown') platforms++;
    else if (m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') attestations++;
    blobs.push(...planned.blobs, planned.manifest);
  }
  if (platforms < 2 && !(platforms === 1 && attestations > 0)) return undefined;
  return { blobs, manifest: { kind: 'file', ...blobFor(sp, d, 'index'), digest: d.digest, size: d.size } };
}

export async function planOciLayout(sp: SpooledArchive, opts: PlanOptions): Promise<PlannedImage[]> {
  const layoutFile = sp.get('oci-layout');
  if (layoutFile) {
    const layout = await sp.readJson(layoutFile, 'oci-layout');
    const version = isObject(layout) ? layout.imageLayoutVersion : undefined;
    if (version !== '1.0.0') throw badArchive(`unsupported OCI image layout version ${JSON.stringify(version)} (expected "1.0.0")`);
  }
  const indexFile = sp.get('index.json');
  if (!indexFile) throw badArchive('the OCI layout has no index.json');
  const index = await sp.readJson(indexFile, 'index.json');
  if (!isObject(index) || !Array.isArray(index.manifests)) throw badArchive('index.json has no manifests list');
  if (index.schemaVersion !== undefined && index.schemaVersion !== 2) throw badArchive(`index.json has schemaVersion ${JSON.stringify(index.schemaVersion)}, expected 2`);

  const byDigest = new Map<string, PlannedImage>();
  const order: string[] = [];
  for (const [i, raw] of index.manifests.entries()) {
    const top = checkDescriptor(raw, `entry ${i + 1} of index.json`);
    const kind = await kindOf(sp, top, 'manifest');
    let target: Descriptor;
    const whole = kind === 'index' ? await planWholeIndex(sp, top) : undefined;
    if (whole) {
      // a multi-platform image: the index itself is what the name holds (every platform it has)
      const name = nameFromAnnotations(top.annotations, opts.onProgress);
      let plan = byDigest.get(top.digest);
      if (!plan) {
        plan = { names: [], ...whole };
        byDigest.set(top.digest, plan);
        order.push(top.digest);
      }
      if (name && !plan.names.includes(name)) plan.names.push(name);
      continue;
    }
    if (kind === 'manifest') target = top;
    else if (kind === 'index') target = await pickPlatform(sp, top, opts.platform, 1);
    else {
      opts.onProgress(`skipping ${top.digest}: ${top.mediaType || 'unknown media type'} is not an image`);
      continue;
    }
    const name = nameFromAnnotations(top.annotations, opts.onProgress);
    let plan = byDigest.get(target.digest);
    if (!plan) {
      const { manifest, blobs } = await planManifest(sp, target);
      plan = { names: [], blobs, manifest: { kind: 'file', ...manifest } };
      byDigest.set(target.digest, plan);
      order.push(target.digest);
    }
    if (name && !plan.names.includes(name)) plan.names.push(name);
  }
  if (order.length === 0) throw badArchive('index.json lists no image');
  return order.map((d) => byDigest.get(d)!);
}
