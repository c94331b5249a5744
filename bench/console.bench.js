// Browser console storage benchmark (issue 15): each store (SQLite, PostgreSQL) filled with
// 100,000 devices and 10,000,000 events, then the p95 of each console query's store call
// (server side: the time of the port method, no HTTP) against the 300 ms target.
//
// Data: the same rows for both stores, generated from the row number (no randomness): events spread
// evenly over the 30 days before the fill, on devices by a multiplicative hash; a type mix of 40 %
// heartbeats, 50 % rule events (process/package/path blocked, denied, warned, audited,
// quarantined) and 10 % policy/agent lifecycle events; ~50 rules with a skewed share (the busiest
// ~14 % of rule events); 5,000 users; bodies shaped like the agent's (process events ~520 bytes,
// heartbeats ~420). Devices: 3 agent versions, 0-2 of 5 tags, policy versions 5-7 or none, every
// policy state, 5 % silent. The fill writes rows directly (one prepared statement in big
// transactions on SQLite, COPY on PostgreSQL) with the secondary indexes built afterwards, and
// derives the console's ingest-maintained tables (device_tags, rule_hourly) from the rows.
//
// Env:
//   TOOLGUARD_BENCH_CONSOLE_DEVICES  devices (default 100000)
//   TOOLGUARD_BENCH_CONSOLE_EVENTS   events (default 10000000)
//   TOOLGUARD_BENCH_CONSOLE_REUSE=1  keep the filled stores under /tmp/toolguard-console-bench/
//                                    (one SQLite file and one PostgreSQL cluster per size) and
//                                    reuse them in later runs instead of filling again (the full
//                                    fill takes many minutes). Without it, everything is removed.
//   TOOLGUARD_BENCH_CONSOLE_STORES   `sqlite,postgres` (default both)
// The full fill took 33 min (SQLite) and 24 min (PostgreSQL) on a loaded 2-CPU machine, longer than
// bench/run.js allows one bench (10 min): fill once with `TOOLGUARD_BENCH_CONSOLE_REUSE=1 node
// bench/console.bench.js`, then `npm run bench` with the same env reuses it. Opening the filled
// SQLite file takes minutes: the store's integrity check at open (printed).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { PostgresCollectorStore } from '../dist/collector/store/postgres-store.js';
import { SqliteCollectorStore } from '../dist/collector/store/sqlite-store.js';
import { pct } from './lib/bench-collector.js';
import { startPostgres } from './lib/postgres.js';

const DEVICES = Number(process.env.TOOLGUARD_BENCH_CONSOLE_DEVICES ?? 100_000);
const EVENTS = Number(process.env.TOOLGUARD_BENCH_CONSOLE_EVENTS ?? 10_000_000);
const REUSE = process.env.TOOLGUARD_BENCH_CONSOLE_REUSE === '1';
const STORES = (process.env.TOOLGUARD_BENCH_CONSOLE_STORES ?? 'sqlite,postgres').split(',');
const TARGET_MS = 300;
/** Calls measured per query (after WARMUP unmeasured ones). */
const RUNS = 40;
const WARMUP = 3;
const DAY = 86_400_000;
const SPAN = 30 * DAY;
const RULES = 50;
const USERS = 5000;
const TAGS = ['ai-lab', 'finance', 'eng', 'ci', 'kiosk'];
const VERSIONS = ['0.1.0', '0.1.1', '0.2.0'];

const base = REUSE ? '/tmp/toolguard-console-bench' : mkdtempSync(join(tmpdir(), 'tgcon-'));
mkdirSync(base, { recursive: true });
const sizeTag = `${DEVICES}-${EVENTS}`;

// ---- the rows (pure functions of the row number) -------------------------------------------

/** A 32-bit integer hash of (n, seed): murmur3's finaliser. */
function hash(n, seed) {
  let x = Math.imul(n ^ seed, 0x9e3779b1);
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}
const h1 = (n) => hash(n, 0x1234567);
const h2 = (n) => hash(n, 0x2345678);
const h3 = (n) => hash(n, 0x3456789);
const h4 = (n) => hash(n, 0x456789a);
const deviceId = (i) => `dev-${String(i).padStart(6, '0')}`;
const hostname = (i) =>
  `${['lt', 'ws', 'mbp', 'build', 'vm'][i % 5]}-${['ber', 'nyc', 'lon', 'sfo'][(i >> 3) % 4]}-${(h2(i) % 1_000_000).toString(36)}${i}`;
const HOSTS = Array.from({ length: DEVICES }, (_, i) => `${hostname(i)}.corp.example`);
const DEVICE_IDS = Array.from({ length: DEVICES }, (_, i) => deviceId(i));
/** Rule k (1..RULES): skewed, the busiest ~14 % of rule events. */
const ruleNumber = (n) => {
  const x = (h2(n) % 10_000) / 10_000;
  return Math.floor(RULES * x * x) + 1;
};
const ruleName = (k) => `rule-${String(k).padStart(2, '0')}`;
/** Every rule of the policy: what the console's rules page asks ruleActivity for. */
const ALL_RULES = Array.from({ length: RULES }, (_, i) => ruleName(i + 1));
/** What a rule does (each rule has one action, as in a policy): block, warn or audit. */
const ACTIONS = ['block', 'warn', 'audit'];
/** 40 % heartbeats, 50 % rule events, 10 % lifecycle: [upper bound of 100, type]; null = a rule event. */
const MIX = [
  [40, 'agent.heartbeat'],
  [90, null],
  [94, 'policy.applied'],
  [97, 'agent.started'],
  [100, 'agent.stopped'],
];
/** A rule event's type from the rule's action and the event's family (process 80 %, package 12 %, path 8 %). */
function ruleType(action, n) {
  const f = h3(n) % 100;
  const family = f < 80 ? 'process' : f < 92 ? 'package' : 'path';
  if (action === 'block')
    return family === 'process'
      ? h4(n) % 3 === 0
        ? 'process.denied'
        : 'process.blocked'
      : `${family}.quarantined`;
  return `${family}.${action === 'warn' ? 'warned' : 'audited'}`;
}
const isRuleType = (t) => /^(process|package|path)\./.test(t);

function fillWindow() {
  // aligned to the hour, so a reused store and a new one cover the same hours
  const end = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  return { start: end - SPAN, end };
}

/** One event row: [id, device_id, seq, type, time, rule_id, received_at, body, user_name]. */
function eventRow(n, start) {
  const d = h1(n) % DEVICES;
  const dev = DEVICE_IDS[d];
  const host = HOSTS[d];
  const t = start + Math.floor((n * SPAN) / (EVENTS + 1));
  const time = new Date(t).toISOString();
  const received = new Date(t + 1500).toISOString();
  const m = h4(n) % 100;
  const k = ruleNumber(n);
  const type = MIX.find(([upTo]) => m < upTo)[1] ?? ruleType(ACTIONS[k % 3], n);
  const id = `01900000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
  const head = { id, time, seq: n, device_id: dev, hostname: host, type, agent_version: VERSIONS[d % 3] };
  if (isRuleType(type)) {
    const rule = ruleName(k);
    const user = `user${h3(n) % USERS}`;
    const tool = ['claude', 'cursor', 'ollama', 'npm', 'pip', 'curl'][n % 6];
    const body = JSON.stringify({
      ...head,
      uid: 1000 + (h3(n) % USERS),
      user,
      pid: 1000 + (n % 60000),
      ppid: 1,
      name: tool,
      exe: `/home/${user}/.local/bin/${tool}`,
      argv: [tool, '--model', 'large', `/home/${user}/src/project-${n % 97}`],
      start_time: 100000 + n,
      tty: '/dev/pts/3',
      rule: { id: rule, name: `Rule ${rule}`, action: ACTIONS[k % 3] },
      reason: 'name',
      policy_version: 7,
      mode: 'enforce',
      outcome: { action_taken: 'killed', latency_ms: 3, error: null },
    });
    return [id, dev, n, type, time, rule, received, body, user];
  }
  const extra =
    type === 'agent.heartbeat'
      ? {
          uptime_s: n % 86400,
          policy_version: 7,
          policy_state: 'ok',
          outbox_depth: n % 7,
          dropped_total: 0,
          counts: { blocked: 1, quarantined: 0, denied: 0, warned: 2, audited: 0, failed: 0 },
          exec_events: {
            state: 'on',
            source: 'exec-events',
            received: n,
            kernel_drops: 0,
            queue_drops: 0,
            resyncs: 0,
          },
          sensors: { process: true, install: true },
          tags: [TAGS[d % 5]],
        }
      : type === 'policy.applied'
        ? { policy_version: 7, sha256: 'a'.repeat(64), previous_version: 6, source: 'collector' }
        : type === 'agent.stopped'
          ? { reason: 'signal' }
          : { local_mode: false, pid: 4242, platform: 'linux', os_release: '6.1.0', node_version: '20.20.2' };
  return [id, dev, n, type, time, null, received, JSON.stringify({ ...head, ...extra }), null];
}

const STATES = ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'stale', 'rejected', 'unknown'];
/** One device row, the columns of DEVICE_COLUMNS. */
function deviceRow(i, start, end) {
  const state = STATES[h2(i) % STATES.length];
  const silent = h3(i) % 100 < 5;
  const lastSeen = silent ? start + (h4(i) % (25 * DAY)) : end - (h4(i) % 900_000);
  const tags = [TAGS[i % 5], ...(i % 3 === 0 ? [TAGS[(i + 2) % 5]] : [])];
  return [
    deviceId(i),
    createHash('sha256').update(deviceId(i)).digest('hex'),
    HOSTS[i],
    ['linux', 'darwin', 'windows'][i % 3],
    VERSIONS[i % 3],
    new Date(start - DAY).toISOString(),
    new Date(lastSeen).toISOString(),
    state === 'unknown' ? null : 5 + (i % 3),
    1,
    JSON.stringify({
      exec_events: { state: 'on', source: 'exec-events', kernel_drops: 0 },
      exec_deny: { state: 'off' },
    }),
    1,
    JSON.stringify(tags),
    i % 11,
    i % 13 === 0 ? i % 500 : 0,
    state,
    state === 'rejected'
      ? ['GUARD_POLICY_SIGNATURE_INVALID', 'GUARD_POLICY_EXPIRED', 'GUARD_POLICY_ROLLBACK'][i % 3]
      : null,
    1,
  ];
}
const DEVICE_COLUMNS = [
  'id',
  'token_hash',
  'hostname',
  'os',
  'agent_version',
  'enrolled_at',
  'last_seen_at',
  'policy_version',
  'policy_seq',
  'coverage',
  'coverage_seq',
  'tags',
  'outbox_depth',
  'dropped_total',
  'policy_state',
  'policy_error',
  'policy_state_seq',
];
const EVENT_COLUMNS = [
  'id',
  'device_id',
  'seq',
  'type',
  'time',
  'rule_id',
  'received_at',
  'body',
  'user_name',
];

const log = (s) => process.stdout.write(`${s}\n`);
const secs = (t0) => ((performance.now() - t0) / 1000).toFixed(1);

// ---- SQLite ----------------------------------------------------------------------------------

async function sqliteStore() {
  const file = join(base, `console-${sizeTag}.db`);
  const marker = `${file}.filled`;
  if (!(REUSE && existsSync(marker))) {
    for (const f of [file, `${file}-wal`, `${file}-shm`, marker]) rmSync(f, { force: true });
    await new SqliteCollectorStore({ file }).close(); // schema through the store's own migrations
    const t0 = performance.now();
    const db = new Database(file);
    db.pragma('synchronous = OFF');
    db.pragma('cache_size = -1000000');
    const { start, end } = fillWindow();
    const indexes = db
      .prepare(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL",
      )
      .all();
    for (const ix of indexes) db.exec(`DROP INDEX ${ix.name}`);
    const dev = db.prepare(
      `INSERT INTO devices(${DEVICE_COLUMNS.join(', ')}) VALUES (${DEVICE_COLUMNS.map(() => '?').join(', ')})`,
    );
    db.transaction(() => {
      for (let i = 0; i < DEVICES; i++) dev.run(deviceRow(i, start, end));
    })();
    const ev = db.prepare(
      `INSERT INTO events(${EVENT_COLUMNS.join(', ')}, enrollment) VALUES (${EVENT_COLUMNS.map(() => '?').join(', ')}, 1)`,
    );
    const CHUNK = 100_000;
    for (let n = 1; n <= EVENTS; n += CHUNK)
      db.transaction(() => {
        for (let k = n; k < Math.min(n + CHUNK, EVENTS + 1); k++) ev.run(eventRow(k, start));
      })();
    log(`  sqlite: rows written in ${secs(t0)} s`);
    for (const ix of indexes) db.exec(ix.sql);
    db.exec(`INSERT INTO device_tags(tag, device_id) SELECT j.value, d.id FROM devices d, json_each(d.tags) j;
             INSERT INTO rule_hourly(rule_id, type, hour, count)
               SELECT rule_id, type, substr(time, 1, 13), count(*) FROM events WHERE rule_id IS NOT NULL GROUP BY 1, 2, 3;
             INSERT INTO rule_daily(rule_id, type, day, count)
               SELECT rule_id, type, substr(hour, 1, 10), sum(count) FROM rule_hourly GROUP BY 1, 2, 3;
             CREATE TABLE IF NOT EXISTS bench_meta(k TEXT PRIMARY KEY, v TEXT);
             INSERT OR REPLACE INTO bench_meta VALUES ('start', '${start}'), ('end', '${end}');`);
    db.close();
    writeFileSync(marker, '');
    log(
      `  sqlite: filled in ${secs(t0)} s (indexes built after the rows), ${(statSync(file).size / 2 ** 30).toFixed(2)} GiB`,
    );
  } else log(`  sqlite: reusing ${file}`);
  const meta = new Database(file, { readonly: true });
  const m = Object.fromEntries(
    meta
      .prepare('SELECT k, v FROM bench_meta')
      .all()
      .map((r) => [r.k, Number(r.v)]),
  );
  meta.close();
  const t0 = performance.now();
  const store = new SqliteCollectorStore({ file });
  log(`  sqlite: opened by the store in ${secs(t0)} s (migrations and its check at open included)`);
  return { store, window: m, cleanup: () => (REUSE ? undefined : rmSync(file, { force: true })) };
}

// ---- PostgreSQL ------------------------------------------------------------------------------

async function postgresStore() {
  const server = await startPostgres({
    dir: REUSE ? join(base, `pg-${sizeTag}`) : undefined,
    settings: { maintenance_work_mem: '512MB', max_wal_size: '8GB', shared_buffers: '512MB' },
  });
  const url = server.url('console');
  const filled =
    REUSE &&
    server.reused &&
    server.psql(['-tAc', 'SELECT 1 FROM bench_meta LIMIT 1'], 'console').stdout.trim() === '1';
  if (!filled) {
    if (server.reused) server.psql(['-c', 'DROP DATABASE IF EXISTS console']);
    server.createDatabase('console');
    await (await PostgresCollectorStore.open({ url })).close();
    const t0 = performance.now();
    const { start, end } = fillWindow();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const ix = await c.query(
      `SELECT i.indexname, i.indexdef FROM pg_indexes i
       WHERE i.tablename = 'events' AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conname = i.indexname)`,
    );
    for (const r of ix.rows) await c.query(`DROP INDEX ${r.indexname}`);
    const field = (v) =>
      v === null
        ? '\\N'
        : typeof v === 'string'
          ? v.replace(/[\\\t\n\r]/g, (ch) =>
              ch === '\\' ? '\\\\' : ch === '\t' ? '\\t' : ch === '\n' ? '\\n' : '\\r',
            )
          : String(v);
    const copy = async (sql, rows) => pipeline(Readable.from(rows), c.query(copyFrom(sql)));
    await copy(
      `COPY devices(${DEVICE_COLUMNS.join(', ')}, enrollment) FROM STDIN`,
      (function* () {
        for (let i = 0; i < DEVICES; i += 1000) {
          let s = '';
          for (let k = i; k < Math.min(i + 1000, DEVICES); k++)
            s += `${deviceRow(k, start, end).map(field).join('\t')}\t1\n`;
          yield s;
        }
      })(),
    );
    await copy(
      `COPY events(${EVENT_COLUMNS.join(', ')}, enrollment) FROM STDIN`,
      (function* () {
        for (let n = 1; n <= EVENTS; n += 1000) {
          let s = '';
          for (let k = n; k < Math.min(n + 1000, EVENTS + 1); k++)
            s += `${eventRow(k, start).map(field).join('\t')}\t1\n`;
          yield s;
        }
      })(),
    );
    log(`  postgres: rows written in ${secs(t0)} s`);
    for (const r of ix.rows) await c.query(r.indexdef);
    await c.query(
      `INSERT INTO device_tags(tag, device_id) SELECT j, d.id FROM devices d, json_array_elements_text(d.tags::json) j`,
    );
    await c.query(`INSERT INTO rule_hourly(hour, rule_id, type, count)
                   SELECT left(time, 13), rule_id, type, count(*) FROM events
                   WHERE rule_id IS NOT NULL GROUP BY 1, 2, 3`);
    await c.query(`INSERT INTO rule_daily(day, rule_id, type, count)
                   SELECT left(hour, 10), rule_id, type, sum(count) FROM rule_hourly GROUP BY 1, 2, 3`);
    await c.query('VACUUM ANALYZE');
    await c.query(`CREATE TABLE bench_meta(k text PRIMARY KEY, v text);
                   INSERT INTO bench_meta VALUES ('start', '${start}'), ('end', '${end}')`);
    await c.end();
    const size = server.psql(['-tAc', "SELECT pg_database_size('console')"], 'console').stdout.trim();
    log(
      `  postgres: filled in ${secs(t0)} s (indexes built after the rows, then VACUUM ANALYZE as autovacuum would), ${(Number(size) / 2 ** 30).toFixed(2)} GiB`,
    );
  } else log('  postgres: reusing the filled cluster');
  const meta = server
    .psql(['-tAc', "SELECT string_agg(k || '=' || v, ',') FROM bench_meta"], 'console')
    .stdout.trim();
  const m = Object.fromEntries(
    meta
      .split(',')
      .map((kv) => kv.split('='))
      .map(([k, v]) => [k, Number(v)]),
  );
  const store = await PostgresCollectorStore.open({ url });
  return {
    store,
    window: m,
    cleanup: async () => {
      await server.stop();
      if (!REUSE) rmSync(base, { recursive: true, force: true });
    },
  };
}

// ---- the measurements ------------------------------------------------------------------------

async function p95(fn) {
  for (let i = 0; i < WARMUP; i++) await fn(i);
  const ms = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await fn(i + WARMUP);
    ms.push(performance.now() - t);
  }
  return pct(
    ms.sort((a, b) => a - b),
    95,
  );
}

/** The queries, each a function of the run number (parameters vary between calls). */
function queries(store, w) {
  const iso = (ms) => new Date(ms).toISOString();
  const now = iso(w.end);
  const rule = (i) => ruleName((i % RULES) + 1);
  const hotRule = (i) => ruleName((i % 3) + 1);
  const device = (i) => deviceId(h1(i + 1) % DEVICES);
  const page = (filter, sort, order) => (i) =>
    store.consoleDevices({ filter: filter(i), sort, order, limit: 50 });
  return [
    ['devices: default (hostname asc)', page(() => ({}), 'hostname', 'asc')],
    ['devices: filtered by tag', page((i) => ({ tag: TAGS[i % 5] }), 'hostname', 'asc')],
    [
      'devices: hostname search (common)',
      page((i) => ({ search: ['lt-ber', 'mbp-', 'build-n'][i % 3] }), 'hostname', 'asc'),
    ],
    [
      'devices: hostname search (rare)',
      page((i) => ({ search: hostname(h1(i + 3) % DEVICES).slice(-6) }), 'hostname', 'asc'),
    ],
    ['devices: last_seen desc', page(() => ({}), 'last_seen_at', 'desc')],
    [
      'devices: rejected, by policy version',
      page(() => ({ policyState: 'rejected' }), 'policy_version', 'desc'),
    ],
    [
      'devices: page 50 (cursor walk, per page)',
      async () => {
        // measured per page over the walk of 50 pages; the call measured is each page's
        let cursor;
        for (let k = 0; k < 50; k++) {
          const p = await store.consoleDevices({
            filter: {},
            sort: 'last_seen_at',
            order: 'asc',
            limit: 50,
            cursor,
          });
          cursor = p.next ?? undefined;
        }
      },
      50,
    ],
    ['events: newest (no filter)', (i) => store.consoleEvents({ filter: {}, limit: 50 + (i % 2) })],
    ['events: by rule', (i) => store.consoleEvents({ filter: { ruleId: rule(i) }, limit: 50 })],
    ['events: by device', (i) => store.consoleEvents({ filter: { deviceId: device(i) }, limit: 50 })],
    [
      'events: by rule + 1-day range',
      (i) =>
        store.consoleEvents({
          filter: {
            ruleId: hotRule(i),
            since: iso(w.end - (3 + (i % 20)) * DAY),
            until: iso(w.end - (2 + (i % 20)) * DAY),
          },
          limit: 50,
        }),
    ],
    [
      'events: by user',
      (i) => store.consoleEvents({ filter: { user: `user${(i * 37) % USERS}` }, limit: 50 }),
    ],
    [
      'ruleActivity: 7 days hourly',
      () =>
        store.ruleActivity({
          since: iso(w.end - 7 * DAY),
          until: now,
          bucketSeconds: 3600,
          ruleIds: ALL_RULES,
        }),
    ],
    [
      'ruleActivity: 30 days daily',
      () => store.ruleActivity({ since: iso(w.start), until: now, bucketSeconds: 86400, ruleIds: ALL_RULES }),
    ],
    ['ruleTop: 7 days, top 10 (busiest rules)', (i) => store.ruleTop(hotRule(i), iso(w.end - 7 * DAY), 10)],
    ['ruleTop: 24 h, top 10', (i) => store.ruleTop(rule(i), iso(w.end - DAY), 10)],
    ['policyRollout', () => store.policyRollout()],
    [
      'consoleOverview',
      () =>
        store.consoleOverview({
          now,
          silentBefore: iso(w.end - DAY),
          since24h: iso(w.end - DAY),
          publishedVersion: 7,
        }),
    ],
  ];
}

async function measure(name, open) {
  log(`\n${name}: ${DEVICES.toLocaleString('en')} devices, ${EVENTS.toLocaleString('en')} events`);
  const s = await open();
  const out = new Map();
  try {
    for (const [label, fn, perCall] of queries(s.store, s.window)) {
      const p = await p95(fn);
      out.set(label, perCall ? p / perCall : p);
    }
  } finally {
    await s.store.close();
    await s.cleanup();
  }
  return out;
}

const results = {};
if (STORES.includes('sqlite')) results.sqlite = await measure('SQLite', sqliteStore);
if (STORES.includes('postgres')) results.postgres = await measure('PostgreSQL', postgresStore);

const stores = Object.keys(results);
const labels = [...(results[stores[0]]?.keys() ?? [])];
log(`\np95 of the store call, ms (${RUNS} calls each after ${WARMUP} warm-ups), target < ${TARGET_MS} ms`);
log(`${'query'.padEnd(44)}${stores.map((s) => s.padStart(12)).join('')}`);
let misses = 0;
for (const l of labels) {
  const cells = stores.map((s) => {
    const v = results[s].get(l);
    if (v >= TARGET_MS) misses++;
    return `${v.toFixed(1)}${v < TARGET_MS ? ' ok' : ' SLOW'}`.padStart(12);
  });
  log(`${l.padEnd(44)}${cells.join('')}`);
}
log(`\n${misses === 0 ? 'every query' : `${misses} figure(s) NOT`} under ${TARGET_MS} ms`);
if (!REUSE) rmSync(base, { recursive: true, force: true });
