// Results as a markdown table (medians and ratios to BuildKit), an SVG bar chart, machine facts.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { median } from './proc.mjs';
import { TOOL_NAMES, LABELS } from './tools.mjs';

const s = (ms) => (ms >= 10_000 ? (ms / 1000).toFixed(1) : (ms / 1000).toFixed(2)) + ' s';

export function machineFacts(versions) {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    kernel: release(),
    node: process.version,
    ...versions,
  };
}

/** Collapses rows into one line per scenario+variant with a cell per tool. */
export function summarize(rows, tools) {
  const lines = [];
  for (const r of rows) {
    let l = lines.find((x) => x.scenario === r.scenario && x.variant === r.variant);
    if (!l) lines.push((l = { scenario: r.scenario, title: r.title, variant: r.variant, label: r.label, cells: {} }));
    l.cells[r.tool] = {
      median: r.samples.length ? median(r.samples) : null,
      n: r.samples.length,
      first: r.samples[0] ?? null,
      skipped: r.skipped,
      failed: r.errors.length ? r.errors : null,
      rssMb: r.rssKb.length ? Math.max(...r.rssKb) / 1024 : null,
      steps: r.steps.filter(Boolean).length ? median(r.steps.filter(Boolean).map((x) => x.steps)) : null,
      export: r.steps.filter(Boolean).length ? median(r.steps.filter(Boolean).map((x) => x.export)) : null,
      ranUnused: r.ranUnused.length ? r.ranUnused.some(Boolean) : null,
    };
  }
  return lines.filter((l) => tools.some((t) => l.cells[t]));
}

export function markdown(lines, tools, facts, skippedScenarios, notes) {
  const others = tools.filter((t) => t !== 'buildkit');
  const hasBk = tools.includes('buildkit');
  const head = ['scenario', ...tools.map((t) => LABELS[t]), ...(hasBk ? others.map((t) => `${LABELS[t]} ÷ BK`) : []), 'mbuild peak RSS'];
  const out = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i ? '---:' : '---')).join('|')}|`];
  const foot = [];
  for (const l of lines) {
    const cell = (t) => {
      const c = l.cells[t];
      if (!c) return '';
      if (c.median == null) {
        const why = c.skipped ?? (c.failed ? `failed: ${c.failed.join('; ')}` : 'no result');
        foot.push(`${l.title}, ${l.label}, ${LABELS[t]}: ${why}`);
        return c.failed ? 'failed' : '—';
      }
      if (c.n > 1 && c.first > 1.5 * c.median) foot.push(`${l.title}, ${l.label}, ${LABELS[t]}: the first run took ${s(c.first)}`);
      return s(c.median) + (c.failed ? ` (${c.failed.length} failed)` : '');
    };
    const bk = l.cells.buildkit?.median;
    const ratio = (t) => {
      const m = l.cells[t]?.median;
      return m != null && bk ? (m / bk).toFixed(2) + '×' : '';
    };
    const rss = l.cells.mbuild?.rssMb;
    const name = `${l.title}, ${l.label}${l.scenario === 'push' ? ' ¹' : ''}`;
    out.push(`| ${[name, ...tools.map(cell), ...(hasBk ? others.map(ratio) : []), rss ? `${Math.round(rss)} MB` : ''].join(' | ')} |`);
  }
  const text = [out.join('\n'), ''];
  if (lines.some((l) => l.scenario === 'push')) text.push('¹ push rows: the BuildKit column is `docker push` of the image BuildKit built.');
  const par = lines.find((l) => l.scenario === 'parallel');
  if (par) {
    const ran = tools.filter((t) => par.cells[t]?.ranUnused != null)
      .map((t) => `${LABELS[t]} ${par.cells[t].ranUnused ? 'ran it' : 'skipped it'}`);
    if (ran.length) text.push(`Unneeded stage: ${ran.join(', ')}.`);
  }
  for (const sk of skippedScenarios) text.push(`${sk.title}: ${sk.reason}.`);
  for (const f of foot) text.push(`- ${f}`);
  for (const n of notes) text.push(`- ${n}`);
  text.push('', `Medians of ${facts.runs} runs per cell, tools alternating. Taken ${facts.date} on ${facts.cpu}, ${facts.memory} RAM,`,
    `Linux ${facts.kernel}, Node ${facts.node}; ${facts.toolVersions}. Network for RUN: ${facts.network}.`);
  if (facts.load) {
    const pct = (x) => `${Math.round(x * 100)}%`;
    text.push(`Other work on the machine (CPU busy in the 250 ms before each run, while the benchmark was idle): median ${pct(facts.load.median)}, max ${pct(facts.load.max)}.`);
  }
  return text.join('\n');
}

/** Where mbuild's wall time goes: summed step times from its --progress plain log (medians) against the whole run. */
export function mbuildBreakdown(lines) {
  const rows = lines.filter((l) => l.cells.mbuild?.median != null && l.cells.mbuild.steps != null);
  if (!rows.length) return '';
  const out = ['| scenario | mbuild wall | Dockerfile steps | exporting layers | rest (start-up, planning, waiting) |', '|---|---:|---:|---:|---:|'];
  for (const l of rows) {
    const c = l.cells.mbuild;
    const rest = c.median - (c.steps + c.export) * 1000;
    out.push(`| ${l.title}, ${l.label} | ${s(c.median)} | ${s(c.steps * 1000)} | ${s(c.export * 1000)} | ${rest < 0 ? '(stages overlap)' : s(rest)} |`);
  }
  return out.join('\n');
}

const COLORS = { mbuild: '#2f6fb3', buildkit: '#e07b2a', legacy: '#8c8c8c', buildah: '#5a9e45' };

/** Grouped horizontal bars, one group per scenario+variant, on a log time axis. */
export function svgChart(lines, tools, facts) {
  const vals = lines.flatMap((l) => tools.map((t) => l.cells[t]?.median).filter((m) => m != null));
  if (!vals.length) return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><text x="10" y="25">no results</text></svg>\n';
  const lo = Math.min(0.05, Math.min(...vals) / 1000 / 1.5);
  const hi = (Math.max(...vals) / 1000) * 1.6;
  // each group: its title on a line of its own, then one bar per tool named on the left
  const W = 860, L = 110, R = 60, top = 62, title = 18, bar = 11, gap = 2, groupGap = 12;
  const x = (sec) => L + ((Math.log10(sec) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - L - R);
  const esc = (t) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const groupH = (l) => title + tools.filter((t) => l.cells[t]).length * (bar + gap);
  const H = top + lines.reduce((a, l) => a + groupH(l) + groupGap, 0) + 36;
  const el = [];
  el.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  el.push(`<text x="10" y="20" font-size="14" font-weight="bold">mbuild benchmarks: median wall time (log scale, shorter is better)</text>`);
  tools.forEach((t, i) => {
    el.push(`<rect x="${10 + i * 130}" y="32" width="12" height="12" fill="${COLORS[t]}"/>`);
    el.push(`<text x="${10 + i * 130 + 16}" y="42" font-size="12">${esc(LABELS[t])}</text>`);
  });
  const ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500].filter((t) => t >= lo && t <= hi);
  for (const t of ticks) {
    el.push(`<line x1="${x(t).toFixed(1)}" y1="${top - 4}" x2="${x(t).toFixed(1)}" y2="${H - 30}" stroke="#e4e4e4"/>`);
    el.push(`<text x="${x(t).toFixed(1)}" y="${H - 16}" font-size="11" text-anchor="middle" fill="#555">${t} s</text>`);
  }
  let y = top;
  for (const l of lines) {
    el.push(`<text x="10" y="${y + 12}" font-size="12" font-weight="bold">${esc(`${l.title}, ${l.label}`)}</text>`);
    y += title;
    for (const t of tools) {
      const c = l.cells[t];
      if (!c) continue;
      const name = l.scenario === 'push' && t === 'buildkit' ? 'docker push' : LABELS[t];
      el.push(`<text x="${L - 6}" y="${y + bar - 2}" font-size="10" text-anchor="end" fill="#555">${esc(name)}</text>`);
      if (c.median != null) {
        const sec = c.median / 1000;
        el.push(`<rect x="${L}" y="${y}" width="${Math.max(1, x(sec) - L).toFixed(1)}" height="${bar}" fill="${COLORS[t]}"/>`);
        el.push(`<text x="${(x(sec) + 4).toFixed(1)}" y="${y + bar - 2}" font-size="10" fill="#333">${s(c.median)}</text>`);
      } else {
        el.push(`<text x="${L + 4}" y="${y + bar - 2}" font-size="10" fill="#999">${c.failed ? 'failed' : 'skipped'}</text>`);
      }
      y += bar + gap;
    }
    y += groupGap;
  }
  el.push(`<text x="10" y="${H - 2}" font-size="10" fill="#777">${esc(`${facts.date}, ${facts.cpu}, ${facts.memory}, Linux ${facts.kernel}; median of ${facts.runs} runs per bar`)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n${el.join('\n')}\n</svg>\n`;
}

/** The markdown (table, notes, mbuild's breakdown) and the chart for a run's data. */
export function render({ facts, rows, shown, skippedScenarios = [], notes = [] }) {
  const tools = shown ?? TOOL_NAMES.filter((t) => rows.some((r) => r.tool === t));
  const lines = summarize(rows, tools);
  const md = markdown(lines, tools, facts, skippedScenarios, notes);
  const breakdown = mbuildBreakdown(lines);
  return { text: breakdown ? `${md}\n\n${breakdown}` : md, svg: svgChart(lines, tools, facts) };
}

/** Replaces the text between the README's bench markers with BODY. */
export function updateReadme(file, body) {
  const start = '<!-- bench:start -->', end = '<!-- bench:end -->';
  if (!existsSync(file)) return false;
  const text = readFileSync(file, 'utf8');
  const a = text.indexOf(start), b = text.indexOf(end);
  if (a < 0 || b < a) return false;
  writeFileSync(file, text.slice(0, a + start.length) + '\n' + body.trim() + '\n' + text.slice(b));
  return true;
}

export { TOOL_NAMES };
