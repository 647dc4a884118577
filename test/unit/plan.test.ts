import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { planBuild } from '../../builder/plan/plan.js';

const plan = (text: string, opts = {}) => planBuild(parseDockerfile(text, 'Dockerfile'), opts);

describe('planBuild', () => {
  it('names and indexes stages, resolving FROM <stage> and COPY --from', () => {
    const p = plan(`FROM busybox AS Builder
RUN true
FROM builder AS second
FROM scratch
COPY --from=0 /a /
COPY --from=second /b /
COPY --from=alpine:3 /c /
`);
    expect(p.stages.map((s) => s.name)).toEqual(['builder', 'second', undefined]);
    expect(p.stages[0].base).toEqual({ kind: 'image', ref: 'busybox' });
    expect(p.stages[1].base).toEqual({ kind: 'stage', index: 0 });
    expect(p.stages[2].base).toEqual({ kind: 'scratch' });
    expect(p.stages[2].deps.sort()).toEqual([0, 1]);
    expect(p.stages[2].imageDeps).toEqual(['alpine:3']);
    expect(p.target).toBe(2);
    expect(p.order).toEqual([0, 1, 2]);
  });

  it('leaves out stages the target does not need', () => {
    const p = plan(`FROM busybox AS a
FROM busybox AS b
FROM busybox AS unused
RUN exit 1
FROM busybox
COPY --from=a /x /
COPY --from=b /y /
`);
    expect(p.order).toEqual([0, 1, 3]);
  });

  it('builds only up to --target', () => {
    const p = plan(`FROM busybox AS base
FROM base AS test
FROM base AS release
`, { target: 'test' });
    expect(p.target).toBe(1);
    expect(p.order).toEqual([0, 1]);
  });

  it('expands global ARGs in FROM, with --build-arg winning over defaults', () => {
    const text = `ARG BASE=busybox
ARG TAG
FROM $BASE:\${TAG:-latest}
`;
    expect(plan(text).stages[0].base).toEqual({ kind: 'image', ref: 'busybox:latest' });
    expect(plan(text, { buildArgs: { BASE: 'alpine', TAG: '3' } }).stages[0].base).toEqual({ kind: 'image', ref: 'alpine:3' });
  });

  it('knows the predefined platform ARGs in FROM', () => {
    expect(plan('FROM img-$TARGETOS-$TARGETARCH\n').stages[0].base).toEqual({ kind: 'image', ref: 'img-linux-amd64' });
  });

  it('refuses an unknown target, a later stage index and a stage copying from itself', () => {
    expect(() => plan('FROM busybox AS a\n', { target: 'nope' })).toThrow(/target stage "nope" could not be found/);
    expect(() => plan('FROM busybox\nCOPY --from=1 /a /\nFROM busybox\n')).toThrow(/not an earlier stage/);
    expect(() => plan('FROM busybox AS me\nCOPY --from=me /a /\n')).toThrow(/cannot copy from itself/);
    expect(() => plan('FROM busybox AS x\nFROM busybox AS x\n')).toThrow(/duplicate stage name/);
  });

  it('reports build args that no ARG consumes', () => {
    expect(plan('FROM busybox\nARG A\n', { buildArgs: { A: '1', B: '2', HTTP_PROXY: 'x' } }).unusedBuildArgs).toEqual(['B']);
  });

  it('carries the Dockerfile line of the error', () => {
    try {
      plan('FROM busybox\nCOPY --from=5 /a /\n');
      expect.unreachable();
    } catch (err) {
      expect((err as { range?: { start: number } }).range?.start).toBe(2);
    }
  });
});
