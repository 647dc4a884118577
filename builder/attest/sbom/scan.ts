/**
 * What an SBOM lists: the packages of an image's final filesystem, read from its layers (dpkg
 * status and status.d, apk's installed database, Go build info of ELF binaries, package.json files
 * under node_modules) and the distro from os-release.
 */
import type { Store } from '../../../store/store.js';
import type { Descriptor } from '../../../store/oci.js';
import { readImageFiles } from './image-files.js';
import { isNodeModulePackageJson, parseApkInstalled, parseDpkgStatus, parseOsRelease, parsePackageJson, type Distro, type FoundPackage } from './package-dbs.js';
import { readGoBuildInfo, type GoBuildInfo } from './go-buildinfo.js';

export interface ScanResult {
  packages: FoundPackage[];
  distro?: Distro;
}

const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

function isDpkg(p: string): boolean {
  return p === 'var/lib/dpkg/status' || (p.startsWith('var/lib/dpkg/status.d/') && !p.endsWith('.md5sums'));
}

/** A Go binary's modules as packages: the main module, every dependency (as replaced), the standard library. */
export function goPackages(info: GoBuildInfo, location: string): FoundPackage[] {
  const out: FoundPackage[] = [];
  const add = (path: string, version: string) => out.push({ kind: 'golang', name: path, version, location });
  if (info.main?.path) add(info.main.path, info.main.version);
  for (const d of info.deps) {
    // a replacement by another module names what was built; one by a local directory keeps the required path and version
    const r = d.replace;
    if (r && !r.path.startsWith('.') && !r.path.startsWith('/')) add(r.path, r.version);
    else add(d.path, d.version);
  }
  if (info.goVersion) add('stdlib', info.goVersion);
  return out;
}

export async function scanImage(store: Store, layers: Descriptor[]): Promise<ScanResult> {
  const packages: FoundPackage[] = [];
  const osRelease: Record<string, string> = {};
  await readImageFiles(
    store,
    layers,
    {
      wants: (p, mode, size) =>
        isDpkg(p) || p === 'lib/apk/db/installed' || p === 'etc/os-release' || p === 'usr/lib/os-release' || isNodeModulePackageJson(p) || ((mode & 0o111) !== 0 && size > 64),
      prefix: (p) => (isDpkg(p) || p === 'lib/apk/db/installed' || p.endsWith('os-release') || p.endsWith('package.json') ? undefined : ELF),
    },
    (f) => {
      const text = () => f.data.toString('utf8');
      if (isDpkg(f.path)) packages.push(...parseDpkgStatus(text(), f.path));
      else if (f.path === 'lib/apk/db/installed') packages.push(...parseApkInstalled(text(), f.path));
      else if (f.path.endsWith('os-release') && !f.data.subarray(0, 4).equals(ELF)) osRelease[f.path] = text();
      else if (isNodeModulePackageJson(f.path) && !f.data.subarray(0, 4).equals(ELF)) {
        const p = parsePackageJson(text(), f.path);
        if (p) packages.push(p);
      } else if (f.data.subarray(0, 4).equals(ELF)) {
        const info = readGoBuildInfo(f.data);
        if (info) packages.push(...goPackages(info, f.path));
      }
    },
  );
  const release = osRelease['etc/os-release'] ?? osRelease['usr/lib/os-release'];
  const distro = release ? parseOsRelease(release) : undefined;
  return { packages, ...(distro ? { distro } : {}) };
}
