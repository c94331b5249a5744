// guard-collector ingest benchmark, against the real program (bin/guard-collector.js → dist/) as a
// child process on 127.0.0.1:
//   1. ceiling: a plain better-sqlite3 insert loop into the collector's own schema, same
//      durability (WAL, synchronous=FULL), one transaction per 500-event batch — no HTTP, no JSON
//      parsing, no schema validation;
//   2. ingest: 50 concurrent simulated agents posting 500-event NDJSON batches back to back;
//      events/s, request latency p50/p99, and the % of the ceiling — with the default parse
//      workers, and again with --ingest-workers 0 (parsing on the main thread) for comparison;
//   3. fleet heartbeats: 10,000 enrolled devices each sending one heartbeat a minute, i.e. ~167
//      single-event requests/s, each on a new connection, open loop for 30 s; latency p50/p99/max.
// The ceiling is measured before and after the ingest runs and the higher figure is used, so a
// noisy neighbour during one ceiling run cannot flatter the ratio.
// Every event is schema-valid and unique (ids are fresh UUIDv7s). Prints measured numbers only.
// CPU_PROF=<dir> writes V8 CPU profiles of the collector processes (main thread and workers) there.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { hashToken, mintDeviceToken } from '../dist/collector/auth.js';
import { COLLECTOR_MIGRATIONS, CollectorStore } from '../dist/collector/collector-store.js';
import { defaultIngestWorkers } from '../dist/collector/parse-pool.js';
import { uuidv7 } from '../dist/common/uuidv7.js';
import {
  batchBody,
  collectorSecrets,
  enroll,
  eventLine,
  pct,
  postBatch,
  spawnCollector,
} from './lib/bench-collector.js';

const AGENTS = 50;
const BATCH = 500;
/** Ingest phase length: long enough for several fsync-bound group commits per agent. */
const INGEST_MS = 12_000;
const CEILING_BATCHES = 200;
/** Pause between health probes during the ingest phase. */
const HEALTH_PROBE_MS = 250;
const FLEET = 10_000;
const HEARTBEAT_RATE_PER_S = FLEET / 60;
const HEARTBEAT_MS = 30_000;

const dir = mkdtempSync(join(tmpdir(), 'tgcb-'));
const secrets = collectorSecrets();
const startCollector = (dbFile, extraArgs = []) =>
  spawnCollector(secrets, ['--db', dbFile, ...extraArgs], {
    nodeArgs: process.env.CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.CPU_PROF] : [],
  });

function heartbeatLine(deviceId, seq) {
  return JSON.stringify({
    id: uuidv7(),
    time: new Date().toISOString(),
    seq,
    device_id: deviceId,
    hostname: `${deviceId}.corp.example`,
    type: 'agent.heartbeat',
    agent_version: '0.1.0',
    uptime_s: 3600,
    policy_version: 12,
    policy_state: 'ok',
    outbox_depth: 0,
    dropped_total: 0,
    counts: { blocked: 1, warned: 0, audited: 0, quarantined: 0, failed: 0 },
    sensors: { process: true, install: true },
  });
}

// --- 1. ceiling: plain SQLite insert loop --------------------------------------------------------
function ceiling(name) {
  const db = new Database(join(dir, `${name}.db`));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  for (const m of COLLECTOR_MIGRATIONS) db.exec(m);
  const ins = db.prepare(
    'INSERT OR IGNORE INTO events(id, device_id, seq, type, time, rule_id, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const rows = [];
  for (let b = 0; b < CEILING_BATCHES; b++) {
    const batch = [];
    for (let i = 0; i < BATCH; i++) {
      const line = eventLine('dev-ceiling', b * BATCH + i + 1);
      batch.push([JSON.parse(line).id, b * BATCH + i + 1, line]);
    }
    rows.push(batch);
  }
  const insertBatch = db.transaction((batch) => {
    const now = new Date().toISOString();
    for (const [id, seq, line] of batch)
      ins.run(id, 'dev-ceiling', seq, 'process.blocked', now, 'claude-code', now, line);
  });
  const t0 = performance.now();
  for (const batch of rows) insertBatch(batch);
  const s = (performance.now() - t0) / 1000;
  db.close();
  return (CEILING_BATCHES * BATCH) / s;
}

/** Keep-alive connections, one per concurrent agent (like real agents, each with its own socket). */
const keepAlive = new Agent({ keepAlive: true, maxSockets: 256 });
/** Heartbeats of 10,000 different machines: each request on a new connection, as in a real fleet. */
const noKeepAlive = new Agent({ keepAlive: false });

/** GET /healthz on a new connection; resolves when the answer is complete. */
function getHealth(url) {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/healthz`, { agent: noKeepAlive }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
}

// --- 2. ingest: 50 concurrent agents -------------------------------------------------------------
async function ingest(name, extraArgs = []) {
  const dbFile = join(dir, `${name}.db`);
  // the per-token limits and quotas are lifted: the bench measures ingest, not the limits
  const c = await startCollector(dbFile, [
    ...['--rate-limit', '100000', '--rate-burst', '100000'],
    ...['--quota-events', '1000000000', '--quota-bytes', String(2 ** 40)],
    ...extraArgs,
  ]);
  try {
    const agents = [];
    for (let a = 0; a < AGENTS; a++)
      agents.push({
        id: `bench-agent-${a}`,
        token: await enroll(c.url, secrets, `bench-agent-${a}`),
        seq: 1,
      });
    // Warm-up, not measured: JIT, page cache, and every agent's keep-alive connection (a shipper
    // flushing a backlog keeps its connection). Under saturation Node serves connections that are
    // already open before it accepts new ones, so cold connections would measure accept starvation.
    await Promise.all(
      agents.map((a) => {
        const body = batchBody(a.id, a.seq, BATCH);
        a.seq += BATCH;
        return postBatch(c.url, a.token, body, keepAlive);
      }),
    );
    const latencies = [];
    let accepted = 0;
    let errors = 0;
    const t0 = performance.now();
    const deadline = t0 + INGEST_MS;
    // A load balancer's health check during saturation: GET /healthz on a fresh connection.
    const health = [];
    const probeHealth = async () => {
      while (performance.now() < deadline) {
        const s = performance.now();
        await getHealth(c.url);
        health.push(performance.now() - s);
        await new Promise((r) => setTimeout(r, HEALTH_PROBE_MS));
      }
    };
    const prober = probeHealth();
    await Promise.all(
      agents.map(async (a) => {
        while (performance.now() < deadline) {
          const body = batchBody(a.id, a.seq, BATCH);
          a.seq += BATCH;
          const r = await postBatch(c.url, a.token, body, keepAlive);
          if (r.status !== 200) errors++;
          latencies.push(r.ms);
          accepted += r.accepted;
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    await prober;
    await c.stop();
    // sanity: every acknowledged event is in the collector's DB (warm-up batches included)
    const db = new Database(dbFile, { readonly: true });
    const stored = db.prepare('SELECT count(*) AS n FROM events').get().n;
    db.close();
    if (stored !== accepted + AGENTS * BATCH)
      throw new Error(`stored ${stored} events, acknowledged ${accepted + AGENTS * BATCH}`);
    latencies.sort((x, y) => x - y);
    health.sort((x, y) => x - y);
    return {
      eventsPerS: accepted / s,
      p50: pct(latencies, 50),
      p99: pct(latencies, 99),
      requests: latencies.length,
      errors,
      accepted,
      healthP50: pct(health, 50),
      healthMax: health[health.length - 1],
      healthN: health.length,
    };
  } finally {
    await c.stop();
  }
}

// --- 3. fleet heartbeats ---------------------------------------------------------------------------
async function heartbeats() {
  const dbFile = join(dir, 'fleet.db');
  // Pre-provision 10,000 enrolled devices straight into the collector's DB (enrollment is not what
  // is measured; 10,000 fsync'ed enroll requests would only lengthen the run).
  const store = new CollectorStore({ file: dbFile });
  const tokens = [];
  const now = new Date().toISOString();
  store.db.transaction(() => {
    for (let i = 0; i < FLEET; i++) {
      const token = mintDeviceToken();
      tokens.push(token);
      store.enrollDevice(
        { id: `fleet-${i}`, hostname: `fleet-${i}.corp.example`, os: 'linux', agent_version: '0.1.0' },
        hashToken(token),
        now,
      );
    }
  })();
  store.close();
  const c = await startCollector(dbFile);
  try {
    const latencies = [];
    let errors = 0;
    const inflight = new Set();
    const intervalMs = 1000 / HEARTBEAT_RATE_PER_S;
    const t0 = performance.now();
    let sent = 0;
    // open loop: request n is due at t0 + n * interval, whether or not earlier ones answered
    while (performance.now() - t0 < HEARTBEAT_MS) {
      const due = t0 + sent * intervalMs;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const i = sent % FLEET;
      const seq = Math.floor(sent / FLEET) + 1;
      sent++;
      const p = postBatch(c.url, tokens[i], `${heartbeatLine(`fleet-${i}`, seq)}\n`, noKeepAlive)
        .then((r) => {
          latencies.push(r.ms);
          if (r.status !== 200) errors++;
        })
        .catch(() => {
          errors++;
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
    const s = (performance.now() - t0) / 1000;
    latencies.sort((x, y) => x - y);
    return {
      reqPerS: latencies.length / s,
      p50: pct(latencies, 50),
      p99: pct(latencies, 99),
      max: latencies[latencies.length - 1],
      requests: latencies.length,
      errors,
    };
  } finally {
    await c.stop();
  }
}

const loadBefore = loadavg()[0];
try {
  const ceilBefore = ceiling('ceiling-before');
  const ing = await ingest('ingest');
  const inl = await ingest('ingest-inline', ['--ingest-workers', '0']);
  const ceilAfter = ceiling('ceiling-after');
  const ceil = Math.max(ceilBefore, ceilAfter);
  const hb = await heartbeats();
  const f = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const rows = [
    [
      'SQLite insert loop (ceiling, 500/txn, sync=FULL; higher of 2 runs)',
      `${f(ceil)} events/s`,
      '',
      `${f(ceilBefore)} / ${f(ceilAfter)}`,
    ],
    ...[
      [`${defaultIngestWorkers()} parse worker(s), the default`, ing],
      ['--ingest-workers 0', inl],
    ].flatMap(([label, r]) => [
      [
        `ingest, ${label}: ${AGENTS} agents × ${BATCH} events (${f(r.requests)} req, ${r.errors} errors)`,
        `${f(r.eventsPerS)} events/s`,
        `${f(r.p50, 1)} / ${f(r.p99, 1)} ms`,
        `${f((100 * r.eventsPerS) / ceil, 1)} % of ceiling`,
      ],
      [
        `  GET /healthz during that ingest (${r.healthN} probes, new connections)`,
        '',
        `${f(r.healthP50, 1)} ms p50`,
        `max ${f(r.healthMax, 1)} ms`,
      ],
    ]),
    [
      `heartbeats: ${f(FLEET)} devices @ 1/min (${f(hb.requests)} req, ${hb.errors} errors)`,
      `${f(hb.reqPerS, 1)} req/s`,
      `${f(hb.p50, 1)} / ${f(hb.p99, 1)} ms`,
      `max ${f(hb.max, 1)} ms`,
    ],
  ];
  const w = [0, 1, 2, 3].map((i) =>
    Math.max(...rows.map((r) => r[i].length), ['scenario', 'rate', 'p50 / p99', 'note'][i].length),
  );
  const line = (r) => r.map((c, i) => c.padEnd(w[i])).join(' | ');
  process.stdout.write(
    `guard-collector ingest (${cpus().length} CPUs, node ${process.version}; 1-min load average ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after: other processes share these CPUs)\n`,
  );
  process.stdout.write(
    `${line(['scenario', 'rate', 'p50 / p99', 'note'])}\n${w.map((n) => '-'.repeat(n)).join('-|-')}\n`,
  );
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
  process.stdout.write(
    `targets: ingest >= 20,000 events/s and >= 40 % of ceiling; heartbeat p99 < 100 ms → ${
      ing.eventsPerS >= 20_000 && ing.eventsPerS / ceil >= 0.4 ? 'ingest MET' : 'ingest NOT met'
    }, ${hb.p99 < 100 ? 'heartbeat MET' : 'heartbeat NOT met'}\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
