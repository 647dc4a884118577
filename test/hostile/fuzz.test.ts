/**
 * Bounded-time fuzzing (fast-check): the Dockerfile parser (and the planner after it) and the layer
 * applier meet random input. They may refuse it, but only with an MbuildError that does not hide a
 * programming error (TypeError, RangeError, ...), never hang, and the applier never writes
 * outside its root. A failure prints fast-check's seed and the shrunk input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { planBuild } from '../../builder/plan/plan.js';
import { expandWord } from '../../builder/expand/shell-word.js';
import { applyLayerTar } from '../../snapshotter/diff/apply.js';
import { MbuildError } from '../../util/errors.js';
import { Sentinel, exists, isRoot, tarOf, type E } from './helpers.js';

/** Fuzzing time per property (the whole hostile suite should stay near 3 minutes). */
const BUDGET_MS = Number(process.env.MBUILD_FUZZ_MS ?? 15_000);

/** Is `err` an expected refusal: an MbuildError with no programming error underneath? */
function expectedRefusal(err: unknown): boolean {
  if (!(err instanceof MbuildError)) return false;
  for (let c = (err as { cause?: unknown }).cause, d = 0; c && d < 10; c = (c as { cause?: unknown }).cause, d++) {
    if (c instanceof TypeError || c instanceof RangeError || c instanceof ReferenceError || c instanceof SyntaxError) return false;
  }
  return true;
}

function describeError(err: unknown): string {
  const e = err as Error & { cause?: unknown };
  return `${e?.name}: ${e?.message}\n${e?.stack}\ncause: ${String((e?.cause as Error)?.stack ?? e?.cause)}`;
}

// ------------------------------------------------------------------------------ Dockerfiles

const word = fc.oneof(
  fc.constantFrom('scratch', 'busybox', 'alpine:3.19', 'a@sha256:' + 'a'.repeat(64), '$X', '${X:-d}', '${X:+y}', '${X?err}', '"q u"', "'s'", '\\', '\\\\', '`', '$', '${', '}', '{', '[', ']', '"', "'", '=', 'A=B', 'k="v w"', '<<EOF', '<<-"E"', '&&', '|', '#', '\u00e9', '\u0000', '\t', '..', '/abs', '*', '?', '[a-z]'),
  fc.stringMatching(/^[a-zA-Z0-9_./:=$@{}-]{0,12}$/),
  fc.string({ maxLength: 8, unit: 'binary' }),
);
const flag = fc.constantFrom(
  '--from=build',
  '--from=0',
  '--from=',
  '--chown=1:2',
  '--chown=user:group',
  '--chmod=755',
  '--chmod=999',
  '--link',
  '--link=false',
  '--mount=type=cache,target=/c',
  '--mount=type=bind,source=../..,target=/m',
  '--mount=',
  '--network=none',
  '--network=evil',
  '--platform=linux/amd64',
  '--platform=$BUILDPLATFORM',
  '--interval=5s',
  '--interval=bogus',
  '--retries=-1',
  '--start-period=1h',
  '--unknown',
  '--=',
  '-',
);
const keyword = fc.constantFrom(
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR',
  'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'from', 'Run', 'FROBNICATE', '', '#', '# escape=`', '# syntax=docker/dockerfile:1', '# escape=\\',
);
const json = fc.oneof(
  fc.array(fc.string({ maxLength: 6 }), { maxLength: 4 }).map((a) => JSON.stringify(a)),
  fc.constantFrom('[', '["a",', '[1, 2]', '{}', '["a" "b"]', '[]', '["\\u0000"]', '[\'single\']'),
);
const line = fc.tuple(keyword, fc.array(flag, { maxLength: 2 }), fc.oneof(fc.array(word, { maxLength: 6 }).map((w) => w.join(' ')), json), fc.constantFrom('', ' \\', '\\', '`', ' # c', '\r')).map(([k, f, rest, end]) => [k, ...f, rest].join(' ') + end);
const heredoc = fc.tuple(fc.constantFrom('RUN', 'COPY', 'RUN cat', 'COPY --chmod=644'), fc.constantFrom('EOF', '"EOF"', "'E'", '-EOF'), fc.array(word, { maxLength: 3 }), fc.boolean()).map(
  ([k, tag, body, closed]) => `${k} <<${tag}${k.startsWith('COPY') ? ' /dst' : ''}\n${body.join(' ')}\n${closed ? tag.replace(/["'-]/g, '') : ''}`,
);
const dockerfile = fc.oneof(
  { weight: 6, arbitrary: fc.array(fc.oneof({ weight: 8, arbitrary: line }, { weight: 1, arbitrary: heredoc }), { minLength: 1, maxLength: 12 }).map((ls) => ls.join('\n')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 400, unit: 'binary' }) },
  { weight: 1, arbitrary: fc.array(line, { maxLength: 4 }).map((ls) => 'FROM busybox AS a\n' + ls.join('\n') + '\nFROM a\n' + ls.join('\n')) },
);

// ----------------------------------------------------------------------------- layer tars

let tmp: string;
let sentinel: Sentinel;
let U: string; // a unique name: an escape would create /U or TMP/U
let runs = 0;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-hostile-fuzz-'));
  sentinel = await Sentinel.make(tmp);
  await fs.mkdir(path.join(tmp, 'x', 'y'), { recursive: true });
  U = `mbuild-fuzz-${process.pid}-${randomBytes(3).toString('hex')}`;
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }); // an abandoned (timed-out) apply may still be writing
  await fs.rm(`/${U}`, { recursive: true, force: true });
});

function entries(S: string): fc.Arbitrary<E[]> {
  // few names, so that later entries often land on or below earlier ones (links, dirs, whiteouts)
  const comp = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom('a', 'b', 'c', '..', '.', '') },
    { weight: 4, arbitrary: fc.constantFrom('.wh.a', '.wh..wh..opq', '.wh.', '.wh..', '.wh.b', 'A', 'caf\u00e9', 'cafe\u0301', U) },
    { weight: 1, arbitrary: fc.constantFrom('x'.repeat(300), 'sentinel', 'etc', 'file') },
  );
  const name = fc
    .tuple(fc.constantFrom('', '', '', '/', './', '../../', '../../../../../../..' + S + '/'), fc.array(comp, { minLength: 1, maxLength: 4 }), fc.constantFrom('', '', '/'))
    .map(([pre, cs, post]) => pre + cs.join('/') + post);
  const linkname = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(S, `${S}/file`, `${S}/etc`, `${S}/dir`, `../../../../../../..${S}`, `../../../../../../..${S}/file`, '/', '..', '../..', '../../..') },
    { weight: 2, arbitrary: name },
    { weight: 1, arbitrary: fc.constantFrom('.', '', `/${U}`, 'a', 'a/b', 'b/..', 'c') },
  );
  const entry: fc.Arbitrary<E> = fc.record({
    name,
    type: fc.constantFrom<NonNullable<E['type']>>('file', 'file', 'directory', 'directory', 'symlink', 'symlink', 'link', 'fifo', 'character-device', 'block-device'),
    data: fc.constantFrom('', 'x', 'pwned'),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.constantFrom(0, 1, 1000, 65534),
    gid: fc.constantFrom(0, 1, 1000, 65534),
    linkname,
    devmajor: fc.constantFrom(0, 1, 8),
    devminor: fc.constantFrom(0, 1, 3),
    pax: fc.option(
      fc.constantFrom<Record<string, string>>(
        { 'SCHILY.xattr.trusted.overlay.opaque': 'y' },
        { 'SCHILY.xattr.security.capability': 'x' },
        { path: `../../../../../../..${S}/pax-path` },
        { linkpath: `${S}/file` },
        { uid: '-1' },
        { mtime: 'NaN' },
        { size: '1' },
      ),
      { nil: undefined },
    ),
  });
  return fc.array(entry, { minLength: 1, maxLength: 10 });
}

/** A tar with random byte damage: flipped bytes, or cut short. */
function damage(tar: Buffer, cuts: { at: number; byte: number }[], truncate: number | null): Buffer {
  const b = Buffer.from(tar);
  for (const c of cuts) b[c.at % b.length] = c.byte;
  return truncate === null ? b : b.subarray(0, truncate % (b.length + 1));
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t!: NodeJS.Timeout;
  const timer = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, timer]);
  } finally {
    clearTimeout(t);
  }
}

async function outsideState(): Promise<string> {
  const top = (await fs.readdir(tmp)).sort().join(',');
  const layers = (await fs.readdir(path.join(tmp, 'x', 'y')).catch(() => [] as string[])).filter((n) => !/^l\d+$/.test(n));
  return `${top}|${layers.join(',')}|${await exists(`/${U}`)}|${await exists(path.join(tmp, U))}|${await exists(path.join(tmp, 'x', U))}`;
}

describe('fuzzing', () => {
  it('the Dockerfile parser and planner only ever refuse input with an MbuildError', () => {
    let n = 0;
    fc.assert(
      fc.property(dockerfile, (text) => {
        n++;
        try {
          const df = parseDockerfile(text, 'Dockerfile');
          planBuild(df, { buildArgs: { X: 'x' } });
          for (const ins of df.instructions) expandWord(ins.raw, (k) => (k === 'X' ? 'v' : undefined), df.escape);
        } catch (err) {
          if (!expectedRefusal(err)) throw new Error(`unexpected ${describeError(err)}\ninput: ${JSON.stringify(text)}`);
        }
      }),
      { numRuns: 200_000, interruptAfterTimeLimit: BUDGET_MS, markInterruptAsFailure: false },
    );
    console.log(`fuzzing: ${n} Dockerfiles`);
    expect(n).toBeGreaterThan(1000);
  });

  it.skipIf(!isRoot)('the layer applier refuses only with an MbuildError, never hangs, and never writes outside its root', async () => {
    const S = sentinel.dir;
    const before = await outsideState();
    await fc.assert(
      fc.asyncProperty(
        entries(S),
        fc.option(fc.tuple(fc.array(fc.record({ at: fc.nat(), byte: fc.nat(255) }), { maxLength: 4 }), fc.option(fc.nat(), { nil: null })), { nil: undefined }),
        async (list, dmg) => {
          let tar: Buffer;
          try {
            tar = await tarOf(list);
          } catch {
            return; // tar-stream itself cannot write this header (e.g. a name too long): not our input
          }
          if (dmg) tar = damage(tar, dmg[0], dmg[1]);
          const dir = path.join(tmp, 'x', 'y', `l${++runs}`);
          try {
            await withTimeout(applyLayerTar(Readable.from([tar]), dir, { maxBytes: 1 << 20, maxEntries: 100 }), 20_000, 'applyLayerTar');
          } catch (err) {
            if (!expectedRefusal(err)) throw new Error(`unexpected ${describeError(err)}\nentries: ${JSON.stringify(list)}`);
          }
          try {
            await sentinel.check();
          } catch (err) {
            await sentinel.reset(); // so that shrinking finds the input that did it
            throw new Error(`${(err as Error).message}\nentries: ${JSON.stringify(list)}`);
          }
          const now = await outsideState();
          if (now !== before) {
            await fs.rm(`/${U}`, { recursive: true, force: true });
            for (const n of await fs.readdir(tmp)) if (!['sentinel', 'x'].includes(n)) await fs.rm(path.join(tmp, n), { recursive: true, force: true });
            throw new Error(`something was written outside the layer root: ${now} (was ${before})\nentries: ${JSON.stringify(list)}`);
          }
          await fs.rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
        },
      ),
      { numRuns: 5_000, interruptAfterTimeLimit: BUDGET_MS, markInterruptAsFailure: false },
    );
    console.log(`fuzzing: ${runs} layer tars`);
    expect(runs).toBeGreaterThan(50);
  }, BUDGET_MS + 60_000);
});
