/**
 * qemu-user emulation for RUN steps (and `mbuild run`) of a foreign platform, as BuildKit gets it from
 * tonistiigi/binfmt: the kernel's binfmt_misc runs a foreign ELF binary through qemu-user.
 *
 * ensureEmulation(platform) returns at once for a platform this CPU runs natively. Otherwise it mounts
 * binfmt_misc when it is not mounted, and looks for an enabled handler whose magic matches an ELF
 * binary of the architecture (whatever its name: Debian's, Docker's tonistiigi/binfmt, a hand-made one).
 *  - found, with the F flag: nothing to do (an existing good registration is left alone);
 *  - found, without F: refused with one line saying how to remove it. Without F the kernel opens the
 *    interpreter by its path when a binary starts, and that path does not exist in the sandbox's
 *    pivot_root'ed image. mbuild does not replace a handler someone else registered (binfmt_misc is
 *    machine-global: another tool may rely on it being as it is);
 *  - none: registers Debian's qemu-user-static rule (/usr/lib/binfmt.d/qemu-ARCH.conf, the line
 *    systemd-binfmt would write) with F added, so the kernel opens the interpreter once, at
 *    registration, and any sandbox can use it. Its interpreter must be a static binary (a dynamic one
 *    would need its loader inside the image). Missing qemu: one line naming the package to install.
 * The registration stays after mbuild exits, as systemd-binfmt's or binfmt-support's would.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MbuildError } from '../../util/errors.js';

export interface EmulatedPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

export const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';
/** Debian's qemu-user-static puts one register line per architecture here (for systemd-binfmt). */
export const QEMU_RULES_DIR = '/usr/lib/binfmt.d';
export const INSTALL_HINT = 'apt-get install qemu-user-static';

/** Go's architecture names (what images say) to qemu's (qemu-ARCH-static, qemu-ARCH.conf). */
const QEMU_ARCH: Record<string, string> = {
  amd64: 'x86_64', '386': 'i386', arm64: 'aarch64', arm: 'arm', ppc64le: 'ppc64le', ppc64: 'ppc64', s390x: 's390x',
  riscv64: 'riscv64', mips64le: 'mips64el', mips64: 'mips64', mipsle: 'mipsel', mips: 'mips', loong64: 'loongarch64',
};

/** Node's process.arch to Go's names. */
const NODE_ARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips64el: 'mips64le', mipsel: 'mipsle' };

/**
 * ELF identity of each qemu architecture: class (1: 32-bit, 2: 64-bit), data (1: little, 2: big
 * endian) and e_machine. Used to find an existing handler of any name, by matching its magic/mask
 * against an ELF header of the architecture.
 */
const ELF_ID: Record<string, { cls: 1 | 2; data: 1 | 2; machine: number }> = {
  x86_64: { cls: 2, data: 1, machine: 0x3e }, i386: { cls: 1, data: 1, machine: 0x03 }, aarch64: { cls: 2, data: 1, machine: 0xb7 },
  arm: { cls: 1, data: 1, machine: 0x28 }, ppc64le: { cls: 2, data: 1, machine: 0x15 }, ppc64: { cls: 2, data: 2, machine: 0x15 },
  s390x: { cls: 2, data: 2, machine: 0x16 }, riscv64: { cls: 2, data: 1, machine: 0xf3 }, mips64el: { cls: 2, data: 1, machine: 0x08 },
  mips64: { cls: 2, data: 2, machine: 0x08 }, mipsel: { cls: 1, data: 1, machine: 0x08 }, mips: { cls: 1, data: 2, machine: 0x08 },
  loongarch64: { cls: 2, data: 1, machine: 0x102 },
};

/** qemu's name for a platform's architecture (arm64 -> aarch64), undefined when mbuild knows none. */
export function qemuArchFor(p: Pick<EmulatedPlatform, 'architecture'>): string | undefined {
  return QEMU_ARCH[p.architecture];
}

/** The architecture of the CPU mbuild runs on, in Go's names (the real one: MBUILD_TEST_ARCH does not apply). */
export function hostArchitecture(): string {
  return NODE_ARCH[process.arch] ?? process.arch;
}

/**
 * Does this CPU run the platform's binaries itself? Its own architecture, and 386 on amd64 (x86-64
 * CPUs run 32-bit x86 code; Debian's qemu-user-static registers no i386 handler on amd64 either).
 * arm on arm64 is not counted: many arm64 CPUs have no 32-bit mode.
 */
export function isNativePlatform(p: EmulatedPlatform, host: string = hostArchitecture()): boolean {
  if (p.os !== 'linux') return false;
  return p.architecture === host || (host === 'amd64' && p.architecture === '386');
}

/** A register line ":name:type:offset:magic:mask:interpreter:flags" (the first character is the delimiter). */
export interface BinfmtRule {
  name: string;
  type: 'M' | 'E';
  offset: number;
  magic: Buffer;
  mask: Buffer;
  interpreter: string;
  flags: string;
}

/** binfmt_misc's \xHH escapes (the kernel decodes them in magic and mask). */
function unescapeBytes(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      out.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (s[i] === '\\' && s[i + 1] === '\\') {
      out.push(0x5c);
      i += 1;
    } else out.push(s.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}

export function parseRegisterLine(line: string): BinfmtRule {
  const text = line.trim();
  const d = text[0];
  const f = d ? text.slice(1).split(d) : [];
  if (!d || f.length !== 7 || (f[1] !== 'M' && f[1] !== 'E')) throw new MbuildError('MBUILD_EMULATION', `not a binfmt_misc register line: ${JSON.stringify(line.slice(0, 80))}`);
  const [name = '', type, offset = '', magic = '', mask = '', interpreter = '', flags = ''] = f;
  return { name, type: type as 'M' | 'E', offset: offset === '' ? 0 : Number(offset), magic: unescapeBytes(magic), mask: unescapeBytes(mask), interpreter, flags };
}

/** The line to write to binfmt_misc/register: the rule's own line with the F flag added. */
export function withFixBinary(line: string): string {
  const text = line.trim();
  const d = text[0]!;
  const cut = text.lastIndexOf(d);
  const flags = text.slice(cut + 1);
  return flags.includes('F') ? text : `${text.slice(0, cut + 1)}${flags}F`;
}

/** An entry as /proc/sys/fs/binfmt_misc/NAME shows it. */
export interface BinfmtEntry {
  name: string;
  enabled: boolean;
  interpreter: string;
  flags: string;
  offset: number;
  magic?: Buffer;
  mask?: Buffer;
}

export function parseEntry(name: string, text: string): BinfmtEntry {
  const lines = text.split('\n');
  const field = (key: string) => lines.find((l) => l.startsWith(key + ' ') || l.startsWith(key + ':'))?.slice(key.length + 1).trim();
  const hex = (v: string | undefined) => (v !== undefined && /^([0-9a-f]{2})+$/i.test(v) ? Buffer.from(v, 'hex') : undefined);
  return {
    name,
    enabled: lines[0]?.trim() === 'enabled',
    interpreter: field('interpreter') ?? '',
    flags: field('flags') ?? '',
    offset: Number(field('offset') ?? 0),
    magic: hex(field('magic')),
    mask: hex(field('mask')),
  };
}

/** The first 20 bytes of an ELF executable (type 2) or PIE/shared object (type 3) of a qemu architecture. */
export function elfHeader(qemuArch: string, type: 2 | 3): Buffer {
  const id = ELF_ID[qemuArch];
  if (!id) throw new MbuildError('MBUILD_EMULATION', `no ELF identity known for ${qemuArch}`);
  const h = Buffer.alloc(20);
  h.set([0x7f, 0x45, 0x4c, 0x46, id.cls, id.data, 1], 0);
  const write16 = (v: number, at: number) => (id.data === 1 ? h.writeUInt16LE(v, at) : h.writeUInt16BE(v, at));
  write16(type, 16);
  write16(id.machine, 18);
  return h;
}

/** Would binfmt_misc hand this header to the rule (magic compared under its mask at its offset)? */
export function ruleMatches(rule: { offset: number; magic?: Buffer; mask?: Buffer }, header: Buffer): boolean {
  const { magic, offset } = rule;
  if (!magic || magic.length === 0 || offset + magic.length > header.length) return false;
  for (let i = 0; i < magic.length; i++) {
    const m = rule.mask && rule.mask.length ? (rule.mask[i] ?? 0xff) : 0xff;
    if ((header[offset + i]! & m) !== (magic[i]! & m)) return false;
  }
  return true;
}

/** Does a rule run both executables and PIE binaries of the architecture? */
export function handlesArch(rule: { offset: number; magic?: Buffer; mask?: Buffer }, qemuArch: string): boolean {
  return ruleMatches(rule, elfHeader(qemuArch, 2)) && ruleMatches(rule, elfHeader(qemuArch, 3));
}

/** Is the file a static ELF binary (no PT_INTERP program header)? Static qemu works in any root. */
export async function isStaticElf(path: string): Promise<boolean> {
  const fh = await fs.open(path, 'r');
  try {
    const head = Buffer.alloc(64);
    await fh.read(head, 0, 64, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = head[4] === 2;
    const le = head[5] === 1;
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? head.readBigUInt64LE(32) : head.readBigUInt64BE(32)) : u32(head, 28);
    const phentsize = u16(head, is64 ? 54 : 42);
    const phnum = u16(head, is64 ? 56 : 44);
    const table = Buffer.alloc(phentsize * phnum);
    await fh.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (u32(table, i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } finally {
    await fh.close();
  }
}

function platformName(p: EmulatedPlatform): string {
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}

function emulationError(p: EmulatedPlatform, why: string, cause?: unknown): MbuildError {
  return new MbuildError('MBUILD_EMULATION', `running ${platformName(p)} binaries on this ${hostArchitecture()} machine: ${why}`, { cause });
}

/**
 * Debian's register line for qemu-ARCH (from `dirs`), checked: its interpreter exists and is static.
 * Throws the one-line install hint when qemu-user-static is not there.
 */
export async function qemuRule(p: EmulatedPlatform, qemuArch: string, dirs: string[] = [QEMU_RULES_DIR]): Promise<{ line: string; rule: BinfmtRule }> {
  for (const dir of dirs) {
    const file = join(dir, `qemu-${qemuArch}.conf`);
    const line = await fs.readFile(file, 'utf8').then((t) => t.split('\n').find((l) => l.trim() !== '' && !/^[#;]/.test(l.trim())), () => undefined);
    if (line === undefined) continue;
    const rule = parseRegisterLine(line);
    const ok = await isStaticElf(rule.interpreter).catch(() => false);
    if (!ok) throw emulationError(p, `${rule.interpreter} (from ${file}) is missing or not a static binary: ${INSTALL_HINT}`);
    return { line, rule };
  }
  throw emulationError(p, `qemu-${qemuArch} is not installed: ${INSTALL_HINT}`);
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false);
}

/**
 * Mounts binfmt_misc at `dir` unless it is mounted. The CLI runs in a mount namespace of its own
 * (cli/namespace.ts), so the mount stays there; the registrations are the kernel's, for everyone.
 */
export async function mountBinfmtMisc(p: EmulatedPlatform, dir: string = BINFMT_DIR): Promise<void> {
  if (await exists(join(dir, 'register'))) return;
  if (!(await exists(dir))) throw emulationError(p, `the kernel has no binfmt_misc (${dir} is missing; modprobe binfmt_misc)`);
  await new Promise<void>((resolve, reject) =>
    execFile('mount', ['-t', 'binfmt_misc', 'binfmt_misc', dir], (err, _out, stderr) =>
      err ? reject(emulationError(p, `cannot mount binfmt_misc at ${dir}: ${String(stderr).trim() || err.message}`, err)) : resolve(),
    ),
  );
}

/** The enabled entries of binfmt_misc that handle the architecture. */
export async function handlersFor(qemuArch: string, dir: string = BINFMT_DIR): Promise<BinfmtEntry[]> {
  const names = (await fs.readdir(dir)).filter((n) => n !== 'register' && n !== 'status');
  const entries = await Promise.all(names.map(async (n) => fs.readFile(join(dir, n), 'utf8').then((t) => parseEntry(n, t), () => undefined)));
  return entries.filter((e): e is BinfmtEntry => e !== undefined && e.enabled && handlesArch(e, qemuArch));
}

async function checkOrRegister(p: EmulatedPlatform, qemuArch: string): Promise<void> {
  const dir = BINFMT_DIR;
  await mountBinfmtMisc(p, dir);
  if ((await fs.readFile(join(dir, 'status'), 'utf8')).trim() !== 'enabled') {
    throw emulationError(p, `binfmt_misc is disabled (echo 1 > ${dir}/status)`);
  }
  const usable = async (): Promise<boolean> => {
    const found = await handlersFor(qemuArch, dir);
    if (found.length === 0) return false;
    // the kernel uses the first matching entry it was given; any without F breaks inside the sandbox
    const noF = found.find((e) => !e.flags.includes('F'));
    if (noF) {
      throw emulationError(p, `the binfmt_misc handler ${join(dir, noF.name)} has no F flag, so its interpreter ${noF.interpreter} cannot be found inside the sandbox: remove it (echo -1 > ${join(dir, noF.name)}) and mbuild registers one with F`);
    }
    return true;
  };
  if (await usable()) return;
  const { line, rule } = await qemuRule(p, qemuArch);
  const entry = join(dir, rule.name);
  if (await exists(entry)) {
    throw emulationError(p, `the binfmt_misc handler ${entry} is disabled: enable it (echo 1 > ${entry}) or remove it (echo -1 > ${entry})`);
  }
  try {
    await fs.writeFile(join(dir, 'register'), withFixBinary(line));
  } catch (err) {
    // another mbuild registered it meanwhile: fine when what is there now is usable
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await usable())) return;
    throw emulationError(p, `cannot register ${rule.name} with binfmt_misc: ${(err as Error).message}`, err);
  }
  if (!(await usable())) throw emulationError(p, `registered ${rule.name} with binfmt_misc but the kernel does not show it for ${qemuArch}`);
}

const ready = new Map<string, Promise<void>>();

/**
 * Makes RUN steps of `platform` runnable: nothing for a native platform; otherwise a binfmt_misc
 * handler for its architecture with the F flag, registered from qemu-user-static when missing.
 * Throws MbuildError MBUILD_EMULATION with one line (what to install, what to remove) when it cannot.
 */
export function ensureEmulation(platform: EmulatedPlatform): Promise<void> {
  if (isNativePlatform(platform)) return Promise.resolve();
  if (platform.os !== 'linux') return Promise.reject(emulationError(platform, 'only linux images can run here'));
  const qemuArch = qemuArchFor(platform);
  if (!qemuArch || !ELF_ID[qemuArch]) return Promise.reject(emulationError(platform, `mbuild knows no qemu-user emulator for ${platform.architecture}`));
  let p = ready.get(qemuArch);
  if (!p) {
    p = checkOrRegister(platform, qemuArch);
    ready.set(qemuArch, p);
    p.catch(() => ready.delete(qemuArch)); // a failure is checked again next time (e.g. after apt-get install)
  }
  return p;
}
