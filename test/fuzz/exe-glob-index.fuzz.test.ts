/**
 * The exe glob index (matcher.ts ExeGlobIndex) only narrows which rules are tested: whatever the
 * globs and paths, the rules the matcher reports for an exe path are exactly the rules whose own
 * glob, compiled alone (compileGlob, case-folded on macOS/Windows), matches the path. Globs and paths are drawn
 * from one small vocabulary of segments so that literal segments, wildcards, braces and `**` meet
 * real paths often, and many rules share segments (the index keys each glob by its rarest one).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Platform } from '../../src/common/platform-paths.js';
import { compileGlob, compileMatcher } from '../../src/policy/matcher.js';
import type { PolicyBody } from '../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { fuzzParams, testTimeout } from './fuzz-params.js';

const WORDS = ['usr', 'lib', 'node_modules', '@vendor', 'tool', 'Tool', 'bin', 'a.b', 'x+y', '@v2'];
const word = fc.constantFrom(...WORDS);
const globSegment = fc.oneof(
  word,
  fc.constant('*'),
  fc.constant('**'),
  fc.constant('t?ol'),
  fc.constant('{tool,bin}'),
  word.map((w) => `${w}*`),
  word.map((w) => `*${w}`),
);
const glob = fc
  .tuple(fc.boolean(), fc.array(globSegment, { minLength: 1, maxLength: 5 }))
  .map(([rooted, segs]) => (rooted ? `/${segs.join('/')}` : `**/${segs.join('/')}`));
const path = fc.array(word, { minLength: 1, maxLength: 6 }).map((segs) => `/${segs.join('/')}`);

function body(globs: readonly string[]): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version: 1,
    issued_at: '2026-01-01T00:00:00Z',
    expires_at: '2036-01-01T00:00:00Z',
    mode: 'enforce',
    rules: globs.map((g, i) => ({
      id: `r${i}`,
      name: `R${i}`,
      action: 'audit',
      message: 'm',
      process: { exe_globs: [g] },
    })),
    exceptions: [],
  };
}

function observation(exe: string): ProcessObservation {
  return {
    kind: 'process',
    pid: 10,
    ppid: 1,
    startTime: 1,
    name: 'unrelated-name',
    exe,
    argv: ['unrelated-name'],
    owner: { uid: 1000, user: 'u', groups: [], home: '/home/u' },
    tty: null,
  };
}

describe('exe glob index', () => {
  for (const platform of ['linux', 'win32'] as Platform[]) {
    it(
      `reports exactly the rules whose glob matches on its own (${platform})`,
      () => {
        const nocase = platform !== 'linux';
        fc.assert(
          fc.property(
            fc.array(glob, { minLength: 1, maxLength: 12 }),
            fc.array(path, { minLength: 1, maxLength: 8 }),
            (globs, paths) => {
              const matcher = compileMatcher(body(globs), { platform, homes: [] });
              const alone = globs.map((g) => compileGlob([g], nocase));
              for (const p of paths) {
                const got = matcher
                  .matchAll(observation(p))
                  .filter((h) => h.reason === 'exe_path')
                  .map((h) => h.ruleIndex);
                const want = alone.map((test, i) => (test(p) ? i : -1)).filter((i) => i >= 0);
                expect(got).toEqual(want);
              }
            },
          ),
          fuzzParams(400, 20_000),
        );
      },
      testTimeout(20_000),
    );
  }
});
