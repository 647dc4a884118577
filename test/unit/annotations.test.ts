import { describe, expect, it } from 'vitest';
import { checkAnnotations, indexAnnotations, indexDescriptorAnnotations, manifestAnnotations, manifestDescriptorAnnotations, parseAnnotationFlag, parseAnnotationOutputKey } from '../../builder/executor/annotations.js';

const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64' };

describe('--annotation as buildx reads it', () => {
  it('a bare KEY=VALUE is a manifest annotation; the value keeps = and :', () => {
    expect(parseAnnotationFlag('org.opencontainers.image.url=https://x.example/a=b')).toMatchObject([{ kind: 'manifest', key: 'org.opencontainers.image.url', value: 'https://x.example/a=b' }]);
  });
  it('types, several at once, each with an optional platform (normalized)', () => {
    const list = parseAnnotationFlag('index,manifest[linux/aarch64],manifest-descriptor:k=v');
    expect(list.map((a) => [a.kind, a.platform])).toEqual([
      ['index', undefined],
      ['manifest', 'linux/arm64'],
      ['manifest-descriptor', undefined],
    ]);
  });
  it('refuses an unknown type, a malformed type, a platform on an index type and a missing key', () => {
    expect(() => parseAnnotationFlag('bogus:k=v')).toThrow(/--annotation bogus:k=v: unknown annotation type "bogus"/);
    expect(() => parseAnnotationFlag('manifest[linux/arm64:k=v')).toThrow(/invalid annotation type/);
    expect(() => parseAnnotationFlag('index[linux/amd64]:k=v')).toThrow(/index annotations apply to the whole index and take no platform/);
    expect(() => parseAnnotationFlag('index:=v')).toThrow(/the key is empty/);
    expect(() => parseAnnotationFlag('novalue')).toThrow(/expected \[TYPE:\]KEY=VALUE/);
  });
});

describe('-o annotation keys as BuildKit reads them', () => {
  it('annotation[-TYPE][[PLATFORM]].KEY', () => {
    expect(parseAnnotationOutputKey('annotation.k', 'v')).toMatchObject({ kind: 'manifest', key: 'k' });
    expect(parseAnnotationOutputKey('annotation-index.a.b', 'v')).toMatchObject({ kind: 'index', key: 'a.b' });
    expect(parseAnnotationOutputKey('annotation-index-descriptor.k', 'v')).toMatchObject({ kind: 'index-descriptor' });
    expect(parseAnnotationOutputKey('annotation-manifest-descriptor[linux/arm64].k', 'v')).toMatchObject({ kind: 'manifest-descriptor', platform: 'linux/arm64' });
    expect(parseAnnotationOutputKey('annotation[linux/amd64].k', 'v')).toMatchObject({ kind: 'manifest', platform: 'linux/amd64' });
    expect(parseAnnotationOutputKey('name', 'v')).toBeUndefined();
    expect(() => parseAnnotationOutputKey('annotation-nope.k', 'v')).toThrow(/unknown annotation type "nope"/);
  });
});

describe('where each kind lands', () => {
  const list = [
    ...parseAnnotationFlag('k=all'),
    ...parseAnnotationFlag('manifest[linux/arm64]:k=arm'),
    ...parseAnnotationFlag('manifest-descriptor:d=1'),
    ...parseAnnotationFlag('index:i=1'),
    ...parseAnnotationFlag('index-descriptor:t=1'),
  ];
  it('a platform\'s own value wins over the unscoped one; index kinds are the same for every platform', () => {
    expect(manifestAnnotations(list, amd64)).toEqual({ k: 'all' });
    expect(manifestAnnotations(list, arm64)).toEqual({ k: 'arm' });
    expect(manifestDescriptorAnnotations(list, arm64)).toEqual({ d: '1' });
    expect(indexAnnotations(list)).toEqual({ i: '1' });
    expect(indexDescriptorAnnotations(list)).toEqual({ t: '1' });
  });
  it('refuses as BuildKit: a platform not built, index kinds without an index, descriptor kinds with Docker media types', () => {
    expect(() => checkAnnotations(parseAnnotationFlag('manifest[linux/arm64]:k=v'), { platforms: [amd64], index: false, ociMediatypes: true })).toThrow(/makes no linux\/arm64 image \(it makes linux\/amd64\)/);
    expect(() => checkAnnotations(parseAnnotationFlag('index:k=v'), { platforms: [amd64], index: false, ociMediatypes: true })).toThrow(/index annotations need an index/);
    expect(() => checkAnnotations(parseAnnotationFlag('manifest-descriptor:k=v'), { platforms: [amd64], index: false, ociMediatypes: false })).toThrow(/need OCI media types/);
    expect(() => checkAnnotations(list, { platforms: [amd64, arm64], index: true, ociMediatypes: true })).not.toThrow();
  });
});
