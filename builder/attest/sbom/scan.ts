/**
 * What an SBOM lists: the packages of an image's final filesystem, read from its layers (dpkg
 * status and status.d, apk's installed database, Go build info of ELF binaries, package.json files
 * under node_modules) and the distro from os-release.
 */
import type { Store } from '../../../store/store.js';
import type { Descriptor } from '../../../store/oci.js';
import { readImageFiles, wholeFile } from './image-files.js';
import { isNodeModulePackageJson, parseApkInstalled, parseDpkgStatus, parseOsRelease, parsePackageJson, type Distro, type FoundPackage } from './package-dbs.js';
import { scanGoBuildInfo, type GoBuildInfo } from './go-buildinfo.js';

export interface ScanResult {
  packages: FoundPackage[];
  distro?: Distro;
}

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

type Found = { kind: 'text'; text: string } | { kind: 'go'; info: GoBuildInfo };

export async function scanImage(store: Store, layers: Descriptor[]): Promise<ScanResult> {
  const packages: FoundPackage[] = [];
  const osRelease: Record<string, string> = {};
  const isText = (p: string) => isDpkg(p) || p === 'lib/apk/db/installed' || p === 'etc/os-release' || p === 'usr/lib/os-release' || isNodeModulePackageJson(p);
  await readImageFiles<Found>(
    store,
    layers,
    (p, mode, size) => {
      if (isText(p)) return async (data) => ({ kind: 'text', text: (await wholeFile(data)).toString('utf8') });
      // executables: ELF files are streamed through the Go build info scanner, nothing is kept
      if ((mode & 0o111) !== 0 && size > 64) return async (data) => {
        const info = await scanGoBuildInfo(data);
        return info ? { kind: 'go', info } : undefined;
      };
      return undefined;
    },
    (path, f) => {
      if (f.kind === 'go') packages.push(...goPackages(f.info, path));
      else if (isDpkg(path)) packages.push(...parseDpkgStatus(f.text, path));
      else if (path === 'lib/apk/db/installed') packages.push(...parseApkInstalled(f.text, path));
      else if (path.endsWith('os-release')) osRelease[path] = f.text;
      else {
        const p = parsePackageJson(f.text, path);
        if (p) packages.push(p);
      }
    },
  );
  const release = osRelease['etc/os-release'] ?? osRelease['usr/lib/os-release'];
  const distro = release ? parseOsRelease(release) : undefined;
  return { packages, ...(distro ? { distro } : {}) };
}
