/** --chmod values as BuildKit takes them: octal, or chmod(1) symbolic modes applied to each entry's own mode. */
import { describe, expect, it } from 'vitest';
import { parseChmod } from '../../builder/steps/chmod.js';

const m = (spec: string, mode: number, isDir = false) => parseChmod(spec, '--chmod').apply(mode, isDir).toString(8);

describe('parseChmod', () => {
  it('takes octal modes up to 07777', () => {
    expect(parseChmod('0755', '--chmod').octal).toBe(0o755);
    expect(parseChmod('644', '--chmod').apply(0o777, false)).toBe(0o644);
    expect(parseChmod('4755', '--chmod').octal).toBe(0o4755);
    expect(() => parseChmod('10000', '--chmod')).toThrow("--chmod: invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777");
    expect(() => parseChmod('0789', '--chmod')).toThrow(/it should be octal/);
    expect(() => parseChmod('64a', '--chmod')).toThrow(/invalid chmod parameter: '64a'/);
  });

  it('applies symbolic modes to the entry mode', () => {
    expect(m('u+x', 0o644)).toBe('744');
    expect(m('+x', 0o644)).toBe('755');
    expect(m('a=rX', 0o640)).toBe('444');
    expect(m('a=rX', 0o750)).toBe('555');
    expect(m('a=rX', 0o600, true)).toBe('555');
    expect(m('go-w', 0o666)).toBe('644');
    expect(m('u=rwx,g=rx,o=', 0o600)).toBe('750');
    expect(m('g=u', 0o740)).toBe('770');
    expect(m('u+s', 0o755)).toBe('4755');
    expect(m('+t', 0o777, true)).toBe('1777');
    expect(m('o-rwx', 0o777)).toBe('770');
  });

  it('refuses what is neither', () => {
    for (const bad of ['u+y', 'z=r', 'u+x,', '', 'rwx']) expect(() => parseChmod(bad, 'COPY --chmod'), bad).toThrow(/invalid COPY --chmod value/);
  });
});
