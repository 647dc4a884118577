// The server rows (issue 16): mbuild's builds go to an `mbuild serve` on the bench store through
// --host; docker's go to dockerd, which is a server already. Same contexts, tools alternating.
//  - kind 'server' (serverctx): a primed server, then each timed run builds a fresh copy of the
//    context (new mtimes; mbuild's client also gets an empty hash cache, as a new runner has).
//  - kind 'concurrent' (conc8): each timed run starts eight --no-cache builds at once and ends
//    when the last one does.
import { cpSync, mkdirSync, openSync, closeSync, rmSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { tail, sleep } from './proc.mjs';

export async function startServer({ exe, argv, host, log }) {
  const fd = openSync(log, 'a');
  const child = spawn(exe, argv, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const sock = host.slice('unix://'.length);
  for (let i = 0; i < 300 && !existsSync(sock); i++) {
    if (child.exitCode !== null) throw new Error(`mbuild serve exited: ${tail(log, 5)}`);
    await sleep(100);
  }
  if (!existsSync(sock)) throw new Error(`mbuild serve did not listen: ${tail(log, 5)}`);
  return {
    host,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function serverScenario({ sc, prep, active, variants, runs, work, logs, env, row, record, settle, rotate, tagFor }) {
  const servers = new Map();
  let fresh = 0;
  // one build of a context on this tool: through the server for mbuild, through dockerd for docker
  const buildOn = (t, { ctx, dockerfile, tag, noCache, log, clientEnv }) =>
    t.name === 'mbuild'
      ? t.remoteBuild({ host: servers.get(t).host, ctx, dockerfile, tag, noCache, log, env: clientEnv })
      : t.build({ ctx, dockerfile, tag, noCache, log });
  try {
    for (const t of active) {
      if (t.name !== 'mbuild') continue;
      const dir = join(work, 'server');
      mkdirSync(dir, { recursive: true });
      servers.set(t, await t.serve({ dir, maxBuilds: 8, log: join(logs, `${sc.id}-server.log`) }));
    }
    const freshCopy = () => {
      rmSync(prep.ctx, { recursive: true, force: true });
      cpSync(prep.src, prep.ctx, { recursive: true }); // new mtimes, as a fresh checkout has
    };
    const clientEnv = () => ({ XDG_CACHE_HOME: join(work, `client-cache-${++fresh}`) });
    const ready = [];
    if (sc.kind === 'server') {
      // prime: the server (and dockerd) have built this repository before
      for (const t of active) {
        freshCopy();
        const log = join(logs, `${sc.id}-prime-${t.name}.log`);
        const r = await buildOn(t, { ctx: prep.ctx, dockerfile: prep.dockerfile, tag: tagFor(t), log, clientEnv: clientEnv() });
        if (r.code === 0) ready.push(t);
        else for (const v of variants) row(v, t.name).skipped = `priming build failed: ${tail(log, 3)}`;
      }
    } else ready.push(...active);
    for (const variant of variants) {
      for (let round = 1; round <= runs && !env.aborted(); round++) {
        for (const t of rotate(ready, round)) {
          const log = join(logs, `${sc.id}-${variant}-${t.name}-${round}.log`);
          if (sc.kind === 'server') {
            freshCopy();
            const cenv = clientEnv();
            const load = await settle(env.waitIdle);
            record(variant, t, round, { ...(await buildOn(t, { ctx: prep.ctx, dockerfile: prep.dockerfile, tag: tagFor(t), log, clientEnv: cenv })), log, load });
          } else {
            const load = await settle(env.waitIdle);
            const t0 = process.hrtime.bigint();
            const rs = await Promise.all(prep.ctxs.map((ctx, i) =>
              buildOn(t, { ctx, dockerfile: join(ctx, 'Dockerfile'), tag: `bench/${sc.id}-${i}:${t.name}`, noCache: true, log: `${log}.${i}`, clientEnv: { XDG_CACHE_HOME: join(work, 'client-cache') } })));
            const ms = Number(process.hrtime.bigint() - t0) / 1e6;
            const failed = rs.findIndex((r) => r.code !== 0);
            record(variant, t, round, { code: failed < 0 ? 0 : rs[failed].code, ms, log: failed < 0 ? `${log}.0` : `${log}.${failed}`, load });
          }
        }
      }
    }
  } finally {
    for (const s of servers.values()) await s.stop();
  }
  return [];
}
