/**
 * Acceptance fault tests with real processes: guard-collector (bin/guard-collector.js) and a
 * shipping agent (test/fixtures/shipping/ship-agent.js: OutboxStore + Shipper from dist/) as
 * children. Every event carries a per-device seq assigned in the same transaction that stores it,
 * so "nothing lost, nothing twice" is checked exactly: the collector must hold seq 1..N once each
 * (or account for the gaps with events.dropped when the disk cap was hit).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, test } from 'vitest';
import { ROOT } from '../helpers/daemon.js';
import { startHttpGate } from '../helpers/http-gate.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tg-fault-');
const SECRET = 'fault-test-enroll-secret-0123456789';
writeFileSync(join(dir, 'enroll-secret'), SECRET, { mode: 0o600 });
writeFileSync(join(dir, 'admin-token'), 'fault-test-admin-token-0123456789', { mode: 0o600 });
const AGENT = join(ROOT, 'test/fixtures/shipping/ship-agent.js');
/**
 * Deadline of one observed step (a process start, a batch on the wire). Generous: on a loaded
 * 2-core machine, and under faketime (every clock read intercepted), an agent start alone takes
 * seconds. Only failures wait this long.
 */
const STEP_MS = 120_000;
/** Each test below starts up to 21 agents or 7 collectors in turn: bounded by the steps, not by vitest's default. */
const TEST_MS = 600_000;

interface Proc {
  child: ChildProcess;
  out: () => string;
  lines: () => Record<string, unknown>[];
  exited: Promise<number | null>;
  kill9(): Promise<void>;
}
const all: Proc[] = [];
afterAll(async () => {
  for (const p of all) await p.kill9();
});

function run(args: string[]): Proc {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const p: Proc = {
    child,
    out: () => out,
    lines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    exited,
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  all.push(p);
  return p;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startCollector(port: number, dbFile: string): Promise<Proc> {
  const p = run([
    join(ROOT, 'bin/guard-collector.js'),
    '--listen',
    `127.0.0.1:${port}`,
    '--db',
    dbFile,
    '--enroll-secret-file',
    join(dir, 'enroll-secret'),
    '--admin-token-file',
    join(dir, 'admin-token'),
    '--rate-limit',
    '10000',
    '--rate-burst',
    '10000',
    '--log-level',
    'warn',
  ]);
  await waitFor(
    () => {
      if (p.child.exitCode !== null) throw new Error(`collector exited: ${p.out()}`);
      return p.out().includes('listening on');
    },
    'collector to listen',
    { timeoutMs: STEP_MS },
  );
  return p;
}

function agent(db: string, url: string, device: string, extra: string[] = []): Proc {
  return run([AGENT, '--db', db, '--url', url, '--secret', SECRET, '--device', device, ...extra]);
}

/** The collector's rows of one device (read-only; the collector may be running, WAL allows it). */
function stored(dbFile: string, device: string): { seq: number; type: string; body: string }[] {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return db.prepare('SELECT seq, type, body FROM events WHERE device_id = ? ORDER BY seq').all(device) as {
      seq: number;
      type: string;
      body: string;
    }[];
  } catch {
    return [];
  } finally {
    db.close();
  }
}

/** The seqs in an agent's outbox (not acknowledged by the collector); read-only, WAL lets the agent run on. */
function outboxSeqs(dbFile: string): number[] {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT seq FROM outbox ORDER BY seq').all() as { seq: number }[]).map((r) => r.seq);
  } finally {
    db.close();
  }
}

function expectExactlyOnce(rows: { seq: number }[], n: number): void {
  const seqs = rows.map((r) => r.seq);
  expect(seqs.length).toBe(n);
  expect(new Set(seqs).size).toBe(n);
  expect(seqs[0]).toBe(1);
  expect(seqs[n - 1]).toBe(n);
}

describe('shipping fault tests (real processes)', { timeout: TEST_MS }, () => {
  test('collector down while 10,000 events are produced, then up: all stored exactly once', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const cdb = join(dir, 'c1.db');
    const a = agent(join(dir, 'a1.db'), url, 'dev-down', [
      '--produce',
      '10000',
      '--per-tick',
      '500',
      '--tick-ms',
      '1',
      '--batch',
      '500',
      '--exit-when-drained',
    ]);
    await waitFor(() => a.lines().some((l) => l.produced === 10000), 'agent to produce 10,000 events', {
      timeoutMs: STEP_MS,
    });
    const produced = a.lines().find((l) => l.produced) as { status: { depth: number } };
    expect(produced.status.depth).toBe(10000); // nothing could be sent
    const c = await startCollector(port, cdb);
    await waitFor(() => a.lines().some((l) => l.drained), 'agent to drain its outbox', {
      timeoutMs: STEP_MS,
    });
    expect(await a.exited).toBe(0);
    expectExactlyOnce(stored(cdb, 'dev-down'), 10000);
    await c.kill9();
  });

  test('kill -9 of the shipping agent in 20 observed shipping states: nothing lost, nothing twice', async () => {
    const cport = await freePort();
    const cdb = join(dir, 'c2.db');
    const c = await startCollector(cport, cdb);
    const gate = await startHttpGate(cport);
    const adb = join(dir, 'a2.db');
    const N = 4000;
    const args = [
      '--produce',
      String(N),
      '--per-tick',
      '10',
      '--tick-ms',
      '2',
      '--batch',
      '50',
      '--interval-ms',
      '20',
    ];
    // Three states, in turn, each reached by what the gate sees on the wire (the agent keeps
    // producing meanwhile): the collector stored a batch and its answer is held (the ack is lost);
    // a batch is in flight (the collector may be anywhere in its ingest); one batch was
    // acknowledged (and deleted) and the next one is in flight.
    const states = ['ack-lost', 'in-flight', 'after-ack'] as const;
    for (let k = 0; k < 20; k++) {
      const state = states[k % states.length] ?? 'in-flight';
      gate.forwardThenHold(state === 'after-ack' ? 1 : 0);
      const { requests, held } = gate;
      const a = agent(adb, gate.url, 'dev-kill', args);
      if (state === 'ack-lost')
        await waitFor(() => gate.held > held, 'the collector to answer a batch', { timeoutMs: STEP_MS });
      else if (state === 'in-flight')
        await waitFor(() => gate.requests > requests, 'a batch to be sent', { timeoutMs: STEP_MS });
      else
        await waitFor(() => gate.requests > requests + 1, 'a second batch after an acknowledged one', {
          timeoutMs: STEP_MS,
        });
      await a.kill9();
      // The batch in flight was never acknowledged to the agent: its outbox still holds it.
      const unacked = outboxSeqs(adb);
      expect(unacked.length, `kill ${k} (${state})`).toBeGreaterThan(0);
      // ack-lost: the collector stored (now or earlier) events the agent will send again.
      if (state === 'ack-lost') {
        const have = new Set(stored(cdb, 'dev-kill').map((r) => r.seq));
        expect(
          unacked.some((seq) => have.has(seq)),
          `kill ${k} (${state})`,
        ).toBe(true);
      }
    }
    gate.forwardThenHold(Number.POSITIVE_INFINITY);
    const last = agent(adb, gate.url, 'dev-kill', [...args, '--exit-when-drained']);
    await waitFor(() => last.lines().some((l) => l.drained), 'final agent to drain', { timeoutMs: STEP_MS });
    expectExactlyOnce(stored(cdb, 'dev-kill'), N);
    await gate.close();
    await c.kill9();
  });

  test('kill -9 of the collector mid-batch (6 times): nothing lost, nothing twice', async () => {
    const port = await freePort();
    const cdb = join(dir, 'c3.db');
    let c = await startCollector(port, cdb);
    const gate = await startHttpGate(port);
    const N = 6000;
    const adb = join(dir, 'a3.db');
    const a = agent(adb, gate.url, 'dev-ckill', [
      '--produce',
      String(N),
      '--per-tick',
      '20',
      '--tick-ms',
      '2',
      '--batch',
      '200',
      '--interval-ms',
      '10',
      '--exit-when-drained',
    ]);
    for (let k = 0; k < 6; k++) {
      // One batch goes through (the agent makes progress), then the collector dies either after it
      // stored the next batch but before the agent saw the answer, or as soon as that batch reached it.
      const answered = k % 2 === 0;
      const { requests, held } = gate;
      gate.forwardThenHold(1);
      if (answered)
        await waitFor(() => gate.held > held, 'the collector to answer a batch', { timeoutMs: STEP_MS });
      else
        await waitFor(() => gate.requests > requests + 1, 'a batch to reach the collector', {
          timeoutMs: STEP_MS,
        });
      await c.kill9();
      if (answered) {
        // The collector stored a batch the agent never saw acknowledged: it is in both places.
        const have = new Set(stored(cdb, 'dev-ckill').map((r) => r.seq));
        expect(
          outboxSeqs(adb).some((seq) => have.has(seq)),
          `kill ${k}`,
        ).toBe(true);
      }
      c = await startCollector(port, cdb);
    }
    gate.forwardThenHold(Number.POSITIVE_INFINITY);
    await waitFor(() => a.lines().some((l) => l.drained), 'agent to drain', { timeoutMs: STEP_MS });
    expectExactlyOnce(stored(cdb, 'dev-ckill'), N);
    await gate.close();
    await c.kill9();
  });

  test('disk-cap overflow: the dropped count is exact and reported', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const cdb = join(dir, 'c4.db');
    const N = 3000;
    const a = agent(join(dir, 'a4.db'), url, 'dev-cap', [
      '--produce',
      String(N),
      '--per-tick',
      '100',
      '--tick-ms',
      '1',
      '--max-bytes',
      String(64 * 1024),
      '--exit-when-drained',
    ]);
    await waitFor(() => a.lines().some((l) => l.produced), 'agent to produce', { timeoutMs: STEP_MS });
    const produced = a.lines().find((l) => l.produced) as {
      status: { dropped_total: number; depth: number };
    };
    expect(produced.status.dropped_total).toBeGreaterThan(0);
    const c = await startCollector(port, cdb);
    await waitFor(() => a.lines().some((l) => l.drained), 'agent to drain', { timeoutMs: STEP_MS });
    const rows = stored(cdb, 'dev-cap');
    const summaries = rows.filter((r) => r.type === 'events.dropped').map((r) => JSON.parse(r.body));
    expect(summaries.length).toBeGreaterThan(0);
    const droppedReported = summaries.reduce((s, x) => s + x.count, 0);
    // every seq 1..N is either stored once or inside a reported dropped range, and the counts add up
    expect(new Set(rows.map((r) => r.seq)).size).toBe(rows.length);
    expect(rows.length + droppedReported).toBe(N);
    expect(droppedReported).toBe(produced.status.dropped_total);
    const have = new Set(rows.map((r) => r.seq));
    for (let s = 1; s <= N; s++)
      if (!have.has(s))
        expect(
          summaries.some((x) => x.first_seq <= s && s <= x.last_seq),
          `seq ${s}`,
        ).toBe(true);
    await c.kill9();
  });
});
