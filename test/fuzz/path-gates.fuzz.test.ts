/**
 * The matcher's path gates (matcher.ts pathGate) only narrow when a rule's path glob is built and
 * tested: whatever the globs and paths, the rules the matcher reports for a path are exactly the
 * rules whose own glob, compiled alone (compileGlob, case-folded on macOS/Windows), matches it.
 * Globs and paths share one small vocabulary of segments, and glob segments start with literal
 * heads that paths share or just miss (`tool` / `tool-1` / `to`), so gates are met and missed often.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Platform } from '../../src/common/platform-paths.js';
import { compileGlob, compileMatcher, expandHome } from '../../src/policy/matcher.js';
import type { PathObservation } from '../../src/sensors/observation.js';
import { pathRulesBody } from '../policy/policy-helpers.js';
import { fuzzParams, testTimeout } from './fuzz-params.js';

/**
 * `sun`/`ſun`: RE2's case folding takes `ſ` (U+017F) for `s`, `toLowerCase` does not; `İ` (U+0130)
 * lower-cases to two characters (a home named with it: its forms must not be cut short).
 */
const WORDS = ['u', '.vscode', 'tool', 'Tool', 'TOOL-2', 'tool-1', 'to', 'a.b', 'sun', 'ſun', 'İ'];
const word = fc.constantFrom(...WORDS);
const globSegment = fc.oneof(
  word,
  fc.constant('*'),
  fc.constant('**'),
  fc.constant('t?ol'),
  fc.constant('{tool,to}-*'),
  fc.constant('@(tool|ext)'),
  fc.constant('[tT]ool*'),
  word.map((w) => `${w}*`),
  word.map((w) => `*${w}`),
  word.map((w) => `${w}-*`),
);
/** Literal starts globs and paths share, so that paths land at and below glob bases often. */
const prefix = fc.constantFrom(
  [],
  ['home'],
  ['home', 'u'],
  ['home', 'u', '.vscode'],
  ['Home', 'u'],
  ['home', 'İ'],
);
const glob = fc
  .tuple(prefix, fc.array(globSegment, { minLength: 1, maxLength: 3 }))
  .map(([lit, segs]) => `/${[...lit, ...segs].join('/')}`);
/** `~` globs, compiled once and matched after whichever home a path is below. */
const homeGlob = fc
  .tuple(fc.constantFrom([], ['.vscode'], ['u']), fc.array(globSegment, { minLength: 0, maxLength: 3 }))
  .map(([lit, segs]) => (lit.length + segs.length === 0 ? '~' : `~/${[...lit, ...segs].join('/')}`));
/** Homes of the machine: nested ones, the root, two that differ only in case, one named with `İ`. */
const homes = fc.subarray(['/home/u', '/Home/u', '/home', '/', '/home/u/.vscode/u', '/home/İ'], {
  minLength: 1,
});
const path = fc
  .tuple(prefix, fc.array(word, { minLength: 0, maxLength: 3 }))
  .map(([lit, segs]) => `/${[...lit, ...segs].join('/')}`);

const at = (p: string): PathObservation => ({
  kind: 'path',
  path: p,
  isDirectory: true,
  owner: { uid: 1000, user: 'u', groups: [], home: '/home/u' },
});

/**
 * The property: for globs on a platform with homes, the matcher reports for each path exactly the
 * rules whose globs, expanded for every home and compiled alone, match it. (`~` of the home `/`
 * expands to '': that home is `/`.)
 */
function sameAsAlone(
  platform: Platform,
  globs: readonly string[],
  homes: readonly string[],
  paths: readonly string[],
): void {
  const matcher = compileMatcher(pathRulesBody(globs), { platform, homes });
  const alone = globs.map((g) =>
    compileGlob(
      expandHome(g, homes).map((e) => e || '/'),
      platform !== 'linux',
    ),
  );
  for (const p of paths) {
    const got = matcher.matchAll(at(p)).map((h) => h.ruleIndex);
    const want = alone.map((test, i) => (test(p) ? i : -1)).filter((i) => i >= 0);
    expect(got, p).toEqual(want);
  }
}

describe('path gates', () => {
  for (const platform of ['linux', 'darwin'] as Platform[]) {
    it(
      `reports exactly the rules whose path glob matches on its own (${platform})`,
      () => {
        fc.assert(
          fc.property(
            fc.array(glob, { minLength: 1, maxLength: 12 }),
            fc.array(path, { minLength: 1, maxLength: 8 }),
            (globs, paths) => sameAsAlone(platform, globs, [], paths),
          ),
          fuzzParams(400, 20_000),
        );
      },
      testTimeout(20_000),
    );

    it(
      `reports exactly the rules whose \`~\` glob, expanded for every home, matches (${platform})`,
      () => {
        fc.assert(
          fc.property(
            fc.array(fc.oneof(homeGlob, glob), { minLength: 1, maxLength: 12 }),
            homes,
            fc.array(path, { minLength: 1, maxLength: 8 }),
            (globs, hs, paths) => sameAsAlone(platform, globs, hs, paths),
          ),
          fuzzParams(400, 20_000),
        );
      },
      testTimeout(20_000),
    );
  }
});
