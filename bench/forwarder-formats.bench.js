// Forwarder formats benchmark, against the real program (bin/guard-collector.js → dist/) as a child
// process on 127.0.0.1: how fast one collector delivers stored events through each forwarder and
// format, and how many bytes an event takes in each.
//   1. seed: N schema-valid events (a mix of process.blocked, agent.heartbeat and
//      package.quarantined) are posted to a collector without forwarders; its DB is the seed;
//   2. per scenario, a copy of the seed DB is opened by a collector with one forwarder: the NDJSON
//      file sink (raw / OCSF / ECS), or Splunk HEC (raw / OCSF / ECS, gzip; and raw with indexer
//      acknowledgement) to a HEC stand-in in this process (it gunzips, parses every event, answers
//      like HEC, acknowledges at once). The collector's own counter
//      `forwarded_events_total{sink}` (GET /metrics, polled every 20 ms) gives the rate: events
//      between 10 % and 100 % delivered divided by that time, so process start-up is not counted.
//   3. bytes per event: the NDJSON files' size / N; for HEC the request bodies as sent (gzip) / N
//      and decompressed / N.
// Prints measured numbers only. FWD_BENCH_EVENTS=<n> changes N (default 30,000).
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { uuidv7 } from '../dist/common/uuidv7.js';
import { collectorSecrets, spawnCollector } from './lib/bench-collector.js';

const N = Number(process.env.FWD_BENCH_EVENTS ?? 30_000);
const BATCH = 500;
/** Poll interval of the collector's counter: ~2 % of a one-second delivery. */
const POLL_MS = 20;
/** A scenario that has not delivered everything by then failed (a stuck sink must not hang the bench). */
const SCENARIO_TIMEOUT_MS = 300_000;

const dir = mkdtempSync(join(tmpdir(), 'tgfb-'));
const secrets = collectorSecrets();
const startCollector = (dbFile, extraArgs = [], env = {}) =>
  spawnCollector(secrets, ['--db', dbFile, ...extraArgs], { env });
const hecToken = randomUUID();

function envelope(type, seq) {
  return {
    id: uuidv7(),
    time: new Date().toISOString(),
    seq,
    device_id: 'bench-dev',
    hostname: 'bench-dev.corp.example',
    type,
    agent_version: '0.1.0',
  };
}

/** The event mix: a kill (~600 bytes raw), a heartbeat, a quarantined package. */
function eventLine(seq) {
  const kind = seq % 3;
  if (kind === 0)
    return JSON.stringify({
      ...envelope('process.blocked', seq),
      uid: 1000,
      user: 'alice',
      pid: 40_000 + (seq % 20_000),
      ppid: 1234,
      name: 'claude',
      exe: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code/cli.js',
      argv: ['node', '/home/alice/.npm-global/bin/claude', '--print', 'explain this repo'],
      start_time: 1_000_000 + seq,
      tty: '/dev/pts/3',
      sha256: 'a'.repeat(64),
      rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
      reason: 'script_package',
      policy_version: 12,
      mode: 'enforce',
      outcome: {
        action_taken: 'killed',
        latency_ms: 41.5,
        error: null,
        details: { killed: [40_000 + (seq % 20_000)] },
      },
    });
  if (kind === 1)
    return JSON.stringify({
      ...envelope('agent.heartbeat', seq),
      uptime_s: 3600,
      policy_version: 12,
      policy_state: 'ok',
      outbox_depth: 0,
      dropped_total: 0,
      counts: { blocked: 1, warned: 0 },
      sensors: { process: true, install: true },
    });
  return JSON.stringify({
    ...envelope('package.quarantined', seq),
    uid: 1000,
    user: 'alice',
    package: {
      ecosystem: 'npm',
      name: '@anthropic-ai/claude-code',
      version: '1.0.0',
      path: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code',
      root: '/home/alice/.npm-global/lib/node_modules',
      manager: 'npm',
    },
    rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
    reason: 'name',
    policy_version: 12,
    mode: 'enforce',
    outcome: {
      action_taken: 'quarantined',
      latency_ms: 12.5,
      error: null,
      details: { quarantine_id: `q-${seq}` },
    },
  });
}

// --- the HEC stand-in ---------------------------------------------------------------------------
const hec = { wireBytes: 0, jsonBytes: 0, events: 0, nextAck: 0 };
const hecServer = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const reply = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Splunk ${hecToken}`)
      return reply(403, { text: 'Invalid token', code: 4 });
    const raw = Buffer.concat(chunks);
    if (req.url?.startsWith('/services/collector/ack')) {
      const acks = {};
      for (const id of JSON.parse(raw.toString('utf8')).acks ?? []) acks[id] = true;
      return reply(200, { acks });
    }
    const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
    let n = 0;
    for (const line of body.toString('utf8').split('\n'))
      if (line) {
        JSON.parse(line);
        n++;
      }
    hec.wireBytes += raw.length;
    hec.jsonBytes += body.length;
    hec.events += n;
    return reply(200, {
      text: 'Success',
      code: 0,
      ...(req.headers['x-splunk-request-channel'] ? { ackId: hec.nextAck++ } : {}),
    });
  });
});

async function seed(dbFile) {
  const c = await startCollector(dbFile, [
    ...['--rate-limit', '100000', '--rate-burst', '100000'],
    ...['--quota-events', '1000000000', '--quota-bytes', String(2 ** 40)],
  ]);
  try {
    const r = await fetch(`${c.url}/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        enroll_secret: secrets.enrollSecret,
        device: { id: 'bench-dev', hostname: 'bench-dev.corp.example', os: 'linux', agent_version: '0.1.0' },
      }),
    });
    if (r.status !== 200) throw new Error(`enroll ${r.status}`);
    const token = (await r.json()).device_token;
    for (let seq = 1; seq <= N; seq += BATCH) {
      let body = '';
      for (let s = seq; s < Math.min(seq + BATCH, N + 1); s++) body += `${eventLine(s)}\n`;
      const p = await fetch(`${c.url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body,
      });
      const j = await p.json();
      if (p.status !== 200 || j.accepted !== Math.min(BATCH, N + 1 - seq))
        throw new Error(`seed batch: ${p.status} ${JSON.stringify(j)}`);
    }
  } finally {
    await c.stop();
  }
}

/** The collector's `forwarded_events_total{sink}`. */
async function forwarded(url, sink) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^toolguard_collector_forwarded_events_total\\{sink="${sink}"\\} (\\d+)$`, 'm').exec(
    text,
  );
  return m ? Number(m[1]) : 0;
}

async function run(name, sink, args, env = {}) {
  const db = join(dir, `${name}.db`);
  copyFileSync(join(dir, 'seed.db'), db);
  if (existsSync(join(dir, 'seed.db-wal'))) copyFileSync(join(dir, 'seed.db-wal'), `${db}-wal`);
  const outDir = join(dir, `${name}-out`);
  const c = await startCollector(db, args(outDir), env);
  const hecBefore = { ...hec };
  try {
    const deadline = performance.now() + SCENARIO_TIMEOUT_MS;
    let t10;
    for (;;) {
      const n = await forwarded(c.url, sink);
      const now = performance.now();
      if (t10 === undefined && n >= N * 0.1) t10 = { now, n };
      if (n >= N) {
        const rate = (n - t10.n) / ((now - t10.now) / 1000);
        const ndjsonBytes = existsSync(outDir)
          ? readdirSync(outDir).reduce((s, f) => s + statSync(join(outDir, f)).size, 0)
          : 0;
        return {
          name,
          rate,
          wire: sink === 'ndjson' ? ndjsonBytes / N : (hec.wireBytes - hecBefore.wireBytes) / N,
          json: sink === 'ndjson' ? ndjsonBytes / N : (hec.jsonBytes - hecBefore.jsonBytes) / N,
          hecEvents: hec.events - hecBefore.events,
        };
      }
      if (now > deadline) throw new Error(`${name}: ${n}/${N} delivered after ${SCENARIO_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    await c.stop();
  }
}

try {
  await new Promise((r) => hecServer.listen(0, '127.0.0.1', r));
  const hecUrl = `http://127.0.0.1:${hecServer.address().port}`;
  process.stdout.write(
    `forwarder formats: ${N} events (process.blocked / agent.heartbeat / package.quarantined), ${cpus().length} CPUs, load ${loadavg()[0].toFixed(2)}\n`,
  );
  const t0 = performance.now();
  await seed(join(dir, 'seed.db'));
  process.stdout.write(`seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const ndjson = (format) => (out) => ['--ndjson-out', join(out, 'events.ndjson'), '--ndjson-format', format];
  const hecArgs =
    (format, extra = []) =>
    () => ['--splunk-hec-url', hecUrl, '--splunk-format', format, ...extra];
  const hecEnv = { TOOLGUARD_COLLECTOR_SPLUNK_HEC_TOKEN: hecToken };
  const results = [
    await run('NDJSON raw', 'ndjson', ndjson('raw')),
    await run('NDJSON OCSF', 'ndjson', ndjson('ocsf')),
    await run('NDJSON ECS', 'ndjson', ndjson('ecs')),
    await run('HEC raw', 'splunk-hec', hecArgs('raw'), hecEnv),
    await run('HEC OCSF', 'splunk-hec', hecArgs('ocsf'), hecEnv),
    await run('HEC ECS', 'splunk-hec', hecArgs('ecs'), hecEnv),
    await run('HEC raw + ack', 'splunk-hec', hecArgs('raw', ['--splunk-hec-ack', 'on']), hecEnv),
    await run('HEC raw, no gzip', 'splunk-hec', hecArgs('raw', ['--splunk-hec-gzip', 'off']), hecEnv),
  ];
  for (const r of results)
    if (r.name.startsWith('HEC') && r.hecEvents < N)
      throw new Error(`${r.name}: HEC received ${r.hecEvents} of ${N}`);
  const rows = [
    ['forwarder / format', 'events/s', 'bytes/event written or sent', 'bytes/event as JSON'],
    ...results.map((r) => [
      r.name,
      Math.round(r.rate).toLocaleString('en-US'),
      r.wire.toFixed(0),
      r.json.toFixed(0),
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const [i, r] of rows.entries()) {
    process.stdout.write(
      `${r.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  ')}\n`,
    );
    if (i === 0) process.stdout.write(`${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  }
  process.stdout.write(
    'events/s: delivered between 10 % and 100 % of the events, per the collector counter; HEC: gzip unless said, batches of 500.\n',
  );
} finally {
  hecServer.closeAllConnections();
  hecServer.close();
  rmSync(dir, { recursive: true, force: true });
}
