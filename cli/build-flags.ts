/**
 * Every flag `mbuild build` takes, with the names and meanings of `docker buildx build`. One row a
 * flag: add yours here (the help text is generated from this table, and
 * test/integration/cli-flags.test.ts walks it: every row needs an effect or a documented refusal
 * there). Hidden rows are the compatibility flags old pipelines pass.
 */
import type { FlagSpec } from '../util/args.js';

export interface BuildFlag extends FlagSpec {
  /**
   * Compatibility flags that cannot apply here: accepted, and this note is printed when given.
   * (Flags that are refused are refused in cmd-build with one line naming them.)
   */
  note?: string;
}

export const BUILD_FLAGS: BuildFlag[] = [
  { names: ['-t', '--tag'], key: 'tag', kind: 'list', arg: 'NAME', help: 'name the image (repeatable)' },
  { names: ['-f', '--file'], key: 'file', kind: 'string', arg: 'FILE', help: 'the Dockerfile (default CONTEXT/Dockerfile; "-" reads it from stdin)' },
  { names: ['--build-arg'], key: 'buildArg', kind: 'list', arg: 'K=V', help: 'set a build-time variable (repeatable; "K" alone takes it from the environment)' },
  { names: ['--build-context'], key: 'buildContext', kind: 'list', arg: 'NAME=SRC', help: 'a named context for FROM / COPY --from / RUN --mount from=: DIR, docker-image://REF, oci-layout://PATH[:TAG|@DIGEST], a git or http(s) URL (repeatable)' },
  { names: ['--target'], key: 'target', kind: 'string', arg: 'STAGE', help: 'build up to this stage' },
  { names: ['--label'], key: 'label', kind: 'list', arg: 'K=V', help: 'add a label to the image config (repeatable)' },
  { names: ['--annotation'], key: 'annotation', kind: 'list', arg: 'K=V', help: 'add an OCI annotation ([TYPE[PLATFORM],...:]KEY=VALUE; manifest, manifest-descriptor, index, index-descriptor; repeatable)' },
  { names: ['--network'], key: 'network', kind: 'string', arg: 'MODE', help: 'network for RUN steps: default, bridge, host or none' },
  { names: ['--add-host'], key: 'addHost', kind: 'list', arg: 'HOST:IP', help: 'add a line to /etc/hosts of every RUN (repeatable; IP host-gateway: the host, as the bridge gateway)' },
  { names: ['--shm-size'], key: 'shmSize', kind: 'string', arg: 'SIZE', help: 'size of /dev/shm in every RUN (default 64m)' },
  { names: ['--ulimit'], key: 'ulimit', kind: 'list', arg: 'NAME=SOFT[:HARD]', help: 'a resource limit of every RUN, e.g. nofile=1024:2048 (repeatable)' },
  { names: ['-m', '--memory'], key: 'memory', kind: 'string', arg: 'SIZE', help: 'memory limit of every RUN (e.g. 512m; root only)' },
  { names: ['--cpus'], key: 'cpus', kind: 'string', arg: 'N', help: 'CPU limit of every RUN (e.g. 0.5; root only)' },
  { names: ['--pids-limit'], key: 'pidsLimit', kind: 'string', arg: 'N', help: 'process limit of every RUN (root only)' },
  { names: ['-o', '--output'], key: 'output', kind: 'list', arg: 'SPEC', help: 'type=image|registry|oci|docker|tar|local[,KEY=V...] (repeatable; see README)' },
  { names: ['--push'], key: 'push', kind: 'bool', help: 'push the image to its registry (as -o type=registry)' },
  { names: ['--load'], key: 'load', kind: 'bool', help: "keep the image in mbuild's store (it always is: the default output)" },
  { names: ['--iidfile'], key: 'iidfile', kind: 'string', arg: 'FILE', help: 'write the image ID to FILE' },
  { names: ['--metadata-file'], key: 'metadataFile', kind: 'string', arg: 'FILE', help: 'write the build result metadata (digests, names) as JSON to FILE' },
  { names: ['--no-cache'], key: 'noCache', kind: 'bool', help: 'do not use the build cache' },
  { names: ['--no-cache-filter'], key: 'noCacheFilter', kind: 'list', arg: 'STAGE', help: 'do not use the build cache for these stages (repeatable, or comma-separated)' },
  { names: ['--cache-from'], key: 'cacheFrom', kind: 'list', arg: 'SPEC', help: 'read a shared build cache: IMAGE, type=registry,ref=R or type=local,src=DIR (repeatable)' },
  { names: ['--cache-to'], key: 'cacheTo', kind: 'list', arg: 'SPEC', help: 'write one: type=registry,ref=R[,mode=min|max], type=local,dest=DIR or type=inline (repeatable)' },
  { names: ['--pull'], key: 'pull', kind: 'bool', help: 'check the registry for newer base images' },
  { names: ['--platform'], key: 'platform', kind: 'list', arg: 'P[,P...]', help: 'target platforms, e.g. linux/amd64,linux/arm64 (repeatable; several make an image index; "local" is this machine)' },
  { names: ['--provenance'], key: 'provenance', kind: 'string', arg: 'true|false|mode=min|max', optional: 'true', help: 'attach SLSA provenance (alone or =true: mode=min; also version=v1|v0.2, builder-id=, reproducible=)' },
  { names: ['--sbom'], key: 'sbom', kind: 'string', arg: 'true|false', optional: 'true', help: 'attach an SPDX SBOM of the packages in the image (dpkg, apk, Go binaries, node_modules)' },
  { names: ['--attest'], key: 'attest', kind: 'list', arg: 'SPEC', help: 'type=provenance[,mode=min|max,...] or type=sbom (disabled=true turns one off; repeatable)' },
  { names: ['--progress'], key: 'progress', kind: 'string', arg: 'MODE', help: 'auto, plain, tty, rawjson or quiet (default auto; $BUILDKIT_PROGRESS)' },
  { names: ['-q', '--quiet'], key: 'quiet', kind: 'bool', help: 'print only the image ID' },
  { names: ['--jobs'], key: 'jobs', kind: 'string', arg: 'N', help: 'RUN/COPY steps working at once (default: twice the cores, at least 4)' },
  { names: ['--allow'], key: 'allow', kind: 'list', arg: 'ENTITLEMENT', help: 'security.insecure lets RUN --security=insecure steps run (all capabilities, no seccomp); network.host is always granted' },
  { names: ['--secret'], key: 'secret', kind: 'list', arg: 'id=ID,src=FILE|env=VAR', help: 'a secret for RUN --mount=type=secret (repeatable; never stored)' },
  { names: ['--ssh'], key: 'ssh', kind: 'list', arg: 'default|ID=SOCKET|KEY', help: 'an SSH agent for RUN --mount=type=ssh (repeatable)' },
  { names: ['--check'], key: 'check', kind: 'bool', help: 'run the build checks only and report what they find (no build)' },
  { names: ['--call'], key: 'call', kind: 'string', arg: 'METHOD', help: 'build (the default), check (as --check), outline or targets (what the target takes, the stages); ,format=json' },
  // hidden compatibility flags (docker build / buildx accept them for old pipelines)
  { names: ['--rm'], key: 'rm', kind: 'bool', hidden: true, note: '' },
  { names: ['--force-rm'], key: 'forceRm', kind: 'bool', hidden: true, note: '' },
  { names: ['--compress'], key: 'compress', kind: 'bool', hidden: true, note: '--compress has no effect: the context is read in place, never sent to a daemon' },
  { names: ['--disable-content-trust'], key: 'disableContentTrust', kind: 'bool', hidden: true, note: '' },
  { names: ['--isolation'], key: 'isolation', kind: 'string', hidden: true },
  { names: ['--squash'], key: 'squash', kind: 'bool', hidden: true },
  { names: ['--security-opt'], key: 'securityOpt', kind: 'list', hidden: true },
  { names: ['--cgroup-parent'], key: 'cgroupParent', kind: 'string', hidden: true },
  { names: ['--cpu-shares', '-c'], key: 'cpuShares', kind: 'string', hidden: true },
  { names: ['--cpu-period'], key: 'cpuPeriod', kind: 'string', hidden: true },
  { names: ['--cpu-quota'], key: 'cpuQuota', kind: 'string', hidden: true },
  { names: ['--cpuset-cpus'], key: 'cpusetCpus', kind: 'string', hidden: true },
  { names: ['--cpuset-mems'], key: 'cpusetMems', kind: 'string', hidden: true },
  { names: ['--memory-swap'], key: 'memorySwap', kind: 'string', hidden: true },
  { names: ['--stream'], key: 'stream', kind: 'bool', hidden: true },
];

/** Hidden flags refused with the reason: accepting them would build something other than asked. */
export const REFUSED: Record<string, string> = {
  squash: '--squash is not supported (an experimental flag of the legacy builder; BuildKit refuses it too)',
  securityOpt: '--security-opt is not supported by mbuild build',
  cgroupParent: '--cgroup-parent is not supported: every RUN gets its own cgroup under mbuild\'s',
  cpuShares: '--cpu-shares is not supported: use --cpus',
  cpuPeriod: '--cpu-period is not supported: use --cpus',
  cpuQuota: '--cpu-quota is not supported: use --cpus',
  cpusetCpus: '--cpuset-cpus is not supported: use --cpus',
  cpusetMems: '--cpuset-mems is not supported',
  memorySwap: '--memory-swap is not supported: use --memory',
  stream: '--stream is not supported (an experimental flag of the legacy builder)',
};

/**
 * Each flag with `--host` / MBUILD_HOST (cli/remote-build.ts): `server` flags travel to the server,
 * whose worker applies them as a local build does (server/remote-flags.ts lists the ones it takes
 * and checks their values); `client` flags are done by the client (it reads the Dockerfile,
 * secrets and build args, forwards the ssh agent, writes -o archives, the iid and metadata files,
 * shows progress; the REFUSED flags are refused as locally). test/integration/serve-flags.test.ts
 * walks this table for remote builds.
 */
export const REMOTE: Record<string, 'server' | 'client'> = {
  tag: 'server',
  file: 'client',
  buildArg: 'client',
  buildContext: 'server',
  target: 'server',
  label: 'server',
  annotation: 'server',
  network: 'server',
  addHost: 'server',
  shmSize: 'server',
  ulimit: 'server',
  memory: 'server',
  cpus: 'server',
  pidsLimit: 'server',
  output: 'client',
  push: 'server',
  load: 'server',
  iidfile: 'client',
  metadataFile: 'client',
  noCache: 'server',
  noCacheFilter: 'server',
  cacheFrom: 'server',
  cacheTo: 'server',
  pull: 'server',
  platform: 'server',
  provenance: 'server',
  sbom: 'server',
  attest: 'server',
  progress: 'client',
  quiet: 'client',
  jobs: 'server',
  allow: 'server',
  secret: 'client',
  ssh: 'client',
  check: 'server',
  call: 'server',
  rm: 'server',
  forceRm: 'server',
  compress: 'client',
  disableContentTrust: 'server',
  isolation: 'server',
  squash: 'client',
  securityOpt: 'client',
  cgroupParent: 'client',
  cpuShares: 'client',
  cpuPeriod: 'client',
  cpuQuota: 'client',
  cpusetCpus: 'client',
  cpusetMems: 'client',
  memorySwap: 'client',
  stream: 'client',
};
