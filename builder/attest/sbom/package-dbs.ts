/**
 * The package databases an SBOM is made from, parsed from their file contents (pure): dpkg's status
 * file, apk's installed database, a node_modules package.json, and /etc/os-release for the distro.
 */

/** One package found in the image, with what each source knows about it. */
export interface FoundPackage {
  kind: 'deb' | 'apk' | 'golang' | 'npm';
  name: string;
  version: string;
  arch?: string;
  license?: string;
  homepage?: string;
  supplier?: string;
  /** the source package (deb) or origin (apk), when it differs from the name */
  source?: string;
  /** the file the package was found in (the database, the binary, the package.json) */
  location: string;
}

export interface Distro {
  id: string;
  versionId?: string;
}

/** RFC822-style paragraphs (dpkg status): `Field: value`, continuation lines start with a blank. */
function paragraphs(text: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  let cur: Record<string, string> = {};
  let key = '';
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (Object.keys(cur).length) out.push(cur);
      cur = {};
      key = '';
    } else if (/^[ \t]/.test(line)) {
      if (key) cur[key] += '\n' + line.trim();
    } else {
      const c = line.indexOf(':');
      if (c <= 0) continue;
      key = line.slice(0, c);
      cur[key] = line.slice(c + 1).trim();
    }
  }
  if (Object.keys(cur).length) out.push(cur);
  return out;
}

/** Installed packages of /var/lib/dpkg/status (or a status.d file, as distroless images have). */
export function parseDpkgStatus(text: string, location: string): FoundPackage[] {
  const out: FoundPackage[] = [];
  for (const p of paragraphs(text)) {
    if (!p.Package || !p.Version) continue;
    // a status.d file has no Status field; the status file lists removed packages too
    if (p.Status !== undefined && !/\binstalled$/.test(p.Status)) continue;
    const source = p.Source?.split(' ')[0];
    out.push({
      kind: 'deb',
      name: p.Package,
      version: p.Version,
      ...(p.Architecture ? { arch: p.Architecture } : {}),
      ...(p.Homepage ? { homepage: p.Homepage } : {}),
      ...(p.Maintainer ? { supplier: p.Maintainer } : {}),
      ...(source && source !== p.Package ? { source } : {}),
      location,
    });
  }
  return out;
}

/** /lib/apk/db/installed: paragraphs of one-letter keys (P name, V version, A arch, L license, U url, o origin, m maintainer). */
export function parseApkInstalled(text: string, location: string): FoundPackage[] {
  const out: FoundPackage[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const f: Record<string, string> = {};
    for (const line of block.split('\n')) {
      const m = /^([A-Za-z]):(.*)$/.exec(line);
      if (m && f[m[1]!] === undefined) f[m[1]!] = m[2]!;
    }
    if (!f.P || !f.V) continue;
    out.push({
      kind: 'apk',
      name: f.P,
      version: f.V,
      ...(f.A ? { arch: f.A } : {}),
      ...(f.L ? { license: f.L } : {}),
      ...(f.U ? { homepage: f.U } : {}),
      ...(f.m ? { supplier: f.m } : {}),
      ...(f.o && f.o !== f.P ? { source: f.o } : {}),
      location,
    });
  }
  return out;
}

/** A package.json directly under node_modules (node_modules/NAME or node_modules/@SCOPE/NAME). */
export function isNodeModulePackageJson(path: string): boolean {
  return /(^|\/)node_modules\/(@[^/]+\/)?[^/@][^/]*\/package\.json$/.test(path);
}

export function parsePackageJson(text: string, location: string): FoundPackage | undefined {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined; // a broken package.json is no package (npm would not load it either)
  }
  if (typeof j.name !== 'string' || typeof j.version !== 'string' || !j.name || !j.version) return undefined;
  const lic = j.license;
  const license = typeof lic === 'string' ? lic : lic && typeof lic === 'object' && typeof (lic as { type?: unknown }).type === 'string' ? (lic as { type: string }).type : undefined;
  const author = typeof j.author === 'string' ? j.author : j.author && typeof j.author === 'object' && typeof (j.author as { name?: unknown }).name === 'string' ? (j.author as { name: string }).name : undefined;
  return {
    kind: 'npm',
    name: j.name,
    version: j.version,
    ...(license ? { license } : {}),
    ...(typeof j.homepage === 'string' ? { homepage: j.homepage } : {}),
    ...(author ? { supplier: author } : {}),
    location,
  };
}

/** /etc/os-release (or /usr/lib/os-release): ID and VERSION_ID, for the purl's distro qualifier. */
export function parseOsRelease(text: string): Distro | undefined {
  const v: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) v[m[1]!] = m[2]!.replace(/^(["'])(.*)\1$/, '$2');
  }
  return v.ID ? { id: v.ID, ...(v.VERSION_ID ? { versionId: v.VERSION_ID } : {}) } : undefined;
}
