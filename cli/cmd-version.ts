/**
 * `mbuild version` and the package's version. A module of its own: `mbuild --version` loads
 * this and the dispatch, not the store (scripts/bundle.mjs splits the bundle at each import()).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from '../util/args.js';
import { platformString, targetPlatform } from '../util/platform.js';

export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++, dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'mbuild' && pkg.version) return pkg.version;
    } catch {
      /* not here: one level up */
    }
  }
  return 'unknown';
}

export async function versionCommand(argv: string[]): Promise<number> {
  const { flags } = parseArgs(argv, [{ names: ['-f', '--format'], key: 'format', kind: 'string' }]);
  const info = { Version: packageVersion(), NodeVersion: process.version, Os: 'linux', Arch: targetPlatform().architecture, Platform: platformString() };
  if (flags.format !== undefined) {
    const { renderTemplate } = await import('./go-template.js');
    process.stdout.write(renderTemplate(flags.format as string, { Client: info, ...info }) + '\n');
    return 0;
  }
  process.stdout.write(`mbuild version ${info.Version}\n Node:      ${info.NodeVersion}\n Platform:  ${info.Platform}\n`);
  return 0;
}
