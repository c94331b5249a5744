// guard-collector fleet heartbeat benchmark (issue 14): 100,000 simulated devices heart-beating
// every minute against 3 real collector processes (bin/guard-collector.js → dist/) on one
// throwaway PostgreSQL (default durability: fsync and synchronous_commit on), on 127.0.0.1.
//   1. Enrollment: the 100,000 devices are enrolled directly through the store port
//      (PostgresCollectorStore.enrollDevice with the token's SHA-256, as POST /v1/enroll stores it),
//      many at once — the enroll route's own rate limit (enroll_rate_per_min) would take hours for a
//      fleet this size, and enrollment is not what this bench measures.
//   2. Load: open loop at 100,000 / 60 s ≈ 1,667 POST /v1/events per second, each one
//      `agent.heartbeat` of the next device (each device once a minute), round-robin over the 3
//      collectors on keep-alive connections, for WARMUP_S (not measured) then MEASURE_S, twice:
//      the first interval after the collectors started (cold: no collector has seen a device's
//      token yet, so each request costs a token query), then — after 2 more intervals, not
//      measured, in which every device has posted to every collector (round-robin turns by one
//      collector each interval) — one interval in steady state (tokens cached). The
//      generator sends what the schedule says is due at each tick, so a slow server does not slow
//      the offered load (no coordinated omission); requests in flight are capped at MAX_INFLIGHT
//      (a request that would exceed it is counted as not sent).
//   3. Prints request latency p50/p99/max of both windows (from handing the request to Node's HTTP
//      client to the full answer, so client-side queueing counts), the rate offered and answered
//      200, beside the target (p99 < 100 ms, judged on the steady state). Collectors run with their
//      default limits.
// The load generator is one Node process on the same machine as the collectors and PostgreSQL:
// when it cannot reach the rate, the rate reached is what is printed.
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { hashToken } from '../dist/collector/auth.js';
import { PostgresCollectorStore } from '../dist/collector/store/postgres-store.js';
import { uuidv7 } from '../dist/common/uuidv7.js';
import { collectorSecrets, pct, spawnCollector } from './lib/bench-collector.js';
import { startPostgres } from './lib/postgres.js';

/** The fleet of the target. */
const DEVICES = 100_000;
/** Heartbeat interval of the target, s: each device once per minute. */
const INTERVAL_S = 60;
const RATE = DEVICES / INTERVAL_S;
const COLLECTORS = 3;
/** Not measured: connections, JIT, pools and the first group commits settle. */
const WARMUP_S = 10;
/** Measured: one full heartbeat interval, so every device has posted once. */
const MEASURE_S = 60;
/** Not measured, between the two windows: every device posts to every collector once. */
const BETWEEN_S = (COLLECTORS - 1) * INTERVAL_S;
/** Concurrent enrollments through the store (its pool size): bounds the enrollment time. */
const ENROLL_CONCURRENCY = 32;
/** Requests in flight at most; past it a due request is not sent (counted): bounds memory. */
const MAX_INFLIGHT = 5_000;
/** Keep-alive sockets per collector. */
const SOCKETS_PER_COLLECTOR = 64;
/** The generator wakes this often and sends what is due, ms. */
const TICK_MS = 2;
/** A collector that has not printed its address by then failed to start, ms. */
const START_TIMEOUT_MS = 15_000;
const TARGET_P99_MS = 100;

const secrets = collectorSecrets();

async function startCollector(storeUrl) {
  const c = await spawnCollector(secrets, ['--store-url', storeUrl], { timeoutMs: START_TIMEOUT_MS });
  const u = new URL(c.url);
  return {
    host: u.hostname,
    port: Number(u.port),
    agent: new Agent({ keepAlive: true, maxSockets: SOCKETS_PER_COLLECTOR }),
    stop: c.stop,
  };
}

const deviceId = (i) => `hb-${String(i).padStart(6, '0')}`;
/** The device's token: derived from its index, so 100,000 tokens need no memory. */
const tokenOf = (i, salt) => `${salt}-${i}`;

async function enrollAll(url, salt) {
  const store = await PostgresCollectorStore.open({ url, poolSize: ENROLL_CONCURRENCY });
  const now = new Date().toISOString();
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: ENROLL_CONCURRENCY }, async () => {
        while (next < DEVICES) {
          const i = next++;
          const id = deviceId(i);
          await store.enrollDevice(
            { id, hostname: `${id}.corp.example`, os: 'linux', agent_version: '0.1.0' },
            hashToken(tokenOf(i, salt)),
            now,
          );
        }
      }),
    );
  } finally {
    await store.close();
  }
}

function heartbeatBody(i, seq) {
  const id = deviceId(i);
  return `${JSON.stringify({
    id: uuidv7(),
    time: new Date().toISOString(),
    seq,
    device_id: id,
    hostname: `${id}.corp.example`,
    type: 'agent.heartbeat',
    agent_version: '0.1.0',
    uptime_s: 3600 + seq * INTERVAL_S,
    policy_version: 12,
    policy_state: 'ok',
    outbox_depth: 0,
    dropped_total: 0,
    counts: { blocked: 0, warned: 0 },
    sensors: { process: true, install: true },
  })}\n`;
}

function post(c, token, body, done) {
  const t0 = performance.now();
  const req = request(
    {
      host: c.host,
      port: c.port,
      path: '/v1/events',
      method: 'POST',
      agent: c.agent,
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/x-ndjson',
        'content-length': Buffer.byteLength(body),
      },
    },
    (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode, performance.now() - t0));
    },
  );
  req.on('error', () => done(0, performance.now() - t0));
  req.end(body);
}

/** Open-loop load for `seconds`; resolves once every request sent has been answered. */
function drive(collectors, salt, state, seconds, measured) {
  const stats = { sent: 0, skipped: 0, ok: 0, failed: 0, latencies: [] };
  return new Promise((resolve) => {
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let inflight = 0;
    let finished = false;
    const maybeDone = () => {
      if (finished && inflight === 0) resolve({ ...stats, seconds: (performance.now() - t0) / 1000 });
    };
    const tick = () => {
      const now = Math.min(performance.now(), end);
      const due = Math.floor(((now - t0) / 1000) * RATE);
      while (stats.sent + stats.skipped < due) {
        if (inflight >= MAX_INFLIGHT) {
          stats.skipped++;
          continue;
        }
        const n = state.next++;
        const i = n % DEVICES;
        const seq = Math.floor(n / DEVICES) + 1;
        inflight++;
        stats.sent++;
        post(collectors[n % collectors.length], tokenOf(i, salt), heartbeatBody(i, seq), (status, ms) => {
          inflight--;
          if (status === 200) stats.ok++;
          else stats.failed++;
          if (measured) stats.latencies.push(ms);
          maybeDone();
        });
      }
      if (performance.now() < end) setTimeout(tick, TICK_MS);
      else {
        finished = true;
        maybeDone();
      }
    };
    tick();
  });
}

async function main() {
  const server = await startPostgres();
  const collectors = [];
  try {
    const url = server.createDatabase('heartbeat');
    const salt = randomBytes(12).toString('base64url');
    const e0 = performance.now();
    await enrollAll(url, salt);
    const enrollS = (performance.now() - e0) / 1000;
    for (let k = 0; k < COLLECTORS; k++) collectors.push(await startCollector(url));
    const state = { next: 0 };
    await drive(collectors, salt, state, WARMUP_S, false);
    const cold = await drive(collectors, salt, state, MEASURE_S, true);
    await drive(collectors, salt, state, BETWEEN_S, false);
    const r = await drive(collectors, salt, state, MEASURE_S, true);
    for (const x of [cold, r]) x.latencies.sort((a, b) => a - b);
    const f = (n) => Math.round(n).toLocaleString('en-US');
    const ms = (n) => (n === undefined ? 'n/a' : `${n.toFixed(1)} ms`);
    const p99 = pct(r.latencies, 99);
    const row = (name, g, target) => `| ${name} | ${g(cold)} | ${g(r)} | ${target} |\n`;
    process.stdout.write(
      `\nFleet heartbeats: ${f(DEVICES)} devices × 1 heartbeat / ${INTERVAL_S} s, ${COLLECTORS} collectors on one PostgreSQL; ` +
        `${WARMUP_S} s warm-up, ${MEASURE_S} s measured cold, ${BETWEEN_S} s, ${MEASURE_S} s measured steady; ${cpus().length} CPUs, load ${loadavg()[0].toFixed(2)}\n` +
        `(${f(DEVICES)} devices enrolled through the store port in ${enrollS.toFixed(1)} s)\n\n` +
        '| | first interval (tokens not yet cached) | steady state (cached) | target |\n|---|---|---|---|\n' +
        row('heartbeat POSTs offered /s', (x) => f(x.sent / MEASURE_S), f(RATE)) +
        row('answered 200 /s', (x) => f(x.ok / x.seconds), f(RATE)) +
        row(
          `not 200 (errors) / not sent (${f(MAX_INFLIGHT)} in flight)`,
          (x) => `${f(x.failed)} / ${f(x.skipped)}`,
          '0 / 0',
        ) +
        row('request latency p50', (x) => ms(pct(x.latencies, 50)), '') +
        row('request latency p99', (x) => ms(pct(x.latencies, 99)), `< ${TARGET_P99_MS} ms`) +
        row('request latency max', (x) => ms(x.latencies[x.latencies.length - 1]), '') +
        `\np99 target (steady state) ${p99 !== undefined && p99 < TARGET_P99_MS && r.skipped === 0 && r.sent >= RATE * MEASURE_S * 0.99 ? 'MET' : 'NOT met'} ` +
        '(met = p99 under target at the full offered rate, nothing skipped)\n',
    );
  } finally {
    for (const c of collectors) {
      c.agent.destroy();
      await c.stop();
    }
    await server.stop();
  }
}

await main();
