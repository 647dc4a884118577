/**
 * SLSA provenance of a build, in the shape BuildKit's provenance processor writes it
 * (solver/llbsolver/provenance): SLSA v1 by default (BuildKit's default since v0.13), v0.2 on
 * request. mode=min keeps the request without build-arg:/label: values (completeness.request
 * false then) and no build steps; mode=max adds the build steps, the Dockerfile's text and where
 * each step comes from in it, and the layers each step of the image made.
 */
import type { Descriptor, Platform } from '../../store/oci.js';
import { formatPlatform, imagePurl } from './sbom/purl.js';

export const SLSA1_PREDICATE_TYPE = 'https://slsa.dev/provenance/v1';
export const SLSA02_PREDICATE_TYPE = 'https://slsa.dev/provenance/v0.2';
const BUILD_TYPE_V1 = 'https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md';
const BUILD_TYPE_V02 = 'https://mobyproject.org/buildkit@v1';

export interface ProvenanceOptions {
  mode: 'min' | 'max';
  version: 'v1' | 'v0.2';
  builderId?: string;
  reproducible?: boolean;
}

/** One filesystem step of the build: an image source, a RUN, a COPY/ADD/WORKDIR. */
export interface BuildStep {
  op: Record<string, unknown>;
  /** the steps it reads (indexes into the step list) */
  inputs: number[];
  /** Dockerfile lines, 1-based, inclusive */
  lines?: [number, number];
  /** the index of the layer it made among the image's layers (steps whose layer is in the image) */
  layerIndex?: number;
}

/** What a build tells its provenance: BuildKit's provenance.Capture and job times, mbuild's way. */
export interface ProvenanceCapture {
  /** the frontend request's attributes as buildx sends them: build-arg:K, label:K, target, context:NAME ... */
  args: Record<string, string>;
  /** the Dockerfile's name as given to the frontend (configSource.path) */
  filename: string;
  /** local sources read (the context, the Dockerfile) */
  locals: string[];
  secrets: { id: string; optional?: boolean }[];
  ssh: { id: string; optional?: boolean }[];
  /** base and COPY --from images with the digest they resolved to */
  images: { ref: string; digest: string; platform?: Platform }[];
  builderPlatform: Platform;
  invocationId: string;
  startedOn: string;
  finishedOn: string;
  /** mode=max: the Dockerfile's bytes and the build steps */
  dockerfile: Buffer;
  steps: BuildStep[];
}

const drop = <T extends Record<string, unknown>>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

function digestSet(d: string): Record<string, string> {
  const [alg, hex] = d.split(':');
  return { [alg!]: hex! };
}

/** The SLSA v1 predicate (BuildKit's ProvenancePredicateSLSA1), or its v0.2 form; imageLayers: the image's layers as exported. */
export function provenancePredicate(c: ProvenanceCapture, opts: ProvenanceOptions, imageLayers: Descriptor[] = []): Record<string, unknown> {
  let args: Record<string, string> = {};
  // vcs: attributes are metadata, not request (BuildKit's NewPredicate moves them, in both modes)
  const vcs: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.args)) {
    if (!k.startsWith('vcs:')) args[k] = v;
    else if (v) vcs[k.slice(4)] = v;
  }
  let requestComplete = true;
  if (opts.mode === 'min') {
    // BuildKit's scrubMinRequest: build args and labels may hold what the user would not publish
    const kept = Object.entries(args).filter(([k]) => !k.startsWith('build-arg:') && !k.startsWith('label:'));
    if (kept.length !== Object.keys(args).length) requestComplete = false;
    args = Object.fromEntries(kept);
  }
  const sortedArgs = Object.fromEntries(Object.entries(args).sort(([a], [b]) => (a < b ? -1 : 1)));
  const request = drop({
    frontend: 'dockerfile.v0',
    args: Object.keys(sortedArgs).length ? sortedArgs : undefined,
    secrets: opts.mode === 'max' && c.secrets.length ? c.secrets : undefined,
    ssh: opts.mode === 'max' && c.ssh.length ? c.ssh : undefined,
    locals: c.locals.length ? c.locals.map((name) => ({ name })) : undefined,
  });
  const seen = new Set<string>();
  const resolvedDependencies = c.images
    .map((i) => ({ uri: imagePurl(i.ref, i.platform), digest: digestSet(i.digest) }))
    .filter((m) => !seen.has(m.uri + m.digest) && seen.add(m.uri + m.digest));
  // a local context is a material without a digest: the materials are incomplete (as BuildKit says)
  const incomplete = c.locals.length > 0;

  let buildConfig: Record<string, unknown> | undefined;
  const buildkitMetadata: Record<string, unknown> = Object.keys(vcs).length ? { vcs } : {};
  if (opts.mode === 'max') {
    buildConfig = {
      llbDefinition: c.steps.map((s, i) => drop({ id: `step${i}`, op: s.op, inputs: s.inputs.length ? s.inputs.map((n) => `step${n}:0`) : undefined })),
    };
    const locations: Record<string, unknown> = {};
    const layers: Record<string, Descriptor[][]> = {};
    c.steps.forEach((s, i) => {
      if (s.lines) locations[`step${i}`] = { locations: [{ ranges: [{ start: { line: s.lines[0] }, end: { line: s.lines[1] } }] }] };
      // as BuildKit: the step's result as the chain of layers up to its own
      if (s.layerIndex !== undefined && s.layerIndex < imageLayers.length)
        layers[`step${i}:0`] = [imageLayers.slice(0, s.layerIndex + 1).map((d) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size }))];
    });
    buildkitMetadata.source = { locations, infos: [{ filename: c.filename, language: 'Dockerfile', data: c.dockerfile.toString('base64') }] };
    if (Object.keys(layers).length) buildkitMetadata.layers = layers;
  }

  const configSource = { path: c.filename };
  const builderPlatform = formatPlatform(c.builderPlatform);
  if (opts.version === 'v0.2') {
    return drop({
      builder: { id: opts.builderId ?? '' },
      buildType: BUILD_TYPE_V02,
      materials: resolvedDependencies.length ? resolvedDependencies : undefined,
      invocation: { configSource: { entryPoint: c.filename }, parameters: request, environment: { platform: builderPlatform } },
      buildConfig,
      metadata: drop({
        buildInvocationID: c.invocationId,
        buildStartedOn: c.startedOn,
        buildFinishedOn: c.finishedOn,
        completeness: { parameters: requestComplete, environment: true, materials: !incomplete },
        reproducible: opts.reproducible ?? false,
        'https://mobyproject.org/buildkit@v1#metadata': buildkitMetadata,
      }),
    });
  }
  return {
    buildDefinition: drop({
      buildType: BUILD_TYPE_V1,
      externalParameters: { configSource, request },
      internalParameters: drop({ buildConfig, builderPlatform }),
      resolvedDependencies: resolvedDependencies.length ? resolvedDependencies : undefined,
    }),
    runDetails: {
      builder: { id: opts.builderId ?? '' },
      metadata: drop({
        invocationId: c.invocationId,
        startedOn: c.startedOn,
        finishedOn: c.finishedOn,
        buildkit_metadata: buildkitMetadata,
        buildkit_completeness: { request: requestComplete, resolvedDependencies: !incomplete },
        buildkit_reproducible: opts.reproducible ? true : undefined,
      }),
    },
  };
}

export function predicateTypeOf(version: ProvenanceOptions['version']): string {
  return version === 'v0.2' ? SLSA02_PREDICATE_TYPE : SLSA1_PREDICATE_TYPE;
}
