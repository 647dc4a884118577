/** WORKDIR: sets the working directory and creates it (0755, owned by the current USER) if missing. */
import path from 'node:path';
import type { WorkdirInstruction } from '../dockerfile/types.js';
import type { StepRun } from './contract.js';
import { lookupFor } from './state.js';
import { expandWord } from '../expand/shell-word.js';
import { readUserDb, resolveUser } from './users.js';
import { ensureDir } from './copy.js';
import { commitOrDiscard } from './contract.js';

export async function workdirStep({ ctx, state, cache }: StepRun, ins: WorkdirInstruction): Promise<void> {
  const p = expandWord(ins.path, lookupFor(state), ctx.escape);
  // an absolute WORKDIR is kept as written (BuildKit keeps "/root/"); a relative one joins the previous
  const wd = path.posix.isAbsolute(p) ? p : path.posix.join('/', state.config.WorkingDir || '/', p);
  state.config.WorkingDir = wd;
  const epoch = ctx.sourceDateEpoch;
  const hit = await cache.lookup({ op: 'workdir', dest: wd, user: state.config.User ?? '', ...(epoch ? { epoch: epoch.getTime() } : {}) });
  if (hit) {
    state.layers.push(hit);
    return;
  }
  const active = await ctx.snap.change(state.layers, async (root) => {
    const userSpec = state.config.User;
    const owner = userSpec && userSpec !== 'root' && userSpec !== '0' ? resolveUser(userSpec, await readUserDb(root), ins.range) : undefined;
    // under SOURCE_DATE_EPOCH the directories made get that time, as BuildKit's Mkdir does
    await ensureDir(root, wd, owner, undefined, epoch);
  });
  state.layers.push(await commitOrDiscard(ctx, cache, active));
}
