// The fixed set of scenarios (issue 6). Each prepares its context once under the run's work dir and
// says which base images it needs; "change" variants get a mutate(nonce) that edits one line.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeFileTree, fileName, writeRandomFile } from './generate.mjs';

/** External images a Dockerfile's FROM lines name (not stages, not scratch). */
export function baseImages(dockerfileText) {
  const stages = new Set();
  const images = [];
  for (const line of dockerfileText.split('\n')) {
    const m = line.match(/^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/i);
    if (!m) continue;
    const [, from, as] = m;
    if (from !== 'scratch' && !stages.has(from.toLowerCase()) && !images.includes(from)) images.push(from);
    if (as) stages.add(as.toLowerCase());
  }
  return images;
}

/** Replaces (or appends) the file's last line "// bench-change: ..." — one line changed per call. */
function changeLine(file, nonce, comment = '//') {
  const mark = `${comment} bench-change:`;
  const lines = readFileSync(file, 'utf8').replace(/\n$/, '').split('\n');
  if (lines.at(-1).startsWith(mark)) lines.pop();
  lines.push(`${mark} ${nonce}`);
  writeFileSync(file, lines.join('\n') + '\n');
}

const PARALLEL = `FROM busybox AS a
RUN sleep 2 && echo a > /a
FROM busybox AS b
RUN sleep 2 && echo b > /b
FROM busybox AS c
RUN sleep 2 && echo c > /c
FROM busybox AS d
RUN sleep 2 && echo d > /d
FROM busybox AS unused
RUN sleep 4 && echo unused-stage-ran > /unused
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=c /c /c
COPY --from=d /d /d
`;

// a slow build stage (a stand-in for a compiler: the Go base image is not available offline) and a
// slim final stage that copies its artifact, the seed example's shape
const CACHE_MULTI = `FROM busybox AS build
RUN sleep 3 && head -c 20000000 /dev/urandom > /artifact
RUN sha256sum /artifact > /artifact.sha256
FROM busybox
COPY --from=build /artifact /artifact.sha256 /app/
CMD ["/bin/sh"]
`;

export const SCENARIOS = [
  {
    id: 'go',
    title: 'Go multi-stage (examples/myhttpserver)',
    variants: ['cold', 'warm', 'change'],
    labels: { change: 'one source line changed' },
    skip: ({ repo }) => (existsSync(join(repo, 'examples/myhttpserver/Dockerfile')) ? null : 'skipped: examples/myhttpserver missing'),
    prepare({ repo, work }) {
      const ctx = join(work, 'go');
      cpSync(join(repo, 'examples/myhttpserver'), ctx, { recursive: true });
      const dockerfile = join(ctx, 'Dockerfile');
      const goFiles = readdirSync(ctx).filter((f) => f.endsWith('.go'));
      const src = join(ctx, goFiles.includes('httpserver.go') ? 'httpserver.go' : goFiles[0]);
      return { ctx, dockerfile, images: baseImages(readFileSync(dockerfile, 'utf8')), mutate: (n) => changeLine(src, n) };
    },
  },
  {
    // the same build with Go's build cache in a RUN --mount=type=cache (issue 14): after a one-line
    // change only the main package compiles; compare with go's "one source line changed" row
    id: 'gocache',
    title: 'Go multi-stage, GOCACHE in RUN --mount=type=cache',
    variants: ['change'],
    labels: { change: 'one source line changed' },
    skip: ({ repo }) => (existsSync(join(repo, 'examples/myhttpserver/Dockerfile')) ? null : 'skipped: examples/myhttpserver missing'),
    prepare({ repo, work }) {
      const ctx = join(work, 'gocache');
      cpSync(join(repo, 'examples/myhttpserver'), ctx, { recursive: true });
      const dockerfile = join(ctx, 'Dockerfile');
      const text = readFileSync(dockerfile, 'utf8');
      // the go build line (since the seed cross-compiles: RUN CGO_ENABLED=0 GOOS=... GOARCH=... go build)
      const withMount = text.replace(/^RUN (CGO_ENABLED=0 (?:\S+=\S+ )*go build .*)$/m, 'RUN --mount=type=cache,target=/tmp/go-build $1');
      if (withMount === text) throw new Error('examples/myhttpserver/Dockerfile: no "RUN CGO_ENABLED=0 ... go build" line to give a cache mount');
      writeFileSync(dockerfile, withMount);
      const goFiles = readdirSync(ctx).filter((f) => f.endsWith('.go'));
      const src = join(ctx, goFiles.includes('httpserver.go') ? 'httpserver.go' : goFiles[0]);
      return { ctx, dockerfile, images: baseImages(withMount), mutate: (n) => changeLine(src, n) };
    },
  },
  {
    id: 'runs30',
    title: '30 tiny RUN steps',
    variants: ['cold', 'warm'],
    prepare({ work }) {
      const ctx = join(work, 'runs30');
      mkdirSync(ctx, { recursive: true });
      const steps = Array.from({ length: 30 }, (_, i) => `RUN echo step ${i + 1} > /step${i + 1}`);
      writeFileSync(join(ctx, 'Dockerfile'), ['FROM busybox', ...steps, ''].join('\n'));
      return { ctx, dockerfile: join(ctx, 'Dockerfile'), images: ['busybox'] };
    },
  },
  {
    id: 'parallel',
    title: '4 parallel 2 s stages + 1 unneeded (4 s)',
    variants: ['cold'],
    // the unneeded stage sleeps 4 s and prints a marker: the log tells whether it ran
    ranMarker: 'unused-stage-ran',
    prepare({ work }) {
      const ctx = join(work, 'parallel');
      mkdirSync(ctx, { recursive: true });
      writeFileSync(join(ctx, 'Dockerfile'), PARALLEL);
      return { ctx, dockerfile: join(ctx, 'Dockerfile'), images: ['busybox'] };
    },
  },
  {
    id: 'ctx100',
    title: '100 MB / 5,000-file context',
    variants: ['cold', 'warm', 'change'],
    labels: { change: 'one file changed' },
    prepare({ work }) {
      const ctx = join(work, 'ctx100');
      mkdirSync(ctx, { recursive: true });
      makeFileTree(ctx, { files: 5000, dirs: 50, total: 100_000_000 });
      const dockerfile = join(work, 'ctx100.Dockerfile');
      writeFileSync(dockerfile, 'FROM busybox\nCOPY . /app\n');
      return { ctx, dockerfile, images: ['busybox'], mutate: (n) => changeLine(join(ctx, fileName(2500)), n) };
    },
  },
  {
    id: 'push',
    title: 'push, one 100 MB layer, local registry',
    kind: 'push',
    variants: ['cold', 'warm'],
    prepare({ work, registryPort }) {
      const ctx = join(work, 'push');
      mkdirSync(ctx, { recursive: true });
      writeRandomFile(join(ctx, 'big.bin'), 100 * 1024 * 1024);
      writeFileSync(join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY big.bin /big.bin\n');
      return {
        ctx, dockerfile: join(ctx, 'Dockerfile'), images: ['busybox'],
        tag: `127.0.0.1:${registryPort}/bench/push100:latest`,
      };
    },
  },
  {
    // a fresh runner (empty build cache, base images present, fresh context state) importing the
    // cache another runner pushed: mbuild --cache-from a registry cache (mode=max); BuildKit
    // (docker 20.10) --cache-from an image built with BUILDKIT_INLINE_CACHE=1 and pushed
    id: 'cachemulti',
    title: 'fresh runner, registry cache: multi-stage (3 s build stage, 20 MB artifact)',
    kind: 'cachefrom',
    tools: ['mbuild', 'buildkit'],
    variants: ['fresh'],
    labels: { fresh: 'cache from the registry' },
    prepare({ work }) {
      const ctx = join(work, 'cachemulti');
      mkdirSync(ctx, { recursive: true });
      writeFileSync(join(ctx, 'Dockerfile'), CACHE_MULTI);
      return { ctx, dockerfile: join(ctx, 'Dockerfile'), images: ['busybox'] };
    },
  },
  {
    id: 'cachectx',
    title: 'fresh runner, registry cache: 100 MB / 5,000-file context',
    kind: 'cachefrom',
    tools: ['mbuild', 'buildkit'],
    variants: ['fresh'],
    labels: { fresh: 'cache from the registry' },
    prepare({ work }) {
      const ctx = join(work, 'cachectx');
      mkdirSync(ctx, { recursive: true });
      makeFileTree(ctx, { files: 5000, dirs: 50, total: 100_000_000 });
      const dockerfile = join(work, 'cachectx.Dockerfile');
      writeFileSync(dockerfile, 'FROM busybox\nCOPY . /app\n');
      return { ctx, dockerfile, images: ['busybox'] };
    },
  },
  {
    // a fresh runner's checkout (new mtimes, no client hash cache) built on a server that has
    // built this repository before: mbuild --host sends the manifest and no content; BuildKit
    // (dockerd) re-sends every file whose stat changed, i.e. all of them (issue 16)
    id: 'serverctx',
    title: "server: a fresh runner's copy of the 100 MB / 5,000-file context",
    kind: 'server',
    tools: ['mbuild', 'buildkit'],
    variants: ['fresh'],
    labels: { fresh: 'fresh copy, new mtimes' },
    prepare({ work }) {
      const src = join(work, 'serverctx-src');
      mkdirSync(src, { recursive: true });
      makeFileTree(src, { files: 5000, dirs: 50, total: 100_000_000 });
      const dockerfile = join(work, 'serverctx.Dockerfile');
      writeFileSync(dockerfile, 'FROM busybox\nCOPY . /app\n');
      return { src, ctx: join(work, 'serverctx'), dockerfile, images: ['busybox'] };
    },
  },
  {
    // eight builds at once on one server (mbuild serve --max-builds 8; dockerd): eight contexts,
    // each a COPY of its own 4 MB file and a RUN hashing it (issue 16)
    id: 'conc8',
    title: 'server: 8 concurrent builds (COPY 4 MB + RUN each)',
    kind: 'concurrent',
    tools: ['mbuild', 'buildkit'],
    variants: ['cold'],
    prepare({ work }) {
      const ctxs = [];
      for (let i = 0; i < 8; i++) {
        const ctx = join(work, `conc8-${i}`);
        mkdirSync(ctx, { recursive: true });
        writeRandomFile(join(ctx, 'data.bin'), 4 * 1024 * 1024, `conc8-${i}`);
        writeFileSync(join(ctx, 'Dockerfile'), `FROM busybox\nCOPY data.bin /src/\nRUN sha256sum /src/data.bin > /sum && echo build-${i}\n`);
        ctxs.push(ctx);
      }
      return { ctxs, ctx: ctxs[0], dockerfile: join(ctxs[0], 'Dockerfile'), images: ['busybox'] };
    },
  },
  {
    id: 'layer1g',
    title: '1 GB layer, build + OCI export (mbuild RSS)',
    optIn: true, // only with --only layer1g: it measures mbuild's memory, not a comparison
    tools: ['mbuild'],
    variants: ['cold'],
    prepare({ work }) {
      const ctx = join(work, 'layer1g');
      mkdirSync(ctx, { recursive: true });
      writeRandomFile(join(ctx, 'big.bin'), 1024 * 1024 * 1024);
      writeFileSync(join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY big.bin /big.bin\n');
      return { ctx, dockerfile: join(ctx, 'Dockerfile'), images: ['busybox'], output: join(work, 'layer1g.oci.tar') };
    },
  },
];
