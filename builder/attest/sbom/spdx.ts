/**
 * An SPDX 2.3 JSON document of the packages found in an image, in the shape syft (BuildKit's
 * default SBOM generator) writes: a root element for the scanned filesystem that the document
 * DESCRIBES and that CONTAINS every package, each package with its purl. Deterministic: packages
 * sorted, ids and the namespace derived from the content, `created` given by the caller.
 */
import { createHash } from 'node:crypto';
import type { Distro, FoundPackage } from './package-dbs.js';
import { purl } from './purl.js';

export const SPDX_PREDICATE_TYPE = 'https://spdx.dev/Document';

export interface SpdxOptions {
  /** ISO time without fractions: SOURCE_DATE_EPOCH, else the build's end */
  created: string;
  /** "Tool: mbuild-VERSION" */
  tool: string;
  distro?: Distro;
}

function packagePurl(p: FoundPackage, distro: Distro | undefined): string {
  const distroQ: [string, string][] = distro ? [['distro', `${distro.id}${distro.versionId ? '-' + distro.versionId : ''}`]] : [];
  switch (p.kind) {
    case 'deb':
      return purl('deb', distro?.id ?? 'debian', p.name, p.version, [['arch', p.arch ?? ''], ...distroQ, ['upstream', p.source ?? '']]);
    case 'apk':
      return purl('apk', distro?.id ?? 'alpine', p.name, p.version, [['arch', p.arch ?? ''], ...distroQ, ['upstream', p.source ?? '']]);
    case 'golang': {
      const slash = p.name.lastIndexOf('/');
      return purl('golang', slash >= 0 ? p.name.slice(0, slash) : '', p.name.slice(slash + 1), p.name === 'stdlib' ? p.version.replace(/^go/, '') : p.version);
    }
    case 'npm': {
      const scoped = /^(@[^/]+)\/(.+)$/.exec(p.name);
      return purl('npm', scoped ? scoped[1]! : '', scoped ? scoped[2]! : p.name, p.version);
    }
  }
}

const SOURCE_INFO: Record<FoundPackage['kind'], string> = {
  deb: 'acquired package info from DPKG DB',
  apk: 'acquired package info from APK DB',
  golang: 'acquired package info from go module information',
  npm: 'acquired package info from installed node module manifest file',
};

/** SPDX ids take letters, digits, "." and "-" only. */
function idPart(s: string): string {
  return s.replace(/[^A-Za-z0-9.-]+/g, '-');
}

/** A declared license as an SPDX expression, else a LicenseRef (syft does the same for free text). */
function licenseExpr(l: string | undefined): string {
  if (!l) return 'NOASSERTION';
  return /^[A-Za-z0-9.+\-]+(\s+(AND|OR|WITH)\s+[A-Za-z0-9.+\-]+)*$/.test(l.trim()) ? l.trim() : `LicenseRef-${idPart(l.trim())}`;
}

function supplier(s: string | undefined): string {
  if (!s) return 'NOASSERTION';
  return /<[^>]*@[^>]*>/.test(s) ? `Person: ${s}` : `Organization: ${s}`;
}

export function spdxDocument(found: FoundPackage[], opts: SpdxOptions): Record<string, unknown> {
  const sorted = [...found].sort((a, b) => (a.kind + a.name + '\0' + a.version + '\0' + a.location < b.kind + b.name + '\0' + b.version + '\0' + b.location ? -1 : 1));
  const seen = new Set<string>();
  const packages: Record<string, unknown>[] = [];
  const ids: string[] = [];
  for (const p of sorted) {
    const key = `${p.kind}\0${p.name}\0${p.version}\0${p.location}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const id = `SPDXRef-Package-${p.kind}-${idPart(p.name)}-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
    ids.push(id);
    packages.push({
      name: p.name,
      SPDXID: id,
      versionInfo: p.version,
      supplier: supplier(p.supplier),
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      ...(p.homepage ? { homepage: p.homepage } : {}),
      sourceInfo: `${SOURCE_INFO[p.kind]}: /${p.location}`,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: licenseExpr(p.license),
      copyrightText: 'NOASSERTION',
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: packagePurl(p, opts.distro) }],
    });
  }
  const root = 'SPDXRef-DocumentRoot-Directory-';
  packages.push({
    name: '/',
    SPDXID: root,
    supplier: 'NOASSERTION',
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    licenseConcluded: 'NOASSERTION',
    licenseDeclared: 'NOASSERTION',
    copyrightText: 'NOASSERTION',
    primaryPackagePurpose: 'FILE',
  });
  // the namespace is unique per content, and the same for the same content (reproducible)
  const h = createHash('sha256').update(JSON.stringify(packages)).digest('hex');
  const uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: 'sbom',
    documentNamespace: `urn:uuid:${uuid}`,
    creationInfo: { creators: [opts.tool], created: opts.created },
    packages,
    relationships: [
      { spdxElementId: 'SPDXRef-DOCUMENT', relatedSpdxElement: root, relationshipType: 'DESCRIBES' },
      ...ids.map((id) => ({ spdxElementId: root, relatedSpdxElement: id, relationshipType: 'CONTAINS' })),
    ],
  };
}
