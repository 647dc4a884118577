/**
 * Rootless mode (README "Security model", Rootless): a normal user's `mbuild` re-executes itself in a
 * user namespace of its own (cli/rootless.ts) where it is uid 0, with the user's /etc/subuid range
 * as uids 1..N. Everything below then runs as in root mode, except what needs the initial
 * namespace: the bridge (slirp4netns instead), cgroups (limits refused) and device nodes.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';

/** Set by cli/rootless.ts for the process it starts inside the user namespace. */
export const ROOTLESS_ENV = 'MBUILD_ROOTLESS';

let inUserNs: boolean | undefined;

/** This process is in a user namespace other than the initial one (which maps every id to itself). */
export function inUserNamespace(uidMap = '/proc/self/uid_map'): boolean {
  if (inUserNs !== undefined && uidMap === '/proc/self/uid_map') return inUserNs;
  let text = '';
  try {
    text = readFileSync(uidMap, 'utf8');
  } catch {
    // no /proc: not Linux, nothing to map
  }
  const identity = /^\s*0\s+0\s+4294967295\s*$/.test(text);
  const result = text !== '' && !identity;
  if (uidMap === '/proc/self/uid_map') inUserNs = result;
  return result;
}

/**
 * mbuild runs rootless: a normal user before the re-exec, or the re-executed process in its user
 * namespace. Real root with MBUILD_ROOTLESS=1 in its environment is not rootless.
 */
export function isRootless(): boolean {
  if (process.platform !== 'linux') return false;
  if (process.getuid?.() !== 0) return true;
  return process.env[ROOTLESS_ENV] === '1' && inUserNamespace();
}

/** The rootless store: $XDG_DATA_HOME/mbuild, else ~/.local/share/mbuild (as rootless Docker/podman). */
export function rootlessDataHome(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_DATA_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'mbuild');
  // never a shared place such as /tmp: without $HOME, the passwd entry's home
  return path.join(env.HOME && path.isAbsolute(env.HOME) ? env.HOME : userInfo().homedir, '.local', 'share', 'mbuild');
}
