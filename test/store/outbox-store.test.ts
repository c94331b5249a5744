import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createRootLogger } from '../../src/common/logger.js';
import { isUuidV7 } from '../../src/common/uuidv7.js';
import { validateEvent } from '../../src/events/event-schema.js';
import { type AgentEvent, MAX_EVENT_BYTES } from '../../src/events/event-types.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore, type OutboxStoreOptions } from '../../src/store/outbox-store.js';
import { tempDir } from '../helpers/tmp.js';

const logger = createRootLogger('silent');
const dir = tempDir('tg-outbox-');
let n = 0;

function open(opts: Partial<OutboxStoreOptions> = {}, file = join(dir, `s${++n}.db`)) {
  const { db } = openDatabase(file, { migrations: MIGRATIONS });
  const outbox = new OutboxStore({
    db,
    deviceId: 'dev-1',
    hostname: 'host-1',
    maxBytes: 64 * 1024 * 1024,
    logger,
    ...opts,
  });
  return { db, outbox, file };
}

const stopped = (reason = 'test') => ['agent.stopped', { reason }] as const;

describe('OutboxStore', () => {
  test('emit fills the envelope and stores a schema-valid event before returning', () => {
    const { outbox, db } = open();
    const e = outbox.emit(...stopped()) as AgentEvent;
    expect(isUuidV7(e.id)).toBe(true);
    expect(e).toMatchObject({ seq: 1, device_id: 'dev-1', hostname: 'host-1', type: 'agent.stopped' });
    expect(validateEvent(e)).toEqual({ ok: true });
    const row = db.prepare('SELECT body FROM outbox WHERE id = ?').get(e.id) as { body: string };
    expect(JSON.parse(row.body)).toEqual(e);
    expect(outbox.depth()).toBe(1);
  });

  test('seq is monotonic and survives reopening, even after everything was acked and pruned', () => {
    const { outbox, db, file } = open({ historyMaxBytes: 0 });
    const ids = [1, 2, 3].map(() => (outbox.emit(...stopped()) as AgentEvent).id);
    expect(outbox.ack(ids)).toBe(3);
    expect(outbox.status().history_depth).toBe(0);
    db.close();
    const again = open({}, file);
    expect((again.outbox.emit(...stopped()) as AgentEvent).seq).toBe(4);
  });

  test('pending returns oldest first, bounded by count and bytes but at least one event', () => {
    const { outbox } = open();
    for (let i = 0; i < 10; i++) outbox.emit(...stopped(`r${i}`));
    expect(outbox.pending(4, 1e9).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    const one = JSON.stringify(outbox.pending(1, 1e9)[0]).length;
    expect(outbox.pending(100, one * 3 + 5)).toHaveLength(3);
    expect(outbox.pending(100, 1)).toHaveLength(1);
  });

  test('ack moves rows to history once; acking twice or unknown ids is harmless', () => {
    const { outbox } = open();
    const a = outbox.emit(...stopped()) as AgentEvent;
    const b = outbox.emit(...stopped()) as AgentEvent;
    expect(outbox.ack([a.id, 'nope'])).toBe(1);
    expect(outbox.ack([a.id])).toBe(0);
    expect(outbox.pending(10, 1e9).map((e) => e.id)).toEqual([b.id]);
    expect(outbox.list({ limit: 10 }).map((l) => [l.state, l.event.id])).toEqual([
      ['shipped', a.id],
      ['queued', b.id],
    ]);
  });

  test('setAside removes a poison event from the queue, keeps it and counts it', () => {
    const { outbox } = open();
    const a = outbox.emit(...stopped()) as AgentEvent;
    const b = outbox.emit(...stopped()) as AgentEvent;
    expect(outbox.setAside(a.id, 'collector: invalid')).toBe(true);
    expect(outbox.setAside(a.id, 'again')).toBe(false);
    expect(outbox.pending(10, 1e9).map((e) => e.id)).toEqual([b.id]);
    expect(outbox.status()).toMatchObject({ set_aside_total: 1, set_aside_depth: 1, depth: 1 });
    expect(outbox.list({ limit: 10 })[0]).toMatchObject({ state: 'set_aside', reason: 'collector: invalid' });
  });

  test('an event violating the schema is set aside (never sent), counted, and emit still returns it', () => {
    const { outbox } = open();
    const e = outbox.emit('agent.stopped', { reason: 'x', secret_field: 'nope' });
    expect(e).not.toBeNull();
    expect(outbox.depth()).toBe(0);
    expect(outbox.status().invalid_total).toBe(1);
    const [listed] = outbox.list({ limit: 1 });
    expect(listed?.state).toBe('set_aside');
    expect(listed?.reason).toContain('secret_field');
  });

  test('urgent types call onUrgent after the append; others do not', () => {
    const seen: string[] = [];
    const { outbox } = open({ onUrgent: (e) => seen.push(`${e.type}:${outbox.depth()}`) });
    outbox.emit(...stopped());
    outbox.emit('agent.tamper', { reason: 'state_db_corrupt', detail: 'x' });
    expect(seen).toEqual(['agent.tamper:2']);
  });

  test('size cap: history goes first, then the oldest unshipped events, replaced by one exact events.dropped', () => {
    const maxBytes = 64 * 1024;
    const { outbox } = open({ maxBytes, historyMaxBytes: maxBytes });
    const pad = 'x'.repeat(900);
    const first = outbox.emit(...stopped(pad)) as AgentEvent;
    outbox.ack([first.id]);
    expect(outbox.status().history_depth).toBe(1);
    const produced = 300; // ~1 KiB each: ~4.6x the cap
    for (let i = 0; i < produced; i++) outbox.emit(...stopped(pad));
    const st = outbox.status();
    expect(st.history_depth).toBe(0);
    expect(st.bytes).toBeLessThanOrEqual(maxBytes);
    const queued = outbox.pending(10_000, 1e12);
    const summaries = queued.filter((e) => e.type === 'events.dropped');
    expect(summaries).toHaveLength(1);
    const s = summaries[0] as AgentEvent & Record<string, number & string>;
    const kept = queued.filter((e) => e.type === 'agent.stopped').length;
    expect(s.count).toBe(produced - kept);
    expect(st.dropped_total).toBe(produced - kept);
    expect(s.first_seq).toBe(2);
    expect(s.last_seq).toBe((queued.find((e) => e.type === 'agent.stopped')?.seq as number) - 1);
    expect(validateEvent(s)).toEqual({ ok: true });
  });

  test('events handed out by pending (in flight) are never dropped by the cap', () => {
    const maxBytes = 64 * 1024;
    const { outbox } = open({ maxBytes });
    const pad = 'y'.repeat(900);
    for (let i = 0; i < 40; i++) outbox.emit(...stopped(pad));
    const inflight = outbox.pending(5, 1e9).map((e) => e.id);
    for (let i = 0; i < 200; i++) outbox.emit(...stopped(pad));
    const queued = outbox.pending(10_000, 1e12).map((e) => e.id);
    for (const id of inflight) expect(queued).toContain(id);
  });

  test('an event over the collector line limit has its command line cut from the end, and says how much', () => {
    const { outbox } = open();
    const argv = [
      'claude',
      ...Array.from({ length: 255 }, (_, i) => `${i}`.padEnd(4096, 'é')),
      '[+9 more arguments]',
    ];
    const e = outbox.emit('process.warned', {
      uid: 1000,
      user: 'alice',
      pid: 7,
      ppid: 1,
      name: 'claude',
      exe: '/usr/local/bin/claude',
      argv,
      start_time: 1,
      tty: null,
      rule: { id: 'claude-code', name: 'Claude Code', action: 'warn' },
      reason: 'name',
      policy_version: 1,
      mode: 'enforce',
      outcome: { action_taken: 'warned', latency_ms: 1, error: null },
    }) as AgentEvent & { argv: string[] };
    expect(validateEvent(e)).toEqual({ ok: true });
    expect(Buffer.byteLength(JSON.stringify(e))).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    expect(outbox.depth()).toBe(1); // queued to be sent, not set aside
    const kept = e.argv.slice(0, -1);
    expect(kept).toEqual(argv.slice(0, kept.length)); // a prefix, unchanged
    const more = Number(/^\[\+(\d+) more arguments\]$/.exec(e.argv.at(-1) as string)?.[1]);
    expect(kept.length - 1 + more).toBe(255 + 9); // every argument is still accounted for
    // small events are untouched
    const small = outbox.emit('process.warned', {
      ...e,
      argv: ['claude', '[+3 more arguments]'],
    }) as AgentEvent;
    expect(small.argv).toEqual(['claude', '[+3 more arguments]']);
  });

  test('list filters by seq, time and type and returns the newest matches in seq order', () => {
    let t = Date.parse('2026-11-24T10:00:00Z');
    const { outbox } = open({ now: () => t });
    for (let i = 0; i < 5; i++) {
      outbox.emit(...stopped(`r${i}`));
      t += 60_000;
    }
    outbox.emit('agent.tamper', { reason: 'x', detail: 'y' });
    expect(outbox.list({ sinceSeq: 3, limit: 10 }).map((l) => l.event.seq)).toEqual([4, 5, 6]);
    expect(outbox.list({ sinceTime: '2026-11-24T10:03:00.000Z', limit: 10 }).map((l) => l.event.seq)).toEqual(
      [4, 5, 6],
    );
    expect(outbox.list({ type: 'agent.tamper', limit: 10 }).map((l) => l.event.seq)).toEqual([6]);
    expect(outbox.list({ limit: 2 }).map((l) => l.event.seq)).toEqual([5, 6]);
  });

  test('a storage failure is counted and returns null instead of throwing', () => {
    const { outbox, db } = open();
    db.close();
    expect(outbox.emit(...stopped())).toBeNull();
    expect(outbox.status().emit_failed).toBe(1);
  });
});
