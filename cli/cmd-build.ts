/** `mbuild build`: parse flags (build-flags.ts), build, tag, write outputs, push, write metadata. */
import { begin, span } from '../util/trace.js';
import { isRootless } from '../util/rootless.js';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { createReadStream, promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import os from 'node:os';
import { buildArgValues, parseArgs } from '../util/args.js';
import { ociMediatypesFor, parseOutput, type OutputSpec } from '../builder/executor/output-spec.js';
import { BUILD_FLAGS, REFUSED } from './build-flags.js';
import { createProgress, progressMode, type Progress } from './progress.js';
import { cloneGit, fetchUrl, isGitUrl, isUrl, resolveContext } from './context-input.js';
import { Store } from '../store/store.js';
import { build, type BuildResult } from '../builder/executor/build.js';
import { UsageError, MbuildError } from '../util/errors.js';
import type { NetworkMode } from '../builder/steps/contract.js';
import { PREDEFINED_ARGS } from '../builder/plan/plan.js';
import { writeFileAtomic } from '../store/fsutil.js';

export { BUILD_FLAGS };

type Flags = Record<string, string | boolean | string[] | undefined>;

function keyValues(list: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`${flag} ${kv}: expected KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/**
 * `--add-host HOST:IP` (buildx also takes HOST=IP; an IPv6 address may be in brackets). IP
 * `host-gateway` is Docker's name for the host as RUN steps reach it: buildx asks the builder for
 * it (dockerd answers with docker0's address); here it is the address of mbuild's bridge, a host
 * address whatever a step's network mode (as docker0's is with --network host); rootless, the
 * slirp4netns gateway.
 */
function parseAddHosts(list: string[]): { host: string; ip: string }[] {
  return list.map((h) => {
    const eq = h.indexOf('=');
    const cut = eq > 0 ? eq : h.indexOf(':');
    const host = cut > 0 ? h.slice(0, cut) : '';
    const ip = cut > 0 ? h.slice(cut + 1).replace(/^\[(.*)\]$/, '$1') : '';
    if (!host || !ip) throw new UsageError(`--add-host ${h}: expected HOST:IP`);
    if (ip !== 'host-gateway' && !isIP(ip)) throw new UsageError(`--add-host ${h}: invalid IP address "${ip}" (expected HOST:IP or HOST:host-gateway)`);
    return { host, ip };
  });
}

/** The /etc/hosts lines, host-gateway resolved (the bridge is made when it is not there yet). */
async function hostLines(entries: { host: string; ip: string }[]): Promise<string> {
  let gateway: string | undefined;
  let out = '';
  for (const { host, ip } of entries) {
    if (ip === 'host-gateway' && gateway === undefined) {
      const { planNetwork } = await import('../builder/sandbox/network/index.js');
      try {
        // rootless: slirp4netns's gateway, the host as a step reaches it there
        const net = await planNetwork('bridge');
        gateway = net.bridge?.gateway ?? (net.mode === 'slirp' ? (await import('../builder/sandbox/network/slirp.js')).SLIRP.gateway : undefined);
        if (!gateway) throw new Error(`no gateway in network mode ${net.mode}`);
      } catch (err) {
        throw new UsageError(`--add-host ${host}:host-gateway: unable to derive the IP value for host-gateway (${(err as Error).message})`);
      }
    }
    out += `${ip === 'host-gateway' ? gateway : ip}\t${host}\n`;
  }
  return out;
}

/**
 * The frontend attributes buildx sends for these flags (what provenance records as the request):
 * build-arg:K, label:K, target, context:NAME, no-cache. --platform is left out as BuildKit leaves
 * it out (a host-specific attribute).
 */
function frontendArgs(flags: Flags, buildArgs: Record<string, string>, labels: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(buildArgs)) out[`build-arg:${k}`] = v;
  for (const [k, v] of Object.entries(labels)) out[`label:${k}`] = v;
  if (flags.target !== undefined) out.target = flags.target as string;
  for (const c of flags.buildContext as string[]) {
    const eq = c.indexOf('=');
    if (eq > 0) out[`context:${c.slice(0, eq)}`] = c.slice(eq + 1);
  }
  if (flags.noCache) out['no-cache'] = '';
  return out;
}

export async function buildCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, BUILD_FLAGS);
  for (const [key, reason] of Object.entries(REFUSED)) if (flags[key] !== undefined && !(Array.isArray(flags[key]) && !(flags[key] as string[]).length)) throw new UsageError(reason);
  if (positional.length !== 1) throw new UsageError('"mbuild build" requires exactly 1 argument: the build context (e.g. ".")');
  const notes: string[] = [];
  for (const f of BUILD_FLAGS) if (f.note && flags[f.key] !== undefined) notes.push(f.note);
  const isolation = flags.isolation as string | undefined;
  if (isolation !== undefined && isolation !== 'default' && isolation !== '') throw new UsageError(`--isolation ${isolation} is not supported on Linux (only "default")`);
  // --call: buildx's frontend methods; check is --check, build the default
  const call = flags.call !== undefined ? (await import('../builder/executor/call.js')).parseCall(flags.call as string) : undefined;
  if (call?.method === 'check') flags.check = true;
  else if (call && flags.check) throw new UsageError(`--call ${call.method} and --check ask for different things: give one`);
  const { parseAttestFlags } = await import('../builder/attest/spec.js');
  const attestReq = parseAttestFlags(flags.provenance as string | undefined, flags.sbom as string | undefined, flags.attest as string[]);
  const attesting = Boolean(attestReq.provenance || attestReq.sbom);

  const buildArgs = buildArgValues(flags.buildArg as string[]);
  // the proxy variables reach RUN's environment without an ARG, and stay out of the image (as BuildKit)
  const proxyEnv = Object.entries(buildArgs).filter(([k]) => PREDEFINED_ARGS.has(k)).map(([k, v]) => `${k}=${v}`);
  const network = (flags.network as string | undefined) ?? 'default';
  if (!['default', 'bridge', 'host', 'none'].includes(network)) throw new UsageError(`--network ${network} is not supported (default, bridge, host or none)`);
  // BuildKit's entitlements: security.insecure lets RUN --security=insecure run; RUN --network=host
  // needs no grant here (docker build allows it too), so network.host is accepted as already granted
  const allow = flags.allow as string[];
  for (const a of allow) if (a !== 'security.insecure' && a !== 'network.host') throw new UsageError(`--allow ${a}: unknown entitlement (security.insecure or network.host)`);
  // the cgroup code (its size parser too) only for a build that sets a limit or --shm-size
  const cgroups = [flags.memory, flags.cpus, flags.pidsLimit, flags.shmSize].some((v) => v !== undefined) ? await import('../builder/sandbox/cgroups.js') : undefined;
  const limits = {
    memory: flags.memory !== undefined ? cgroups!.parseMemory(flags.memory as string) : undefined,
    cpus: flags.cpus !== undefined ? cgroups!.parseCpus(flags.cpus as string) : undefined,
    pids: flags.pidsLimit !== undefined ? cgroups!.parsePidsLimit(flags.pidsLimit as string) : undefined,
  };
  if (isRootless()) (await import('./rootless.js')).refuseRootlessLimits(limits, 'build');
  const mode = progressMode(flags.progress as string | undefined, Boolean(flags.quiet));
  const outputs: OutputSpec[] = (flags.output as string[]).map(parseOutput);
  if (flags.push) outputs.push(parseOutput('type=registry'));
  const { parsePlatformList } = await import('../util/platform.js');
  const platforms = parsePlatformList(flags.platform as string[]);
  // buildx: "docker exporter does not currently support exporting manifest lists"
  for (const o of outputs) if (o.type === 'docker' && platforms.length > 1) throw new UsageError(`--output type=docker cannot hold an image for several platforms (${platforms.length} asked with --platform): use type=oci, or one --platform`);
  const labels = keyValues(flags.label as string[], '--label');
  // --annotation goes to the build (the stored image) and to every output, as buildx sends it to each exporter
  const { parseAnnotationFlag, checkAnnotations } = await import('../builder/executor/annotations.js');
  const buildAnnotations = (flags.annotation as string[]).flatMap(parseAnnotationFlag);
  for (const o of outputs) if (o.type !== 'local' && o.type !== 'tar') o.annotations = [...buildAnnotations, ...o.annotations];
  {
    const { targetPlatform } = await import('../util/platform.js');
    const made = platforms.length ? platforms : [targetPlatform()];
    const index = made.length > 1 || attesting;
    checkAnnotations(buildAnnotations, { platforms: made, index, ociMediatypes: true });
    for (const o of outputs) checkAnnotations(o.annotations, { platforms: made, index, ociMediatypes: ociMediatypesFor(o, buildAnnotations.length > 0, attesting) });
  }
  const noCacheFilter = (flags.noCacheFilter as string[]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  const namedContexts = parseBuildContexts(flags.buildContext as string[]);
  // host-gateway makes the bridge when needed: not for --check, which builds nothing
  const addHosts = parseAddHosts(flags.addHost as string[]);
  const hosts = flags.check || call?.method === 'outline' || call?.method === 'targets' ? '' : await hostLines(addHosts);
  // names: -t, plus name= of image/registry outputs (as buildx merges them)
  const tags = [...(flags.tag as string[])];
  for (const o of outputs) if (o.type === 'image' || o.type === 'registry') tags.push(...o.names.filter((n) => !tags.includes(n)));
  // as BuildKit's push: "can't push tagged ref NAME by digest"
  for (const o of outputs) if (o.pushByDigest) for (const t of tags) if (/[:@][^/]*$/.test(t)) throw new UsageError(`--output push-by-digest=true: can't push tagged ref ${t} by digest (name the repository only)`);
  for (const o of outputs) if (o.push && !tags.length) throw new UsageError(`${flags.push ? '--push' : `--output type=${o.type},push=true`} needs a name to push: add -t REGISTRY/NAME:TAG (or name=)`);
  if (attesting) {
    for (const o of outputs) {
      if (o.ociMediatypes === false) throw new UsageError(`--output type=${o.type},oci-mediatypes=false cannot carry attestations (as BuildKit: they need OCI media types)`);
    }
    if (!tags.length && !outputs.some((o) => o.type === 'oci' || o.type === 'docker' || o.type === 'local' || o.type === 'tar' || o.push))
      throw new UsageError(`${attestReq.provenance ? '--provenance' : '--sbom'} needs a name or an output that carries attestations: -t NAME (the store keeps them under it), --push, -o type=registry, -o type=oci|docker or -o type=local|tar`);
  }
  if (outputs.filter((o) => o.dest === '-').length > 1) throw new UsageError('only one --output can write to stdout (dest=-)');
  const { parseSecretFlag, parseSshFlag } = await import('../builder/steps/secrets.js');
  const secrets = (flags.secret as string[]).map((s) => parseSecretFlag(s));
  const ssh = (flags.ssh as string[]).map((s) => parseSshFlag(s));
  const { parseCacheFrom, parseCacheTo } = await import('../builder/cache/remote-spec.js');
  const cacheFrom = (flags.cacheFrom as string[]).map(parseCacheFrom);
  const cacheTo = (flags.cacheTo as string[]).map(parseCacheTo);

  const input = await span('cli.context', () => resolveContext(positional[0], flags.file as string | undefined));
  if (call?.method === 'outline' || call?.method === 'targets') {
    try {
      return await (await import('../builder/executor/call.js')).callCommand(call, { dockerfile: input.dockerfile, buildArgs, target: flags.target as string | undefined });
    } finally {
      for (const d of input.cleanup) await fs.rm(d, { recursive: true, force: true });
    }
  }
  if (flags.check) {
    try {
      // base images' environments from the store when there is one (never made or pulled for a check)
      const store = (await fs.stat(root).catch(() => null))?.isDirectory() ? await Store.open(root) : undefined;
      return await (await import('../builder/executor/checks.js')).checkCommand({ contextDir: input.contextDir, dockerfile: input.dockerfile, buildArgs, target: flags.target as string | undefined, allow, store });
    } finally {
      for (const d of input.cleanup) await fs.rm(d, { recursive: true, force: true });
    }
  }
  const progress = createProgress(mode, process.stderr);
  progress.watchInterrupt();
  for (const w of input.warnings) progress.info(w);
  for (const n of notes) progress.info(`NOTE: ${n}`);
  const store = await span('cli.store-open', () => Store.open(root));
  try {
    const contexts = await resolveNamedContexts(store, namedContexts, input.cleanup);
    const endBuild = begin('cli.build');
    const result = await build(store, progress, {
      contextDir: input.contextDir,
      dockerfile: input.dockerfile,
      buildArgs,
      proxyEnv,
      target: flags.target as string | undefined,
      network: network as NetworkMode,
      limits,
      allow,
      tags,
      noCache: Boolean(flags.noCache),
      noCacheStages: noCacheFilter,
      jobs: parseJobs(flags.jobs as string | undefined),
      pull: Boolean(flags.pull),
      secrets,
      ssh,
      labels,
      annotations: buildAnnotations,
      namedContexts: contexts.images,
      contextDirs: contexts.dirs,
      extraHosts: hosts,
      shmSizeKb: shmSizeKb(flags.shmSize as string | undefined, (v) => cgroups!.parseMemory(v)),
      ulimits: (flags.ulimit as string[]).map(parseUlimit),
      cacheFrom,
      cacheTo,
      platforms,
    });
    endBuild();
    const { recordImageId } = await import('./image-ref.js');
    // the ID of a multi-platform build is its index digest (as BuildKit's image exporter gives it)
    let id = result.index?.digest ?? result.manifest.config.digest;
    await span('cli.record-id', () => recordImageId(store, id, result.index?.digest ?? result.manifestDigest)).catch(() => undefined);
    // a local directory: buildx's git facts (a context from a URL or stdin is mbuild's own temp copy)
    const vcs = attestReq.provenance && !input.cleanup.length ? await (await import('../builder/attest/vcs.js')).gitVcsArgs(input.contextDir, input.dockerfile) : {};
    const attested = attesting ? await prepareAttestations(store, result, attestReq, { ...frontendArgs(flags, buildArgs, labels), ...vcs }, input.dockerfile, progress) : undefined;
    let stored: string | undefined;
    if (attested && result.names.length) {
      // the store keeps the attested index under the names (as BuildKit's image store keeps
      // attestations with the image), in the form a push sends: push, save and -o of the name carry them
      const imageOut = outputs.find((o) => o.type === 'image' || o.type === 'registry') ?? { ...parseOutput('type=image'), annotations: buildAnnotations };
      const digest = (await outputForm(store, result, imageOut, progress, attested)).digest;
      stored = digest;
      const created = new Date().toISOString();
      await store.images.put(result.names.map((name) => ({ name, digest, created })));
      // several platforms: the image is that index (its ID, as the stored names show it)
      if (result.index) {
        id = stored;
        await recordImageId(store, id, stored).catch(() => undefined);
      }
    }
    let pushed: { name: string; digest: string }[] = [];
    for (const out of outputs) pushed = pushed.concat(await writeOutput(store, result, out, progress, attested));
    if (flags.iidfile) await writeFileAtomic(path.resolve(flags.iidfile as string), id);
    if (flags.metadataFile) await writeMetadata(store, path.resolve(flags.metadataFile as string), result, pushed, stored);
    if (mode === 'quiet') process.stdout.write(id + '\n');
    else progress.info(`built ${id}${result.names.length ? ' as ' + result.names.join(', ') : ''} in ${progress.total()}`);
    return 0;
  } finally {
    progress.close();
    if (outputs.some((o) => o.push) || (await import('../builder/executor/build.js')).registryLoaded) await (await import('../registry/transport.js')).closeTransport();
    await span('cli.remove-own', async () => new (await import('../snapshotter/layers.js')).Layers(store).removeOwn());
    for (const d of input.cleanup) await fs.rm(d, { recursive: true, force: true });
  }
}

type BuildContextSpec = { name: string; kind: 'image' | 'oci-layout' | 'dir' | 'git' | 'http'; value: string };

/**
 * `--build-context NAME=SRC` as buildx reads SRC: docker-image://REF, oci-layout://PATH[:TAG|@DIGEST],
 * a git URL or an http(s) URL (given to BuildKit as they are), else a local directory.
 */
function parseBuildContexts(list: string[]): BuildContextSpec[] {
  return list.map((s) => {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new UsageError(`--build-context ${s}: expected NAME=SOURCE`);
    const name = s.slice(0, eq);
    const src = s.slice(eq + 1);
    // buildx sends these two names as the main context and the Dockerfile's directory
    if (name === 'context' || name === 'dockerfile') throw new UsageError(`--build-context ${s}: replacing the main ${name === 'context' ? 'context' : "Dockerfile's directory"} this way is not supported (give it as the build context or with -f)`);
    if (src.startsWith('docker-image://')) return { name, kind: 'image' as const, value: src.slice(15) };
    if (src.startsWith('oci-layout://')) return { name, kind: 'oci-layout' as const, value: src.slice(13) };
    if (src.startsWith('target:')) throw new UsageError(`--build-context ${s}: target: contexts are for buildx bake (not supported)`);
    if (isGitUrl(src)) return { name, kind: 'git' as const, value: src };
    if (isUrl(src)) return { name, kind: 'http' as const, value: src };
    if (!src) throw new UsageError(`--build-context ${s}: expected NAME=SOURCE`);
    return { name, kind: 'dir' as const, value: path.resolve(src) };
  });
}

/**
 * Named contexts → the image references FROM / COPY --from NAME use instead (oci-layout ones are
 * loaded first) and the directories (git sources cloned, http ones downloaded into temp dirs that
 * `cleanup` collects).
 */
async function resolveNamedContexts(store: Store, list: BuildContextSpec[], cleanup: string[]): Promise<{ images: Record<string, string>; dirs: Record<string, string> }> {
  const images: Record<string, string> = {};
  const dirs: Record<string, string> = {};
  const temp = async () => {
    const d = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-named-context-'));
    cleanup.push(d);
    return d;
  };
  for (const c of list) {
    if (c.kind === 'image') images[c.name] = c.value;
    else if (c.kind === 'oci-layout') {
      const { loadOciLayoutContext } = await import('./oci-layout-context.js');
      images[c.name] = await loadOciLayoutContext(store, c.value);
    } else if (c.kind === 'git') dirs[c.name] = await cloneGit(c.value, await temp());
    else if (c.kind === 'http') {
      // BuildKit's http source: the download is one file named "context" (never unpacked)
      const d = await temp();
      await fs.writeFile(path.join(d, 'context'), await fetchUrl(c.value), { mode: 0o600 });
      dirs[c.name] = d;
    } else {
      const st = await fs.stat(c.value).catch((err: NodeJS.ErrnoException) => {
        throw new UsageError(`--build-context ${c.name}: failed to get build context ${c.name}: ${err.code === 'ENOENT' ? `${c.value} does not exist` : err.message}`);
      });
      if (!st.isDirectory()) throw new UsageError(`--build-context ${c.name}: ${c.value} is not a directory`);
      dirs[c.name] = c.value;
    }
  }
  return { images, dirs };
}

/** `reg/app:1` → `reg/app` (a normalized name always has a tag; a digest ref is kept as it is). */
function repositoryOf(name: string): string {
  return name.replace(/:[^/:@]*$/, '');
}

/** stored: the attested index the names hold (the image exporter's result then) */
async function writeMetadata(store: Store, file: string, result: BuildResult, pushed: { name: string; digest: string }[], stored?: string): Promise<void> {
  // as buildx writes it for the image exporter: the digest is the pushed manifest's when pushed
  const digest = pushed[0]?.digest ?? stored ?? result.index?.digest ?? result.manifestDigest;
  const manifest = await store.content.readJson<{ mediaType?: string }>(digest);
  const meta: Record<string, unknown> = {
    // a multi-platform build has no one config: buildx leaves the key out
    ...(result.index ? {} : { 'containerimage.config.digest': result.manifest.config.digest }),
    'containerimage.descriptor': { mediaType: manifest.mediaType, digest, size: await store.content.size(digest) },
    'containerimage.digest': digest,
    ...(result.names.length ? { 'image.name': result.names.join(',') } : {}),
  };
  await writeFileAtomic(file, JSON.stringify(meta, null, 2) + '\n');
}

/** Per platform image of the build (in result.images' order), its prepared attestations. */
type Attested = Awaited<ReturnType<typeof import('../builder/attest/make.js').prepareAttestations>>[];

/**
 * SBOM scan and provenance capture, once per platform image (the forms of an image differ only in
 * their layers): each platform's SBOM from its own layers, its provenance from its own plan's steps.
 */
async function prepareAttestations(store: Store, result: BuildResult, req: import('../builder/attest/spec.js').AttestRequest, args: Record<string, string>, dockerfile: string, progress: Progress): Promise<Attested> {
  const { prepareAttestations: prepare } = await import('../builder/attest/make.js');
  const { sourceDateEpoch } = await import('../builder/executor/build.js');
  const { targetPlatform } = await import('../builder/plan/platform.js');
  const { packageVersion } = await import('./cmd-version.js');
  const step = progress.step(req.sbom ? 'generating sbom' : 'generating provenance');
  try {
    const prepared: Attested = [];
    for (const img of result.images)
      prepared.push(
        await prepare(store, img.manifest, img.record, req, {
          frontendArgs: args,
          dockerfile,
          sourceDateEpoch: sourceDateEpoch(img.record.plan.buildArgs),
          builderPlatform: targetPlatform(),
          tool: `Tool: mbuild-${packageVersion()}`,
        }),
      );
    step.done();
    return prepared;
  } catch (err) {
    step.fail();
    throw err;
  }
}

/**
 * The image in an output's form; with attestations, the index BuildKit makes of it: the image
 * (with its platform) and its attestation manifest (platform unknown/unknown). Several platforms:
 * every image, then every image's attestation manifest (each naming its image's digest).
 */
async function outputForm(store: Store, result: BuildResult, out: OutputSpec, progress: Progress, attested: Attested | undefined): Promise<{ digest: string; index: boolean; descriptorAnnotations: Record<string, string> }> {
  const { imageInForm } = await import('./image-form.js');
  const ann = await import('../builder/executor/annotations.js');
  const base = { compression: out.compression, compressionLevel: out.compressionLevel, forceCompression: out.forceCompression, ociMediatypes: ociMediatypesFor(out, Object.keys(result.manifest.annotations ?? {}).length > 0, attested !== undefined) };
  const form = (platform: import('../util/platform.js').TargetPlatform) => ({ ...base, annotations: ann.manifestAnnotations(out.annotations, platform) });
  if (result.index) {
    // several platforms: each image in the form asked for, under a new index of those (the stored index stays as built)
    const { platformDescriptor, writeIndex } = await import('../builder/executor/index.js');
    const entries = [];
    const layers: import('../store/oci.js').Descriptor[][] = [];
    for (const img of result.images) {
      const f = await imageInForm(store, img.manifestDigest, form(img.platform));
      entries.push(platformDescriptor({ manifestDigest: f.manifestDigest, manifestSize: await store.content.size(f.manifestDigest), config: img.config, mediaType: f.manifest.mediaType }, ann.manifestDescriptorAnnotations(out.annotations, img.platform)));
      layers.push(f.manifest.layers);
    }
    let extra: import('../store/oci.js').Descriptor[] | undefined;
    if (attested) {
      const { attestationEntries } = await import('../builder/attest/attach.js');
      extra = await attestationEntries(store, entries.map((e, k) => ({ manifest: e, platform: e.platform!, attestations: attested[k]!.forImage(layers[k]!) })), result.names);
    }
    const idx = await writeIndex(store, entries, { ...(extra ? { extra } : {}), annotations: ann.indexAnnotations(out.annotations), mediaType: base.ociMediatypes ? undefined : 'application/vnd.docker.distribution.manifest.list.v2+json' });
    if (attested) progress.info(`exporting manifest list ${idx.digest}`);
    return { digest: idx.digest, index: true, descriptorAnnotations: ann.indexDescriptorAnnotations(out.annotations) };
  }
  const only = result.images[0]!.platform;
  const { manifestDigest, manifest } = await imageInForm(store, result.manifestDigest, form(only));
  const onManifest = ann.manifestDescriptorAnnotations(out.annotations, only);
  // no index: the manifest's descriptor is the OCI layout's (index.json), where BuildKit puts manifest-descriptor annotations
  if (!attested) return { digest: manifestDigest, index: false, descriptorAnnotations: onManifest };
  const { writeAttestedIndex } = await import('../builder/attest/attach.js');
  const c = result.config;
  const platform = { architecture: c.architecture, os: c.os, ...(c.variant ? { variant: c.variant } : {}) };
  const size = await store.content.size(manifestDigest);
  const descriptor = { mediaType: manifest.mediaType ?? '', digest: manifestDigest, size, ...(Object.keys(onManifest).length ? { annotations: onManifest } : {}) };
  const index = await writeAttestedIndex(store, [{ manifest: descriptor, platform, attestations: attested[0]!.forImage(manifest.layers) }], result.names, ann.indexAnnotations(out.annotations));
  progress.info(`exporting manifest list ${index.digest}`);
  return { digest: index.digest, index: true, descriptorAnnotations: ann.indexDescriptorAnnotations(out.annotations) };
}

async function writeOutput(store: Store, result: BuildResult, out: OutputSpec, progress: Progress, attested?: Attested): Promise<{ name: string; digest: string }[]> {
  if (out.type === 'image' || out.type === 'registry') {
    if (!out.push) return [];
    const { pushImage, pushIndex } = await import('../registry/push.js');
    const { digest, index } = await outputForm(store, result, out, progress, attested);
    const pushed: { name: string; digest: string }[] = [];
    // push-by-digest: the manifest (or the index) goes to each repository by its digest; no tag is made or moved
    for (const name of result.names) {
      const ref = out.pushByDigest ? `${repositoryOf(name)}@${digest}` : name;
      pushed.push(index ? await pushIndex(store, ref, digest, { progress }) : await pushImage(store, ref, { progress, manifestDigest: digest }));
    }
    return pushed;
  }
  const dest = out.dest!;
  const step = progress.step(`exporting to ${out.type} ${dest}`);
  try {
    if (out.type === 'oci' || out.type === 'docker') {
      const { exportImage } = await import('../store/archive/export.js');
      const { digest: manifestDigest, descriptorAnnotations } = await outputForm(store, result, out, progress, attested);
      const names = [...result.names, ...out.names.filter((n) => !result.names.includes(n))];
      if (out.tar) await exportImage(store, { manifestDigest, names, annotations: descriptorAnnotations }, { type: out.type, dest });
      else await exportLayoutDir(store, { manifestDigest, names, annotations: descriptorAnnotations }, out.type, dest);
    } else {
      const { exportFilesystem, exportFilesystems } = await import('./export-fs.js');
      // the statement files beside the files (in the tar too), each about the files of its folder
      const statements = attested ? (dir: string, k: number) => writeStatementFiles(dir, attested[k]!.forImage(result.images[k]!.manifest.layers)) : undefined;
      // several platforms: a folder per platform (linux_amd64/, linux_arm64/), as BuildKit writes them
      if (result.index) await exportFilesystems(result.snap, result.images.map((i) => ({ platform: i.platform, layers: i.state.layers })), out.type, dest, statements);
      else await exportFilesystem(result.snap, result.state.layers, out.type, dest, statements && ((dir) => statements(dir, 0)));
    }
    step.done();
    return [];
  } catch (err) {
    step.fail();
    if (err instanceof MbuildError) throw err;
    throw new MbuildError('MBUILD_EXPORT', `cannot write ${out.type} output to ${dest}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * With -o type=local, BuildKit writes each attestation as an in-toto statement file beside the
 * exported files (provenance.json, sbom.spdx.json; mode 0600) whose subjects are every regular
 * file exported, by path and sha256.
 */
async function writeStatementFiles(dest: string, atts: import('../builder/attest/attach.js').Attestation[]): Promise<void> {
  const { fileStatement, STATEMENT_FILES } = await import('../builder/attest/attach.js');
  const files: { path: string; sha256: string }[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(dir, e.name), p);
      else if (e.isFile()) {
        const h = createHash('sha256');
        for await (const chunk of createReadStream(path.join(dir, e.name))) h.update(chunk as Buffer);
        files.push({ path: p, sha256: h.digest('hex') });
      }
    }
  };
  await walk(dest, '');
  for (const att of atts) {
    const name = STATEMENT_FILES[att.predicateType] ?? 'attestation.json';
    await fs.writeFile(path.join(dest, name), JSON.stringify(fileStatement(att, files), null, 2), { mode: 0o600 });
  }
}

/** tar=false: the same layout as the tar, unpacked into the directory dest. */
async function exportLayoutDir(store: Store, image: import('../store/archive/export.js').ExportImage, type: 'oci' | 'docker', dest: string): Promise<void> {
  const { exportImage } = await import('../store/archive/export.js');
  const tmp = await store.mkTemp('layout');
  try {
    const tarFile = path.join(tmp, 'image.tar');
    await exportImage(store, image, { type, dest: tarFile });
    await fs.mkdir(dest, { recursive: true });
    await new Promise<void>((resolve, reject) => execFile('tar', ['-x', '--no-same-owner', '-f', tarFile, '-C', dest], (err) => (err ? reject(err) : resolve())));
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** `--shm-size 128m` (docker's units; bytes without one) → KiB for the tmpfs. */
function shmSizeKb(v: string | undefined, parseMemory: (s: string) => number): number | undefined {
  if (v === undefined) return undefined;
  let bytes: number;
  try {
    bytes = parseMemory(v);
  } catch {
    throw new UsageError(`--shm-size ${v}: expected a size such as 128m`);
  }
  if (bytes < 4096) throw new UsageError(`--shm-size ${v}: at least 4k`);
  return Math.ceil(bytes / 1024);
}

const ULIMITS = ['core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack', 'as'];

/** `--ulimit nofile=1024:2048` (or one value for both; -1 unlimited) → NAME:SOFT:HARD for the sandbox. */
function parseUlimit(v: string): string {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(v);
  if (!m || !ULIMITS.includes(m[1])) throw new UsageError(`--ulimit ${v}: expected NAME=SOFT[:HARD] with NAME one of ${ULIMITS.join(', ')}`);
  const soft = Number(m[2]);
  const hard = m[3] !== undefined ? Number(m[3]) : soft;
  if (hard >= 0 && (soft < 0 || soft > hard)) throw new UsageError(`--ulimit ${v}: the soft limit is above the hard limit`);
  return `${m[1]}:${soft}:${hard}`;
}

function parseJobs(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(v)) throw new UsageError(`--jobs ${v}: give a positive whole number`);
  return Number(v);
}
