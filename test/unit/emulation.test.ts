import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  elfHeader, handlesArch, INSTALL_HINT, isNativePlatform, isStaticElf, parseEntry, parseRegisterLine, qemuArchFor, qemuRule, withFixBinary,
} from '../../builder/sandbox/emulation.js';
import { MbuildError } from '../../util/errors.js';

// Debian bookworm's qemu-user-static: /usr/lib/binfmt.d/qemu-aarch64.conf and qemu-arm.conf
const AARCH64 = ':qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF';
const ARM = ':qemu-arm:M::\\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x28\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/arm-binfmt-P:OPF';
// what the kernel shows for a registered entry (tonistiigi/binfmt's flags, Docker's usual setup)
const ENTRY = `enabled
interpreter /usr/bin/qemu-aarch64
flags: POCF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
`;

describe('emulation: architectures', () => {
  it('maps Go architecture names to qemu names', () => {
    expect(['arm64', 'arm', 'amd64', '386', 'riscv64', 'ppc64le', 's390x', 'mips64le', 'loong64'].map((a) => qemuArchFor({ architecture: a })))
      .toEqual(['aarch64', 'arm', 'x86_64', 'i386', 'riscv64', 'ppc64le', 's390x', 'mips64el', 'loongarch64']);
    expect(qemuArchFor({ architecture: 'wasm' })).toBeUndefined();
  });

  it('counts the host architecture and 386 on amd64 as native, nothing else', () => {
    const linux = (architecture: string, variant?: string) => ({ os: 'linux', architecture, ...(variant ? { variant } : {}) });
    expect(isNativePlatform(linux('amd64'), 'amd64')).toBe(true);
    expect(isNativePlatform(linux('386'), 'amd64')).toBe(true);
    expect(isNativePlatform(linux('arm64', 'v8'), 'amd64')).toBe(false);
    expect(isNativePlatform(linux('arm64', 'v8'), 'arm64')).toBe(true);
    expect(isNativePlatform(linux('arm', 'v7'), 'arm64')).toBe(false);
    expect(isNativePlatform(linux('amd64'), 'arm64')).toBe(false);
    expect(isNativePlatform({ os: 'windows', architecture: 'amd64' }, 'amd64')).toBe(false);
  });
});

describe('emulation: binfmt_misc lines', () => {
  it('reads a register line: name, magic and mask bytes, interpreter, flags', () => {
    const r = parseRegisterLine(AARCH64);
    expect([r.name, r.type, r.offset, r.interpreter, r.flags]).toEqual(['qemu-aarch64', 'M', 0, '/usr/libexec/qemu-binfmt/aarch64-binfmt-P', 'OPF']);
    expect(r.magic.toString('hex')).toBe('7f454c460201010000000000000000000200b700');
    expect(r.mask.toString('hex')).toBe('ffffffffffffff00fffffffffffffffffeffffff');
    expect(() => parseRegisterLine('qemu-aarch64 magic')).toThrow(MbuildError);
  });

  it('adds the F flag to a rule that lacks it, and leaves one that has it as it is', () => {
    expect(withFixBinary(AARCH64)).toBe(AARCH64);
    expect(withFixBinary(AARCH64.replace(/:OPF$/, ':OP'))).toBe(AARCH64);
    expect(withFixBinary(AARCH64.replace(/:OPF$/, ':'))).toBe(AARCH64.replace(/:OPF$/, ':F'));
  });

  it('reads an entry as /proc/sys/fs/binfmt_misc shows it', () => {
    const e = parseEntry('qemu-aarch64', ENTRY);
    expect([e.enabled, e.interpreter, e.flags, e.offset, e.magic?.toString('hex')]).toEqual([true, '/usr/bin/qemu-aarch64', 'POCF', 0, '7f454c460201010000000000000000000200b700']);
    expect(parseEntry('x', ENTRY.replace('enabled', 'disabled')).enabled).toBe(false);
  });

  it('a rule handles the ELF executables and PIE binaries of its own architecture only', () => {
    const a64 = parseRegisterLine(AARCH64);
    const arm = parseRegisterLine(ARM);
    expect(['aarch64', 'arm', 'x86_64', 'riscv64'].map((q) => handlesArch(a64, q))).toEqual([true, false, false, false]);
    expect(['aarch64', 'arm', 'i386'].map((q) => handlesArch(arm, q))).toEqual([false, true, false]);
    expect(handlesArch(parseEntry('qemu-aarch64', ENTRY), 'aarch64')).toBe(true);
  });

  it('builds the ELF header of a real binary of this machine (node)', async () => {
    const fh = await open(process.execPath, 'r');
    const head = Buffer.alloc(20);
    await fh.read(head, 0, 20, 0).finally(() => fh.close());
    const type = head.readUInt16LE(16) as 2 | 3;
    head[7] = 0; // EI_OSABI (GNU in some builds): qemu's masks ignore it too
    expect(elfHeader(process.arch === 'x64' ? 'x86_64' : 'aarch64', type).toString('hex')).toBe(head.toString('hex'));
  });
});

/** A 64-bit little-endian ELF file with program headers of these types (3 is PT_INTERP). */
function elf64(phTypes: number[]): Buffer {
  const b = Buffer.alloc(64 + 56 * phTypes.length);
  elfHeader('x86_64', 2).copy(b);
  b.writeBigUInt64LE(64n, 32); // e_phoff
  b.writeUInt16LE(56, 54); // e_phentsize
  b.writeUInt16LE(phTypes.length, 56); // e_phnum
  phTypes.forEach((t, i) => b.writeUInt32LE(t, 64 + 56 * i));
  return b;
}

describe('emulation: the qemu interpreter', () => {
  it('tells a static binary from a dynamic one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mbuild-elf-'));
    try {
      await writeFile(join(dir, 'static'), elf64([1, 1, 4]));
      await writeFile(join(dir, 'dynamic'), elf64([6, 3, 1]));
      await writeFile(join(dir, 'script'), '#!/bin/sh\n');
      expect(await isStaticElf(join(dir, 'static'))).toBe(true);
      expect(await isStaticElf(join(dir, 'dynamic'))).toBe(false);
      expect(await isStaticElf(join(dir, 'script'))).toBe(false);
      expect(await isStaticElf(process.execPath)).toBe(false); // node is dynamically linked
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says in one line what to install when qemu-user-static is missing or its interpreter is not static', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mbuild-binfmt-'));
    try {
      const arm64 = { os: 'linux', architecture: 'arm64', variant: 'v8' };
      const missing = await qemuRule(arm64, 'aarch64', [dir]).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(MbuildError);
      expect((missing as MbuildError).code).toBe('MBUILD_EMULATION');
      expect((missing as MbuildError).message).toMatch(/^running linux\/arm64\/v8 binaries on this \S+ machine: qemu-aarch64 is not installed: apt-get install qemu-user-static$/);
      await writeFile(join(dir, 'qemu-aarch64.conf'), `# a comment\n${AARCH64.replace('/usr/libexec/qemu-binfmt/aarch64-binfmt-P', process.execPath)}\n`);
      const dynamic = (await qemuRule(arm64, 'aarch64', [dir]).catch((e: unknown) => e)) as MbuildError;
      expect(dynamic.message).toContain(`${process.execPath} (from ${dir}/qemu-aarch64.conf) is missing or not a static binary: ${INSTALL_HINT}`);
      expect(dynamic.message).not.toContain('\n');
      await writeFile(join(dir, 'qemu-static'), elf64([1]));
      await writeFile(join(dir, 'qemu-aarch64.conf'), AARCH64.replace('/usr/libexec/qemu-binfmt/aarch64-binfmt-P', join(dir, 'qemu-static')));
      expect((await qemuRule(arm64, 'aarch64', [dir])).rule.interpreter).toBe(join(dir, 'qemu-static'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
