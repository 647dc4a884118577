/**
 * qemu-user emulation (builder/sandbox/emulation.ts), as root: an arm64 image (Debian's
 * busybox-static:arm64, test/helpers/foreign.ts) runs under `mbuild run` and in a RUN step as
 * aarch64, through a binfmt_misc handler with the F flag. binfmt_misc is machine-global: a good
 * aarch64 handler already there is left as it was; the registration and refusal tests use s390x,
 * which nothing else here runs, and remove only the entries they made.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { teardownBridge } from '../../builder/sandbox/network/index.js';
import { BINFMT_DIR, elfHeader, ensureEmulation, handlersFor, hostArchitecture, mountBinfmtMisc } from '../../builder/sandbox/emulation.js';
import { mbuild, writeContext } from '../helpers/cli.js';
import { arm64BusyboxArchive } from '../helpers/foreign.js';

const isRoot = process.getuid?.() === 0;
const BRIDGE = process.env.MBUILD_BRIDGE ?? `mbe${randomBytes(3).toString('hex')}`;
const ENV = { MBUILD_BRIDGE: BRIDGE };
const IMAGE = 'mbuild-test/busybox-arm64:latest';

async function entryTexts(qemuArch: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await handlersFor(qemuArch)) out[e.name] = await fs.readFile(path.join(BINFMT_DIR, e.name), 'utf8');
  return out;
}

describe.skipIf(!isRoot)('emulation (root): foreign images run under qemu-user', () => {
  let tmp: string;
  let root: string;

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mbuild-emul-'));
    root = path.join(tmp, 'root');
    // where this test reads the handlers (mbuild mounts it in its own mount namespace)
    await mountBinfmtMisc({ os: 'linux', architecture: 'arm64' });
    const archive = await arm64BusyboxArchive(tmp, IMAGE);
    const r = await mbuild(['--root', root, 'load', '-i', archive], { env: ENV });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  }, 180_000);

  afterAll(async () => {
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
    if (!process.env.MBUILD_BRIDGE) await teardownBridge(BRIDGE).catch(() => undefined);
  });

  it('mbuild run of an arm64 image runs it as aarch64, and a good handler already there is left as it was', async () => {
    const before = await entryTexts('aarch64');
    const r = await mbuild(['--root', root, 'run', '--network', 'none', IMAGE, 'uname', '-m'], { env: ENV });
    expect(r.stderr).toBe('');
    expect([r.code, r.stdout]).toEqual([0, 'aarch64\n']);
    const after = await entryTexts('aarch64');
    for (const [name, text] of Object.entries(before)) expect(after[name]).toBe(text);
    const handlers = await handlersFor('aarch64');
    expect(handlers.length).toBeGreaterThan(0);
    expect(handlers.every((h) => h.flags.includes('F'))).toBe(true);
  }, 60_000);

  it('a RUN step on an arm64 base runs as aarch64, and the image stays arm64', async () => {
    const ctx = await writeContext(tmp, { Dockerfile: `FROM ${IMAGE}\nRUN uname -m > /arch && echo "built on $(uname -m)"\nCMD ["cat", "/arch"]\n` });
    const b = await mbuild(['--root', root, 'build', '--progress', 'plain', '--network', 'none', '-t', 'emul-out', ctx], { env: ENV });
    expect(b.stderr).toContain('built on aarch64');
    expect(b.code).toBe(0);
    const r = await mbuild(['--root', root, 'run', '--network', 'none', 'emul-out'], { env: ENV });
    expect([r.code, r.stdout]).toEqual([0, 'aarch64\n']);
    const i = await mbuild(['--root', root, 'inspect', '-f', '{{.Os}}/{{.Architecture}}/{{.Variant}}', 'emul-out'], { env: ENV });
    expect(i.stdout.trim()).toBe('linux/arm64/v8');
  }, 120_000);

  it('refuses a handler without the F flag in one line, and registers one with F when none is there', async () => {
    const s390x = { os: 'linux', architecture: 's390x' };
    const existing = await entryTexts('s390x');
    if (Object.keys(existing).length > 0) {
      // someone's s390x handler: mbuild uses it (with F) or refuses it, and never changes it
      await ensureEmulation(s390x).catch(() => undefined);
      expect(await entryTexts('s390x')).toEqual(existing);
      return;
    }
    const hex = (b: Buffer) => [...b].map((x) => `\\x${x.toString(16).padStart(2, '0')}`).join('');
    const mask = Buffer.from('ffffffffffffff00fffffffffffffffffffeffff', 'hex'); // qemu's s390x mask (big-endian e_type)
    const noF = `mbuild-test-nof-${process.pid}`;
    await fs.writeFile(path.join(BINFMT_DIR, 'register'), `:${noF}:M::${hex(elfHeader('s390x', 2))}:${hex(mask)}:/usr/bin/qemu-s390x-static:`);
    try {
      const err = (await ensureEmulation(s390x).then(() => undefined, (e: unknown) => e)) as { code?: string; message?: string };
      expect(err?.code).toBe('MBUILD_EMULATION');
      expect(err?.message).toBe(
        `running linux/s390x binaries on this ${hostArchitecture()} machine: the binfmt_misc handler ${BINFMT_DIR}/${noF} has no F flag, so its interpreter /usr/bin/qemu-s390x-static cannot be found inside the sandbox: remove it (echo -1 > ${BINFMT_DIR}/${noF}) and mbuild registers one with F`,
      );
    } finally {
      await fs.writeFile(path.join(BINFMT_DIR, noF), '-1');
    }
    try {
      await ensureEmulation(s390x);
      const made = await handlersFor('s390x');
      expect(made.map((h) => [h.name, h.flags])).toEqual([['qemu-s390x', 'POF']]);
    } finally {
      for (const h of await handlersFor('s390x')) await fs.writeFile(path.join(BINFMT_DIR, h.name), '-1');
    }
  }, 30_000);
});
