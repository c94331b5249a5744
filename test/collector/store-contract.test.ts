/**
 * The storage port's contract (src/collector/store/port.ts), the same test bodies against both
 * stores: SQLite (a temp file) and PostgreSQL (a throwaway server of this file, a fresh database
 * per test). Then what only PostgreSQL has to prove: several collectors (store instances) on one
 * database — one claim at a time, a claim dies with its holder's connection, and a row that
 * commits after rows with a higher rid is delivered, never skipped.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCollectorConfig, parseCollectorArgs } from '../../src/collector/collector-config.js';
import { optionsFromConfig } from '../../src/collector/collector-main.js';
import { parseBatch } from '../../src/collector/ingest.js';
import { openStore } from '../../src/collector/store/open-store.js';
import type { CollectorStorePort, IncomingEvent, StoredEventRow } from '../../src/collector/store/port.js';
import { PG_MIGRATIONS, PostgresCollectorStore } from '../../src/collector/store/postgres-store.js';
import { GuardError } from '../../src/common/errors.js';
import { blockedEvent, collectorTempDir, heartbeatEvent, ndjson } from '../helpers/collector.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

let server: TestPostgres;
beforeAll(async () => {
  server = await startTestPostgres();
});

interface Harness {
  /** A new store on fresh, empty storage. */
  fresh(): Promise<CollectorStorePort>;
  /** Storage whose schema claims to be a version newer than the code: opening it must be refused. */
  newerSchema(): Promise<() => Promise<CollectorStorePort>>;
}

const opened: CollectorStorePort[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
});
const track = (s: CollectorStorePort): CollectorStorePort => {
  opened.push(s);
  return s;
};

const harnesses: [string, Harness][] = [
  [
    'sqlite',
    {
      fresh: async () => track(await openStore({ dbFile: join(collectorTempDir('tg-sc-'), 'c.db') })),
      newerSchema: async () => {
        const file = join(collectorTempDir('tg-sc-'), 'c.db');
        const db = new Database(file);
        db.pragma('user_version = 99');
        db.close();
        return () => openStore({ dbFile: file });
      },
    },
  ],
  [
    'postgres',
    {
      fresh: async () => track(await openStore({ dbFile: '', url: await server.createDatabase() })),
      newerSchema: async () => {
        const url = await server.createDatabase();
        await (await openStore({ dbFile: '', url })).close();
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        await c.query('UPDATE collector_schema SET version = 99');
        await c.end();
        return () => openStore({ dbFile: '', url });
      },
    },
  ],
];

const dev = (id: string) => ({ id, hostname: `${id}.test`, os: 'linux', agent_version: '0.1.0' });
const now = () => new Date().toISOString();
function incoming(events: readonly Record<string, unknown>[], deviceId: string): IncomingEvent[] {
  const b = parseBatch(Buffer.from(ndjson(events)), deviceId);
  expect(b.rejectedTotal).toBe(0);
  return b.valid;
}
const ids = (rows: readonly StoredEventRow[]) => rows.map((r) => (JSON.parse(r.body) as { id: string }).id);
const drain = async (store: CollectorStorePort, sink: string, maxEvents = 500): Promise<string[]> => {
  const got: string[] = [];
  for (;;) {
    const o = await store.deliverNext(sink, { maxEvents, maxBytes: 8 * 1024 * 1024 }, async (rows) => {
      got.push(...ids(rows));
    });
    if (o.kind !== 'delivered') return got;
  }
};

describe.each(harnesses)('store contract: %s', (_name, h) => {
  it('enrolls devices: generations, token rotation, unknown tokens', async () => {
    const s = await h.fresh();
    expect(await s.enrollDevice(dev('d1'), 'hash-1', now())).toBe(1);
    expect(await s.deviceForTokenHash('hash-1')).toEqual({ id: 'd1', enrollment: 1 });
    expect(await s.enrollDevice(dev('d1'), 'hash-2', now())).toBe(2);
    expect(await s.deviceForTokenHash('hash-1')).toBeUndefined();
    expect(await s.deviceForTokenHash('hash-2')).toEqual({ id: 'd1', enrollment: 2 });
    expect(await s.deviceForTokenHash('nope')).toBeUndefined();
    expect(await s.enrollDevice(dev('d2'), 'hash-3', now())).toBe(1);
  });

  it('stores idempotently per (device, enrollment, event id), within a group and across groups', async () => {
    const s = await h.fresh();
    await s.enrollDevice(dev('d1'), 'h1', now());
    await s.enrollDevice(dev('d2'), 'h2', now());
    const evs = [blockedEvent('d1', 1), heartbeatEvent('d1', 2), blockedEvent('d1', 3)];
    const batch = { deviceId: 'd1', enrollment: 1, events: incoming(evs, 'd1'), receivedAt: now() };
    let woken = 0;
    s.onStored = () => woken++;
    // the same batch twice in one group: the second is all duplicates
    expect(await s.insertGroup([batch, batch])).toEqual([
      { accepted: 3, duplicates: 0 },
      { accepted: 0, duplicates: 3 },
    ]);
    expect(woken).toBeGreaterThanOrEqual(1);
    // again later: duplicates
    expect(await s.insertGroup([batch])).toEqual([{ accepted: 0, duplicates: 3 }]);
    // the same ids under another device, and under another enrollment of d1: stored beside them
    expect(await s.enrollDevice(dev('d1'), 'h1b', now())).toBe(2);
    const copy = evs.map((e) => ({ ...e, device_id: 'd2' }));
    expect(
      await s.insertGroup([
        { deviceId: 'd2', enrollment: 1, events: incoming(copy, 'd2'), receivedAt: now() },
        { ...batch, enrollment: 2 },
      ]),
    ).toEqual([
      { accepted: 3, duplicates: 0 },
      { accepted: 3, duplicates: 0 },
    ]);
    const all = await s.queryEvents({ limit: 100 });
    expect(all).toHaveLength(9);
    expect(all.map((r) => [r.device_id, r.enrollment])).toEqual([
      ['d1', 1],
      ['d1', 1],
      ['d1', 1],
      ['d2', 1],
      ['d2', 1],
      ['d2', 1],
      ['d1', 2],
      ['d1', 2],
      ['d1', 2],
    ]);
    // a duplicate within one batch
    const one = blockedEvent('d2', 9);
    expect(
      await s.insertGroup([
        { deviceId: 'd2', enrollment: 1, events: incoming([one, one], 'd2'), receivedAt: now() },
      ]),
    ).toEqual([{ accepted: 1, duplicates: 1 }]);
  });

  it('stores hostile strings (U+0000 in a rule id, an agent version, a hostname) without failing the group', async () => {
    const s = await h.fresh();
    expect(await s.enrollDevice({ ...dev('n1'), hostname: 'host\u0000name' }, 'hn', now())).toBe(1);
    await s.enrollDevice(dev('n2'), 'hn2', now());
    const hostile = { ...blockedEvent('n1', 1, 'rule\u0000x'), agent_version: 'v\u00001' };
    const honest = blockedEvent('n2', 1);
    expect(
      await s.insertGroup([
        { deviceId: 'n1', enrollment: 1, events: incoming([hostile], 'n1'), receivedAt: now() },
        { deviceId: 'n2', enrollment: 1, events: incoming([honest], 'n2'), receivedAt: now() },
      ]),
    ).toEqual([
      { accepted: 1, duplicates: 0 },
      { accepted: 1, duplicates: 0 },
    ]);
    // the body is kept exactly as validated (JSON escapes U+0000)
    const rows = await s.queryEvents({ deviceId: 'n1', limit: 10 });
    expect(JSON.parse(rows[0]?.body ?? '{}')).toEqual(hostile);
  });

  // a small group goes as parameter arrays, a larger one through COPY (postgres-store.ts): both
  it.each([
    ['a small group', 1],
    ['a group of 100 events', 99],
  ])(
    'stores COPY-sensitive text (tab, newline, CR, backslash, \\N, \\.) as it came, in the right columns: %s',
    async (_n, honestCount) => {
      const s = await h.fresh();
      await s.enrollDevice(dev('c1'), 'hc1', now());
      await s.enrollDevice(dev('c2'), 'hc2', now());
      const rule = 'r\t2\\N\n\\.\rx\\';
      const hostile = blockedEvent('c1', 1, rule);
      const honest = Array.from({ length: honestCount }, (_, i) => blockedEvent('c2', i + 1));
      expect(
        await s.insertGroup([
          { deviceId: 'c1', enrollment: 1, events: incoming([hostile], 'c1'), receivedAt: now() },
          { deviceId: 'c2', enrollment: 1, events: incoming(honest, 'c2'), receivedAt: now() },
        ]),
      ).toEqual([
        { accepted: 1, duplicates: 0 },
        { accepted: honestCount, duplicates: 0 },
      ]);
      const byRule = await s.queryEvents({ ruleId: rule, limit: 10 });
      expect(byRule.map((r) => r.device_id)).toEqual(['c1']);
      expect(JSON.parse(byRule[0]?.body ?? '{}')).toEqual(hostile);
      const other = await s.queryEvents({ deviceId: 'c2', limit: 200 });
      expect(other.map((r) => JSON.parse(r.body))).toEqual(honest);
    },
  );

  it('queries with filters and rid paging, in receipt order', async () => {
    const s = await h.fresh();
    await s.enrollDevice(dev('qa'), 'ha', now());
    await s.enrollDevice(dev('qb'), 'hb', now());
    const a: Record<string, unknown>[] = [
      { ...blockedEvent('qa', 1, 'rule-x'), time: '2026-01-01T00:00:00.000Z' },
      { ...heartbeatEvent('qa', 2), time: '2026-01-02T00:00:00.000Z' },
      { ...blockedEvent('qa', 3, 'rule-y'), time: '2026-01-03T00:00:00.000Z' },
    ];
    const b: Record<string, unknown>[] = [
      { ...blockedEvent('qb', 1, 'rule-x'), time: '2026-01-02T12:00:00.000Z' },
    ];
    await s.insertGroup([{ deviceId: 'qa', enrollment: 1, events: incoming(a, 'qa'), receivedAt: now() }]);
    await s.insertGroup([{ deviceId: 'qb', enrollment: 1, events: incoming(b, 'qb'), receivedAt: now() }]);
    const q = async (f: Parameters<CollectorStorePort['queryEvents']>[0]) => ids(await s.queryEvents(f));
    expect(await q({ limit: 10 })).toEqual([...a, ...b].map((e) => e.id));
    expect(await q({ deviceId: 'qb', limit: 10 })).toEqual([b[0]?.id]);
    expect(await q({ type: 'agent.heartbeat', limit: 10 })).toEqual([a[1]?.id]);
    expect(await q({ ruleId: 'rule-x', limit: 10 })).toEqual([a[0]?.id, b[0]?.id]);
    expect(
      await q({ since: '2026-01-02T00:00:00.000Z', until: '2026-01-03T00:00:00.000Z', limit: 10 }),
    ).toEqual([a[1]?.id, b[0]?.id]);
    const page1 = await s.queryEvents({ limit: 2 });
    expect(ids(page1)).toEqual([a[0]?.id, a[1]?.id]);
    const page2 = await s.queryEvents({ limit: 2, afterRid: page1[1]?.rid });
    expect(ids(page2)).toEqual([a[2]?.id, b[0]?.id]);
    expect(page2[0]?.received_at).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('keeps the fleet view: last seen, versions guarded by seq, coverage, counts, device paging', async () => {
    const s = await h.fresh();
    // enrolled long ago; f1 and f2 report now, f3 never did (silent for any threshold below an hour)
    for (const id of ['f1', 'f2', 'f3']) await s.enrollDevice(dev(id), `h-${id}`, '2020-01-01T00:00:00.000Z');
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    const cover = (state: string, drops: number) => ({
      exec_events: {
        state,
        source: state === 'on' ? 'exec-events' : 'procfs',
        kernel_drops: drops,
        queue_drops: 1,
      },
      exec_deny: { state: 'off', deadline_misses: 2 },
    });
    const hb = (id: string, seq: number, pv: number, c: ReturnType<typeof cover>) => ({
      ...heartbeatEvent(id, seq),
      policy_version: pv,
      agent_version: `1.${seq}.0`,
      ...c,
    });
    const t = now();
    await s.insertGroup([
      {
        deviceId: 'f1',
        enrollment: 1,
        events: incoming([hb('f1', 5, 9, cover('on', 10))], 'f1'),
        receivedAt: t,
      },
      // an older heartbeat arriving later does not roll the policy version or coverage back
      {
        deviceId: 'f1',
        enrollment: 1,
        events: incoming([hb('f1', 3, 4, cover('off', 0))], 'f1'),
        receivedAt: t,
      },
      {
        deviceId: 'f2',
        enrollment: 1,
        events: incoming([hb('f2', 1, 7, cover('on', 5))], 'f2'),
        receivedAt: t,
      },
    ]);
    const devices = await s.listDevices(undefined, 10);
    expect(devices.map((d) => d.id)).toEqual(['f1', 'f2', 'f3']);
    expect(devices[0]).toMatchObject({ id: 'f1', enrollment: 1, policy_version: 9, last_seen_at: t });
    expect(JSON.parse(devices[0]?.coverage ?? 'null')).toEqual(cover('on', 10));
    expect(devices[2]).toMatchObject({ id: 'f3', policy_version: null, coverage: null });
    expect((await s.listDevices('f1', 1)).map((d) => d.id)).toEqual(['f2']);
    expect((await s.listDevices(undefined, 10, { before: hourAgo, silent: true })).map((d) => d.id)).toEqual([
      'f3',
    ]);
    expect((await s.listDevices(undefined, 10, { before: hourAgo, silent: false })).map((d) => d.id)).toEqual(
      ['f1', 'f2'],
    );
    expect(await s.deviceCounts(hourAgo)).toEqual({ total: 3, silent: 1 });
    const counts = (await s.coverageCounts()).sort((x, y) =>
      String(x.exec_events).localeCompare(String(y.exec_events)),
    );
    expect(counts).toEqual(
      [
        {
          exec_events: 'on',
          exec_deny: 'off',
          source: 'exec-events',
          devices: 2,
          drops: 17,
          deadline_misses: 4,
        },
        { exec_events: null, exec_deny: null, source: null, devices: 1, drops: 0, deadline_misses: 0 },
      ].sort((x, y) => String(x.exec_events).localeCompare(String(y.exec_events))),
    );
    // a re-enrollment resets the seq guard: the reinstalled agent's seq 1 counts again
    await s.enrollDevice(dev('f1'), 'h-f1b', now());
    await s.insertGroup([
      {
        deviceId: 'f1',
        enrollment: 2,
        events: incoming([hb('f1', 1, 11, cover('off', 0))], 'f1'),
        receivedAt: now(),
      },
    ]);
    expect((await s.listDevices(undefined, 1))[0]).toMatchObject({
      id: 'f1',
      enrollment: 2,
      policy_version: 11,
    });
  });

  it('keeps the clean-stop state: the newest new event of the current enrollment decides', async () => {
    const s = await h.fresh();
    const at = '2030-01-01T00:00:00.000Z';
    await s.enrollDevice(dev('d1'), 'a'.repeat(64), at);
    const ev = (seq: number, type: string): IncomingEvent => {
      const id = `0190f0f0-0000-7000-8000-${String(seq).padStart(12, '0')}`;
      const time = new Date(Date.UTC(2030, 0, 1, 0, 0, seq)).toISOString();
      const body = JSON.stringify({ id, seq, type, time });
      return {
        id,
        seq,
        type,
        time,
        ruleId: null,
        agentVersion: null,
        policyVersion: null,
        coverage: null,
        body,
      };
    };
    const put = (enrollment: number, events: IncomingEvent[]) =>
      s.insertGroup([{ deviceId: 'd1', enrollment, events, receivedAt: at }]);
    const stoppedAt = async () => (await s.listDevices(undefined, 10))[0]?.stopped_at;

    await put(1, [ev(1, 'agent.started'), ev(2, 'agent.heartbeat')]);
    expect(await stoppedAt()).toBeNull();
    const stop = [ev(3, 'agent.heartbeat'), ev(4, 'agent.stopped')];
    await put(1, stop);
    expect(await stoppedAt()).toBe(ev(4, 'agent.stopped').time);
    await put(1, [ev(5, 'agent.started')]);
    expect(await stoppedAt()).toBeNull();
    // the stop batch again (its ack was lost): all duplicates, says nothing new
    expect(await put(1, stop)).toEqual([{ accepted: 0, duplicates: 2 }]);
    expect(await stoppedAt()).toBeNull();
    // a batch of an older enrollment does not touch the device's state
    await s.enrollDevice(dev('d1'), 'b'.repeat(64), at);
    await put(1, [ev(9, 'agent.stopped')]);
    expect(await stoppedAt()).toBeNull();
  });

  it('hands out each event to a sink once, moves the cursor only after delivery, within the batch limits', async () => {
    const s = await h.fresh();
    await s.enrollDevice(dev('c1'), 'hc', now());
    expect(await s.deliverNext('ndjson', { maxEvents: 10, maxBytes: 1 << 20 }, async () => {})).toEqual({
      kind: 'empty',
    });
    const evs = Array.from({ length: 25 }, (_, i) => blockedEvent('c1', i + 1));
    await s.insertGroup([{ deviceId: 'c1', enrollment: 1, events: incoming(evs, 'c1'), receivedAt: now() }]);
    expect(await s.forwarderLag('ndjson')).toBe(25);
    // a failed delivery leaves the cursor where it was
    await expect(
      s.deliverNext('ndjson', { maxEvents: 10, maxBytes: 1 << 20 }, async () => {
        throw new Error('sink down');
      }),
    ).rejects.toThrow('sink down');
    const sizes: number[] = [];
    const got: string[] = [];
    for (;;) {
      const o = await s.deliverNext('ndjson', { maxEvents: 10, maxBytes: 1 << 20 }, async (rows) => {
        sizes.push(rows.length);
        got.push(...ids(rows));
      });
      if (o.kind === 'empty') break;
      expect(o).toEqual({ kind: 'delivered', events: sizes[sizes.length - 1] });
    }
    expect(sizes).toEqual([10, 10, 5]);
    expect(got).toEqual(evs.map((e) => e.id));
    expect(await s.forwarderLag('ndjson')).toBe(0);
    // each sink has its own cursor; a byte cap smaller than one event still hands out one
    expect((await drain(s, 'other', 500)).length).toBe(25);
    const one: number[] = [];
    await s.deliverNext('tiny', { maxEvents: 10, maxBytes: 1 }, async (rows) => {
      one.push(rows.length);
    });
    expect(one).toEqual([1]);
    // while a delivery of a sink runs, the sink is claimed: a second claimant gets busy
    let release = (): void => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let inside = false;
    const first = s.deliverNext('held', { maxEvents: 5, maxBytes: 1 << 20 }, async () => {
      inside = true;
      await held;
    });
    await waitFor(() => inside, 'the first delivery to start');
    expect(await s.deliverNext('held', { maxEvents: 5, maxBytes: 1 << 20 }, async () => {})).toEqual({
      kind: 'busy',
    });
    release();
    expect(await first).toEqual({ kind: 'delivered', events: 5 });
  });

  it('prunes expired events oldest first, never what a sink still owes', async () => {
    const s = await h.fresh();
    await s.enrollDevice(dev('r1'), 'hr', now());
    const old = '2020-01-01T00:00:00.000Z';
    const evs = Array.from({ length: 30 }, (_, i) => heartbeatEvent('r1', i + 1));
    await s.insertGroup([
      { deviceId: 'r1', enrollment: 1, events: incoming(evs.slice(0, 20), 'r1'), receivedAt: old },
    ]);
    await s.insertGroup([
      { deviceId: 'r1', enrollment: 1, events: incoming(evs.slice(20), 'r1'), receivedAt: now() },
    ]);
    const cutoff = '2021-01-01T00:00:00.000Z';
    // a sink without a cursor protects everything
    expect(await s.pruneEvents(cutoff, ['ndjson'], 100)).toBe(0);
    await s.deliverNext('ndjson', { maxEvents: 8, maxBytes: 1 << 20 }, async () => {});
    expect(await s.pruneEvents(cutoff, ['ndjson'], 100)).toBe(8);
    expect(await s.pruneEvents(cutoff, ['ndjson'], 100)).toBe(0);
    await drain(s, 'ndjson');
    expect(await s.pruneEvents(cutoff, ['ndjson'], 5)).toBe(5);
    expect(await s.pruneEvents(cutoff, ['ndjson'], 100)).toBe(7);
    const left = await s.queryEvents({ limit: 100 });
    expect(ids(left)).toEqual(evs.slice(20).map((e) => e.id));
    // without sinks only the age counts; new events get rids above every cursor
    expect(await s.pruneEvents(new Date(Date.now() + 60_000).toISOString(), [], 100)).toBe(10);
    const more = [heartbeatEvent('r1', 100)];
    await s.insertGroup([{ deviceId: 'r1', enrollment: 1, events: incoming(more, 'r1'), receivedAt: now() }]);
    expect(await drain(s, 'ndjson')).toEqual([more[0]?.id]);
  });

  it('refuses a database with a newer schema (GUARD_STORE_SCHEMA_NEWER)', async () => {
    const open = await h.newerSchema();
    const err = await open().then(
      (s) => s.close().then(() => null),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GuardError);
    expect((err as GuardError).code).toBe('GUARD_STORE_SCHEMA_NEWER');
    expect((err as Error).message).toMatch(/newer than this collector/);
  });

  it('records policy publications and lists them newest first, with paging', async () => {
    const s = await h.fresh();
    expect(await s.listPolicyPublications(10)).toEqual([]);
    const pub = (version: number, diff: string | null) => ({
      version,
      published_at: `2026-12-0${version}T10:00:00.000Z`,
      published_by: `admin-${version}@example`,
      message: version === 1 ? '' : `why ${version}: "quoted" ünïcode`,
      sha256: 'ab'.repeat(32),
      keyids: JSON.stringify(['k1', 'k2']),
      verified: version !== 2,
      diff,
    });
    await s.recordPolicyPublication(pub(1, null));
    await s.recordPolicyPublication(pub(2, '{"rulesAdded":[]}'));
    await s.recordPolicyPublication(pub(3, '{"rulesRemoved":[]}'));
    const all = await s.listPolicyPublications(10);
    expect(all.map(({ id: _id, ...r }) => r)).toEqual([
      pub(3, '{"rulesRemoved":[]}'),
      pub(2, '{"rulesAdded":[]}'),
      pub(1, null),
    ]);
    expect(all.every((r) => typeof r.id === 'number')).toBe(true);
    const first = await s.listPolicyPublications(2);
    expect(first.map((r) => r.version)).toEqual([3, 2]);
    const rest = await s.listPolicyPublications(2, first[1]?.id);
    expect(rest.map((r) => r.version)).toEqual([1]);
  });

  it('answers healthy, and refuses work once closed', async () => {
    const s = await h.fresh();
    expect(await s.healthy()).toBe(true);
    await s.close();
    await s.close();
    await expect(s.insertGroup([])).rejects.toThrow();
  });
});

describe('store_url', () => {
  it('empty: SQLite at db; a path: SQLite there; postgres://: PostgreSQL', async () => {
    const dir = collectorTempDir('tg-surl-');
    const a = track(await openStore({ dbFile: join(dir, 'a.db') }));
    expect([a.kind, a.location]).toEqual(['sqlite', join(dir, 'a.db')]);
    const b = track(await openStore({ dbFile: join(dir, 'a.db'), url: join(dir, 'b.db') }));
    expect([b.kind, b.location]).toEqual(['sqlite', join(dir, 'b.db')]);
    const url = await server.createDatabase();
    const c = track(await openStore({ dbFile: join(dir, 'a.db'), url }));
    expect([c.kind, c.location]).toEqual(['postgres', url]);
  });
});

describe('postgres: connection settings', () => {
  it('logs in with the password of store_password_file; a wrong one is GUARD_STORE_UNAVAILABLE; a URL with a password is refused', async () => {
    const db = await server.createDatabase();
    const name = db.slice(db.lastIndexOf('/') + 1);
    await server.sql(`CREATE ROLE guard_pw LOGIN PASSWORD 'right-password-123'`);
    await server.sql(`ALTER DATABASE ${name} OWNER TO guard_pw`);
    await server.hbaFirst('host all guard_pw 127.0.0.1/32 scram-sha-256');
    const url = db.replace('toolguard@', 'guard_pw@');
    const dir = collectorTempDir('tg-pgpw-');
    writeFileSync(join(dir, 'pw'), 'right-password-123\n', { mode: 0o600 });
    const config = loadCollectorConfig(
      parseCollectorArgs(['--store-url', url, '--store-password-file', join(dir, 'pw')]),
      { TOOLGUARD_COLLECTOR_ENROLL_SECRET: 'e'.repeat(20), TOOLGUARD_COLLECTOR_ADMIN_TOKEN: 'a'.repeat(20) },
    );
    const options = optionsFromConfig(config);
    expect(options.store).toMatchObject({ url, password: 'right-password-123' });
    const s = track(await openStore({ dbFile: '', ...options.store }));
    expect(s.kind).toBe('postgres');
    expect(s.location).toBe(url);
    expect(await s.healthy()).toBe(true);

    const wrong = await openStore({ dbFile: '', url, password: 'wrong' }).then(
      (x) => x.close().then(() => null),
      (e: unknown) => e,
    );
    expect((wrong as GuardError).code).toBe('GUARD_STORE_UNAVAILABLE');
    expect((wrong as Error).message).not.toContain('wrong');

    const withPassword = (() => {
      try {
        loadCollectorConfig(
          parseCollectorArgs(['--store-url', url.replace('guard_pw@', 'guard_pw:secret-pw@')]),
          {},
        );
        return null;
      } catch (e) {
        return e;
      }
    })();
    expect((withPassword as GuardError).code).toBe('GUARD_CONFIG_INVALID_VALUE');
    expect((withPassword as Error).message).not.toContain('secret-pw');
  });
});

describe('postgres: TLS', () => {
  /** A self-signed certificate for 127.0.0.1 (its own CA), made by openssl. */
  function selfSigned(dir: string, name: string): { cert: Buffer; key: Buffer } {
    const key = join(dir, `${name}.key`);
    const cert = join(dir, `${name}.crt`);
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
        ...['-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'],
        ...['-addext', 'subjectAltName=IP:127.0.0.1'],
      ],
      { stdio: 'ignore' },
    );
    return { cert: readFileSync(cert), key: readFileSync(key) };
  }

  it('with store_ca_file connects over TLS verifying the server against that CA; another CA, or no TLS, is refused', async () => {
    const dir = collectorTempDir('tg-pgtls-');
    const server1 = selfSigned(dir, 'server');
    const other = selfSigned(dir, 'other');
    await server.enableTls(server1.cert, server1.key);
    await server.sql('CREATE ROLE guard_tls LOGIN');
    // this role may only connect over TLS
    await server.hbaFirst('hostnossl all guard_tls 127.0.0.1/32 reject');
    const db = await server.createDatabase();
    await server.sql(`ALTER DATABASE ${db.slice(db.lastIndexOf('/') + 1)} OWNER TO guard_tls`);
    const url = db.replace('toolguard@', 'guard_tls@');
    const open = (ca?: Buffer) =>
      openStore({ dbFile: '', url, ca }).then(
        async (s) => {
          const ok = await s.healthy();
          await s.close();
          return ok;
        },
        (e: unknown) => (e as GuardError).code,
      );
    expect(await open(server1.cert)).toBe(true);
    expect(await open(other.cert)).toBe('GUARD_STORE_UNAVAILABLE');
    expect(await open()).toBe('GUARD_STORE_UNAVAILABLE');
  });
});

describe('postgres: several collectors on one database', () => {
  it('migrates once when collectors start together, and a second open finds the schema current', async () => {
    const url = await server.createDatabase();
    const stores = await Promise.all([1, 2, 3].map(() => openStore({ dbFile: '', url })));
    for (const s of stores) track(s);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    expect((await c.query('SELECT version FROM collector_schema')).rows).toEqual([
      { version: PG_MIGRATIONS.length },
    ]);
    await c.end();
  });

  it('one claim per sink across collectors; a collector that dies mid-delivery hands the batch over', async () => {
    const url = await server.createDatabase();
    const a = track(await openStore({ dbFile: '', url }));
    const b = track(await openStore({ dbFile: '', url }));
    await a.enrollDevice(dev('k1'), 'hk', now());
    const evs = Array.from({ length: 12 }, (_, i) => blockedEvent('k1', i + 1));
    await b.insertGroup([{ deviceId: 'k1', enrollment: 1, events: incoming(evs, 'k1'), receivedAt: now() }]);
    let inside = false;
    let finish = (): void => {};
    const dying = a
      .deliverNext('ndjson', { maxEvents: 5, maxBytes: 1 << 20 }, async () => {
        inside = true;
        await new Promise<void>((r) => {
          finish = r;
        });
      })
      .catch((e: unknown) => e);
    await waitFor(() => inside, 'collector A to hold the claim');
    expect(await b.deliverNext('ndjson', { maxEvents: 5, maxBytes: 1 << 20 }, async () => {})).toEqual({
      kind: 'busy',
    });
    // A's connection dies (what SIGKILL of its process does): PostgreSQL ends its transaction
    await server.sql(
      `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND granted`,
      [0x7467_0002],
    );
    // B takes over at once, while A still thinks it delivers
    await waitFor(
      async () =>
        (
          await server.sql(
            `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1`,
            [0x7467_0002],
          )
        ).length === 0,
      'the claim to be released',
    );
    finish();
    expect(await dying).toBeInstanceOf(Error);
    // B takes over from the cursor A never moved: the batch A held comes again, nothing is lost
    expect(await drain(b, 'ndjson', 5)).toEqual(evs.map((e) => e.id));
  });

  it('a token replaced through another collector stores nothing more, though the first still caches it (stale)', async () => {
    const url = await server.createDatabase();
    const a = track(await openStore({ dbFile: '', url }));
    const b = track(await openStore({ dbFile: '', url }));
    await a.enrollDevice(dev('r1'), 'hr-old', now());
    await a.enrollDevice(dev('r2'), 'hr2', now());
    const old = await a.deviceForTokenHash('hr-old');
    expect(old).toEqual({ id: 'r1', enrollment: 1 });
    // B enrolls r1 again: A's cache still answers for the old token (no query) …
    expect(await b.enrollDevice(dev('r1'), 'hr-new', now())).toBe(2);
    expect(await b.deviceForTokenHash('hr-old')).toBeUndefined();
    expect(await a.deviceForTokenHash('hr-old')).toEqual(old);
    // … but its insert refuses the old enrollment's batch, and stores the other device's beside it
    const batch = (id: string, enrollment: number, seq: number) => ({
      deviceId: id,
      enrollment,
      events: incoming([heartbeatEvent(id, seq)], id),
      receivedAt: now(),
    });
    expect(await a.insertGroup([batch('r1', 1, 1), batch('r2', 1, 1)])).toEqual([
      { accepted: 0, duplicates: 0, stale: true },
      { accepted: 1, duplicates: 0 },
    ]);
    expect((await a.queryEvents({ deviceId: 'r1', limit: 10 })).length).toBe(0);
    // the refusal dropped it from A's cache: from now on the old token is unknown on A too
    expect(await a.deviceForTokenHash('hr-old')).toBeUndefined();
    expect(await a.deviceForTokenHash('hr-new')).toEqual({ id: 'r1', enrollment: 2 });
    expect(await a.insertGroup([batch('r1', 2, 2)])).toEqual([{ accepted: 1, duplicates: 0 }]);
    // enrolled again through A itself: the old token is unknown at once
    await a.enrollDevice(dev('r2'), 'hr2b', now());
    expect(await a.deviceForTokenHash('hr2')).toBeUndefined();
  });

  it("wakes on other collectors' commits, also after its notification connection was cut", async () => {
    const url = await server.createDatabase();
    const a = track(await PostgresCollectorStore.open({ url, listenRetryMs: 100 }));
    const b = track(await openStore({ dbFile: '', url }));
    await b.enrollDevice(dev('w1'), 'hw', now());
    let woken = 0;
    a.onStored = () => woken++;
    const store = async (seq: number) =>
      b.insertGroup([
        {
          deviceId: 'w1',
          enrollment: 1,
          events: incoming([heartbeatEvent('w1', seq)], 'w1'),
          receivedAt: now(),
        },
      ]);
    await store(1);
    await waitFor(() => woken > 0, "A to hear B's commit");
    // the server ends A's LISTEN connection (restart, failover): A re-opens it
    await server.sql(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'`,
      [url.slice(url.lastIndexOf('/') + 1)],
    );
    await waitFor(
      async () =>
        (
          await server.sql(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'`, [
            url.slice(url.lastIndexOf('/') + 1),
          ])
        ).length === 1,
      'A to listen again',
    );
    const before = woken;
    await store(2);
    await waitFor(() => woken > before, "A to hear B's commit after reconnecting");
  });

  it('a row that commits after rows with higher rids is delivered, never skipped', async () => {
    const url = await server.createDatabase();
    const s = track(await openStore({ dbFile: '', url }));
    await s.enrollDevice(dev('l1'), 'hl', now());
    const early = blockedEvent('l1', 1);
    // a transaction of another collector takes rid 1 and stays open
    const slow = new pg.Client({ connectionString: url });
    await slow.connect();
    await slow.query('BEGIN');
    await slow.query(
      `INSERT INTO events(id, device_id, enrollment, seq, type, time, rule_id, received_at, body)
       VALUES ($1, 'l1', 1, 1, 'process.blocked', $2, 'claude-code', $3, $4)`,
      [early.id, early.time, now(), JSON.stringify(early)],
    );
    // later events get higher rids and commit first
    const later = [blockedEvent('l1', 2), blockedEvent('l1', 3)];
    await s.insertGroup([
      { deviceId: 'l1', enrollment: 1, events: incoming(later, 'l1'), receivedAt: now() },
    ]);
    const first = await drain(s, 'ndjson');
    // nothing past the open transaction is handed out yet (a cursor past it would skip rid 1)
    expect(first).toEqual([]);
    await slow.query('COMMIT');
    await slow.end();
    expect(await drain(s, 'ndjson')).toEqual([early.id, ...later.map((e) => e.id)]);
  });
});
