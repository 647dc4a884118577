/**
 * The shared conformance suite (../shared/conformance): every case built with mbuild and compared
 * with what docker build (BuildKit) produced (see test/helpers/conformance.ts).
 */
import { describe, expect, it } from 'vitest';
import { runConformance } from '../helpers/conformance.js';

describe('conformance with docker build', () => {
  it('passes every case in ../shared/conformance', async () => {
    const r = await runConformance();
    process.stdout.write(r.stdout);
    expect(r.summary).toBe(`${r.total} passed, 0 failed`);
    expect(r.code).toBe(0);
  }, 900_000);
});
