/**
 * The suite's RUN steps use their own bridge (not a user's mbuild0), and the bridge, its rules and
 * ip_forward are put back as they were when the suite ends: tests leave the host's network as found.
 */
import { execFileSync } from 'node:child_process';

function bridgeExists(name: string): boolean {
  try {
    execFileSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export default function setup(): () => Promise<void> {
  const name = (process.env.MBUILD_BRIDGE ||= 'mbuildtest0');
  const existed = bridgeExists(name);
  return async () => {
    if (existed) return;
    const { teardownBridge } = await import('../builder/sandbox/network/bridge.js');
    await teardownBridge(name);
  };
}
