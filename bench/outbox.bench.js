// Outbox append benchmark (the agent's SQLite event outbox, from dist/): events/s of
// OutboxStore.emit — one transaction per event, schema validation, seq persisted — with the
// synchronous setting guardd uses (FULL: one WAL fsync per commit, survives power loss) and the
// alternative (NORMAL: survives kill -9, may lose the last commits on power loss), plus the
// shipping side (pending + ack of 500-event batches) for both. Prints measured numbers only.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootLogger } from '../dist/common/logger.js';
import { openDatabase } from '../dist/store/database.js';
import { MIGRATIONS } from '../dist/store/migrations.js';
import { OutboxStore } from '../dist/store/outbox-store.js';

/** Appends timed per setting: enough for a stable rate, small enough to finish in seconds. */
const APPENDS = 5000;
/** Batch size of the ship phase (the default shipper.batch_max_events). */
const BATCH = 500;
const logger = createRootLogger('silent');
const dir = mkdtempSync(join(tmpdir(), 'tg-outbox-bench-'));

/** A realistic process.blocked event (~700 bytes of JSON once enveloped). */
function fields(i) {
  return {
    uid: 1000,
    user: 'alice',
    pid: 10_000 + i,
    ppid: 4000,
    name: 'claude',
    exe: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code/cli.js',
    argv: ['node', '/home/alice/.npm-global/bin/claude', '--print', `task ${i}`],
    start_time: 123456 + i,
    tty: '/dev/pts/3',
    rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
    reason: 'script_package',
    policy_version: 12,
    mode: 'enforce',
    outcome: {
      action_taken: 'killed',
      latency_ms: 41.5,
      error: null,
      details: { killed: [10_000 + i], notified: { terminal: true, desktop: true } },
    },
  };
}

function run(synchronous) {
  const { db } = openDatabase(join(dir, `${synchronous}.db`), { migrations: MIGRATIONS, synchronous });
  const outbox = new OutboxStore({
    db,
    deviceId: 'bench',
    hostname: 'bench-host',
    maxBytes: 1 << 30,
    logger,
  });
  const lat = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < APPENDS; i++) {
    const s = process.hrtime.bigint();
    if (!outbox.emit('process.blocked', fields(i))) throw new Error('append failed');
    lat.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  const appendS = Number(process.hrtime.bigint() - t0) / 1e9;
  const t1 = process.hrtime.bigint();
  let shipped = 0;
  for (;;) {
    const batch = outbox.pending(BATCH, 1 << 20);
    if (batch.length === 0) break;
    shipped += outbox.ack(batch.map((e) => e.id));
  }
  const shipS = Number(process.hrtime.bigint() - t1) / 1e9;
  if (shipped !== APPENDS) throw new Error(`shipped ${shipped} of ${APPENDS}`);
  lat.sort((a, b) => a - b);
  const bytes = outbox.status().history_bytes / APPENDS;
  db.close();
  return {
    synchronous,
    appendPerS: APPENDS / appendS,
    p50: lat[Math.floor(lat.length * 0.5)],
    p99: lat[Math.floor(lat.length * 0.99)],
    shipPerS: APPENDS / shipS,
    bytes,
  };
}

try {
  const rows = [run('FULL'), run('NORMAL')];
  const full = rows[0];
  const pad = (s, n) => String(s).padStart(n);
  process.stdout.write(
    `outbox append: ${APPENDS} process.blocked events (~${Math.round(full.bytes)} B each), one transaction per event; ship = pending+ack in ${BATCH}-event batches\n`,
  );
  process.stdout.write(
    `${'synchronous'.padEnd(12)}${pad('append ev/s', 13)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('ship ev/s', 12)}${pad('vs FULL', 9)}\n`,
  );
  for (const r of rows)
    process.stdout.write(
      `${(r.synchronous + (r.synchronous === 'FULL' ? ' (used)' : '')).padEnd(12)}${pad(Math.round(r.appendPerS), 13)}${pad(r.p50.toFixed(3), 9)}${pad(r.p99.toFixed(3), 9)}${pad(Math.round(r.shipPerS), 12)}${pad(`${(r.appendPerS / full.appendPerS).toFixed(2)}x`, 9)}\n`,
    );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
