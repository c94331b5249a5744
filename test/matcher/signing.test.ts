/**
 * Code-signing identity as a rule criterion (team_ids, signing_ids): table-driven through the one
 * compiled matcher, the schema and semantic checks that refuse bad ids (asserting codes), and lint
 * seeing the new criteria (overlap).
 */
import { describe, expect, it } from 'vitest';
import type { GuardError } from '../../src/common/errors.js';
import { compileMatcher, type MatchContext } from '../../src/policy/matcher.js';
import { lintPolicy } from '../../src/policy/policy-lint.js';
import { assertValidPolicyBody } from '../../src/policy/policy-schema.js';
import type { PolicyBody, PolicyRule } from '../../src/policy/policy-types.js';
import type { CodeSigning, ProcessObservation } from '../../src/sensors/observation.js';

const ctx: MatchContext = { now: Date.parse('2026-11-24T12:00:00Z'), hostname: 'mac-1', deviceTags: [] };
const TEAM = 'ABCDE12345';

const signed = (s: Partial<CodeSigning> | null, p: Partial<ProcessObservation> = {}): ProcessObservation => ({
  kind: 'process',
  pid: 10,
  ppid: 1,
  startTime: 1,
  name: 'tool',
  exe: '/Users/bob/.local/bin/tool',
  argv: ['tool'],
  owner: { uid: 501, user: 'bob', groups: [], home: '/Users/bob' },
  tty: null,
  ...(s ? { signing: { teamId: null, signingId: null, cdhash: null, platformBinary: false, ...s } } : {}),
  ...p,
});

const rule = (r: Partial<PolicyRule>): PolicyRule => ({
  id: 'r',
  name: 'R',
  action: 'block',
  message: 'm',
  ...r,
});

function body(rules: PolicyRule[]): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version: 3,
    issued_at: '2026-11-24T00:00:00Z',
    expires_at: '2026-12-08T00:00:00Z',
    mode: 'enforce',
    rules,
  };
}

describe('signing criteria in the matcher', () => {
  const cases: [string, PolicyRule, ProcessObservation, string | null][] = [
    ['team id', rule({ process: { team_ids: [TEAM] } }), signed({ teamId: TEAM }), `team:${TEAM}`],
    ['other team', rule({ process: { team_ids: [TEAM] } }), signed({ teamId: 'ZZZZZ99999' }), null],
    [
      'no signing facts (Linux, Windows, ps-list)',
      rule({ process: { team_ids: [TEAM] } }),
      signed(null),
      null,
    ],
    [
      'qualified signing id',
      rule({ process: { signing_ids: [`${TEAM}:com.vendor.tool`] } }),
      signed({ teamId: TEAM, signingId: 'com.vendor.tool' }),
      `${TEAM}:com.vendor.tool`,
    ],
    [
      'same identifier, ad-hoc signed (no team): an identifier anyone can choose',
      rule({ process: { signing_ids: [`${TEAM}:com.vendor.tool`] } }),
      signed({ signingId: 'com.vendor.tool' }),
      null,
    ],
    [
      'same identifier, another team',
      rule({ process: { signing_ids: [`${TEAM}:com.vendor.tool`] } }),
      signed({ teamId: 'ZZZZZ99999', signingId: 'com.vendor.tool' }),
      null,
    ],
    [
      'platform binary',
      rule({ action: 'audit', process: { signing_ids: ['platform:com.apple.curl'] } }),
      signed({ signingId: 'com.apple.curl', platformBinary: true }),
      'platform:com.apple.curl',
    ],
    [
      'platform: does not match a non-platform binary with that identifier',
      rule({ action: 'audit', process: { signing_ids: ['platform:com.apple.curl'] } }),
      signed({ signingId: 'com.apple.curl' }),
      null,
    ],
  ];
  it.each(cases)('%s', (_what, r, obs, detail) => {
    const m = compileMatcher(body([r]), { platform: 'darwin', homes: [] });
    const d = m.match(obs, ctx);
    if (detail === null) expect(d).toBeNull();
    else expect(d).toMatchObject({ reason: 'signing', detail, rule: { id: 'r' } });
    expect(m.matchAll(obs).map((h) => h.detail)).toEqual(detail === null ? [] : [detail]);
  });

  it('an unsigned copy is still caught by the content and hash criteria of the same rule', () => {
    const r = rule({ process: { team_ids: [TEAM], sha256: ['a'.repeat(64)] } });
    const m = compileMatcher(body([r]), { platform: 'darwin', homes: [] });
    expect(m.match(signed(null, { sha256: 'a'.repeat(64) }), ctx)).toMatchObject({ reason: 'sha256' });
    expect(m.match(signed({ teamId: TEAM }), ctx)).toMatchObject({ reason: 'signing' });
  });
});

describe('signing criteria in the schema and lint', () => {
  const refused = (r: PolicyRule): { code: string; message: string } => {
    try {
      assertValidPolicyBody(body([r]));
    } catch (err) {
      return { code: (err as GuardError).code, message: (err as GuardError).message };
    }
    throw new Error('accepted');
  };

  it.each([
    ['a lower-case team id', { team_ids: ['abcde12345'] }, 'team_ids[0]'],
    ['a short team id', { team_ids: ['ABC'] }, 'team_ids[0]'],
    ['an unqualified signing id', { signing_ids: ['com.vendor.tool'] }, 'signing_ids[0]'],
    ['a signing id with spaces', { signing_ids: [`${TEAM}:com vendor`] }, 'signing_ids[0]'],
  ])('refuses %s (GUARD_POLICY_SCHEMA)', (_what, process, path) => {
    const e = refused(rule({ process }));
    expect(e.code).toBe('GUARD_POLICY_SCHEMA');
    expect(e.message).toContain(path);
  });

  it('refuses a block rule on an Apple platform binary, accepts it for audit', () => {
    const e = refused(rule({ process: { signing_ids: ['platform:com.apple.zsh'] } }));
    expect(e.code).toBe('GUARD_POLICY_SCHEMA');
    expect(e.message).toContain('$.rules[0].process.signing_ids[0]');
    expect(() =>
      assertValidPolicyBody(
        body([rule({ action: 'audit', process: { signing_ids: ['platform:com.apple.zsh'] } })]),
      ),
    ).not.toThrow();
  });

  it('lint sees the new criteria: shared team ids overlap, a rule with only them is reachable', () => {
    const findings = lintPolicy(
      body([
        rule({ id: 'a', process: { team_ids: [TEAM] } }),
        rule({ id: 'b', action: 'warn', process: { team_ids: [TEAM], names: ['x'] } }),
      ]),
    );
    expect(findings.find((f) => f.kind === 'overlap')?.message).toContain(`process.team_ids "${TEAM}"`);
    expect(findings.filter((f) => f.kind === 'unreachable')).toEqual([]);
  });
});
