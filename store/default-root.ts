/**
 * Where the store is when --root is not given. A module of its own so that the CLI's dispatch
 * (cli/main.ts) can name it without loading the store: `mbuild --help`, `--version` and the
 * commands that never open a store start faster (scripts/bundle.mjs splits the bundle by imports).
 */
import { isRootless, rootlessDataHome } from '../util/rootless.js';

/** $MBUILD_ROOT, else /var/lib/mbuild as root, else (rootless) $XDG_DATA_HOME/mbuild or ~/.local/share/mbuild. */
export function defaultRoot(): string {
  return process.env.MBUILD_ROOT || (isRootless() ? rootlessDataHome() : '/var/lib/mbuild');
}
