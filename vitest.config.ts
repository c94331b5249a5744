import { defineConfig } from 'vitest/config';

/**
 * Test files that must be the only pre-exec listener on the machine: a user's write between one
 * fanotify listener's answer and the next one's is seen by neither (docs/process-detection.md "A
 * file written while its exec waits"), and every guardd of a test alongside marks the same file
 * systems. They run after everything else, one at a time.
 */
const SOLO = ['test/enforcement/exec-deny-rewrite.test.ts', 'test/enforcement/exec-deny-rewrite-coarse.test.ts'];

export default defineConfig({
  test: {
    // Tests launch real processes, daemons and collectors: generous bounds, never wall-clock asserts.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', 'json'],
    outputFile: { json: 'build/test-results.json' },
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['test/**/*.test.ts'],
          exclude: ['**/node_modules/**', ...SOLO],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: 'solo', include: SOLO, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
