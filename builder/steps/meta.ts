/** Instructions that only change the image config: ENV, ARG, LABEL, EXPOSE, VOLUME, USER, CMD, ... */
import type { CommandForm, Instruction } from '../dockerfile/types.js';
import { expandWord } from '../expand/shell-word.js';
import { exposedPorts, PortSpecError } from '../dockerfile/expose.js';
import { DEFAULT_SHELL, lookupFor, setEnv, type StageState } from './state.js';
import { MbuildError } from '../../util/errors.js';
import type { Plan } from '../plan/plan.js';

function command(s: StageState, cmd: CommandForm): string[] {
  return cmd.shell ? [...(s.config.Shell ?? DEFAULT_SHELL), cmd.command] : cmd.args;
}

/** Apply a metadata instruction; returns false when the instruction is not a metadata one. */
export function applyMeta(s: StageState, ins: Instruction, plan: Pick<Plan, 'buildArgs' | 'globalArgs' | 'escape'>): boolean {
  const x = (w: string) => expandWord(w, lookupFor(s), plan.escape);
  switch (ins.kind) {
    case 'env': {
      // every value sees the variables as they were before this instruction (ENV a=x b=$a)
      const values = ins.pairs.map((p) => ({ key: x(p.key), value: x(p.value) }));
      for (const { key, value } of values) {
        if (!key) throw new MbuildError('MBUILD_PARSE', 'ENV names can not be blank', { range: ins.range });
        setEnv(s, key, value);
      }
      return true;
    }
    case 'arg':
      for (const a of ins.args) {
        let value: string | undefined;
        if (a.name in plan.buildArgs) value = plan.buildArgs[a.name];
        else if (a.default !== undefined) value = x(a.default);
        else if (plan.globalArgs.has(a.name)) value = plan.globalArgs.get(a.name);
        else if (s.args.has(a.name)) value = s.args.get(a.name);
        s.args.set(a.name, value);
      }
      return true;
    case 'label': {
      const labels = { ...(s.config.Labels ?? {}) };
      for (const p of ins.pairs) labels[x(p.key)] = x(p.value);
      s.config.Labels = labels;
      return true;
    }
    case 'expose': {
      let specs: string[];
      try {
        specs = exposedPorts(ins.ports, lookupFor(s), plan.escape);
      } catch (e) {
        if (e instanceof PortSpecError) throw new MbuildError('MBUILD_PARSE', e.message, { range: ins.range });
        throw e;
      }
      // keys in Go's map order (sorted), as the image config JSON has them
      const all = new Set([...Object.keys(s.config.ExposedPorts ?? {}), ...specs]);
      s.config.ExposedPorts = Object.fromEntries([...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((p) => [p, {}]));
      return true;
    }
    case 'volume': {
      const vols = { ...(s.config.Volumes ?? {}) };
      for (const w of ins.paths) {
        const v = x(w);
        if (!v) throw new MbuildError('MBUILD_PARSE', 'VOLUME specified can not be an empty string', { range: ins.range });
        vols[v] = {};
      }
      s.config.Volumes = vols;
      return true;
    }
    case 'user':
      s.config.User = x(ins.user);
      return true;
    case 'cmd':
      s.config.Cmd = command(s, ins.cmd);
      s.cmdSetHere = true;
      return true;
    case 'entrypoint':
      s.config.Entrypoint = command(s, ins.cmd);
      if (!s.cmdSetHere) s.config.Cmd = null; // ENTRYPOINT resets an inherited CMD
      return true;
    case 'shell':
      s.config.Shell = ins.args;
      return true;
    case 'stopsignal':
      s.config.StopSignal = x(ins.signal);
      return true;
    case 'healthcheck': {
      const h: NonNullable<StageState['config']['Healthcheck']> = { Test: ins.test };
      if (ins.interval) h.Interval = ins.interval;
      if (ins.timeout) h.Timeout = ins.timeout;
      if (ins.startPeriod) h.StartPeriod = ins.startPeriod;
      if (ins.startInterval) h.StartInterval = ins.startInterval;
      if (ins.retries) h.Retries = ins.retries;
      s.config.Healthcheck = h;
      return true;
    }
    case 'maintainer':
      return true; // recorded as the image author by the caller
    case 'onbuild':
      s.config.OnBuild = [...(s.config.OnBuild ?? []), ins.trigger];
      return true;
    default:
      return false;
  }
}
