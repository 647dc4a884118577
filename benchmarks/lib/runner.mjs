// The measuring loop: per scenario and variant, N rounds; each round runs every tool once, in an
// order that rotates from round to round (alternating, so drift in the machine hits all tools alike).
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tail } from './proc.mjs';
import { startRegistry } from './daemons.mjs';

const secs = (ms) => (ms / 1000).toFixed(2);

const VARIANT_LABELS = { cold: 'cold', warm: 'warm (no change)', change: 'one line changed', fresh: 'fresh runner' };

/**
 * From an mbuild --progress plain log: the summed "#N ... DONE 1.234s" times of the Dockerfile
 * steps ("#N [stage 2/3] RUN ...") and of the rest (exporting layers, writing outputs).
 */
export function stepSeconds(log) {
  const labels = new Map();
  const t = { steps: 0, export: 0 };
  try {
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      const m = line.match(/^#(\d+) (.*)$/);
      if (!m) continue;
      if (!labels.has(m[1])) labels.set(m[1], m[2]);
      const done = m[2].match(/(?:^| )DONE ([\d.]+)s$/);
      if (done) t[labels.get(m[1]).startsWith('[') ? 'steps' : 'export'] += Number(done[1]);
    }
  } catch {
    return null;
  }
  return t;
}

const cpuTimes = () => {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: user + nice + system + irq + softirq + steal, all: user + nice + system + idle + iowait + irq + softirq + steal };
};

/**
 * Lets the previous run's dirty pages reach the disk before the next tool's clock starts; returns
 * how busy the machine was (0..1 of all cores) over 250 ms while the benchmark itself was idle:
 * other people's work that shares the cores shows up there.
 */
async function settle(waitIdleSec) {
  spawnSync('sync');
  const deadline = Date.now() + waitIdleSec * 1000;
  for (;;) {
    const a = cpuTimes();
    await new Promise((r) => setTimeout(r, 250));
    const b = cpuTimes();
    const busy = b.all > a.all ? (b.busy - a.busy) / (b.all - a.all) : 0;
    // --wait-idle: hold the next run while someone else keeps the cores busy (up to that long)
    if (busy < 0.25 || Date.now() >= deadline) return busy;
  }
}

export async function runScenario(sc, tools, env) {
  const { runs, work, variantsFilter, say } = env;
  const logs = join(work, 'logs');
  mkdirSync(logs, { recursive: true });
  const rows = [];
  const row = (variant, tool) => {
    let r = rows.find((x) => x.variant === variant && x.tool === tool);
    if (!r) {
      const label = sc.labels?.[variant] ?? VARIANT_LABELS[variant] ?? variant;
      rows.push((r = { scenario: sc.id, title: sc.title, variant, label, tool, samples: [], rssKb: [], steps: [], errors: [], ranUnused: [] }));
    }
    return r;
  };
  const variants = sc.variants.filter((v) => !variantsFilter || variantsFilter.includes(v));

  const prep = sc.prepare({ repo: env.repo, work, registryPort: env.registryPort });
  // base images (a missing one skips the scenario), then into each tool; a tool that cannot
  // take them sits this scenario out
  const archives = {};
  for (const name of prep.images) archives[name] = await env.archives(name);
  let active = [];
  for (const t of tools) {
    try {
      for (const name of prep.images) t.ensureImage(name, archives[name]);
      active.push(t);
    } catch (e) {
      for (const v of variants) row(v, t.name).skipped = `base images: ${e.message.split('\n')[0]}`;
    }
  }
  const tagFor = (t) => prep.tag ?? `bench/${sc.id}:${t.name}`;
  let nonce = 0;
  const stamp = Date.now().toString(36);

  const build = async (t, variant, round, noCache) => {
    const log = join(logs, `${sc.id}-${variant}-${t.name}-${round}.log`);
    const r = await t.build({ ctx: prep.ctx, dockerfile: prep.dockerfile, tag: tagFor(t), noCache, log, output: prep.output });
    return { ...r, log };
  };
  const record = (variant, t, round, r) => {
    env.loads.push(r.load);
    const x = row(variant, t.name);
    if (r.code !== 0) {
      x.errors.push(`run ${round}: exit ${r.code}`);
      say(`  ${t.name}: FAILED (exit ${r.code}), log ${r.log}:\n${tail(r.log, 12).replace(/^/gm, '    ')}`);
      return;
    }
    x.samples.push(r.ms);
    if (r.rssKb) x.rssKb.push(r.rssKb);
    if (t.name === 'mbuild') x.steps.push(stepSeconds(r.log));
    if (sc.ranMarker) x.ranUnused.push(readFileSync(r.log, 'utf8').includes(sc.ranMarker));
    say(`  [${sc.id} ${variant} ${round}/${runs}] ${t.name.padEnd(8)} ${secs(r.ms)} s${r.rssKb ? `  rss ${Math.round(r.rssKb / 1024)} MB` : ''}`);
  };

  if (sc.kind === 'push') {
    active = active.filter((t) => {
      if (t.name === 'legacy') return false; // the same `docker push` as BuildKit's row
      if (t.pushMissing) for (const v of variants) row(v, t.name).skipped = t.pushMissing;
      return !t.pushMissing;
    });
    // the image to push, built once per tool
    active = (await Promise.all(active.map(async (t) => {
      const r = await build(t, 'prepare', 0, false);
      if (r.code === 0) return t;
      for (const v of variants) row(v, t.name).skipped = `building the image failed: ${tail(r.log, 3)}`;
      return null;
    }))).filter(Boolean);
    const regDir = join(work, 'registry');
    for (const variant of variants) {
      let reg = null;
      try {
        if (variant === 'warm') {
          reg = await startRegistry(regDir, env.registryPort);
          for (const t of active) await t.push({ image: tagFor(t), log: join(logs, `push-prime-${t.name}.log`) });
        }
        for (let round = 1; round <= runs && !env.aborted(); round++) {
          for (const t of rotate(active, round)) {
            if (variant === 'cold') {
              await reg?.stop();
              reg = await startRegistry(regDir, env.registryPort); // empty: every blob must be sent
            }
            const log = join(logs, `push-${variant}-${t.name}-${round}.log`);
            const load = await settle(env.waitIdle);
            record(variant, t, round, { ...(await t.push({ image: tagFor(t), log })), log, load });
          }
        }
      } finally {
        await reg?.stop();
      }
    }
    return rows;
  }

  if (sc.kind === 'server' || sc.kind === 'concurrent') {
    const { serverScenario } = await import('./server-runs.mjs');
    await serverScenario({ sc, prep, active, variants, runs, work, logs, env, row, record, settle, rotate, tagFor });
    return rows;
  }

  if (sc.kind === 'cachefrom') {
    // runner A builds once and exports its cache to the registry (untimed); each timed run is a
    // fresh runner B: no build cache, the base images loaded, the same context
    const reg = await startRegistry(join(work, 'registry'), env.registryPort);
    try {
      const ref = (t) => `127.0.0.1:${env.registryPort}/bench/${sc.id}-${t.name}:cache`;
      const ready = [];
      for (const t of active) {
        if (!t.exportCache) {
          for (const v of variants) row(v, t.name).skipped = 'no registry cache';
          continue;
        }
        const r = await t.exportCache({ ctx: prep.ctx, dockerfile: prep.dockerfile, ref: ref(t), log: join(logs, `${sc.id}-export-${t.name}.log`) });
        if (r.code === 0) ready.push(t);
        else for (const v of variants) row(v, t.name).skipped = `exporting the cache failed: ${tail(join(logs, `${sc.id}-export-${t.name}.log`), 3)}`;
      }
      for (const variant of variants) {
        for (let round = 1; round <= runs && !env.aborted(); round++) {
          for (const t of rotate(ready, round)) {
            await t.freshRunner(prep.images, archives);
            const log = join(logs, `${sc.id}-${variant}-${t.name}-${round}.log`);
            const load = await settle(env.waitIdle);
            record(variant, t, round, { ...(await t.importCache({ ctx: prep.ctx, dockerfile: prep.dockerfile, ref: ref(t), tag: tagFor(t), log })), log, load });
          }
        }
      }
    } finally {
      await reg.stop();
    }
    return rows;
  }

  for (const variant of variants) {
    let ready = active;
    if (variant !== 'cold') {
      // prime: the cache holds this context's result before the timed runs
      ready = [];
      for (const t of active) {
        const r = await build(t, variant, 0, false);
        if (r.code === 0) ready.push(t);
        else row(variant, t.name).skipped = `priming build failed: ${tail(r.log, 3)}`;
      }
    }
    for (let round = 1; round <= runs && !env.aborted(); round++) {
      for (const t of rotate(ready, round)) {
        if (variant === 'change') prep.mutate(`${stamp}-${++nonce}`);
        const load = await settle(env.waitIdle);
        record(variant, t, round, { ...(await build(t, variant, round, variant === 'cold')), load });
      }
    }
  }
  return rows;
}

function rotate(list, round) {
  if (list.length === 0) return list;
  const k = (round - 1) % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}
