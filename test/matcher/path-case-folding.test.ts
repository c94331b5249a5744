/**
 * Path rules on case-insensitive platforms (macOS, Windows) answer as the rule's glob alone does
 * (compileGlob: RE2, case-insensitive), whatever characters the home or the path hold. Found in
 * review of the path gates and the `~` globs compiled once (matcher.ts `homeForms`, `pathGate`,
 * `fold`):
 *  - a home whose name holds a character that lower-cases to two (`İ`, U+0130: Turkish names on
 *    Windows, `C:\Users\İlker`): the path's form with the home's segment in place was cut at the
 *    folded home's length, one character too far (`/~homessh/id_rsa`), so no `~` rule matched
 *    anything in that home — the expansion it replaced matched;
 *  - a path holding `ſ` (U+017F, long s), which RE2's case folding takes for `s` (and Windows'
 *    and APFS' case-insensitive names too) but `toLowerCase` leaves as it is: the gates (and the
 *    base index before them) compared folded strings, so `~/.ſſh/authorized_keys` and
 *    `/etc/ſſh/x` escaped `~/.ssh/*` and `/etc/ssh/*` that match them alone.
 */
import { describe, expect, it } from 'vitest';
import type { Platform } from '../../src/common/platform-paths.js';
import { compileGlob, compileMatcher, expandHome } from '../../src/policy/matcher.js';
import type { PathObservation } from '../../src/sensors/observation.js';
import { pathRulesBody } from '../policy/policy-helpers.js';

const at = (path: string): PathObservation => ({
  kind: 'path',
  path,
  isDirectory: false,
  owner: { uid: 1000, user: 'u', groups: [], home: null },
});

/** The rules (indices) the matcher reports for `path`, and those whose glob alone matches it. */
function both(platform: Platform, globs: readonly string[], homes: readonly string[], path: string) {
  const matcher = compileMatcher(pathRulesBody(globs), { platform, homes });
  const got = matcher.matchAll(at(path)).map((h) => h.ruleIndex);
  const alone = globs
    .map((g, i) =>
      compileGlob(expandHome(g, homes), platform !== 'linux')(path.replace(/\\/g, '/')) ? i : -1,
    )
    .filter((i) => i >= 0);
  return { got, alone };
}

describe('path rules on case-insensitive platforms', () => {
  it('a home whose name holds İ: `~/.ssh/*` matches its .ssh (macOS and Windows)', () => {
    for (const [platform, home, path] of [
      ['darwin', '/Users/İlker', '/Users/İlker/.ssh/id_rsa'],
      ['win32', 'C:\\Users\\İlker', 'C:\\Users\\İlker\\.ssh\\id_rsa'],
    ] as const) {
      const { got, alone } = both(platform, ['~/.ssh/*'], [home], path);
      expect(alone, `${platform} ${path}`).toEqual([0]);
      expect(got, `${platform} ${path}`).toEqual([0]);
    }
  });

  it('a path holding ſ matches the globs that match it alone (`~` and absolute)', () => {
    for (const path of ['/Users/a/.ſſh/authorized_keys', '/etc/ſſh/sshd_config']) {
      const { got, alone } = both('darwin', ['~/.ssh/*', '/etc/ssh/*'], ['/Users/a'], path);
      expect(alone, path).toHaveLength(1);
      expect(got, path).toEqual(alone);
    }
  });
});
