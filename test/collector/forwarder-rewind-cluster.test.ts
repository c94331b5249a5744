/**
 * Rewinding a forwarder on PostgreSQL, end to end: three real guard-collector processes (dist/) on
 * one throwaway server, each with an NDJSON file and a Splunk HEC sink (a real HTTP receiver on
 * loopback that can hold its answers), agents' batches posted to all of them. It proves, against
 * what docs/collector.md says:
 * - a rewind through one collector while another holds the sink's claim mid-delivery waits for
 *   that delivery, then applies (the held batch is delivered once, then again once by the rewind;
 *   no second holder meanwhile), or — when the delivery takes longer than the wait — answers 503
 *   GUARD_COLLECTOR_FORWARDER_BUSY having changed nothing;
 * - after a rewind to T every event received since T comes again exactly once across the three
 *   NDJSON files (line by line, by (device_id, id)), none received before T, and the other sink
 *   is left alone;
 * - "since T" on the commit-ordered log: a batch received before T whose storing waited (its device
 *   row held by another session) and so was stored after the first event received since T comes
 *   again too, in delivery order; nothing received since T is missed;
 * - the refusals (unknown sink, malformed or future `since`, …) answer the same status and code as
 *   a collector on SQLite;
 * - a collector SIGKILLed while its rewind waits for the claim, or while it holds the claim
 *   mid-transaction, changes nothing (and does not stop the sink); one SIGKILLed right after it
 *   answered a rewind leaves the cursor rewound — at the answered position or at the end of a batch
 *   delivered since — never half, and the survivor delivers every event since T again, duplicates
 *   only within the batch the killed one was writing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blockedEvent,
  type CollectorProcess,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  spawnCollectorProcess,
} from '../helpers/collector.js';
import { HecReceiver } from '../helpers/hec-receiver.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

/** postgres-store.ts LOCK_FORWARDER: the first key of a sink's claim (advisory lock). */
const SINK_LOCK = 0x7467_0002;
/** The forwarder's batch: the most a collector killed mid-delivery can leave unacknowledged. */
const FORWARD_BATCH = 500;
const enrollSecret = 'rewind-cluster-enroll-secret-0123';
const adminToken = 'rewind-cluster-admin-token-012345';

interface Node {
  readonly name: string;
  readonly proc: CollectorProcess;
  /** Its NDJSON sink's file. */
  readonly out: string;
}

let server: TestPostgres;
let db: pg.Client;
let hec: HecReceiver;
let sqliteHec: HecReceiver;
let sqlite: CollectorProcess;
const nodes: Node[] = [];
const alive = new Set<Node>();
const dir = collectorTempDir('tg-rwc-');
let dbUrl = '';

const collectorArgs = (out: string, hecUrl: string): string[] => [
  '--ndjson-out',
  out,
  '--splunk-hec-url',
  hecUrl,
  '--splunk-hec-gzip',
  'off',
  '--rate-limit',
  '10000',
  '--rate-burst',
  '10000',
  '--ingest-workers',
  '0',
];

/** A collector of the cluster: on the database, its own NDJSON file, the shared HEC receiver. */
async function spawnNode(name: string): Promise<Node> {
  const out = join(dir, `${name}.ndjson`);
  const proc = await spawnCollectorProcess({
    enrollSecret,
    adminToken,
    dbFile: join(dir, 'unused.db'),
    // application_name tells the collectors' backends apart in pg_locks / pg_stat_activity
    args: ['--store-url', `${dbUrl}?application_name=${name}`, ...collectorArgs(out, hec.url)],
    env: { TOOLGUARD_COLLECTOR_SPLUNK_HEC_TOKEN: hec.token },
  });
  return { name, proc, out };
}

beforeAll(async () => {
  server = await startTestPostgres();
  const url = await server.createDatabase();
  hec = new HecReceiver();
  sqliteHec = new HecReceiver({ token: 'sqlite-hec-token' });
  await Promise.all([hec.start(), sqliteHec.start()]);
  dbUrl = url;
  for (const n of await Promise.all(['c0', 'c1', 'c2'].map(spawnNode))) {
    nodes.push(n);
    alive.add(n);
  }
  sqlite = await spawnCollectorProcess({
    enrollSecret,
    adminToken,
    args: collectorArgs(join(dir, 'sqlite.ndjson'), sqliteHec.url),
    env: { TOOLGUARD_COLLECTOR_SPLUNK_HEC_TOKEN: sqliteHec.token },
  });
  db = new pg.Client({ connectionString: url });
  await db.connect();
}, 60_000);

afterAll(async () => {
  for (const n of nodes) await n.proc.kill();
  await sqlite?.kill();
  await db?.end();
  await hec?.close();
  await sqliteHec?.close();
});

const node = (name: string): Node => nodes.find((n) => n.name === name) as Node;

function admin(url: string, path: string, init: RequestInit & { token?: string | null } = {}) {
  const token = init.token === undefined ? adminToken : init.token;
  const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return fetch(`${url}${path}`, { ...init, headers });
}
const rewind = (url: string, sink: string, body: unknown, token?: string | null): Promise<Response> =>
  admin(url, `/v1/admin/forwarders/${sink}/rewind`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    token,
  });

interface Position {
  readonly txid: string;
  readonly rid: number;
}
interface RewindAnswer {
  result: string;
  reason: string | null;
  previous: Position | null;
  cursor: Position | null;
  due_again: number;
  due_again_exact: boolean;
}
const precedes = (a: Position, b: Position): boolean =>
  BigInt(a.txid) < BigInt(b.txid) || (a.txid === b.txid && a.rid < b.rid);

/** The whole lines of an NDJSON file (a SIGKILL mid-write may leave a torn last line: not an event). */
function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const whole = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1);
  return whole.split('\n').filter((l) => l !== '');
}
const keyOf = (e: { device_id: string; id: string }): string => `${e.device_id}/${e.id}`;
const fileKeys = (file: string, from = 0): string[] =>
  lines(file)
    .slice(from)
    .map((l) => keyOf(JSON.parse(l) as { device_id: string; id: string }));
/** Every line the three NDJSON files hold past `offsets` (lines per file), as keys. */
const ndjsonKeys = (offsets: readonly number[] = [0, 0, 0]): string[] =>
  nodes.flatMap((n, i) => fileKeys(n.out, offsets[i] ?? 0));
const lineCounts = (): number[] => nodes.map((n) => lines(n.out).length);
const hecKeys = (): string[] => hec.events.map((e) => keyOf(e.event as { device_id: string; id: string }));
const counts = (keys: readonly string[]): Map<string, number> => {
  const m = new Map<string, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
};

async function cursor(sink: string): Promise<Position | undefined> {
  const r = await db.query<Position>(
    'SELECT last_txid::text AS txid, last_rid::float8 AS rid FROM forwarder_cursors WHERE sink = $1',
    [sink],
  );
  return r.rows[0];
}
/** True once `sink`'s cursor is at the last stored event in delivery order: it delivered everything. */
async function deliveredAll(sink: string): Promise<boolean> {
  const r = await db.query<{ done: boolean | null }>(
    `SELECT (c.last_txid, c.last_rid) = (e.txid, e.rid) AS done FROM forwarder_cursors c,
       (SELECT txid, rid FROM events ORDER BY txid DESC, rid DESC LIMIT 1) e WHERE c.sink = $1`,
    [sink],
  );
  return r.rows[0]?.done === true;
}
const settled = (sink: string) =>
  waitFor(() => deliveredAll(sink), `${sink} to have delivered every stored event`, { timeoutMs: 30_000 });
/** The keys of the events stored (received) at or after `since`. */
async function storedSince(since: string): Promise<string[]> {
  const r = await db.query<{ k: string }>(
    `SELECT device_id || '/' || id AS k FROM events WHERE received_at >= $1`,
    [since],
  );
  return r.rows.map((x) => x.k);
}
/** A time just after every event stored so far, once the clock has passed it. */
async function timeAfterAll(): Promise<string> {
  const r = await db.query<{ t: string | null }>('SELECT max(received_at) AS t FROM events');
  const ms = (r.rows[0]?.t ? Date.parse(r.rows[0].t) : Date.now()) + 1;
  await waitFor(() => Date.now() > ms, 'the clock to pass T');
  return new Date(ms).toISOString();
}
/** Which collectors' backends hold (granted) or wait for `sink`'s claim. */
async function claimants(sink: string): Promise<{ name: string; granted: boolean }[]> {
  return server.sql(
    `SELECT a.application_name AS name, l.granted FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objsubid = 2
       AND l.objid::bigint = (hashtext($2)::bigint & 4294967295)`,
    [SINK_LOCK, sink],
  );
}
const holderOf = (sink: string): Promise<Node> =>
  waitFor(async () => {
    const held = (await claimants(sink)).filter((c) => c.granted);
    return held.length === 1 ? node(held[0]?.name as string) : undefined;
  }, `the collector holding ${sink}'s claim`);
/** True while a backend of collector `name` waits for a lock (a row, a claim). */
const waitsForLock = async (name: string): Promise<boolean> =>
  (
    await server.sql(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
      [name],
    )
  ).length > 0;
/** Waits until no backend of (killed) collector `name` is left: PostgreSQL ended its transactions. */
const backendsGone = (name: string): Promise<boolean> =>
  waitFor(
    async () =>
      (await server.sql('SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [name])).length === 0,
    `the backends of ${name} to end`,
  );
/**
 * Runs `fn` while another session holds the rows `lockSql` locks (an open transaction), then
 * ends that session (its transaction rolled back unless `fn` committed it).
 */
async function whileLocked<T>(lockSql: string, fn: (session: pg.Client) => Promise<T>): Promise<T> {
  const session = new pg.Client({ connectionString: dbUrl });
  await session.connect();
  try {
    await session.query('BEGIN');
    await session.query(lockSql);
    return await fn(session);
  } finally {
    await session.end();
  }
}

/** Enrolled devices: id → token (each enrolled through one collector, posting to all). */
const devices = new Map<string, string>();
let turn = 0;
async function enroll(ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    const via = [...alive][devices.size % alive.size] as Node;
    devices.set(id, await enrollDevice(via.proc.url, enrollSecret, id));
  }
}
/** Posts `batches` batches of `size` events of each device, round-robin over the live collectors. */
async function post(
  ids: readonly string[],
  batches: number,
  size: number,
  seqFrom: number,
): Promise<string[]> {
  const keys: string[] = [];
  await Promise.all(
    ids.map(async (id) => {
      for (let b = 0; b < batches; b++) {
        const batch = Array.from({ length: size }, (_, i) => {
          const seq = seqFrom + b * size + i;
          return i % 10 === 0 ? heartbeatEvent(id, seq) : blockedEvent(id, seq);
        });
        const target = [...alive][turn++ % alive.size] as Node;
        const r = await postEvents(target.proc.url, devices.get(id) as string, batch);
        expect(r.status).toBe(200);
        expect(await r.json()).toEqual({ accepted: size, duplicates: 0 });
        keys.push(...batch.map((e) => keyOf(e as { device_id: string; id: string })));
      }
    }),
  );
  return keys;
}

/** T of the exactly-once test: later tests rewind to it again. */
let sinceT = '';

describe('rewinding a forwarder of three collectors on one PostgreSQL', () => {
  it('after a rewind to T through one collector, the three NDJSON files together hold every event received since T once more, exactly once, and none before; HEC is left alone', async () => {
    const ids = ['dev-r0', 'dev-r1', 'dev-r2', 'dev-r3'];
    await enroll(ids);
    const a = await post(ids, 2, 40, 1);
    await settled('ndjson');
    sinceT = await timeAfterAll();
    // 960 events since T: several forwarder batches, claimed by whichever collector gets there first
    const b = await post(ids, 4, 60, 1000);
    await settled('ndjson');
    await settled('splunk-hec');
    expect([...counts(ndjsonKeys()).values()].every((n) => n === 1)).toBe(true);
    expect(new Set(ndjsonKeys())).toEqual(new Set([...a, ...b]));
    expect(new Set(await storedSince(sinceT))).toEqual(new Set(b));
    const offsets = lineCounts();
    const delivered = await cursor('ndjson');

    // T with an offset, through the third collector
    const local = new Date(Date.parse(sinceT) + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
    const res = await rewind(node('c2').proc.url, 'ndjson', { since: local });
    expect(res.status).toBe(200);
    const answer = (await res.json()) as RewindAnswer;
    expect(answer).toMatchObject({
      since: sinceT,
      result: 'rewound',
      reason: null,
      previous: delivered,
      due_again: b.length,
      due_again_exact: true,
    });
    expect(answer.cursor?.txid).toMatch(/^\d+$/);
    expect(precedes(answer.cursor as Position, delivered as Position)).toBe(true);
    // every collector shows the cluster's cursor: the rewound one, or past it once deliveries began
    for (const n of nodes) {
      const listed = (await (await admin(n.proc.url, '/v1/admin/forwarders')).json()) as {
        forwarders: { name: string; cursor: Position }[];
      };
      const c = listed.forwarders.find((f) => f.name === 'ndjson')?.cursor as Position;
      expect(precedes(c, answer.cursor as Position)).toBe(false);
    }

    await settled('ndjson');
    const again = ndjsonKeys(offsets);
    // exactly the events received since T, each once across the cluster
    expect(again.length).toBe(b.length);
    expect(new Set(again)).toEqual(new Set(b));
    // HEC has its own cursor: every event once, nothing again
    expect(hecKeys().length).toBe(a.length + b.length);
    expect(new Set(hecKeys())).toEqual(new Set([...a, ...b]));

    // then on with new events, once
    const c = await post(ids.slice(0, 2), 1, 20, 5000);
    await settled('ndjson');
    expect(ndjsonKeys(offsets).sort()).toEqual([...b, ...c].sort());
  });

  it('"since T" on the commit-ordered log: a batch received before T but stored after the first event received since T comes again too; nothing received since T is missed', async () => {
    await enroll(['dev-late', 'dev-prompt']);
    await settled('ndjson');
    // another session holds dev-late's row: its batch is received, then waits to be stored
    const [first, second] = [...alive] as [Node, Node];
    const late = [blockedEvent('dev-late', 1), blockedEvent('dev-late', 2)];
    const prompt = [heartbeatEvent('dev-prompt', 1), blockedEvent('dev-prompt', 2)];
    const t = await whileLocked(`SELECT 1 FROM devices WHERE id = 'dev-late' FOR UPDATE`, async (session) => {
      const posted = postEvents(first.proc.url, devices.get('dev-late') as string, late);
      await waitFor(() => waitsForLock(first.name), "dev-late's batch to wait for its device row");
      // T: after dev-late's batch was received; dev-prompt's is received after T and stored first
      const at = new Date(Date.now() + 1).toISOString();
      await waitFor(() => Date.now() > Date.parse(at), 'the clock to pass T');
      expect((await postEvents(second.proc.url, devices.get('dev-prompt') as string, prompt)).status).toBe(
        200,
      );
      await session.query('COMMIT');
      expect((await posted).status).toBe(200);
      return at;
    });
    await settled('ndjson');
    const rows = await db.query<{ device_id: string; received_at: string; tx: string }>(
      `SELECT device_id, received_at, txid::text AS tx FROM events WHERE device_id IN ('dev-late', 'dev-prompt')`,
    );
    const of = (d: string) => rows.rows.filter((r) => r.device_id === d);
    // received before T, stored (transaction id) after dev-prompt's
    expect(of('dev-late').every((r) => r.received_at < t)).toBe(true);
    expect(of('dev-prompt').every((r) => r.received_at >= t)).toBe(true);
    expect(BigInt(of('dev-late')[0]?.tx as string)).toBeGreaterThan(
      BigInt(of('dev-prompt')[0]?.tx as string),
    );
    const offsets = lineCounts();
    const res = await rewind(first.proc.url, 'ndjson', { since: t });
    expect(await res.json()).toMatchObject({ result: 'rewound', due_again: 4 });
    await settled('ndjson');
    const keys = (evs: Record<string, unknown>[]) =>
      evs.map((e) => keyOf(e as { device_id: string; id: string }));
    expect(ndjsonKeys(offsets).sort()).toEqual([...keys(prompt), ...keys(late)].sort());
  });

  it('answers unknown sinks, malformed and future times with the same status and code as on SQLite, changing nothing', async () => {
    // each has delivered something, so a rewind to now is "unchanged" on both
    const token = await enrollDevice(sqlite.url, enrollSecret, 'dev-sq');
    expect((await postEvents(sqlite.url, token, [blockedEvent('dev-sq', 1)])).status).toBe(200);
    await waitFor(() => lines(join(dir, 'sqlite.ndjson')).length === 1, 'the SQLite collector to forward');
    const pgNode = node('c1').proc;
    const cursorsBefore = [await cursor('ndjson'), await cursor('splunk-hec')];
    const past = '2026-01-01T00:00:00Z';
    const cases: [unknown, string?][] = [
      [{ since: past }, 'nope'],
      [{ since: past }, '..%2F..%2Fetc'],
      [{ since: past }, 'NDJSON'],
      [{ since: new Date(Date.now() + 3_600_000).toISOString() }],
      [{ since: new Date(Date.now() + 60_000).toISOString().replace('Z', '+00:00') }],
      [{}],
      [''],
      ['null'],
      [[past]],
      ['{"since":'],
      [{ since: 1767225600000 }],
      [{ since: '2026-01-01T00:00:00' }],
      [{ since: 'yesterday' }],
      [{ since: '2026-02-30T00:00:00Z' }],
      [{ since: '2026-01-01T24:00:00Z' }],
      [{ since: past, sink: 'splunk-hec' }],
      [{ since: past, pad: 'x'.repeat(4096) }],
    ];
    const outcome = async (url: string, body: unknown, sink = 'ndjson', token?: string | null) => {
      const r = await rewind(url, sink, body, token);
      const b = (await r.json()) as { error?: { code: string }; result?: string; reason?: string };
      return [r.status, b.error?.code ?? `${b.result}/${b.reason}`];
    };
    for (const [body, sink] of cases) {
      const want = await outcome(sqlite.url, body, sink);
      expect(want[0], JSON.stringify(body)).toBeGreaterThanOrEqual(400);
      expect([body, sink, await outcome(pgNode.url, body, sink)]).toEqual([body, sink, want]);
    }
    // the refusals by code, as documented
    expect(await outcome(pgNode.url, { since: past }, 'nope')).toEqual([
      404,
      'GUARD_COLLECTOR_UNKNOWN_FORWARDER',
    ]);
    expect(await outcome(pgNode.url, { since: new Date(Date.now() + 60_000).toISOString() })).toEqual([
      400,
      'GUARD_COLLECTOR_BAD_REQUEST',
    ]);
    expect(await outcome(pgNode.url, { since: 'yesterday' })).toEqual([400, 'GUARD_COLLECTOR_BAD_REQUEST']);
    expect(await outcome(pgNode.url, { since: past }, 'ndjson', 'wrong')).toEqual([
      401,
      'GUARD_COLLECTOR_UNAUTHORIZED',
    ]);
    // a time after everything delivered: unchanged on both, and says why
    const now = new Date().toISOString();
    for (const url of [sqlite.url, pgNode.url])
      expect(await outcome(url, { since: now }, 'splunk-hec')).toEqual([
        200,
        'unchanged/nothing_delivered_since',
      ]);
    expect([await cursor('ndjson'), await cursor('splunk-hec')]).toEqual(cursorsBefore);
  });

  it('a rewind through one collector while another holds the claim mid-delivery: applied after that delivery ends (its batch once, then again once), or 503 GUARD_COLLECTOR_FORWARDER_BUSY past the wait, changing nothing', async () => {
    await settled('splunk-hec');
    const since = await timeAfterAll();
    const ids = ['dev-r0', 'dev-r1'];
    // the HEC receiver holds its answers: whichever collector claims the sink first holds the claim
    hec.stall = true;
    const d = await post(ids.slice(0, 1), 1, 30, 7000);
    await waitFor(() => hec.stalledCount === 1, 'a HEC delivery to be held');
    const holder = await holderOf('splunk-hec');
    const via = nodes.find((n) => n !== holder) as Node;
    const heldFrom = await cursor('splunk-hec');
    const pending = rewind(via.proc.url, 'splunk-hec', { since });
    // the rewind waits in the claim's queue (the other collectors' claims are refused meanwhile)
    await waitFor(
      async () => (await claimants('splunk-hec')).some((c) => c.name === via.name && !c.granted),
      'the rewind to wait for the claim',
    );
    expect(hec.stalledCount).toBe(1);
    hec.stall = false;
    hec.release();
    const res = await pending;
    expect(res.status).toBe(200);
    const answer = (await res.json()) as RewindAnswer;
    // the held delivery moved the cursor past d first; the rewind then moved it back before d
    expect(answer).toMatchObject({ result: 'rewound', due_again: d.length, due_again_exact: true });
    expect(precedes(heldFrom as Position, answer.previous as Position)).toBe(true);
    await settled('splunk-hec');
    const seen = counts(hecKeys());
    expect(d.map((k) => seen.get(k))).toEqual(d.map(() => 2));
    expect([...seen.entries()].filter(([k, n]) => n !== 1 && !d.includes(k))).toEqual([]);

    // a delivery held past the rewind's wait (10 s): busy, nothing changed, and no other
    // collector delivered meanwhile
    hec.stall = true;
    const e = await post(ids.slice(1), 1, 20, 7000);
    await waitFor(() => hec.stalledCount === 1, 'a HEC delivery to be held');
    const holder2 = await holderOf('splunk-hec');
    const via2 = nodes.find((n) => n !== holder2) as Node;
    const held2 = await cursor('splunk-hec');
    const answered = hec.eventRequests().length;
    const busy = await rewind(via2.proc.url, 'splunk-hec', { since });
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('5');
    expect(((await busy.json()) as { error: { code: string } }).error.code).toBe(
      'GUARD_COLLECTOR_FORWARDER_BUSY',
    );
    expect(await cursor('splunk-hec')).toEqual(held2);
    expect(hec.stalledCount).toBe(1);
    expect(hec.eventRequests().length).toBe(answered);
    hec.stall = false;
    hec.release();
    await settled('splunk-hec');
    const after = counts(hecKeys());
    expect(e.map((k) => after.get(k))).toEqual(e.map(() => 1));
    expect(d.map((k) => after.get(k))).toEqual(d.map(() => 2));
    // NDJSON was never held nor rewound here: each once
    const lined = counts(ndjsonKeys());
    expect([...d, ...e].map((k) => lined.get(k))).toEqual([...d, ...e].map(() => 1));
  }, 40_000);

  it('a collector SIGKILLed while its rewind waits for the claim, or while it holds the claim mid-rewind, changes nothing and does not hold the sink', async () => {
    await settled('splunk-hec');
    const since = await timeAfterAll();
    hec.stall = true;
    const f = await post(['dev-r2'], 1, 25, 8000);
    await waitFor(() => hec.stalledCount === 1, 'a HEC delivery to be held');
    const holder = await holderOf('splunk-hec');
    const victim = nodes.find((n) => n !== holder) as Node;
    const hecBefore = counts(hecKeys());
    const pending = rewind(victim.proc.url, 'splunk-hec', { since: sinceT }).then(
      () => 'answered',
      () => 'cut',
    );
    await waitFor(
      async () => (await claimants('splunk-hec')).some((c) => c.name === victim.name && !c.granted),
      'the rewind to wait for the claim',
    );
    alive.delete(victim);
    await victim.proc.kill();
    expect(await pending).toBe('cut');
    hec.stall = false;
    hec.release();
    // the dead collector's backend gets the claim once the delivery ends, then finds its client
    // gone and aborts: nothing of the rewind was applied
    await backendsGone(victim.name);
    await settled('splunk-hec');
    const hecAfter = counts(hecKeys());
    expect(f.map((k) => hecAfter.get(k))).toEqual(f.map(() => 1));
    for (const [k, n] of hecBefore) expect([k, hecAfter.get(k)]).toEqual([k, n]);
    expect((await storedSince(since)).sort()).toEqual([...f].sort());
    // and the sink goes on: a new event is delivered, once
    const g = await post(['dev-r2'], 1, 3, 8100);
    await settled('splunk-hec');
    expect(g.map((k) => counts(hecKeys()).get(k))).toEqual(g.map(() => 1));

    // killed holding the claim, mid-transaction: another session holds the sink's cursor row, so
    // the rewind stops after taking the claim
    await settled('ndjson');
    const delivered = await cursor('ndjson');
    const offsets = lineCounts();
    const victim2 = [...alive][0] as Node;
    await whileLocked(`SELECT 1 FROM forwarder_cursors WHERE sink = 'ndjson' FOR UPDATE`, async () => {
      const cut = rewind(victim2.proc.url, 'ndjson', { since: sinceT }).then(
        () => 'answered',
        () => 'cut',
      );
      await waitFor(async () => {
        const claim = await claimants('ndjson');
        return (
          claim.length === 1 &&
          claim[0]?.name === victim2.name &&
          claim[0]?.granted &&
          (await waitsForLock(victim2.name))
        );
      }, 'the rewind to hold the claim and wait for the cursor row');
      alive.delete(victim2);
      await victim2.proc.kill();
      expect(await cut).toBe('cut');
    });
    await backendsGone(victim2.name);
    expect(await cursor('ndjson')).toEqual(delivered);
    expect(lineCounts()).toEqual(offsets);
    // a collector joins in their place (two are needed below); the sink goes on, once
    const joined = await spawnNode('c3');
    nodes.push(joined);
    alive.add(joined);
    const h = await post(['dev-r3'], 1, 2, 8200);
    await settled('ndjson');
    expect(ndjsonKeys([...offsets, 0])).toEqual(expect.arrayContaining(h));
    expect(ndjsonKeys([...offsets, 0])).toHaveLength(h.length);
  });

  it('a collector SIGKILLed right after it answered a rewind leaves the cursor rewound, never half; the survivor delivers every event since T again', async () => {
    await settled('ndjson');
    const due = await storedSince(sinceT);
    expect(due.length).toBeGreaterThan(2 * FORWARD_BATCH);
    const offsets = lineCounts();
    const delivered = (await cursor('ndjson')) as Position;
    const [victim, survivor] = [...alive] as [Node, Node];
    // its own runner is woken by the rewind at once: it may be writing when it dies
    const res = await rewind(victim.proc.url, 'ndjson', { since: sinceT });
    alive.delete(victim);
    const killed = victim.proc.kill();
    expect(res.status).toBe(200);
    const answer = (await res.json()) as RewindAnswer;
    await killed;
    expect(answer).toMatchObject({ result: 'rewound', previous: delivered, due_again: due.length });
    const rewoundTo = answer.cursor as Position;
    // the cursor now: the answered position, or the end of a batch some collector delivered since
    const now = (await cursor('ndjson')) as Position;
    if (now.txid !== rewoundTo.txid || now.rid !== rewoundTo.rid) {
      expect(precedes(rewoundTo, now)).toBe(true);
      expect(precedes(delivered, now)).toBe(false);
      const row = await db.query('SELECT 1 FROM events WHERE txid = $1::xid8 AND rid = $2', [
        now.txid,
        now.rid,
      ]);
      expect(row.rows).toHaveLength(1);
    }
    await settled('ndjson');
    const again = counts(ndjsonKeys(offsets));
    // every event since T again, none before it
    expect(new Set(again.keys())).toEqual(new Set(due));
    // twice only within the last batch the killed collector was writing (at-least-once across a crash)
    const tail = new Set(fileKeys(victim.out).slice(-FORWARD_BATCH));
    const twice = [...again].filter(([, n]) => n > 1);
    for (const [k, n] of twice) expect([k, n, tail.has(k)]).toEqual([k, 2, true]);
    expect(await survivor.proc.stop()).toBe(0);
  });
});
