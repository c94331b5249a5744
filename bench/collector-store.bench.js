// guard-collector storage benchmark: the same ingest load against each store, side by side in one
// run, with real collector processes (bin/guard-collector.js → dist/) on 127.0.0.1:
//   1. SQLite, one collector (the embedded default);
//   2. PostgreSQL, one collector;
//   3. PostgreSQL, three collectors on the same database (agents spread over them);
//   4. PostgreSQL ceilings of the same rows without HTTP, parsing or validation: a raw COPY
//      (psql \copy of the columns the collector fills, user_name included, into the collector's
//      freshly migrated events table: the same table, indexes and identity/txid defaults) and the
//      store's own ingest (PostgresCollectorStore.insertGroup: lock the device row, COPY into
//      events, upsert the rule counts; one 500-event group per transaction, back to back). The
//      machine is shared, so its load swings within a run: the raw COPY runs three times (before
//      the SQLite run, between the PostgreSQL runs, and at the end) and the median is the 100 %;
//      all three are printed;
//   5. database size per million events, both stores (extrapolated from what the runs stored).
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
/** Measured ingest per configuration: several group commits per agent, and the bench under 3 min. */
const INGEST_MS = 8_000;
/** Load before the measured window of each configuration. */
const WARMUP_MS = 3_000;
/** Rows of the ceiling runs: 100,000 (200 batches of 500). */
const CEILING_BATCHES = 200;

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
 * One raw COPY of the ceiling rows into a freshly migrated database `name`; resolves with rows/s and
 * the CPU time per row (µs) of psql (this process's reaped children) and of the server.
 */
async function copyCeiling(server, name, file) {
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
  return {
    perS: rows / s,
    cpu: { client: (psql / rows) * 1e6, server: ((server.cpuSeconds() - cpu0.server) / rows) * 1e6 },
  };
}

async function main() {
  const server = await startPostgres();
  const results = [];
  try {
    const batches = ceilingRows();
    const received = new Date().toISOString();
    const tsvFile = ceilingFile(batches, received);
    const copies = [await copyCeiling(server, 'ceilcopy1', tsvFile)];

    // 1. SQLite
    const sqliteFile = join(dir, 'sqlite.db');
    const sqlite = await ingest(1, ['--db', sqliteFile]);
    results.push(['SQLite, 1 collector', sqlite]);
    const db = new Database(sqliteFile);
    db.pragma('wal_checkpoint(TRUNCATE)');
    const sqliteCount = db.prepare('SELECT count(*) AS n FROM events').get().n;
    db.close();
    const sqliteBytesPerM = (statSync(sqliteFile).size / sqliteCount) * 1e6;

    // 2. and 3. PostgreSQL with one and three collectors (a fresh database each)
    const pg1 = await ingest(1, ['--store-url', server.createDatabase('ingest1')], server);
    results.push(['PostgreSQL, 1 collector', pg1]);
    copies.push(await copyCeiling(server, 'ceilcopy2', tsvFile));
    const pg3Url = server.createDatabase('ingest3');
    const pg3 = await ingest(3, ['--store-url', pg3Url], server);
    results.push(['PostgreSQL, 3 collectors', pg3]);
    const c = new pg.Client({ connectionString: pg3Url });
    await c.connect();
    const size = (
      await c.query(`SELECT count(*)::int8 AS n, pg_total_relation_size('events')::int8 AS bytes FROM events`)
    ).rows[0];
    await c.end();
    const pgBytesPerM = (Number(size.bytes) / Number(size.n)) * 1e6;
    for (const [name, r] of results)
      if (r.errors > 0) process.stdout.write(`note: ${name}: ${r.errors} requests not answered 200\n`);

    // 4. ceilings: the store's own insert, and the last raw COPY, each into a freshly migrated database
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
    copies.push(await copyCeiling(server, 'ceilcopy3', tsvFile));
    const median = [...copies].sort((x, y) => x.perS - y.perS)[1];
    const copyPerS = median.perS;

    const f = (n) => Math.round(n).toLocaleString('en-US');
    const rows = [
      ...results.map(([name, r]) => [
        name,
        f(r.eventsPerS),
        `${((r.eventsPerS / copyPerS) * 100).toFixed(1)}`,
        `${Math.round(r.p50)} / ${Math.round(r.p99)} ms`,
      ]),
      [
        'PostgreSQL store insertGroup (lock device, COPY into events, rule counts; 500/tx, no HTTP)',
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
    const copyCpu = median.cpu.client + median.cpu.server;
    const us = (n) => (n === null || Number.isNaN(n) ? '—' : n.toFixed(1));
    const cpuRows = [
      ...results.map(([name, r]) => {
        const total = r.cpu.collectors + (r.cpu.server ?? 0);
        return [
          name,
          us(r.cpu.collectors),
          us(r.cpu.server),
          us(total),
          `${((copyCpu / total) * 100).toFixed(1)} %`,
        ];
      }),
      ['PostgreSQL COPY (ceiling)', us(median.cpu.client), us(median.cpu.server), us(copyCpu), '100 %'],
    ];
    process.stdout.write(
      `\nCollector ingest by store: ${AGENTS} agents × ${BATCH}-event batches, ${INGEST_MS / 1000} s each; ` +
        `${cpus().length} CPUs, load ${loadavg()[0].toFixed(2)}\n\n` +
        '| | events/s | % of PG COPY | request p50 / p99 |\n|---|---|---|---|\n' +
        rows.map((r) => `| ${r.join(' | ')} |`).join('\n') +
        '\n\nCPU time per stored event (µs; what each path costs whatever share of the shared CPUs it got — ' +
        'the collectors with their parse threads, the whole PostgreSQL server; the COPY of the median run):\n' +
        '| | collectors / psql | PostgreSQL | total | COPY total ÷ total |\n|---|---|---|---|---|\n' +
        cpuRows.map((r) => `| ${r.join(' | ')} |`).join('\n') +
        `\n\nDatabase size per million events (extrapolated from ${f(sqliteCount)} / ${f(Number(size.n))} stored events of ~0.7 KiB):\n` +
        `| | MiB per 1M events |\n|---|---|\n| SQLite (file after checkpoint) | ${f(sqliteBytesPerM / 2 ** 20)} |\n` +
        `| PostgreSQL (events table + indexes + TOAST) | ${f(pgBytesPerM / 2 ** 20)} |\n`,
    );
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
