/**
 * The shadow channel on the device, on a real SQLite state DB: its own anti-rollback (version
 * monotonic per channel, independent of the enforced one), the same verifier and keys, clearing,
 * the cache across restarts; and the ShadowEvaluator's bounds (once per subject, rule and version;
 * the rate cap), every event validated against the schema by MemoryEventSink.
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ShadowEvaluator, sensorView } from '../../src/daemon/shadow-evaluator.js';
import { FULL_SCOPE } from '../../src/enforcement/enforcement-scope.js';
import { compileMatcher } from '../../src/policy/matcher.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { MemoryEventSink } from '../helpers/event-sink.js';
import { tempDir } from '../helpers/tmp.js';
import { body, CTX, makeManager, NOW, newKey, proc, sign } from './policy-helpers.js';

const root = tempDir('tg-shadow-ch-');
const A = newKey();
const STRANGER = newKey();
const fresh = (): string => mkdtempSync(join(root, 's-'));
const SOURCE = 'http://collector/v1/policy/shadow';
const codeOf = (r: { ok: boolean; error?: { code: string } }): string | null =>
  r.ok ? null : (r.error?.code ?? '?');

describe('the shadow channel of PolicyManager', () => {
  it('is monotonic per channel: a lower or re-signed shadow is refused, the enforced channel is independent', () => {
    const dir = fresh();
    const enforced = makeManager(dir, [A]);
    const shadow = makeManager(dir, [A], { channel: 'shadow' });
    try {
      enforced.manager.loadInitial(null);
      shadow.manager.loadInitial(null);
      expect(shadow.manager.current()).toBeNull();
      expect(shadow.manager.applyEnvelope(sign(body(8), [A]), SOURCE)).toMatchObject({
        ok: true,
        version: 8,
      });
      expect(shadow.events.ofType('policy.applied')[0]).toMatchObject({
        policy_version: 8,
        channel: 'shadow',
      });
      // lower: rollback, reported on the shadow channel; the shadow in force stays
      expect(codeOf(shadow.manager.applyEnvelope(sign(body(7), [A]), SOURCE))).toBe('GUARD_POLICY_ROLLBACK');
      expect(shadow.events.ofType('policy.rejected').at(-1)).toMatchObject({
        reason: 'GUARD_POLICY_ROLLBACK',
        channel: 'shadow',
        policy_version: 7,
      });
      // same version, other content: equivocation
      const other = body(8, { mode: 'monitor' });
      expect(codeOf(shadow.manager.applyEnvelope(sign(other, [A]), SOURCE))).toBe(
        'GUARD_POLICY_EQUIVOCATION',
      );
      expect(shadow.manager.status().version).toBe(8);
      // the enforced channel has its own highest version: v6 is fine there, and has no channel field
      expect(enforced.manager.applyEnvelope(sign(body(6), [A]), 'http://collector/v1/policy').ok).toBe(true);
      expect(enforced.events.ofType('policy.applied')[0]).not.toHaveProperty('channel');
      // a shadow never moves the enforced anti-rollback, nor the other way round
      expect(codeOf(enforced.manager.applyEnvelope(sign(body(5), [A]), 'x'))).toBe('GUARD_POLICY_ROLLBACK');
      expect(shadow.manager.applyEnvelope(sign(body(9), [A]), SOURCE).ok).toBe(true);
      expect(enforced.manager.status().version).toBe(6);
    } finally {
      shadow.close();
      enforced.close();
    }
  });

  it('verifies with the same keys and freshness: an untrusted or expired shadow is refused with its code', () => {
    const h = makeManager(fresh(), [A], { channel: 'shadow' });
    try {
      h.manager.loadInitial(null);
      expect(codeOf(h.manager.applyEnvelope(sign(body(3), [STRANGER]), SOURCE))).toBe(
        'GUARD_POLICY_UNTRUSTED_KEY',
      );
      const expired = body(4, {
        issued_at: new Date(NOW - 20 * 86_400_000).toISOString(),
        expires_at: new Date(NOW - 86_400_000).toISOString(),
      });
      expect(codeOf(h.manager.applyEnvelope(sign(expired, [A]), SOURCE))).toBe('GUARD_POLICY_EXPIRED');
      expect(h.events.ofType('policy.rejected').map((e) => [e.reason, e.channel])).toEqual([
        ['GUARD_POLICY_UNTRUSTED_KEY', 'shadow'],
        ['GUARD_POLICY_EXPIRED', 'shadow'],
      ]);
      expect(h.manager.current()).toBeNull();
      expect(h.swaps.at(-1)?.policy ?? null).toBeNull();
    } finally {
      h.close();
    }
  });

  it('clear() drops the shadow but keeps its version; the cache survives a restart, a cleared shadow does not', () => {
    const dir = fresh();
    const h1 = makeManager(dir, [A], { channel: 'shadow' });
    h1.manager.loadInitial(null);
    expect(h1.manager.applyEnvelope(sign(body(4), [A]), SOURCE).ok).toBe(true);
    h1.close();

    const h2 = makeManager(dir, [A], { channel: 'shadow' });
    h2.manager.loadInitial(null);
    expect(h2.manager.status()).toMatchObject({ state: 'ok', version: 4, source: SOURCE });
    h2.manager.clear(SOURCE);
    expect(h2.manager.current()).toBeNull();
    expect(h2.swaps.at(-1)?.policy).toBeNull();
    expect(h2.swaps.at(-1)?.matcher.match(proc('claude'), CTX)).toBeNull();
    expect(codeOf(h2.manager.applyEnvelope(sign(body(4, { mode: 'monitor' }), [A]), SOURCE))).toBe(
      'GUARD_POLICY_EQUIVOCATION',
    );
    h2.close();

    const h3 = makeManager(dir, [A], { channel: 'shadow' });
    try {
      h3.manager.loadInitial(null);
      expect(h3.manager.current()).toBeNull();
      expect(codeOf(h3.manager.applyEnvelope(sign(body(3), [A]), SOURCE))).toBe('GUARD_POLICY_ROLLBACK');
    } finally {
      h3.close();
    }
  });
});

describe('ShadowEvaluator', () => {
  const shadowMatcher = (version: number) =>
    compileMatcher(body(version), { platform: 'linux', homes: ['/home/dev'] });
  const running = (pid: number): ProcessObservation => ({ ...proc('claude'), pid, startTime: 1000 + pid });

  it('reports once per (subject, rule, shadow version), with the enforced decision and the subject as the enforced event has it', () => {
    const events = new MemoryEventSink();
    const clock = { now: NOW };
    const e = new ShadowEvaluator({ events, scope: FULL_SCOPE, now: () => clock.now });
    e.evaluate(running(1), CTX, null, 3); // no shadow: nothing
    expect(events.events).toEqual([]);
    e.setMatcher(shadowMatcher(9));
    for (let i = 0; i < 50; i++) e.evaluate(running(1), CTX, null, 3);
    e.evaluate(proc('not-banned'), CTX, null, 3);
    expect(events.ofType('policy.shadow_match')).toHaveLength(1);
    expect(events.events[0]).toMatchObject({
      subject_kind: 'process',
      pid: 1,
      start_time: 1001,
      name: 'claude',
      exe: '/usr/local/bin/claude',
      argv: ['claude'],
      uid: 1000,
      user: 'dev',
      shadow_version: 9,
      rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
      reason: 'name',
      mode: 'enforce',
      would: 'block',
      enforced: { act: 'none', rule_id: null, policy_version: 3 },
    });
    expect(e.counts()).toEqual({ matches: 50, reported: 1, repeats: 49, suppressed: 0 });
    // the enforced decision is carried: here the enforced policy warns on the same process
    const enforcedWarn = compileMatcher(
      body(3, {
        rules: [
          { id: 'warn-claude', name: 'Warn', action: 'warn', message: 'm', process: { names: ['claude'] } },
        ],
      }),
      { platform: 'linux', homes: [] },
    ).match(running(2), CTX);
    e.evaluate(running(2), CTX, enforcedWarn, 3);
    expect(events.events.at(-1)).toMatchObject({
      pid: 2,
      enforced: { act: 'warn', rule_id: 'warn-claude', policy_version: 3 },
    });
    // a new shadow version reports the same subject again
    e.setMatcher(shadowMatcher(10));
    e.evaluate(running(1), CTX, null, 3);
    expect(events.events.at(-1)).toMatchObject({ pid: 1, shadow_version: 10 });
  });

  it('a shadow rule matching every process cannot flood the outbox: the burst, then the hourly rate', () => {
    const events = new MemoryEventSink();
    const clock = { now: NOW };
    const e = new ShadowEvaluator({
      events,
      scope: FULL_SCOPE,
      now: () => clock.now,
      burst: 100,
      perHour: 360,
    });
    e.setMatcher(shadowMatcher(9));
    for (let pid = 1; pid <= 5000; pid++) e.evaluate(running(pid), CTX, null, 3);
    expect(events.events).toHaveLength(100);
    expect(e.counts()).toMatchObject({ matches: 5000, reported: 100, suppressed: 4900 });
    // 360 an hour = one per 10 s
    clock.now += 10_000;
    for (let pid = 5001; pid <= 5100; pid++) e.evaluate(running(pid), CTX, null, 3);
    expect(events.events).toHaveLength(101);
    // a suppressed subject is not remembered: reported once the budget allows
    clock.now += 10_000;
    e.evaluate(running(200), CTX, null, 3);
    expect(events.events.at(-1)).toMatchObject({ pid: 200 });
    // an hour later the bucket holds at most the burst again
    clock.now += 3_600_000;
    for (let pid = 6000; pid < 7000; pid++) e.evaluate(running(pid), CTX, null, 3);
    expect(events.events).toHaveLength(102 + 100);
  });
});

describe('sensorView: what the sensors observe for while a shadow is in force', () => {
  it("widens the enforced matcher by the shadow's needs, package names and path globs; decisions stay the enforced one's", () => {
    const opts = { platform: 'linux' as const, homes: ['/home/dev'] };
    const enforced = compileMatcher(
      body(3, {
        rules: [{ id: 'n', name: 'n', action: 'block', message: 'm', process: { names: ['tool-a'] } }],
      }),
      opts,
    );
    const shadow = compileMatcher(
      body(4, {
        rules: [
          {
            id: 's',
            name: 's',
            action: 'block',
            message: 'm',
            process: { sha256: ['a'.repeat(64)] },
            packages: [{ ecosystem: 'npm', name: 'cand-pkg', range: '*' }],
            paths: ['~/.cand/*'],
          },
        ],
      }),
      opts,
    );
    expect(enforced.needs.sha256).toBe(false);
    const view = sensorView(enforced, shadow, -7);
    expect(view.policyVersion).toBe(-7);
    expect(view.needs.sha256).toBe(true);
    expect([...view.packageNames]).toEqual(['cand-pkg']);
    expect(view.pathScanBases).toEqual(shadow.pathScanBases);
    expect(view.pathMatches('/home/dev/.cand/x')).toBe(true);
    expect(view.pathMatches('/home/dev/.other/x')).toBe(false);
    expect(view.match(proc('tool-a'), CTX)?.rule.id).toBe('n');
    expect(view.match({ ...proc('x'), sha256: 'a'.repeat(64) }, CTX)).toBeNull();
  });

  it("scans for the shadow's content markers also while the enforced policy has markers of its own", () => {
    const opts = { platform: 'linux' as const, homes: [] };
    const withMarker = (version: number, id: string, marker: string) =>
      compileMatcher(
        body(version, {
          rules: [{ id, name: id, action: 'block', message: 'm', process: { markers: [[marker]] } }],
        }),
        opts,
      );
    const enforced = withMarker(3, 'e', 'enforced-marker-text');
    const shadow = withMarker(4, 's', 'candidate-marker-text');
    const view = sensorView(enforced, shadow, -8);
    const key = (m: string) => Buffer.from(m).toString('hex');
    // what the sensors scan for: both policies' markers (the enforced alone left the candidate
    // rule unable to ever would-match on a machine whose enforced policy has markers)
    expect([...(view.markers()?.keys ?? [])].sort()).toEqual(
      [key('enforced-marker-text'), key('candidate-marker-text')].sort(),
    );
    expect(view.markers()).toBe(view.markers());
    // a process found carrying the candidate's marker would-matches the shadow, not the enforced
    const obs = { ...proc('x'), contentMarkers: [key('candidate-marker-text')] };
    expect(shadow.match(obs, CTX)?.rule.id).toBe('s');
    expect(view.match(obs, CTX)).toBeNull();
  });
});
