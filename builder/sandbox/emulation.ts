/**
 * qemu-user emulation for RUN steps of a foreign platform (a minimal version; the "emul" work owns
 * this module and replaces it). binfmt_misc is mounted when it is not, and the qemu handler for the
 * architecture is registered with the F flag (the kernel opens the interpreter at registration, so
 * it works inside the sandbox's root without qemu in the image).
 */
import { promises as fs } from 'node:fs';
import { execFile } from 'node:child_process';
import { MbuildError } from '../../util/errors.js';

export interface EmulatedPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

const BINFMT = '/proc/sys/fs/binfmt_misc';
const MASK64 = '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff';
const ELF64 = '\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00';
const ELF32 = '\\x7fELF\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00';

/** qemu's name, ELF magic and mask per Go architecture (from qemu's binfmt table). */
const QEMU: Record<string, { name: string; magic: string; mask: string }> = {
  arm64: { name: 'aarch64', magic: ELF64 + '\\xb7\\x00', mask: MASK64 },
  amd64: { name: 'x86_64', magic: ELF64 + '\\x3e\\x00', mask: MASK64 },
  riscv64: { name: 'riscv64', magic: ELF64 + '\\xf3\\x00', mask: MASK64 },
  arm: { name: 'arm', magic: ELF32 + '\\x28\\x00', mask: MASK64 },
};

const ready = new Map<string, Promise<void>>();

export function ensureEmulation(platform: EmulatedPlatform): Promise<void> {
  let p = ready.get(platform.architecture);
  if (!p) {
    p = register(platform);
    ready.set(platform.architecture, p);
    p.catch(() => ready.delete(platform.architecture));
  }
  return p;
}

async function register(platform: EmulatedPlatform): Promise<void> {
  const q = QEMU[platform.architecture];
  const what = `${platform.os}/${platform.architecture}${platform.variant ? '/' + platform.variant : ''}`;
  if (!q) throw new MbuildError('MBUILD_SANDBOX', `RUN for ${what}: mbuild cannot emulate this architecture`);
  const interp = `/usr/bin/qemu-${q.name}-static`;
  if (!(await exists(interp))) throw new MbuildError('MBUILD_SANDBOX', `RUN for ${what} needs qemu-user emulation: apt-get install qemu-user-static (${interp} is missing)`);
  if (!(await exists(`${BINFMT}/register`))) {
    await new Promise<void>((resolve, reject) =>
      execFile('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT], (err, _o, stderr) => (err ? reject(new MbuildError('MBUILD_SANDBOX', `cannot mount binfmt_misc for ${what} emulation: ${String(stderr).trim() || err.message}`)) : resolve())),
    );
  }
  const entry = `${BINFMT}/qemu-${q.name}`;
  if (await exists(entry)) {
    const text = await fs.readFile(entry, 'utf8');
    if (/^enabled/m.test(text)) return;
  }
  try {
    await fs.writeFile(`${BINFMT}/register`, `:qemu-${q.name}:M::${q.magic}:${q.mask}:${interp}:F`);
  } catch (err) {
    // another process registered it meanwhile
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await exists(entry))) return;
    throw new MbuildError('MBUILD_SANDBOX', `cannot register qemu-${q.name} with binfmt_misc: ${(err as Error).message}`, { cause: err });
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}
