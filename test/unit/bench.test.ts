// The benchmark harness's pure parts (benchmarks/lib): what it parses, derives and prints.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
// @ts-expect-error plain .mjs without types
import { baseImages } from '../../benchmarks/lib/scenarios.mjs';
// @ts-expect-error plain .mjs without types
import { normalizeName } from '../../benchmarks/lib/tools.mjs';
// @ts-expect-error plain .mjs without types
import { median } from '../../benchmarks/lib/proc.mjs';
// @ts-expect-error plain .mjs without types
import { stepSeconds } from '../../benchmarks/lib/runner.mjs';
// @ts-expect-error plain .mjs without types
import { makeFileTree, writeRandomFile } from '../../benchmarks/lib/generate.mjs';
// @ts-expect-error plain .mjs without types
import { summarize, markdown, svgChart, updateReadme } from '../../benchmarks/lib/report.mjs';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'bench-unit-'));

describe('benchmark harness', () => {
  it('finds the external images of a multi-stage Dockerfile', () => {
    const df = 'FROM golang AS builder\nRUN x\nFROM --platform=linux/amd64 alpine:3 AS a\nFROM builder\nFROM scratch\nfrom a\nFROM golang\n';
    expect(baseImages(df)).toEqual(['golang', 'alpine:3']);
  });

  it('normalizes base names the way docker does', () => {
    expect(normalizeName('busybox')).toBe('docker.io/library/busybox:latest');
    expect(normalizeName('me/app:1')).toBe('docker.io/me/app:1');
    expect(normalizeName('127.0.0.1:5000/x')).toBe('127.0.0.1:5000/x:latest');
    expect(normalizeName('localhost/x:2')).toBe('localhost/x:2');
  });

  it('takes medians of odd and even samples', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('splits an mbuild plain log into step and export time', () => {
    const dir = tmp();
    const log = path.join(dir, 'l');
    writeFileSync(log, ['#1 [a 1/2] FROM busybox', '#2 [b 1/1] FROM busybox', '#1 0.1 hello', '#1 DONE 0.5s',
      '#2 CACHED DONE 0.25s', '#3 exporting layers', '#3 manifest sha256:ab DONE 2.000s', 'built x'].join('\n'));
    expect(stepSeconds(log)).toEqual({ steps: 0.75, export: 2 });
    rmSync(dir, { recursive: true });
  });

  it('generates the same context every time: 5,000 files, 100 MB, compressible like source', () => {
    const a = tmp();
    makeFileTree(a, { files: 200, dirs: 10, total: 2_000_000 });
    const files = readdirSync(a, { recursive: true }).map(String).filter((f) => f.endsWith('.txt')).sort();
    expect(files).toHaveLength(200);
    const total = files.reduce((n, f) => n + statSync(path.join(a, f)).size, 0);
    expect(total).toBe(2_000_000);
    const sample = readFileSync(path.join(a, files[0]));
    expect(gzipSync(sample).length).toBeLessThan(sample.length / 2);
    const b = tmp();
    makeFileTree(b, { files: 200, dirs: 10, total: 2_000_000 });
    const digest = (d: string) => createHash('sha256').update(files.map((f) => readFileSync(path.join(d, f))).join('|')).digest('hex');
    expect(digest(b)).toBe(digest(a));
    writeRandomFile(path.join(a, 'r1'), 3 << 20);
    writeRandomFile(path.join(b, 'r2'), 3 << 20);
    const r = readFileSync(path.join(a, 'r1'));
    expect(r.length).toBe(3 << 20);
    expect(r.equals(readFileSync(path.join(b, 'r2')))).toBe(true);
    expect(gzipSync(r).length).toBeGreaterThan(r.length * 0.99); // incompressible
    rmSync(a, { recursive: true });
    rmSync(b, { recursive: true });
  });

  it('prints ratios to BuildKit, skips and first-run outliers; draws one bar per result', () => {
    const row = (tool: string, samples: number[], extra = {}) => ({ scenario: 'runs30', title: '30 tiny RUN steps', variant: 'cold', label: 'cold',
      tool, samples, rssKb: tool === 'mbuild' ? [65536] : [], steps: [], errors: [], ranUnused: [], ...extra });
    const rows = [row('mbuild', [9000, 1000, 1200]), row('buildkit', [10000, 10000, 12000]),
      row('buildah', [], { skipped: 'buildah is not installed' })];
    const tools = ['mbuild', 'buildkit', 'legacy', 'buildah'];
    const lines = summarize(rows, tools);
    const facts = { date: 'D', cpu: '2 × CPU', memory: '24 GiB', kernel: 'K', node: 'v20', toolVersions: 'V', network: 'N', runs: 3 };
    const md = markdown(lines, tools, facts, [{ title: 'Go', reason: 'skipped: examples/myhttpserver missing' }], []);
    expect(md).toContain('| 30 tiny RUN steps, cold | 1.20 s | 10.0 s |  | — | 0.12× |  |  | 64 MB |');
    expect(md).toContain('Go: skipped: examples/myhttpserver missing.');
    expect(md).toContain('buildah: buildah is not installed');
    expect(md).toContain('mbuild: the first run took 9.00 s');
    const svg = svgChart(lines, tools, facts);
    expect(svg.match(/<rect [^>]*fill="#/g)?.length).toBe(1 + 4 + 2); // background, legend, two bars
    const dir = tmp();
    const readme = path.join(dir, 'README.md');
    writeFileSync(readme, 'intro\n<!-- bench:start -->\nold\n<!-- bench:end -->\nrest\n');
    expect(updateReadme(readme, 'new table')).toBe(true);
    expect(readFileSync(readme, 'utf8')).toBe('intro\n<!-- bench:start -->\nnew table\n<!-- bench:end -->\nrest\n');
    rmSync(dir, { recursive: true });
  });
});
