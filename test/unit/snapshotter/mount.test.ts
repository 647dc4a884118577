/** Mount descriptions (snapshotter/mount.ts): what the snapshotters hand out, and the mounter reads back. */
import { describe, expect, it } from 'vitest';
import { bindMount, overlayDirs, overlayMount, single } from '../../../snapshotter/mount.js';

describe('mount descriptions', () => {
  it('describe an overlay as containerd does: type, source, mount(8) options', () => {
    expect(overlayMount({ lowerDirs: ['/s/c-2/fs', '/s/c-1/fs'], upperDir: '/s/b-1/fs', workDir: '/s/b-1/work' })).toEqual({
      type: 'overlay',
      source: 'overlay',
      options: ['lowerdir=/s/c-2/fs:/s/c-1/fs', 'upperdir=/s/b-1/fs', 'workdir=/s/b-1/work', 'redirect_dir=off', 'index=off', 'metacopy=off'],
    });
    expect(overlayMount({ lowerDirs: ['/a', '/b'] }).options.some((o) => o.startsWith('upperdir='))).toBe(false);
    expect(bindMount('/s/x', true)).toEqual({ type: 'bind', source: '/s/x', options: ['rbind', 'ro'] });
  });

  it('read back the same directories, with the characters overlay escapes', () => {
    const dirs = { lowerDirs: ['/r:oot/a,b/fs', '/back\\slash/fs', '/plain'], upperDir: '/u,p:per/fs', workDir: '/w\\ork' };
    const m = overlayMount(dirs);
    expect(m.options[0]).toBe('lowerdir=/r\\:oot/a\\,b/fs:/back\\\\slash/fs:/plain');
    expect(overlayDirs(m)).toEqual(dirs);
    expect(overlayDirs(overlayMount({ lowerDirs: ['/x', '/y'] }))).toEqual({ lowerDirs: ['/x', '/y'] });
  });

  it('refuse what is not one overlay where one is needed', () => {
    expect(() => overlayDirs(bindMount('/x', false))).toThrow(/not an overlay mount: bind/);
    expect(() => overlayDirs({ type: 'overlay', source: 'overlay', options: ['index=off'] })).toThrow(/without lowerdir/);
    expect(() => single([])).toThrow(/expected one mount, got 0/);
  });
});
