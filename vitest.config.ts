import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // integration tests mount and build as root: keep files serial to avoid fighting over loop/overlay resources
    fileParallelism: false,
    pool: 'forks',
  },
});
