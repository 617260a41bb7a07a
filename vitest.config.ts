import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // model sessions are heavy: run test files one at a time on this 2-core machine
    fileParallelism: false,
    pool: 'forks',
  },
});
