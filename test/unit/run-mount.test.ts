/** RUN --mount option parsing (BuildKit's commands_runmount.go rules) and the --secret / --ssh flags. */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { csvFields, mountFrom, parseRunMount, ramInBytes } from '../../builder/dockerfile/run-mount.js';
import { parseSecretFlag, parseSshFlag } from '../../builder/steps/secrets.js';
import { cacheMountKey } from '../../store/cache-mounts.js';

const range = { start: 7, end: 7 };
const vars: Record<string, string> = { DIR: '/cache/go', ID: 'gomod', UID: '1000' };
const expand = (w: string) => w.replace(/\$\{?(\w+)\}?/g, (_, n: string) => vars[n] ?? '');
const parse = (s: string) => parseRunMount(s, expand, range);
const failure = (s: string) => {
  try {
    parse(s);
  } catch (err) {
    return `${String(err)}`;
  }
  throw new Error(`no error for ${s}`);
};

describe('RUN --mount parsing', () => {
  it('defaults to a read-only bind', () => {
    expect(parse('target=/src')).toEqual({ type: 'bind', target: '/src', readonly: true, required: false });
    expect(parse('type=bind,target=/src,rw').readonly).toBe(false);
    expect(parse('type=bind,dst=/src,readwrite=true').readonly).toBe(false);
    expect(parse('type=bind,destination=/src,ro=false').readonly).toBe(false);
  });

  it('reads every cache option, caches and tmpfs are writable by default', () => {
    expect(parse('type=cache,id=x,target=/c,sharing=locked,from=base,source=/s,mode=0700,uid=1000,gid=1001')).toEqual({
      type: 'cache', id: 'x', target: '/c', sharing: 'locked', from: 'base', source: '/s', mode: 0o700, uid: 1000, gid: 1001, readonly: false, required: false,
    });
    expect(parse('type=cache,target=/c,readonly').readonly).toBe(true);
    expect(parse('type=tmpfs,target=/t,size=64m')).toEqual({ type: 'tmpfs', target: '/t', size: 64 << 20, readonly: false, required: false });
  });

  it('keys and types are case-insensitive; values are expanded, except from=', () => {
    expect(parse('TYPE=Cache,Target=$DIR,id=${ID},uid=$UID')).toMatchObject({ type: 'cache', target: '/cache/go', id: 'gomod', uid: 1000 });
    expect(() => parse('type=bind,from=$STAGE,target=/x')).toThrow(/'from' doesn't support variable expansion, define alias stage instead/);
    expect(mountFrom('type=bind,from=builder,target=/x')).toBe('builder');
    expect(mountFrom('type=cache,target=/x')).toBeUndefined();
  });

  it('secret and ssh options', () => {
    expect(parse('type=secret,id=tok,required,mode=0440,uid=5,gid=6,env=TOKEN')).toEqual({
      type: 'secret', id: 'tok', required: true, mode: 0o440, uid: 5, gid: 6, env: 'TOKEN', readonly: true,
    });
    expect(parse('type=secret,id=tok,required=false').required).toBe(false);
    expect(parse('type=ssh,id=gh,target=/agent,required=true')).toMatchObject({ type: 'ssh', id: 'gh', target: '/agent', required: true });
  });

  it("refuses what BuildKit refuses, with BuildKit's words and the Dockerfile line", () => {
    expect(failure('type=cache,target=/x,bogus=1')).toBe("Dockerfile:7: RUN --mount=type=cache,target=/x,bogus=1: unexpected key 'bogus' in 'bogus=1'");
    expect(failure('type=cache,tagret=/x')).toMatch(/unexpected key 'tagret' in 'tagret=\/x' \(did you mean target\?\)/);
    expect(failure('type=volume,target=/x')).toMatch(/unsupported mount type "volume"/);
    expect(failure('type=cahce,target=/x')).toMatch(/unsupported mount type "cahce" \(did you mean cache\?\)/);
    expect(failure('type=cache,target=/x,sharing=exclusive')).toMatch(/unsupported sharing value "exclusive"/);
    expect(failure('type=bind,target=/x,required')).toMatch(/unexpected key 'required' for mount type 'bind'/);
    expect(failure('type=bind,target=/x,size=1m')).toMatch(/unexpected key 'size' for mount type 'bind'/);
    expect(failure('type=tmpfs,target=/x,size=lots')).toMatch(/invalid value for size: lots/);
    expect(failure('type=bind,target=/x,mode=0755')).toMatch(/mode not allowed for "bind" type mounts/);
    expect(failure('type=tmpfs,target=/x,uid=1')).toMatch(/uid not allowed for "tmpfs" type mounts/);
    expect(failure('type=cache,target=/x,mode=9')).toMatch(/invalid value 9 for mode/);
    expect(failure('type=cache,target=/x,uid=-1')).toMatch(/invalid value -1 for uid/);
    expect(failure('type=bind,target=/x,rw=maybe')).toMatch(/invalid value for rw: maybe/);
    expect(failure('type=bind,target=/x,junk')).toMatch(/invalid field 'junk' must be a key=value pair/);
    expect(failure('type=secret')).toMatch(/invalid secret mount. one of source, target required/);
    expect(failure('type=secret,id=a,source=b')).toMatch(/both source and id can't be set/);
    expect(failure('type=secret,id=a,from=x')).toMatch(/secret mount should not have a from/);
    expect(failure('type=secret,id=a,sharing=locked')).toMatch(/secret mount should not define sharing/);
    expect(failure('type=tmpfs,target=/x,sharing=locked')).toMatch(/invalid cache sharing set for tmpfs mount/);
    expect(failure('type=ssh,source=/x')).toMatch(/ssh does not support source/);
    expect(failure('type=cache,target=/x,env=A')).toMatch(/unexpected key 'env' for mount type 'cache'/);
  });

  it('splits CSV as Go does', () => {
    expect(csvFields('type=bind,"source=a,b",target=/x')).toEqual(['type=bind', 'source=a,b', 'target=/x']);
    expect(csvFields('"a=""x""",b')).toEqual(['a="x"', 'b']);
    expect(() => csvFields('a="x",b')).toThrow(/bare "/);
    expect(() => csvFields('"open,x')).toThrow();
    expect(ramInBytes('1g')).toBe(1 << 30);
    expect(ramInBytes('512')).toBe(512);
    expect(ramInBytes('10KiB')).toBe(10240);
  });
});

describe('--secret and --ssh', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mbuild-secret-flag-'));
  const file = path.join(dir, 'tok');
  writeFileSync(file, 'value');

  it("takes docker's forms", () => {
    expect(parseSecretFlag(`id=tok,src=${file}`)).toEqual({ id: 'tok', file });
    expect(parseSecretFlag(`id=tok,source=${file},type=file`)).toEqual({ id: 'tok', file });
    expect(parseSecretFlag('id=tok,env=MY_TOKEN')).toEqual({ id: 'tok', env: 'MY_TOKEN' });
    expect(parseSecretFlag('type=env,id=tok,src=MY_TOKEN')).toEqual({ id: 'tok', env: 'MY_TOKEN' });
    expect(parseSecretFlag('type=env,id=TOK')).toEqual({ id: 'TOK', env: 'TOK' });
    expect(parseSecretFlag('id=TOK', { TOK: 'x' })).toEqual({ id: 'TOK', env: 'TOK' });
  });

  it('refuses a missing file or id, naming the flag', () => {
    expect(() => parseSecretFlag(`id=tok,src=${dir}/nope`)).toThrow(/--secret id=tok: .*nope is not a readable file/);
    expect(() => parseSecretFlag(`src=${file}`)).toThrow(/--secret .*id is required/);
    expect(() => parseSecretFlag('id=a,kind=x')).toThrow(/unexpected key 'kind'/);
    expect(() => parseSecretFlag('id=a,type=vault')).toThrow(/unsupported secret type "vault"/);
  });

  it('ssh: default is $SSH_AUTH_SOCK, ID=PATH a socket or a key file', async () => {
    const sock = path.join(dir, 'agent.sock');
    const server = net.createServer().listen(sock);
    await new Promise((r) => server.once('listening', r));
    try {
      expect(parseSshFlag('default', { SSH_AUTH_SOCK: sock })).toEqual({ id: 'default', paths: [sock] });
      expect(parseSshFlag(`gh=${file}`)).toEqual({ id: 'gh', paths: [file] });
      expect(() => parseSshFlag('default', {})).toThrow(/SSH_AUTH_SOCK is not set/);
      expect(() => parseSshFlag('gh')).toThrow(/give a socket or key file/);
      expect(() => parseSshFlag(`gh=${dir}`)).toThrow(/neither an agent socket nor a key file/);
    } finally {
      server.close();
    }
  });
});

describe('cache mount keys', () => {
  it('depend on the id, the initial owner and mode, and the from= seed', () => {
    const a = cacheMountKey({ id: '/root/.cache', mode: 0o755, uid: 0, gid: 0 });
    expect(cacheMountKey({ id: '/root/.cache', mode: 0o755, uid: 0, gid: 0 })).toBe(a);
    expect(cacheMountKey({ id: '/root/.cache2', mode: 0o755, uid: 0, gid: 0 })).not.toBe(a);
    expect(cacheMountKey({ id: '/root/.cache', mode: 0o700, uid: 0, gid: 0 })).not.toBe(a);
    expect(cacheMountKey({ id: '/root/.cache', mode: 0o755, uid: 1, gid: 0 })).not.toBe(a);
    expect(cacheMountKey({ id: '/root/.cache', mode: 0o755, uid: 0, gid: 0, seed: { dir: '/x', key: 'k' } })).not.toBe(a);
  });
});
