// Forwarder rewind benchmark (POST /v1/admin/forwarders/:sink/rewind → rewindForwarder): how long
// one rewind takes against an event log of N events, by how far back `since` goes, on both stores,
// side by side in one run. The sink's cursor sits at the newest event; each rewind is measured
// from there (the cursor is put back after each). What it reads: the receipt-time index from
// `since` on (to find the first event received since then), and a count of the events due again
// (exact up to REWIND_COUNT_BOUND, one million). On SQLite this runs on the collector's main
// thread, so its time is time ingest waits; on PostgreSQL the sink's deliveries wait (its claim),
// ingest does not. Target printed with its verdict: a rewind of the last day — here 1 % of the log,
// the sort of range an operator rewinds after a SIEM lost a day — under 0.5 s on both.
// Events: one a second, 400-byte bodies, written straight into the stores' tables (no HTTP:
// the rewind's cost does not depend on how events arrived). Prints measured numbers only.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { REWIND_COUNT_BOUND } from '../dist/collector/store/port.js';
import { PostgresCollectorStore } from '../dist/collector/store/postgres-store.js';
import { SqliteCollectorStore } from '../dist/collector/store/sqlite-store.js';
import { startPostgres } from './lib/postgres.js';

const N = 2_000_000;
/** How far back `since` goes, as the fraction of the log received since then. */
const BACK = [0.01, 0.1, 0.5, 1];
const T0 = Date.UTC(2026, 0, 1);
const ROUNDS = 3;
const TARGET_S = 0.5;
const iso = (i) => new Date(T0 + i * 1000).toISOString();

async function measure(store, setCursor) {
  const rows = [];
  for (const back of BACK) {
    const since = iso(Math.floor(N * (1 - back)));
    const times = [];
    let last;
    for (let r = 0; r < ROUNDS; r++) {
      await setCursor();
      const t = performance.now();
      last = await store.rewindForwarder('bench', since, 10_000);
      times.push((performance.now() - t) / 1000);
      if (last.kind !== 'rewound') throw new Error(`rewind ${back}: ${JSON.stringify(last)}`);
    }
    times.sort((a, b) => a - b);
    rows.push({ back, due: last.dueAgain, exact: last.dueAgainExact, s: times[Math.floor(ROUNDS / 2)] });
  }
  return rows;
}

async function sqlite(dir) {
  const store = new SqliteCollectorStore({ file: join(dir, 'c.db') });
  const db = store.engine.db;
  const started = performance.now();
  db.exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${N - 1})
    INSERT INTO events(id, device_id, enrollment, seq, type, time, rule_id, received_at, body)
    SELECT 'e' || i, 'd', 1, i, 'agent.heartbeat', strftime('%Y-%m-%dT%H:%M:%fZ', ${T0 / 1000} + i, 'unixepoch'),
           NULL, strftime('%Y-%m-%dT%H:%M:%fZ', ${T0 / 1000} + i, 'unixepoch'), printf('%.400c', 'x')
    FROM n`);
  db.exec('ANALYZE');
  process.stdout.write(
    `SQLite: ${N} events written in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
  const put = db.prepare(
    `INSERT INTO forwarder_cursors(sink, last_rid, updated_at) VALUES ('bench', ?, 'x')
     ON CONFLICT(sink) DO UPDATE SET last_rid = excluded.last_rid`,
  );
  try {
    return await measure(store, async () => put.run(N));
  } finally {
    await store.close();
  }
}

async function postgres(server) {
  const url = server.createDatabase('rewindbench');
  await (await PostgresCollectorStore.open({ url })).close();
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const started = performance.now();
  // 20 transactions, so the log spans several txids as it does in life
  for (let k = 0; k < 20; k++)
    await c.query(
      `INSERT INTO events(id, device_id, enrollment, seq, type, time, rule_id, received_at, body)
       SELECT 'e' || i, 'd', 1, i, 'agent.heartbeat', t, NULL, t, repeat('x', 400)
       FROM generate_series($1::int, $2::int) AS i,
            LATERAL (SELECT to_char(to_timestamp(${T0 / 1000} + i) AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS t) x`,
      [(k * N) / 20, ((k + 1) * N) / 20 - 1],
    );
  await c.query('VACUUM ANALYZE events');
  process.stdout.write(
    `PostgreSQL: ${N} events written in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
  const store = await PostgresCollectorStore.open({ url });
  try {
    return await measure(store, () =>
      c.query(
        `INSERT INTO forwarder_cursors(sink, last_txid, last_rid, updated_at)
         SELECT 'bench', txid, rid, 'x' FROM events ORDER BY txid DESC, rid DESC LIMIT 1
         ON CONFLICT (sink) DO UPDATE SET last_txid = excluded.last_txid, last_rid = excluded.last_rid`,
      ),
    );
  } finally {
    await store.close();
    await c.end();
    server.dropDatabase('rewindbench');
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'tg-rewind-bench-'));
  const server = await startPostgres();
  try {
    const results = [
      ['SQLite', await sqlite(dir)],
      ['PostgreSQL', await postgres(server)],
    ];
    process.stdout.write(
      `\nrewind of a sink whose cursor is at the newest of ${N} events (median of ${ROUNDS}; counted exactly up to ${REWIND_COUNT_BOUND}):\n`,
    );
    process.stdout.write('store        since = newest …   due again      seconds   per million due\n');
    for (const [name, rows] of results)
      for (const r of rows)
        process.stdout.write(
          `${name.padEnd(12)} ${`${(r.back * 100).toFixed(0)} % back`.padEnd(16)} ${`${r.due}${r.exact ? '' : ' (est.)'}`.padEnd(14)} ${r.s.toFixed(3).padStart(7)}   ${((r.s / r.due) * 1e6).toFixed(3).padStart(9)}\n`,
        );
    process.stdout.write(
      `\ntarget: a rewind of the last 1 % (${N / 100} events) under ${TARGET_S} s on both stores\n`,
    );
    for (const [name, rows] of results) {
      const s = rows.find((r) => r.back === 0.01).s;
      process.stdout.write(`  ${name}: ${s.toFixed(3)} s — ${s < TARGET_S ? 'met' : 'NOT met'}\n`);
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
