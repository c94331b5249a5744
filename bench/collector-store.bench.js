// guard-collector storage benchmark: the same ingest load against each store, side by side in one
// run, with real collector processes (bin/guard-collector.js → dist/) on 127.0.0.1:
//   1. SQLite, one collector (the embedded default): one run;
//   2. PostgreSQL, one collector, and 3. three collectors on the same database (agents spread over
//      them), in 10 alternating rounds 1,3,3,1,1,3,3,1,1,3 (each adjacent pair holds one of each,
//      so a load drift across the run hits both alike); every round is printed and each
//      configuration is judged on its median of 5 rounds (the machine is shared and its load
//      swings within a run: one run of each once came out 3 collectors 5–8 % slower than 1,
//      another day 5–9 % faster, with the same code). The targets are printed with their verdicts;
//   4. PostgreSQL ceilings of the same rows without HTTP, parsing or validation: a raw COPY
//      (psql \copy of the columns the collector fills, user_name included, into the collector's
//      freshly migrated events table: the same table, indexes and identity/txid defaults), run
//      before the SQLite run and after every PostgreSQL round (11 runs, interleaved with the rounds
//      they are compared with; the median is the 100 %, all are printed), and the store's own
//      ingest (PostgresCollectorStore.insertGroup: lock the device row, COPY into events, upsert
//      the rule counts; one 500-event group per transaction, back to back), once;
//   5. database size per million events, both stores (extrapolated from what the runs stored).
// The same database state for every PostgreSQL round and COPY: each gets a freshly created and
// migrated database (empty events table), dropped once measured (so neither its table nor its
// autovacuum carries into the next), and a CHECKPOINT before each, so none pays for the dirty
// buffers of the one before. Windows: 3 s warm-up then 8 s measured per round — at the 25–50k
// events/s seen here each agent gets 9–16 batches, each in a group commit, into every window —
// and the whole bench stays under ~4 min (10 rounds, 11 COPYs, SQLite and insertGroup: 2 min 55 s
// measured at load ~5).
// Load: 50 concurrent simulated agents posting 500-event NDJSON batches back to back (keep-alive),
// each agent enrolled on and posting to one collector (round-robin over the collectors).
// PostgreSQL runs with its default durability (fsync, synchronous_commit on) like SQLite's FULL.
// Every event is schema-valid and unique. Prints measured numbers only.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { parseBatch } from '../dist/collector/ingest.js';
import { PostgresCollectorStore } from '../dist/collector/store/postgres-store.js';
import {
  batchBody,
  collectorSecrets,
  enroll,
  eventLine,
  pct,
  postBatch,
  spawnCollector,
} from './lib/bench-collector.js';
import { procCpuSeconds, startPostgres } from './lib/postgres.js';

const AGENTS = 50;
const BATCH = 500;
/** Measured ingest per round: several group commits per agent, and the bench under ~4 min. */
const INGEST_MS = 8_000;
/** Load before the measured window of each configuration. */
const WARMUP_MS = 3_000;
/** Rows of the ceiling runs: 100,000 (200 batches of 500). */
const CEILING_BATCHES = 200;
/** Collectors of each PostgreSQL round, in run order: 1 and 3 alternate in pairs. */
const ROUNDS = [1, 3, 3, 1, 1, 3, 3, 1, 1, 3];

const dir = mkdtempSync(join(tmpdir(), 'tgcsb-'));
const secrets = collectorSecrets();

const startCollector = (args) => spawnCollector(secrets, args);

const keepAlive = new Agent({ keepAlive: true, maxSockets: 256 });

/**
 * 50 agents against `storeArgs` on `n` collectors; resolves with events/s, latencies and the CPU
 * time per stored event (µs) of the collectors and of `server` (the PostgreSQL one, if any) over
 * the measured window.
 */
async function ingest(n, storeArgs, server) {
  const limits = ['--rate-limit', '100000', '--rate-burst', '100000', '--quota-events', '1000000000'];
  const collectors = [];
  for (let i = 0; i < n; i++)
    collectors.push(await startCollector([...storeArgs, ...limits, '--quota-bytes', String(2 ** 40)]));
  try {
    const agents = [];
    for (let a = 0; a < AGENTS; a++) {
      const c = collectors[a % n];
      agents.push({
        id: `bench-${n}-${a}`,
        url: c.url,
        token: await enroll(c.url, secrets, `bench-${n}-${a}`),
        seq: 1,
      });
    }
    // warm-up (not measured): JIT, connections, pools — for a time, not a batch count, so each of
    // three collectors is as warm as a single one (one batch per agent left them a third as warm)
    const warm = performance.now() + WARMUP_MS;
    await Promise.all(
      agents.map(async (a) => {
        while (performance.now() < warm) {
          const body = batchBody(a.id, a.seq, BATCH);
          a.seq += BATCH;
          await postBatch(a.url, a.token, body, keepAlive);
        }
      }),
    );
    const latencies = [];
    let accepted = 0;
    let errors = 0;
    const collectorCpu = () => collectors.reduce((sum, c) => sum + (procCpuSeconds(c.pid) ?? Number.NaN), 0);
    const cpu0 = { collectors: collectorCpu(), server: server?.cpuSeconds() ?? null };
    const t0 = performance.now();
    const deadline = t0 + INGEST_MS;
    await Promise.all(
      agents.map(async (a) => {
        while (performance.now() < deadline) {
          const body = batchBody(a.id, a.seq, BATCH);
          a.seq += BATCH;
          const r = await postBatch(a.url, a.token, body, keepAlive);
          if (r.status !== 200) errors++;
          latencies.push(r.ms);
          accepted += r.accepted;
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    const cpu = {
      collectors: ((collectorCpu() - cpu0.collectors) / accepted) * 1e6,
      server: cpu0.server === null ? null : ((server.cpuSeconds() - cpu0.server) / accepted) * 1e6,
    };
    latencies.sort((x, y) => x - y);
    return {
      eventsPerS: accepted / s,
      p50: pct(latencies, 50),
      p99: pct(latencies, 99),
      errors,
      accepted,
      cpu,
    };
  } finally {
    for (const c of collectors) await c.stop();
  }
}

/** The ceiling rows, as the collector would store them: [id, seq, body] per event, in batches. */
function ceilingRows() {
  const batches = [];
  for (let b = 0; b < CEILING_BATCHES; b++) {
    const lines = [];
    for (let i = 0; i < BATCH; i++) lines.push(eventLine('dev-ceiling', b * BATCH + i + 1));
    batches.push(lines.join('\n'));
  }
  return batches;
}

/** The ceiling rows as a COPY text file: every column the collector fills for such an event. */
function ceilingFile(batches, received) {
  const esc = (s) => s.replace(/\\/g, '\\\\');
  let tsv = '';
  for (const body of batches)
    for (const line of body.split('\n')) {
      const e = JSON.parse(line);
      tsv += `${e.id}\tdev-ceiling\t1\t${e.seq}\t${e.type}\t${e.time}\t${e.rule.id}\t${received}\t${esc(line)}\t${e.user}\n`;
    }
  const file = join(dir, 'rows.tsv');
  writeFileSync(file, tsv);
  return file;
}

/**
 * One raw COPY of the ceiling rows into a freshly migrated database `name` (dropped after); resolves
 * with rows/s and the CPU time per row (µs) of psql (this process's reaped children) and of the server.
 */
async function copyCeiling(server, name, file) {
  server.checkpoint();
  const url = server.createDatabase(name);
  await (await PostgresCollectorStore.open({ url })).close();
  // the migration's sessions are not the COPY's: let them end (and be counted) before the window
  await server.sessionsEnded(name);
  const children = () => procCpuSeconds(process.pid, true) - procCpuSeconds(process.pid);
  const cpu0 = { psql: children(), server: server.cpuSeconds() };
  const t0 = performance.now();
  const copy = server.psql(
    [
      '-c',
      `\\copy events(id, device_id, enrollment, seq, type, time, rule_id, received_at, body, user_name) FROM '${file}'`,
    ],
    name,
  );
  const s = (performance.now() - t0) / 1000;
  if (copy.status !== 0) throw new Error(`COPY failed: ${copy.stderr}`);
  const rows = CEILING_BATCHES * BATCH;
  const psql = children() - cpu0.psql;
  await server.sessionsEnded(name);
  server.dropDatabase(name);
  return {
    perS: rows / s,
    cpu: { client: (psql / rows) * 1e6, server: ((server.cpuSeconds() - cpu0.server) / rows) * 1e6 },
  };
}

/**
 * One PostgreSQL round: `n` collectors on a freshly created database `name` (after a CHECKPOINT),
 * then the database's own counters once every session of it ended — stored events, transactions
 * (pg_stat_database, the round's whole life: migration, enrollment, warm-up and window) and, when
 * `keepSize`, the events table's size — and the database dropped.
 */
async function pgRound(server, n, name, keepSize) {
  server.checkpoint();
  const url = server.createDatabase(name);
  const r = await ingest(n, ['--store-url', url], server);
  await server.sessionsEnded(name);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const db = (
    await c.query(
      `SELECT (SELECT count(*) FROM events)::int8 AS n, pg_total_relation_size('events')::int8 AS bytes,
              xact_commit + xact_rollback AS xacts FROM pg_stat_database WHERE datname = current_database()`,
    )
  ).rows[0];
  await c.end();
  await server.sessionsEnded(name);
  server.dropDatabase(name);
  return {
    ...r,
    stored: Number(db.n),
    xactsPerK: (Number(db.xacts) / Number(db.n)) * 1000,
    bytes: keepSize ? Number(db.bytes) : null,
  };
}

/** The median of numbers (the middle one: every list here has an odd length). */
const median = (xs) =>
  pct(
    [...xs].sort((a, b) => a - b),
    50,
  );

async function main() {
  const server = await startPostgres();
  try {
    const batches = ceilingRows();
    const received = new Date().toISOString();
    const tsvFile = ceilingFile(batches, received);
    const copies = [await copyCeiling(server, 'ceilcopy0', tsvFile)];

    // 1. SQLite
    const sqliteFile = join(dir, 'sqlite.db');
    const sqlite = await ingest(1, ['--db', sqliteFile]);
    const db = new Database(sqliteFile);
    db.pragma('wal_checkpoint(TRUNCATE)');
    const sqliteCount = db.prepare('SELECT count(*) AS n FROM events').get().n;
    db.close();
    const sqliteBytesPerM = (statSync(sqliteFile).size / sqliteCount) * 1e6;

    // 2. and 3. PostgreSQL with one and three collectors, alternating, a COPY after each round
    const rounds = [];
    for (const [i, n] of ROUNDS.entries()) {
      const r = await pgRound(server, n, `ingest${i + 1}`, i === ROUNDS.lastIndexOf(3));
      const copy = await copyCeiling(server, `ceilcopy${i + 1}`, tsvFile);
      copies.push(copy);
      rounds.push({ n, ...r, copyAfter: copy.perS });
    }
    const sized = rounds.find((r) => r.bytes !== null);
    const pgBytesPerM = (sized.bytes / sized.stored) * 1e6;
    const labelled = [
      ['SQLite, 1 collector', sqlite],
      ...rounds.map((r) => [`PostgreSQL, ${r.n} collector${r.n > 1 ? 's' : ''}`, r]),
    ];
    for (const [name, r] of labelled)
      if (r.errors > 0) process.stdout.write(`note: ${name}: ${r.errors} requests not answered 200\n`);

    // 4. ceilings: the store's own insert into a freshly migrated database; the COPY's median
    server.checkpoint();
    const insUrl = server.createDatabase('ceilinsert');
    const store = await PostgresCollectorStore.open({ url: insUrl });
    await store.enrollDevice(
      { id: 'dev-ceiling', hostname: 'h', os: 'linux', agent_version: '0.1.0' },
      'hash',
      received,
    );
    const groups = batches.map((body) => parseBatch(Buffer.from(body), 'dev-ceiling').valid);
    const t1 = performance.now();
    for (const events of groups)
      await store.insertGroup([{ deviceId: 'dev-ceiling', enrollment: 1, events, receivedAt: received }]);
    const insS = (performance.now() - t1) / 1000;
    await store.close();
    const insertPerS = (CEILING_BATCHES * BATCH) / insS;
    const copyPerS = median(copies.map((x) => x.perS));
    const copyMedian = copies.find((x) => x.perS === copyPerS);

    // the median round of each configuration, figure by figure
    const f = (n) => Math.round(n).toLocaleString('en-US');
    const us = (n) => (n === null || Number.isNaN(n) ? '—' : n.toFixed(1));
    const of = (n) => rounds.filter((r) => r.n === n);
    const summary = (n) => {
      const rs = of(n);
      const m = (get) => median(rs.map(get));
      return {
        eventsPerS: m((r) => r.eventsPerS),
        p50: m((r) => r.p50),
        p99: m((r) => r.p99),
        cpu: { collectors: m((r) => r.cpu.collectors), server: m((r) => r.cpu.server) },
        xactsPerK: m((r) => r.xactsPerK),
        each: rs.map((r) => f(r.eventsPerS)).join(' · '),
      };
    };
    const pg1 = summary(1);
    const pg3 = summary(3);
    const results = [
      ['SQLite, 1 collector (one run)', sqlite],
      [`PostgreSQL, 1 collector (median of ${pg1.each})`, pg1],
      [`PostgreSQL, 3 collectors (median of ${pg3.each})`, pg3],
    ];

    const roundRows = rounds.map((r, i) => [
      String(i + 1),
      `${r.n}`,
      f(r.eventsPerS),
      `${Math.round(r.p50)} / ${Math.round(r.p99)} ms`,
      `${us(r.cpu.collectors)} + ${us(r.cpu.server)}`,
      r.xactsPerK.toFixed(1),
      f(r.copyAfter),
    ]);
    const rows = [
      ...results.map(([name, r]) => [
        name,
        f(r.eventsPerS),
        `${((r.eventsPerS / copyPerS) * 100).toFixed(1)}`,
        `${Math.round(r.p50)} / ${Math.round(r.p99)} ms`,
      ]),
      [
        'PostgreSQL store insertGroup (lock device, COPY into events, rule counts; 500/tx, no HTTP; one run)',
        f(insertPerS),
        ((insertPerS / copyPerS) * 100).toFixed(1),
        '',
      ],
      [
        `PostgreSQL COPY of the same rows (ceiling: median of ${copies.map((x) => f(x.perS)).join(' · ')})`,
        f(copyPerS),
        '100.0',
        '',
      ],
    ];
    const copyCpu = copyMedian.cpu.client + copyMedian.cpu.server;
    const cpuRows = [
      ...results.map(([name, r]) => {
        const total = r.cpu.collectors + (r.cpu.server ?? 0);
        return [
          name.replace(/ \(.*\)$/, ''),
          us(r.cpu.collectors),
          us(r.cpu.server),
          us(total),
          `${((copyCpu / total) * 100).toFixed(1)} %`,
        ];
      }),
      [
        'PostgreSQL COPY (ceiling)',
        us(copyMedian.cpu.client),
        us(copyMedian.cpu.server),
        us(copyCpu),
        '100 %',
      ],
    ];

    // the targets, on the medians; the ratio of each adjacent pair of rounds (one of each) too
    const ceilingRatio = pg1.eventsPerS / copyPerS;
    const scaleRatio = pg3.eventsPerS / pg1.eventsPerS;
    const pairs = [];
    for (let i = 0; i + 1 < rounds.length; i += 2) {
      const [a, b] = [rounds[i], rounds[i + 1]];
      pairs.push(((a.n === 3 ? a : b).eventsPerS / (a.n === 1 ? a : b).eventsPerS).toFixed(2));
    }
    const targets =
      `1 collector ÷ COPY ceiling (medians): ${ceilingRatio.toFixed(2)} (target ≥ 0.50) → ` +
      `${ceilingRatio >= 0.5 ? 'met' : 'not met'}\n` +
      `3 collectors ÷ 1 collector (medians): ${scaleRatio.toFixed(2)} (target ≥ 1.00) → ` +
      `${scaleRatio >= 1 ? 'not slower' : `slower by ${((1 - scaleRatio) * 100).toFixed(1)} %`}` +
      ` (each adjacent pair of rounds: ${pairs.join(' · ')})\n`;

    process.stdout.write(
      `\nCollector ingest by store: ${AGENTS} agents × ${BATCH}-event batches, ${INGEST_MS / 1000} s each ` +
        `after ${WARMUP_MS / 1000} s warm-up; ${cpus().length} CPUs, load ${loadavg()[0].toFixed(2)}\n\n` +
        `PostgreSQL rounds, in run order (a fresh database each; CPU per stored event over the window; ` +
        `transactions of the round's database over its whole life per 1,000 stored events; the COPY ceiling run right after):\n` +
        '| round | collectors | events/s | request p50 / p99 | CPU µs/event collectors + PostgreSQL | transactions / 1k events | COPY after, rows/s |\n' +
        '|---|---|---|---|---|---|---|\n' +
        roundRows.map((r) => `| ${r.join(' | ')} |`).join('\n') +
        '\n\n| | events/s | % of PG COPY | request p50 / p99 |\n|---|---|---|---|\n' +
        rows.map((r) => `| ${r.join(' | ')} |`).join('\n') +
        `\n\n${targets}` +
        '\nCPU time per stored event (µs; what each path costs whatever share of the shared CPUs it got — ' +
        'the collectors with their parse threads, the whole PostgreSQL server; PostgreSQL rounds: the median of ' +
        'each column; the COPY of the median run):\n' +
        '| | collectors / psql | PostgreSQL | total | COPY total ÷ total |\n|---|---|---|---|---|\n' +
        cpuRows.map((r) => `| ${r.join(' | ')} |`).join('\n') +
        `\n\nDatabase size per million events (extrapolated from ${f(sqliteCount)} / ${f(sized.stored)} stored events of ~0.7 KiB):\n` +
        `| | MiB per 1M events |\n|---|---|\n| SQLite (file after checkpoint) | ${f(sqliteBytesPerM / 2 ** 20)} |\n` +
        `| PostgreSQL (events table + indexes + TOAST; the last 3-collector round) | ${f(pgBytesPerM / 2 ** 20)} |\n`,
    );
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
