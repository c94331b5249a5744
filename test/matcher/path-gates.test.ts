/**
 * The matcher's path gates (matcher.ts `pathGate`): a rule's RE2 path glob is built only for a
 * path where one of its globs can match — below its literal base, with the next segment starting
 * with the glob's literal head. The same answers as before; what changes is what a path at a base
 * many rules share costs: every rule's glob was built (and kept for the matcher's life) by one such
 * path — the safety check's probe of `~/.vscode/extensions`, or the path sensor reporting it.
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { syntheticPolicyBody, syntheticRules } from '../../bench/lib/synthetic-policy.js';
import { compileMatcher } from '../../src/policy/matcher.js';
import type { PolicyBody, PolicyRule } from '../../src/policy/policy-types.js';
import type { PathObservation } from '../../src/sensors/observation.js';

const owner = { uid: 1000, user: 'a', groups: [], home: '/home/a' };
const at = (path: string, isDirectory = false): PathObservation => ({
  kind: 'path',
  path,
  isDirectory,
  owner,
});
const body = (paths: Record<string, string[]>): PolicyBody => ({
  ...syntheticPolicyBody([]),
  rules: Object.entries(paths).map(
    ([id, p]): PolicyRule => ({ id, name: id, action: 'block', message: 'm', paths: p }),
  ),
});

describe('path gates', () => {
  const m = compileMatcher(
    body({
      ext: ['~/.vscode/extensions/vendor.tool-*'],
      all: ['~/.vscode/extensions/**'],
      opt: ['/opt/x*/bin'],
      brace: ['~/.config/{alpha,beta}-*/x'],
      star: ['~/.local/share/*/versions/*'],
    }),
    { platform: 'linux', homes: ['/home/a'] },
  );
  const hits = (path: string): number[] => m.matchAll(at(path)).map((h) => h.ruleIndex);

  it('a path where a glob matches still matches it; one whose next segment lacks the head does not', () => {
    expect(hits('/home/a/.vscode/extensions/vendor.tool-1.2.3')).toEqual([0, 1]);
    expect(hits('/home/a/.vscode/extensions/other.tool-1.2.3')).toEqual([1]);
    expect(hits('/opt/xy/bin')).toEqual([2]);
    expect(hits('/opt/yx/bin')).toEqual([]);
    expect(hits('/home/a/.config/beta-9/x')).toEqual([3]);
    expect(hits('/home/a/.config/gamma-9/x')).toEqual([]);
    expect(hits('/home/a/.local/share/tool/versions/1')).toEqual([4]);
  });

  it('the base itself: matched by a `**` glob, not by one that needs a segment below it', () => {
    expect(hits('/home/a/.vscode/extensions')).toEqual([1]);
    expect(hits('/opt')).toEqual([]);
  });

  it('case-insensitive platforms fold the head like the base', () => {
    const mac = compileMatcher(body({ ext: ['~/.vscode/extensions/Vendor.Tool-*'] }), {
      platform: 'darwin',
      homes: ['/Users/a'],
    });
    expect(mac.matchAll(at('/users/A/.VSCODE/extensions/vendor.tool-2')).map((h) => h.ruleIndex)).toEqual([
      0,
    ]);
    expect(mac.matchAll(at('/Users/a/.vscode/extensions/other-2'))).toEqual([]);
  });
});

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const used = (): number => {
  gc();
  gc();
  return v8.getHeapStatistics().used_heap_size;
};
const MiB = 1024 * 1024;

describe('`~` globs and many homes', () => {
  it('a 1,000-rule policy for 100 homes keeps under 20 MiB (it kept ~1 MiB a home: guardd ran out of its 192 MiB heap at start)', () => {
    const homes = Array.from({ length: 100 }, (_, i) => `/home/user${i}`);
    const before = used();
    const m = compileMatcher(syntheticPolicyBody(syntheticRules(1000)), { platform: 'linux', homes });
    for (const [i, h] of homes.entries())
      expect(m.matchAll(at(`${h}/.vscode/extensions/vendor${i}.tool-2`)).map((x) => x.ruleIndex)).toEqual([
        i,
      ]);
    expect(used() - before).toBeLessThan(20 * MiB);
    expect(m.ruleCount).toBe(1000);
  });

  it('a home is matched literally, and a path below two nested homes is tried under each', () => {
    const m = compileMatcher(body({ tool: ['~/tool/*'], own: ['~'] }), {
      platform: 'linux',
      homes: ['/srv/a[1]', '/srv', '/srv/a1'],
    });
    const hits = (path: string): number[] => m.matchAll(at(path)).map((h) => h.ruleIndex);
    // `[1]` in a home's name is not a class: /srv/a1 is a home of its own, not that one
    expect(hits('/srv/a[1]/tool/x')).toEqual([0]);
    expect(hits('/srv/a1/tool/x')).toEqual([0]);
    // below /srv (a home) and /srv/a1 (another): `~/tool/*` of neither matches /srv/a1/x/tool/y
    expect(hits('/srv/a1/x/tool/y')).toEqual([]);
    expect(hits('/srv/tool/y')).toEqual([0]);
    expect(hits('/srv')).toEqual([1]);
    expect(hits('/srv/x')).toEqual([]);
  });
});

describe('a base 1,000 rules share', () => {
  it('one path at it builds no rule’s glob: the heap it keeps stays under 2 MiB (it kept ~30 MiB)', () => {
    const m = compileMatcher(syntheticPolicyBody(syntheticRules(1000)), {
      platform: 'linux',
      homes: ['/home/a'],
    });
    const before = used();
    expect(m.matchAll(at('/home/a/.vscode/extensions', true))).toEqual([]);
    const kept = used() - before;
    expect(kept).toBeLessThan(2 * MiB);
    // and the rules still match where they should
    expect(
      m.matchAll(at('/home/a/.vscode/extensions/vendor7.tool-1.0.0', true)).map((h) => h.ruleIndex),
    ).toEqual([7]);
  });
});
