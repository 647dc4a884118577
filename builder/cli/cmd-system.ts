/** Store housekeeping: `mbuild prune [--all]`, `mbuild system df [--format json]`, `mbuild system prune`. */
import { parseArgs } from './args.js';
import { Store } from '../../store/store.js';
import { UsageError } from '../../util/errors.js';

export async function pruneCommand(root: string, argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, [
    { names: ['-a', '--all'], key: 'all', kind: 'bool' },
    { names: ['-f', '--force'], key: 'force', kind: 'bool' }, // accepted for docker muscle memory; prune never asks
    { names: ['--format'], key: 'format', kind: 'string' },
    { names: ['--filter'], key: 'filter', kind: 'list' },
  ]);
  // docker builder prune's filter for cache mounts; no other filter is supported
  const filters = flags.filter as string[];
  for (const f of filters) if (f !== 'type=exec.cachemount') throw new UsageError(`--filter ${f} is not supported (only type=exec.cachemount: the RUN --mount=type=cache directories)`);
  const onlyCacheMounts = filters.length > 0;
  if (positional.length) throw new UsageError(`"mbuild prune" takes no arguments (got ${positional[0]})`);
  const format = checkFormat(flags.format);
  const store = await Store.open(root);
  const { pruneStore } = await import('../../store/prune.js');
  const { humanBytes } = await import('../../store/usage.js');
  const r = await pruneStore(store, { all: Boolean(flags.all), onlyCacheMounts });
  if (format === 'json') {
    process.stdout.write(JSON.stringify(r, null, 1) + '\n');
    return 0;
  }
  const line = (what: string, f: { count: number; bytes: number }) => process.stdout.write(`Deleted ${what}: ${f.count} (${humanBytes(f.bytes)})\n`);
  line('blobs', r.blobs);
  line('snapshots', r.snapshots);
  if (flags.all && !onlyCacheMounts) line('build cache entries', r.cache);
  if (flags.all || onlyCacheMounts) line('cache mounts', r.cacheMounts);
  line('temp entries', r.temp);
  for (const s of r.skipped) process.stderr.write(`WARNING: left ${s} alone: something is mounted there\n`);
  const total = r.blobs.bytes + r.snapshots.bytes + r.cache.bytes + r.cacheMounts.bytes + r.temp.bytes;
  process.stdout.write(`Total reclaimed space: ${humanBytes(total)}\n`);
  return 0;
}

export async function systemCommand(root: string, argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'prune') return pruneCommand(root, rest);
  if (sub !== 'df') throw new UsageError(`"mbuild system" needs a subcommand: df or prune${sub ? ` (got ${sub})` : ''}`);
  const { flags, positional } = parseArgs(rest, [{ names: ['--format'], key: 'format', kind: 'string' }]);
  if (positional.length) throw new UsageError(`"mbuild system df" takes no arguments (got ${positional[0]})`);
  const format = checkFormat(flags.format);
  const store = await Store.open(root);
  const { storeUsage, formatUsage } = await import('../../store/usage.js');
  const usage = await storeUsage(store);
  process.stdout.write(format === 'json' ? JSON.stringify(usage, null, 1) + '\n' : formatUsage(usage));
  return 0;
}

function checkFormat(v: unknown): 'table' | 'json' {
  if (v === undefined || v === 'table') return 'table';
  if (v === 'json') return 'json';
  throw new UsageError(`--format ${String(v)}: use table or json`);
}
