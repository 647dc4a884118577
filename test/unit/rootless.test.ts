/** Rootless mode's pure parts: /etc/subuid parsing, the id maps, user namespace detection, the store's place. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mapArgs, subIdRange } from '../../cli/rootless.js';
import { inUserNamespace, rootlessDataHome } from '../../util/rootless.js';

describe('subIdRange', () => {
  const text = '# ranges\nalice:100000:65536\n1001:300000:1000\nbob:165536:0\nbob:200000:65536\n';
  it('takes the first range of the name or of the numeric id', () => {
    expect(subIdRange(text, 'alice', 1000)).toEqual({ start: 100000, count: 65536 });
    expect(subIdRange(text, 'carol', 1001)).toEqual({ start: 300000, count: 1000 });
  });
  it('skips empty ranges and reports none for an unknown user', () => {
    expect(subIdRange(text, 'bob', 1002)).toEqual({ start: 200000, count: 65536 });
    expect(subIdRange(text, 'dave', 1003)).toBeUndefined();
    expect(subIdRange('', 'alice', 1000)).toBeUndefined();
  });
});

describe('mapArgs', () => {
  it('maps 0 to the user and 1..N to the range, as newuidmap takes them', () => {
    expect(mapArgs(1001, { start: 100000, count: 65536 })).toEqual(['0', '1001', '1', '1', '100000', '65536']);
  });
});

describe('inUserNamespace', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mbuild-uidmap-'));
  const map = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  it('is false for the initial namespace, true for a mapped one', () => {
    expect(inUserNamespace(map('init', '         0          0 4294967295\n'))).toBe(false);
    expect(inUserNamespace(map('userns', '         0       1001          1\n         1     100000      65536\n'))).toBe(true);
  });
});

describe('rootlessDataHome', () => {
  it('is $XDG_DATA_HOME/mbuild, else ~/.local/share/mbuild', () => {
    expect(rootlessDataHome({ XDG_DATA_HOME: '/x/data', HOME: '/home/a' })).toBe('/x/data/mbuild');
    expect(rootlessDataHome({ XDG_DATA_HOME: 'relative', HOME: '/home/a' })).toBe('/home/a/.local/share/mbuild');
    expect(rootlessDataHome({ HOME: '/home/a' })).toBe('/home/a/.local/share/mbuild');
  });
});
