/** The build flags a client sends (cli/build-flags.ts REMOTE) are the ones a server takes (server/remote-flags.ts). */
import { describe, expect, it } from 'vitest';
import { BUILD_FLAGS, REMOTE } from '../../../cli/build-flags.js';
import { FORWARDED, forwardedArgs } from '../../../server/remote-flags.js';

describe('remote build flags', () => {
  it('every flag has a REMOTE row, and the server takes exactly the `server` ones, with their kinds', () => {
    expect(Object.keys(REMOTE).sort()).toEqual(BUILD_FLAGS.map((f) => f.key).sort());
    const server = BUILD_FLAGS.filter((f) => REMOTE[f.key] === 'server').map((f) => [f.names.find((n) => n.startsWith('--'))!, f.kind]);
    expect(Object.entries(FORWARDED).sort()).toEqual(server.sort());
  });

  it('gives the worker --name=value, and refuses what would reach the server files or is not a forwarded flag', () => {
    const policy = { allowInsecure: false };
    expect(forwardedArgs([['--tag', 'a'], ['--no-cache', true], ['--output', 'type=image,name=x']], policy)).toEqual(['--tag=a', '--no-cache=true', '--output=type=image,name=x']);
    const bad: [string, string | boolean][][] = [
      [['--file', '/etc/shadow']],
      [['--iidfile', '/etc/passwd']],
      [['--secret', 'id=x,src=/etc/shadow']],
      [['--output', 'type=local,dest=/']],
      [['--build-context', 'a=oci-layout:///srv']],
      [['--cache-to', 'type=local,dest=/srv']],
      [['--allow', 'security.insecure']],
      [['--no-cache', 'yes']],
      [['--tag', true]],
    ];
    for (const flags of bad) expect(() => forwardedArgs(flags, policy), JSON.stringify(flags)).toThrow();
    expect(forwardedArgs([['--allow', 'security.insecure']], { allowInsecure: true })).toEqual(['--allow=security.insecure']);
  });
});
