/**
 * Go build info of an ELF binary, as `go version -m` prints it: the Go version, the main module
 * and the dependencies (with their replacements). Go 1.18+ writes it into the `.go.buildinfo`
 * section: a 32-byte header ("\xff Go buildinf:", pointer size, flags) and, with flag 2 set, two
 * length-prefixed strings (the version and the module info) right after it. Older binaries keep
 * pointers there instead; they are not read (undefined), as no current toolchain writes them.
 */

export interface GoModule {
  path: string;
  version: string;
  sum?: string;
  replace?: { path: string; version: string; sum?: string };
}

export interface GoBuildInfo {
  goVersion: string;
  path: string;
  main?: GoModule;
  deps: GoModule[];
  settings: Record<string, string>;
}

const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
const FLAG_INLINE = 0x2;

/** The bytes of the section named `.go.buildinfo`, or undefined (not ELF, no such section). */
function buildInfoSection(elf: Buffer): Buffer | undefined {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const is64 = elf[4] === 2;
  const le = elf[5] === 1;
  const u16 = (o: number) => (le ? elf.readUInt16LE(o) : elf.readUInt16BE(o));
  const u32 = (o: number) => (le ? elf.readUInt32LE(o) : elf.readUInt32BE(o));
  const uptr = (o: number) => (is64 ? Number(le ? elf.readBigUInt64LE(o) : elf.readBigUInt64BE(o)) : u32(o));
  const shoff = uptr(is64 ? 0x28 : 0x20);
  const shentsize = u16(is64 ? 0x3a : 0x2e);
  const shnum = u16(is64 ? 0x3c : 0x30);
  const shstrndx = u16(is64 ? 0x3e : 0x32);
  if (!shoff || !shnum || shstrndx >= shnum || shoff + shnum * shentsize > elf.length) return undefined;
  const section = (i: number) => {
    const h = shoff + i * shentsize;
    return { name: u32(h), offset: uptr(h + (is64 ? 0x18 : 0x10)), size: uptr(h + (is64 ? 0x20 : 0x14)), type: u32(h + 4) };
  };
  const strtab = section(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const start = strtab.offset + s.name;
    const end = elf.indexOf(0, start);
    if (end < 0 || elf.toString('latin1', start, end) !== '.go.buildinfo') continue;
    if (s.type === 8 /* SHT_NOBITS */ || s.offset + s.size > elf.length) return undefined;
    return elf.subarray(s.offset, s.offset + s.size);
  }
  return undefined;
}

function uvarint(buf: Buffer, pos: number): [number, number] | undefined {
  let x = 0;
  let shift = 0;
  for (let i = pos; i < buf.length && i < pos + 10; i++) {
    const b = buf[i]!;
    x += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [x, i + 1];
    shift += 7;
  }
  return undefined;
}

function readString(buf: Buffer, pos: number): [string, number] | undefined {
  const n = uvarint(buf, pos);
  if (!n || n[1] + n[0] > buf.length) return undefined;
  return [buf.toString('utf8', n[1], n[1] + n[0]), n[1] + n[0]];
}

/** Go build info from a whole ELF file's bytes; undefined when it has none this reader knows. */
export function readGoBuildInfo(elf: Buffer): GoBuildInfo | undefined {
  let data = buildInfoSection(elf);
  if (!data) {
    // no section headers (stripped by a tool other than the Go linker): the magic at a 16-byte boundary
    for (let at = elf.indexOf(MAGIC); at >= 0; at = elf.indexOf(MAGIC, at + 1)) {
      if (at % 16 === 0) {
        data = elf.subarray(at);
        break;
      }
    }
  }
  if (!data || data.length < 32 || !data.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  if (!(data[15]! & FLAG_INLINE)) return undefined;
  const version = readString(data, 32);
  if (!version) return undefined;
  const mod = readString(data, version[1]);
  if (!mod) return undefined;
  let modinfo = mod[0];
  // the module info is framed by 16-byte sentinels (runtime/debug strips them the same way)
  if (modinfo.length >= 33 && modinfo[modinfo.length - 17] === '\n') modinfo = modinfo.slice(16, -16);
  return { goVersion: version[0], ...parseModInfo(modinfo) };
}

/** `runtime/debug.BuildInfo` text: path, mod, dep, => (replaces the line before), build. */
export function parseModInfo(text: string): Omit<GoBuildInfo, 'goVersion'> {
  const out: Omit<GoBuildInfo, 'goVersion'> = { path: '', deps: [], settings: {} };
  let last: GoModule | undefined;
  for (const line of text.split('\n')) {
    const f = line.split('\t');
    const mod = (): GoModule => ({ path: f[1] ?? '', version: f[2] ?? '', ...(f[3] ? { sum: f[3] } : {}) });
    switch (f[0]) {
      case 'path':
        out.path = f[1] ?? '';
        break;
      case 'mod':
        out.main = last = mod();
        break;
      case 'dep':
        out.deps.push((last = mod()));
        break;
      case '=>':
        if (last) last.replace = { path: f[1] ?? '', version: f[2] ?? '', ...(f[3] ? { sum: f[3] } : {}) };
        break;
      case 'build': {
        const eq = (f[1] ?? '').indexOf('=');
        if (eq > 0) out.settings[f[1]!.slice(0, eq)] = f[1]!.slice(eq + 1);
        break;
      }
    }
  }
  return out;
}

/** How much follows the magic that the build info can take (the version and module strings). */
const WINDOW = 256 << 10;
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * The build info of an ELF file read as a stream, without keeping the file: every 16-byte-aligned
 * occurrence of the magic opens a window of the bytes after it, and the first window that parses
 * as build info wins (the magic can also sit in a Go program's read-only data, e.g. the `go`
 * command's own). Non-ELF files are drained at once.
 */
export async function scanGoBuildInfo(input: AsyncIterable<Buffer>): Promise<GoBuildInfo | undefined> {
  let head = Buffer.alloc(0);
  let elf: boolean | undefined;
  let offset = 0; // file offset of carry[0]
  let carry = Buffer.alloc(0);
  const windows: { parts: Buffer[]; size: number }[] = [];
  for await (const chunk of input) {
    if (elf === false) continue;
    if (elf === undefined) {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4) continue;
      elf = head.subarray(0, 4).equals(ELF_MAGIC);
      if (!elf) continue;
    }
    for (const w of windows) if (w.size < WINDOW) (w.parts.push(chunk), (w.size += chunk.length));
    const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    // a magic that starts in the carried tail is found here (and its window gets the whole chunk)
    for (let at = buf.indexOf(MAGIC); at >= 0; at = buf.indexOf(MAGIC, at + 1)) {
      if ((offset + at) % 16 !== 0 || at + MAGIC.length <= carry.length) continue;
      const start = Buffer.from(buf.subarray(at));
      windows.push({ parts: [start], size: start.length });
    }
    const keep = Math.min(buf.length, MAGIC.length - 1);
    offset += buf.length - keep;
    carry = Buffer.from(buf.subarray(buf.length - keep));
  }
  for (const w of windows) {
    const info = readGoBuildInfo(Buffer.concat(w.parts).subarray(0, WINDOW));
    if (info) return info;
  }
  return undefined;
}
