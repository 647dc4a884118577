import { describe, expect, it } from 'vitest';
import { parseArgs, parseOutput } from '../../builder/cli/args.js';

describe('CLI arguments', () => {
  const specs = [
    { names: ['-t', '--tag'], key: 'tag', kind: 'list' as const },
    { names: ['-f', '--file'], key: 'file', kind: 'string' as const },
    { names: ['--no-cache'], key: 'noCache', kind: 'bool' as const },
  ];
  it('takes --flag value, --flag=value and repeats', () => {
    expect(parseArgs(['-t', 'a', '--tag=b', '-f', 'D', '--no-cache', '.'], specs)).toEqual({ flags: { tag: ['a', 'b'], file: 'D', noCache: true }, positional: ['.'] });
  });
  it('refuses unknown flags and missing values', () => {
    expect(() => parseArgs(['--nope'], specs)).toThrow(/unknown flag: --nope/);
    expect(() => parseArgs(['-f'], specs)).toThrow(/needs an argument/);
  });
  it('parses --output specs', () => {
    expect(parseOutput('type=oci,dest=out.tar')).toEqual({ type: 'oci', dest: 'out.tar' });
    expect(parseOutput('outdir')).toEqual({ type: 'local', dest: 'outdir' });
    expect(() => parseOutput('type=zip,dest=x')).toThrow(/unsupported output type/);
    expect(() => parseOutput('type=oci')).toThrow(/needs dest/);
  });
});
