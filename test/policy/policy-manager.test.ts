/**
 * PolicyManager lifecycle on a real SQLite state DB: first start without a policy, bootstrap file,
 * the cache across restarts, anti-rollback surviving restarts, stale transitions, key rotation.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { withFreshDates } from '../../src/policy/policy-manager.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { tempDir } from '../helpers/tmp.js';
import { body, CTX, makeManager, NOW, newKey, proc, sign } from './policy-helpers.js';

const root = tempDir('tg-mgr-');
const A = newKey();
const B = newKey();
const DAY = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString();
const fresh = (): string => mkdtempSync(join(root, 'm-'));

describe('PolicyManager', () => {
  it('first start with nothing: state none, monitor-only empty matcher, onChange called once', () => {
    const h = makeManager(fresh(), [A]);
    try {
      h.manager.loadInitial(join(root, 'does-not-exist.json'));
      expect(h.manager.status()).toMatchObject({ state: 'none', version: null, mode: 'monitor', rules: 0 });
      expect(h.swaps).toHaveLength(1);
      expect(h.swaps[0]?.policy).toBeNull();
      expect(h.manager.matcher().match(proc('claude'), CTX)).toBeNull();
      expect(h.manager.current()).toBeNull();
    } finally {
      h.close();
    }
  });

  it('uses the bootstrap file, then the cache after a restart (even when the bootstrap is gone)', () => {
    const dir = fresh();
    const boot = join(dir, 'bootstrap.dsse.json');
    writeFileSync(boot, sign(body(3), [A]));
    const h1 = makeManager(dir, [A]);
    h1.manager.loadInitial(boot);
    expect(h1.manager.status()).toMatchObject({ state: 'ok', version: 3, source: `file:${boot}` });
    expect(h1.events.ofType('policy.applied')).toHaveLength(1);
    expect(h1.manager.applyEnvelope(sign(body(4), [A]), 'http://collector/v1/policy').ok).toBe(true);
    h1.close();

    const h2 = makeManager(dir, [A]);
    try {
      h2.manager.loadInitial(join(dir, 'gone.json'));
      expect(h2.manager.status()).toMatchObject({
        state: 'ok',
        version: 4,
        source: 'http://collector/v1/policy',
      });
      expect(h2.manager.matcher().match(proc('claude'), CTX)?.rule.action).toBe('block');
      // Anti-rollback survives the restart: the old bootstrap version is refused.
      const r = h2.manager.applyEnvelope(sign(body(3), [A]), `file:${boot}`);
      expect(r.ok ? null : r.error.code).toBe('GUARD_POLICY_ROLLBACK');
      // Equivocation too.
      const e = h2.manager.applyEnvelope(sign(body(4, { mode: 'monitor' }), [A]), 'x');
      expect(e.ok ? null : e.error.code).toBe('GUARD_POLICY_EQUIVOCATION');
      expect(h2.manager.status().version).toBe(4);
    } finally {
      h2.close();
    }
  });

  it('an older bootstrap does not override a newer cached policy', () => {
    const dir = fresh();
    const h1 = makeManager(dir, [A]);
    h1.manager.loadInitial(null);
    h1.manager.applyEnvelope(sign(body(7), [A]), 'net');
    h1.close();
    const boot = join(dir, 'b.json');
    writeFileSync(boot, sign(body(2), [A]));
    const h2 = makeManager(dir, [A]);
    try {
      h2.manager.loadInitial(boot);
      expect(h2.manager.status().version).toBe(7);
    } finally {
      h2.close();
    }
  });

  it('a tampered bootstrap is refused with its code and status stays none', () => {
    const dir = fresh();
    const boot = join(dir, 'b.json');
    const env = JSON.parse(sign(body(2), [A]));
    writeFileSync(
      boot,
      JSON.stringify({ ...env, payload: Buffer.from(JSON.stringify(body(99))).toString('base64') }),
    );
    const h = makeManager(dir, [A]);
    try {
      h.manager.loadInitial(boot);
      expect(h.manager.status()).toMatchObject({
        state: 'none',
        last_error: { code: 'GUARD_POLICY_SIGNATURE_INVALID' },
      });
      expect(h.events.ofType('policy.rejected')[0]).toMatchObject({
        reason: 'GUARD_POLICY_SIGNATURE_INVALID',
      });
    } finally {
      h.close();
    }
  });

  it('an expired but validly signed bootstrap is enforced as stale rather than nothing', () => {
    const dir = fresh();
    const boot = join(dir, 'b.json');
    writeFileSync(boot, sign(body(2, { issued_at: iso(NOW - 30 * DAY), expires_at: iso(NOW - DAY) }), [A]));
    const h = makeManager(dir, [A]);
    try {
      h.manager.loadInitial(boot);
      expect(h.manager.status()).toMatchObject({ state: 'stale', version: 2 });
      expect(h.events.ofType('policy.stale')).toHaveLength(1);
      expect(h.manager.matcher().match(proc('claude'), CTX)?.rule.id).toBe('claude-code');
    } finally {
      h.close();
    }
  });

  it('expiry: stale once per transition, policy stays in force, no repeat after restart', () => {
    const dir = fresh();
    const clock = { now: NOW };
    const h1 = makeManager(dir, [A], { clock });
    h1.manager.loadInitial(null);
    h1.manager.applyEnvelope(sign(body(5, { expires_at: iso(NOW + DAY) }), [A]), 'net');
    h1.manager.checkFreshness();
    expect(h1.manager.status().state).toBe('ok');
    clock.now = NOW + 2 * DAY;
    h1.manager.checkFreshness();
    h1.manager.checkFreshness();
    expect(h1.manager.status()).toMatchObject({ state: 'stale', version: 5 });
    expect(h1.events.ofType('policy.stale')).toHaveLength(1);
    expect(h1.events.ofType('policy.stale')[0]).toMatchObject({ policy_version: 5 });
    expect(h1.manager.matcher().match(proc('claude'), { ...CTX, now: clock.now })?.rule.id).toBe(
      'claude-code',
    );
    // An expired update is refused; the stale policy stays.
    const r = h1.manager.applyEnvelope(sign(body(6, { expires_at: iso(NOW + DAY) }), [A]), 'net');
    expect(r.ok ? null : r.error.code).toBe('GUARD_POLICY_EXPIRED');
    h1.close();

    const h2 = makeManager(dir, [A], { clock });
    try {
      h2.manager.loadInitial(null);
      expect(h2.manager.status()).toMatchObject({ state: 'stale', version: 5 });
      expect(h2.events.ofType('policy.stale')).toHaveLength(0);
      // A fresh policy ends the stale state.
      const ok = h2.manager.applyEnvelope(
        sign(body(6, { issued_at: iso(clock.now - 1000), expires_at: iso(clock.now + DAY) }), [A]),
        'net',
      );
      expect(ok.ok).toBe(true);
      expect(h2.manager.status()).toMatchObject({ state: 'ok', version: 6 });
    } finally {
      h2.close();
    }
  });

  it('key rotation: new-key-only policy rejected before the config trusts it, accepted after', () => {
    const dir = fresh();
    const h1 = makeManager(dir, [A]);
    h1.manager.loadInitial(null);
    expect(h1.manager.applyEnvelope(sign(body(5), [A]), 'net').ok).toBe(true);
    const byB = sign(body(6), [B]);
    const r = h1.manager.applyEnvelope(byB, 'net');
    expect(r.ok ? null : r.error.code).toBe('GUARD_POLICY_UNTRUSTED_KEY');
    expect(h1.manager.status().version).toBe(5);
    h1.close();

    // Step 1: MDM ships a config trusting both keys (restart); old policy still loads.
    const h2 = makeManager(dir, [A, B]);
    h2.manager.loadInitial(null);
    expect(h2.manager.status().version).toBe(5);
    expect(h2.manager.applyEnvelope(byB, 'net')).toEqual({ ok: true, version: 6, changed: true });
    h2.close();

    // Step 2: A retired; the cached policy signed by B still verifies.
    const h3 = makeManager(dir, [B]);
    try {
      h3.manager.loadInitial(null);
      expect(h3.manager.status()).toMatchObject({ state: 'ok', version: 6 });
      const old = h3.manager.applyEnvelope(sign(body(7), [A]), 'net');
      expect(old.ok ? null : old.error.code).toBe('GUARD_POLICY_UNTRUSTED_KEY');
    } finally {
      h3.close();
    }
  });

  it('the identical envelope again is unchanged without events; once expired it is refused', () => {
    const clock = { now: NOW };
    const h = makeManager(fresh(), [A], { clock });
    try {
      h.manager.loadInitial(null);
      const text = sign(body(5, { expires_at: iso(NOW + DAY) }), [A]);
      expect(h.manager.applyEnvelope(text, 'net')).toEqual({ ok: true, version: 5, changed: true });
      expect(h.manager.applyEnvelope(text, 'net')).toEqual({ ok: true, version: 5, changed: false });
      expect(h.manager.applyEnvelope(Buffer.from(text), 'net')).toEqual({
        ok: true,
        version: 5,
        changed: false,
      });
      expect(h.events.events.map((e) => e.type)).toEqual(['policy.applied']);
      clock.now = NOW + 2 * DAY;
      const r = h.manager.applyEnvelope(text, 'net');
      expect(r.ok ? null : r.error.code).toBe('GUARD_POLICY_EXPIRED');
      expect(h.manager.current()?.body.version).toBe(5);
    } finally {
      h.close();
    }
  });

  it('when the state DB cannot be written, a valid policy is still enforced and rollback still refused', () => {
    const dir = fresh();
    const { db } = openDatabase(join(dir, 'state.db'), { migrations: MIGRATIONS, synchronous: 'NORMAL' });
    class DiskFullState extends StateStore {
      override transaction<T>(): T {
        throw new Error('SQLITE_FULL: database or disk is full');
      }
    }
    const h = makeManager(dir, [A], { state: new DiskFullState(db), db });
    try {
      h.manager.loadInitial(null);
      expect(h.manager.applyEnvelope(sign(body(5), [A]), 'net')).toEqual({
        ok: true,
        version: 5,
        changed: true,
      });
      const r = h.manager.applyEnvelope(sign(body(4), [A]), 'net');
      expect(r.ok ? null : r.error.code).toBe('GUARD_POLICY_ROLLBACK');
      expect(h.manager.status().version).toBe(5);
    } finally {
      h.close();
      db.close();
    }
  });

  it('records every accept and reject in policy_history', () => {
    const dir = fresh();
    const h = makeManager(dir, [A]);
    h.manager.loadInitial(null);
    h.manager.applyEnvelope(sign(body(5), [A]), 'net');
    h.manager.applyEnvelope(sign(body(4), [A]), 'net');
    h.manager.applyEnvelope('garbage', 'net');
    h.close();
    const db = new Database(join(dir, 'state.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT version, outcome, reason FROM policy_history ORDER BY rowid').all();
      expect(rows).toEqual([
        { version: 5, outcome: 'accepted', reason: null },
        { version: 4, outcome: 'rejected', reason: 'GUARD_POLICY_ROLLBACK' },
        { version: 0, outcome: 'rejected', reason: 'GUARD_POLICY_MALFORMED_ENVELOPE' },
      ]);
    } finally {
      db.close();
    }
  });

  it('rebuildMatcher recompiles with the current homes and swaps it in', () => {
    let homes = ['/home/dev'];
    const h = makeManager(fresh(), [A], { homes: () => homes });
    try {
      h.manager.loadInitial(null);
      h.manager.applyEnvelope(sign(body(5), [A]), 'net');
      expect(h.manager.matcher().pathMatches('/home/dev/.local/share/claude/versions/1')).toBe(true);
      expect(h.manager.matcher().pathMatches('/home/new/.local/share/claude/versions/1')).toBe(false);
      homes = ['/home/dev', '/home/new'];
      const swaps = h.swaps.length;
      h.manager.rebuildMatcher();
      expect(h.swaps.length).toBe(swaps + 1);
      expect(h.manager.matcher().pathMatches('/home/new/.local/share/claude/versions/1')).toBe(true);
    } finally {
      h.close();
    }
  });

  it('refuses an invalid trusted key at construction', () => {
    expect(() => makeManager(fresh(), [{ ...A, pem: 'nope', base64: 'nope' }])).toThrow(
      expect.objectContaining({ code: 'GUARD_POLICY_KEY_INVALID' }),
    );
  });

  it('withFreshDates sets whole-second UTC dates and nothing else', () => {
    const b = withFreshDates(body(3), Date.parse('2026-11-24T10:00:00.789Z'), 14);
    expect(b.issued_at).toBe('2026-11-24T10:00:00Z');
    expect(b.expires_at).toBe('2026-12-08T10:00:00Z');
    expect(b.version).toBe(3);
  });
});
