/**
 * The attestations of a finished build: the SBOM is scanned once from the stored image's layers;
 * the provenance is completed per exported form of the image (its layer descriptors are the
 * form's). Times: SOURCE_DATE_EPOCH when set (then the invocation id is derived from the build's
 * inputs too, so the attestations and the index digest are reproducible), else the real ones with
 * a random invocation id, as BuildKit writes them.
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Store } from '../../store/store.js';
import type { Descriptor, Platform } from '../../store/oci.js';
import type { Attestation } from './attach.js';
import { buildSteps, mountedSecrets, type BuildRecord } from './capture.js';
import { predicateTypeOf, provenancePredicate, type ProvenanceCapture } from './provenance.js';
import { scanImage } from './sbom/scan.js';
import { spdxDocument, SPDX_PREDICATE_TYPE } from './sbom/spdx.js';
import type { AttestRequest } from './spec.js';

export interface AttestContext {
  /** the frontend attributes buildx would send (build-arg:K, label:K, target, context:NAME, ...) */
  frontendArgs: Record<string, string>;
  dockerfile: string;
  sourceDateEpoch?: Date;
  builderPlatform: Platform;
  /** "Tool: mbuild-VERSION" */
  tool: string;
}

/** Go's time.Time JSON (RFC 3339, fractions only when there are some). */
function goTime(d: Date): string {
  return d.toISOString().replace('.000Z', 'Z');
}

/** BuildKit's identity.NewID: 25 characters of base 36. */
function newId(seed?: Buffer): string {
  const bytes = seed ?? randomBytes(16);
  let n = BigInt('0x' + bytes.subarray(0, 16).toString('hex'));
  let s = '';
  for (let i = 0; i < 25; i++) {
    s += (n % 36n).toString(36);
    n /= 36n;
  }
  return s;
}

export interface PreparedAttestations {
  /** the attestations of the image in one exported form (its manifest's layers) */
  forImage(layers: Descriptor[]): Attestation[];
}

export async function prepareAttestations(store: Store, image: { layers: Descriptor[] }, record: BuildRecord, req: AttestRequest, ctx: AttestContext): Promise<PreparedAttestations> {
  const finishedOn = new Date();
  const sde = ctx.sourceDateEpoch;
  let sbom: Attestation | undefined;
  if (req.sbom) {
    const scan = await scanImage(store, image.layers);
    sbom = { predicateType: SPDX_PREDICATE_TYPE, predicate: spdxDocument(scan.packages, { created: goTime(sde ?? finishedOn), tool: ctx.tool, ...(scan.distro ? { distro: scan.distro } : {}) }) };
  }
  let capture: ProvenanceCapture | undefined;
  if (req.provenance) {
    const { secrets, ssh } = mountedSecrets(record.trace);
    const images = [...record.images.values()].sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
    const seed = sde
      ? createHash('sha256')
          .update(JSON.stringify([record.dockerfileText, ctx.frontendArgs, images, goTime(sde)]))
          .digest()
      : undefined;
    capture = {
      args: ctx.frontendArgs,
      filename: path.basename(ctx.dockerfile) || 'Dockerfile',
      locals: ['context', 'dockerfile'],
      secrets,
      ssh,
      images,
      builderPlatform: ctx.builderPlatform,
      invocationId: newId(seed),
      startedOn: goTime(sde ?? record.startedOn),
      finishedOn: goTime(sde ?? finishedOn),
      dockerfile: Buffer.from(record.dockerfileText),
      steps: buildSteps(record.plan, record.trace, record.images),
    };
  }
  const provenance = req.provenance;
  return {
    forImage(layers) {
      const out: Attestation[] = [];
      // BuildKit's order: the frontend's SBOM, then the provenance its processor adds
      if (sbom) out.push(sbom);
      if (provenance && capture) out.push({ predicateType: predicateTypeOf(provenance.version), predicate: provenancePredicate(capture, provenance, layers) });
      return out;
    },
  };
}
