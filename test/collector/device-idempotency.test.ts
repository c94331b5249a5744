/**
 * Idempotency per (device, enrollment, event id), the device part: a device token that posts
 * another device's (public) event ids first must not suppress that device's real events — they
 * are stored, listed by the admin API and forwarded (raw and OCSF); the replayed copies are stored
 * as the replaying device's own. (The enrollment part — re-enrolling the device's own id — is in
 * reenroll-takeover.test.ts.) And the schema migration that made it so: an existing database
 * keeps every row, its rids and the AUTOINCREMENT high-water mark, devices and events start at
 * enrollment 1; a newer schema is refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  COLLECTOR_MIGRATIONS,
  CollectorStore,
  type StoredEventRow,
} from '../../src/collector/collector-store.js';
import { GuardError } from '../../src/common/errors.js';
import { openDatabase } from '../../src/store/database.js';
import {
  blockedEvent,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  RecordingSink,
  startTestCollector,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

describe('idempotency per (device, event id)', () => {
  it("a device replaying another device's ids first cannot suppress them: both are stored, listed and forwarded under their own device", async () => {
    const dir = collectorTempDir();
    const ocsfFile = join(dir, 'ocsf.ndjson');
    const rec = new RecordingSink();
    const c = await startTestCollector({
      forwarders: { ndjson: { file: ocsfFile, format: 'ocsf' }, extra: [rec] },
    });
    try {
      const tokA = await enrollDevice(c.url, c.enrollSecret, 'dev-idem-a');
      const tokB = await enrollDevice(c.url, c.enrollSecret, 'dev-idem-b');
      const real = [
        heartbeatEvent('dev-idem-b', 1),
        ...Array.from({ length: 9 }, (_, i) => blockedEvent('dev-idem-b', i + 2)),
      ];
      // A learned B's ids (public on B's socket) and posts them first, as its own events
      const replayed = real.map((e) => ({ ...e, device_id: 'dev-idem-a', hostname: 'dev-idem-a.test' }));
      const ra = await postEvents(c.url, tokA, replayed);
      expect(ra.status).toBe(200);
      expect(await ra.json()).toEqual({ accepted: 10, duplicates: 0 });

      const rb = await postEvents(c.url, tokB, real);
      expect(rb.status).toBe(200);
      expect(await rb.json()).toEqual({ accepted: 10, duplicates: 0 });
      // B's own retry is still idempotent
      expect(await (await postEvents(c.url, tokB, real)).json()).toEqual({ accepted: 0, duplicates: 10 });
      // and so is A's
      expect(await (await postEvents(c.url, tokA, replayed)).json()).toEqual({ accepted: 0, duplicates: 10 });

      // the admin API lists each device's copies under that device, bodies as each sent them
      const list = async (device: string) => {
        const r = await fetch(`${c.url}/v1/events?device_id=${device}&limit=1000`, {
          headers: { authorization: `Bearer ${c.adminToken}` },
        });
        expect(r.status).toBe(200);
        return ((await r.json()) as { events: Record<string, unknown>[] }).events;
      };
      const listedB = await list('dev-idem-b');
      expect(listedB.map((e) => e.id)).toEqual(real.map((e) => e.id));
      expect(listedB.map(({ received_at: _, enrollment: _e, ...e }) => e)).toEqual(real);
      expect(new Set(listedB.map((e) => e.enrollment))).toEqual(new Set([1]));
      const listedA = await list('dev-idem-a');
      expect(listedA.map((e) => e.id)).toEqual(real.map((e) => e.id));
      expect(new Set(listedA.map((e) => e.device_id))).toEqual(new Set(['dev-idem-a']));

      // forwarded once each: 20 rows, B's 10 real events among them exactly once
      await waitFor(() => rec.rows.length >= 20, 'the recording sink to receive 20 events');
      const keyOf = (r: StoredEventRow) => `${r.device_id}/${(JSON.parse(r.body) as { id: string }).id}`;
      const keys = rec.rows.map(keyOf);
      expect(new Set(keys).size).toBe(20);
      for (const e of real) expect(keys.filter((k) => k === `dev-idem-b/${e.id}`)).toHaveLength(1);
      for (const row of rec.rows.filter((r) => r.device_id === 'dev-idem-b'))
        expect(real).toContainEqual(JSON.parse(row.body));

      // OCSF: device.uid tells the two copies of one metadata.uid apart
      const ocsfLines = await waitFor(() => {
        let text = '';
        try {
          text = readFileSync(ocsfFile, 'utf8');
        } catch {
          return undefined;
        }
        const lines = text.split('\n').filter(Boolean);
        return lines.length >= 20 ? lines : undefined;
      }, 'the OCSF file to hold 20 lines');
      const ocsf = ocsfLines.map(
        (l) => JSON.parse(l) as { metadata: { uid: string }; device: { uid: string } },
      );
      expect(ocsf).toHaveLength(20);
      for (const e of real) {
        const copies = ocsf.filter((o) => o.metadata.uid === e.id).map((o) => o.device.uid);
        expect(copies.sort()).toEqual(['dev-idem-a', 'dev-idem-b']);
      }
    } finally {
      await c.close();
    }
  });

  it('the same id twice in one batch of one device is stored once', async () => {
    const c = await startTestCollector();
    try {
      const tok = await enrollDevice(c.url, c.enrollSecret, 'dev-idem-c');
      const e = heartbeatEvent('dev-idem-c', 1);
      const r = await postEvents(c.url, tok, [e, e]);
      expect(await r.json()).toEqual({ accepted: 1, duplicates: 1 });
    } finally {
      await c.close();
    }
  });
});

describe('collector schema migration to per-(device, enrollment) idempotency', () => {
  /**
   * A version-1 database (global event ids) with an enrolled device, rows, a pruned tail and a
   * forwarder cursor.
   */
  function v1Database(file: string): { rows: unknown[]; seq: number } {
    const { db } = openDatabase(file, { migrations: COLLECTOR_MIGRATIONS.slice(0, 1) });
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    db.prepare(
      `INSERT INTO devices(id, token_hash, hostname, os, agent_version, enrolled_at, last_seen_at)
       VALUES ('dev-old', 'hash-old', 'h', 'linux', '0.1.0', 'x', 'x')`,
    ).run();
    const ins = db.prepare(
      `INSERT INTO events(id, device_id, seq, type, time, rule_id, received_at, body)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    for (let i = 1; i <= 8; i++) {
      const e = i % 2 ? heartbeatEvent('dev-old', i) : blockedEvent('dev-old', i);
      ins.run(e.id, 'dev-old', i, e.type, e.time, i % 2 ? null : 'claude-code', e.time, JSON.stringify(e));
    }
    // retention took the newest rows' ids out of the table (it never does in practice, but any
    // gap between max(rid) and the sequence must survive): rid 8 must never be handed out again
    db.prepare('DELETE FROM events WHERE rid > 6').run();
    db.prepare(`INSERT INTO forwarder_cursors(sink, last_rid, updated_at) VALUES ('ndjson', 8, 'x')`).run();
    const rows = db.prepare('SELECT * FROM events ORDER BY rid').all();
    const { seq } = db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'events'`).get() as {
      seq: number;
    };
    db.close();
    return { rows, seq };
  }

  it('keeps every row with its rid, the cursor and the rid high-water mark; ids become unique per (device, enrollment)', () => {
    const file = join(collectorTempDir(), 'collector.db');
    const before = v1Database(file);
    expect(before.seq).toBe(8);
    const store = new CollectorStore({ file });
    try {
      expect(store.db.pragma('user_version', { simple: true })).toBe(COLLECTOR_MIGRATIONS.length);
      // every stored event and every device is at enrollment 1: the device's token of today
      expect(store.db.prepare('SELECT * FROM events ORDER BY rid').all()).toEqual(
        // (user_name: the console's column of schema 6, not filled in for rows stored before it)
        before.rows.map((r) => ({ ...(r as object), enrollment: 1, user_name: null })),
      );
      expect(store.deviceForTokenHash('hash-old')).toEqual({ id: 'dev-old', enrollment: 1 });
      expect(store.cursorOf('ndjson')).toBe(8);
      const indexes = (store.db.prepare(`PRAGMA index_list('events')`).all() as { name: string }[])
        .map((i) => i.name)
        .filter((n) => !n.startsWith('sqlite_autoindex'))
        .sort();
      expect(indexes).toEqual([
        'events_device',
        'events_received',
        'events_rule',
        'events_rule_top',
        'events_time',
        'events_type',
        'events_user',
      ]);

      // an old device's id posted by another device is a new event, posted again with the token
      // of before the upgrade it is a duplicate; rids continue past 8
      const old = JSON.parse((before.rows[0] as { body: string }).body) as Record<string, unknown>;
      const copy = { ...old, device_id: 'dev-new' };
      const incoming = (e: Record<string, unknown>) => ({
        id: e.id as string,
        seq: e.seq as number,
        type: e.type as string,
        time: e.time as string,
        ruleId: null,
        agentVersion: null,
        policyVersion: null,
        coverage: null,
        tags: null,
        outboxDepth: null,
        droppedTotal: null,
        policyState: null,
        policyError: null,
        user: null,
        body: JSON.stringify(e),
      });
      const now = new Date().toISOString();
      expect(
        store.insertGroup([
          { deviceId: 'dev-new', enrollment: 1, events: [incoming(copy)], receivedAt: now },
          { deviceId: 'dev-old', enrollment: 1, events: [incoming(old)], receivedAt: now },
        ]),
      ).toEqual([
        { accepted: 1, duplicates: 0 },
        { accepted: 0, duplicates: 1 },
      ]);
      expect(store.maxRid()).toBe(9);
      expect(store.eventsAfter(8, 10).map((r) => r.device_id)).toEqual(['dev-new']);
      // the device re-enrolls: enrollment 2, under which the same id is a new event
      expect(
        store.enrollDevice(
          { id: 'dev-old', hostname: 'h', os: 'linux', agent_version: '0.2.0' },
          'hash-2',
          now,
        ),
      ).toBe(2);
      expect(store.deviceForTokenHash('hash-old')).toBeUndefined();
      expect(
        store.insertGroup([{ deviceId: 'dev-old', enrollment: 2, events: [incoming(old)], receivedAt: now }]),
      ).toEqual([{ accepted: 1, duplicates: 0 }]);
      expect(store.eventsAfter(9, 10).map((r) => [r.device_id, r.enrollment])).toEqual([['dev-old', 2]]);
    } finally {
      store.close();
    }
    // opening again is a no-op migration
    const again = new CollectorStore({ file });
    expect(again.db.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 8 });
    again.close();
  });

  it('migrates an empty version-1 database', () => {
    const file = join(collectorTempDir(), 'collector.db');
    openDatabase(file, { migrations: COLLECTOR_MIGRATIONS.slice(0, 1) }).db.close();
    const store = new CollectorStore({ file });
    expect(store.maxRid()).toBe(0);
    store.close();
  });

  it('refuses a database with a newer schema (GUARD_STORE_IO), leaving it untouched', () => {
    const file = join(collectorTempDir(), 'collector.db');
    new CollectorStore({ file }).close();
    const db = new Database(file);
    db.pragma(`user_version = ${COLLECTOR_MIGRATIONS.length + 1}`);
    db.close();
    let err: unknown;
    try {
      new CollectorStore({ file }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GuardError);
    expect((err as GuardError).code).toBe('GUARD_STORE_IO');
    expect((err as Error).message).toMatch(/newer/);
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(COLLECTOR_MIGRATIONS.length + 1);
    check.close();
  });
});
