import { describe, expect, it } from 'vitest';
import { parseGroup, parsePasswd, resolveChown, resolveUser } from '../../builder/steps/users.js';

const db = {
  users: parsePasswd('root:x:0:0:root:/root:/bin/sh\nworker:x:1500:1600::/home/worker:/bin/sh\n# comment\nbroken line\n'),
  groups: parseGroup('root:x:0:\nstaff:x:1600:\nextra:x:1700:worker,other\nworkers:x:1800:\n'),
};

describe('users', () => {
  it('resolves USER by name with primary and supplementary groups', () => {
    expect(resolveUser('worker', db)).toEqual({ uid: 1500, gid: 1600, groups: [1700] });
  });
  it('allows numeric users that are not in passwd', () => {
    expect(resolveUser('4242', db)).toEqual({ uid: 4242, gid: 0, groups: [] });
    expect(resolveUser('1500', db).gid).toBe(1600);
  });
  it('takes an explicit group by name or number', () => {
    expect(resolveUser('worker:workers', db)).toMatchObject({ uid: 1500, gid: 1800 });
    expect(resolveUser('worker:77', db)).toMatchObject({ uid: 1500, gid: 77 });
  });
  it('refuses unknown names', () => {
    expect(() => resolveUser('nobody', db)).toThrow(/unable to find user nobody/);
    expect(() => resolveUser('worker:nogroup', db)).toThrow(/unable to find group nogroup/);
  });
  it('follows COPY --chown rules: uid alone means gid = uid; a name alone means its primary group', () => {
    expect(resolveChown('42', db)).toEqual({ uid: 42, gid: 42 });
    expect(resolveChown('1000:1001', db)).toEqual({ uid: 1000, gid: 1001 });
    expect(resolveChown('worker', db)).toEqual({ uid: 1500, gid: 1600 });
    expect(resolveChown('worker:extra', db)).toEqual({ uid: 1500, gid: 1700 });
    expect(() => resolveChown('ghost', db)).toThrow(/can't find uid for user ghost/);
  });
});
