import { describe, expect, it } from 'vitest';
import { parseDockerfile } from '../../../builder/dockerfile/parse.js';
import { planBuild } from '../../../builder/plan/plan.js';
import { applyMeta } from '../../../builder/steps/meta.js';
import { baseState, type StageState } from '../../../builder/steps/state.js';

/** The state after the target stage's instructions (all metadata ones) ran on a base image config. */
function run(text: string, opts: { buildArgs?: Record<string, string>; base?: Record<string, unknown> } = {}): StageState {
  const plan = planBuild(parseDockerfile(text, 'Dockerfile'), { buildArgs: opts.buildArgs });
  const s = baseState({ config: opts.base ?? {} } as never, [], 'k');
  for (const ins of plan.stages[plan.target]!.instructions) expect(applyMeta(s, ins, plan)).toBe(true);
  return s;
}

describe('metadata instructions', () => {
  it('ENV sees the values from before the instruction and keeps a replaced variable in its place', () => {
    const s = run('FROM scratch\nENV A=1 B=2\nENV A=x B=$A\n');
    expect(s.config.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=x', 'B=1']);
  });

  it('ARG takes --build-arg, else its default; ENV of the same name wins over it', () => {
    const s = run('FROM scratch\nARG A=dflt\nARG B=dflt\nARG C\nENV B=env\nLABEL a=$A b=$B c=${C:-none}\n', { buildArgs: { A: 'given' } });
    expect(s.config.Labels).toEqual({ a: 'given', b: 'env', c: 'none' });
    expect(s.args.get('C')).toBeUndefined();
    expect(s.args.has('C')).toBe(true);
  });

  it('EXPOSE expands ranges and lowercases the protocol; a bad port is one error naming it', () => {
    expect(run('FROM scratch\nEXPOSE 80 53/UDP 8000-8002\n').config.ExposedPorts).toEqual({ '80/tcp': {}, '53/udp': {}, '8000/tcp': {}, '8001/tcp': {}, '8002/tcp': {} });
    expect(() => run('FROM scratch\nEXPOSE http\n')).toThrow('invalid containerPort: http');
  });

  it('CMD and ENTRYPOINT: the shell form uses SHELL; ENTRYPOINT resets an inherited CMD but not its own stage\'s', () => {
    const s = run('FROM scratch\nSHELL ["/bin/bash", "-c"]\nCMD echo hi\n');
    expect(s.config.Cmd).toEqual(['/bin/bash', '-c', 'echo hi']);
    const inherited = run('FROM scratch\nENTRYPOINT ["/app"]\n', { base: { Cmd: ['old'] } });
    expect(inherited.config.Cmd).toBeNull();
    const own = run('FROM scratch\nCMD ["x"]\nENTRYPOINT ["/app"]\n');
    expect(own.config.Cmd).toEqual(['x']);
  });

  it('USER, VOLUME, STOPSIGNAL, ONBUILD and HEALTHCHECK land in the config', () => {
    const s = run('FROM scratch\nARG U=app\nUSER $U\nVOLUME /data /logs\nSTOPSIGNAL SIGQUIT\nONBUILD RUN true\nHEALTHCHECK --interval=5s --retries=2 CMD true\n');
    expect(s.config.User).toBe('app');
    expect(s.config.Volumes).toEqual({ '/data': {}, '/logs': {} });
    expect(s.config.StopSignal).toBe('SIGQUIT');
    expect(s.config.OnBuild).toEqual(['RUN true']);
    expect(s.config.Healthcheck).toMatchObject({ Test: ['CMD-SHELL', 'true'], Interval: 5e9, Retries: 2 });
  });

  it('refuses an empty VOLUME and leaves non-metadata instructions to their steps', () => {
    expect(() => run('FROM scratch\nARG E\nVOLUME $E\n')).toThrow('VOLUME specified can not be an empty string');
    const plan = planBuild(parseDockerfile('FROM scratch\nRUN true\n', 'Dockerfile'));
    expect(applyMeta(baseState(undefined, [], 'k'), plan.stages[0]!.instructions[0]!, plan)).toBe(false);
  });
});
