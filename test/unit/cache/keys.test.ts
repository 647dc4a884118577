import { describe, expect, it } from 'vitest';
import { canonicalJson, digestOf, inputDigests, stepKey } from '../../../builder/cache/keys.js';

describe('cache keys', () => {
  it('canonical JSON sorts object keys at every depth and drops undefined values', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: undefined, x: null }], c: 's' } })).toBe('{"a":{"c":"s","d":[2,{"x":null,"z":1}]},"b":1}');
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('equal inputs in any key order give one digest; a string is hashed as it is', () => {
    expect(digestOf({ a: 1, b: [1, 2] })).toBe(digestOf({ b: [1, 2], a: 1 }));
    expect(digestOf({ a: 1 })).not.toBe(digestOf({ a: '1' }));
    expect(digestOf('')).toBe('sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('a step key changes with its parent and with any input', () => {
    const k = stepKey('parent', { op: 'run', args: ['true'] });
    expect(k).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(stepKey('other', { op: 'run', args: ['true'] })).not.toBe(k);
    expect(stepKey('parent', { op: 'run', args: ['false'] })).not.toBe(k);
    expect(stepKey('parent', { args: ['true'], op: 'run' })).toBe(k);
  });

  it('per-input digests are short and leave undefined inputs out', () => {
    const d = inputDigests({ args: ['true'], env: [], user: undefined });
    expect(Object.keys(d)).toEqual(['args', 'env']);
    expect(d.args).toBe(digestOf(['true']).slice(7, 23));
  });
});
