/**
 * Plan the import of a `docker save` archive (manifest.json with Config, RepoTags, Layers) as an
 * OCI image: the config blob kept byte for byte, every layer stored gzip-compressed after its
 * diff_id was checked against the config, and a new OCI manifest.
 */
import path from 'node:path';
import { DigestMismatchError, MbuildError } from '../../util/errors.js';
import { MediaType, type Manifest } from '../oci.js';
import { normalizeName, parseReference } from '../reference.js';
import { toGzipLayer, mapLimit, type GzipLayer } from './layers.js';
import { badArchive, checkDiffIds, isObject, type PlanOptions, type PlannedImage } from './plan.js';
import type { SpooledArchive, SpooledFile } from './spool.js';

const LAYER_CONCURRENCY = 3;

function repoTag(tag: unknown, what: string): string {
  if (typeof tag !== 'string') throw badArchive(`${what} is not a string`);
  const ref = parseReference(tag);
  if (!ref.tag || ref.digest) throw new MbuildError('MBUILD_BAD_REFERENCE', `${what} "${tag.slice(0, 200)}" is not a name:tag reference`);
  return normalizeName(tag);
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

export async function planDockerSave(sp: SpooledArchive, opts: PlanOptions): Promise<PlannedImage[]> {
  const items = await sp.readJson(sp.require('manifest.json', 'manifest.json'), 'manifest.json');
  if (!Array.isArray(items)) throw badArchive('manifest.json is not a list of images');
  if (items.length === 0) throw badArchive('manifest.json lists no image');

  // one conversion per spooled layer file, even when several images share it
  const converted = new Map<string, Promise<GzipLayer>>();
  let outCount = 0;
  const convert = (f: SpooledFile): Promise<GzipLayer> => {
    let p = converted.get(f.file);
    if (!p) {
      opts.onProgress(`Loading layer ${f.digest.slice(7, 19)} (${mb(f.size)})`);
      p = toGzipLayer(f, path.join(sp.dir, `gzip-${++outCount}`));
      p.catch(() => {}); // awaited below; do not report it twice
      converted.set(f.file, p);
    }
    return p;
  };

  const plans: PlannedImage[] = [];
  for (const [k, item] of items.entries()) {
    const what = `image ${k + 1} of manifest.json`;
    if (!isObject(item)) throw badArchive(`${what} is not an object`);
    if (!Array.isArray(item.Layers)) throw badArchive(`${what} has no Layers list`);
    const repoTags = item.RepoTags ?? [];
    if (!Array.isArray(repoTags)) throw badArchive(`RepoTags of ${what} is not a list`);
    const names = repoTags.map((t, i) => repoTag(t, `RepoTags[${i}] of ${what}`));

    // resolve every path first: a `..` or absolute path is refused before any work is done
    const cfgFile = sp.require(item.Config, `Config of ${what}`);
    const layerFiles = item.Layers.map((l, i) => sp.require(l, `layer ${i + 1} of ${what}`));

    const cfgName = /^([a-f0-9]{64})\.json$/.exec(path.posix.basename(cfgFile.name));
    if (cfgName && cfgFile.digest !== `sha256:${cfgName[1]}`) {
      throw new DigestMismatchError(`config ${cfgFile.name} does not match its name (its bytes hash to ${cfgFile.digest})`);
    }
    const diffIds = checkDiffIds(await sp.readJson(cfgFile, `config ${cfgFile.name}`), layerFiles.length, `config ${cfgFile.name}`);

    const layers = await mapLimit(layerFiles, LAYER_CONCURRENCY, (f) => convert(f));
    layers.forEach((l, i) => {
      if (l.diffId !== diffIds[i]) {
        throw new DigestMismatchError(`layer ${i + 1} (${layerFiles[i].name}) of ${what} has diff_id ${l.diffId}, but its config says ${diffIds[i]}`);
      }
    });

    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.manifest,
      config: { mediaType: MediaType.config, digest: cfgFile.digest, size: cfgFile.size },
      layers: layers.map((l) => ({ mediaType: MediaType.layerGzip, digest: l.digest, size: l.size })),
    };
    plans.push({
      names,
      blobs: [{ digest: cfgFile.digest, size: cfgFile.size, file: cfgFile.file }, ...layers.map((l) => ({ digest: l.digest, size: l.size, file: l.file }))],
      manifest: { kind: 'json', value: manifest },
    });
  }
  return plans;
}
