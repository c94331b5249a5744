/**
 * Owns the agent's event outbox (SQLite): every event is appended here, durably and in one
 * transaction, before `emit` returns and before anything is sent; the shipper reads `pending`
 * batches in seq order and `ack`s what the collector stored, which moves those rows to the local
 * history (for `guardctl events`) — nothing leaves the outbox without an acknowledgement.
 *
 * Size cap (osquery's buffered logger: purge past a cap): when outbox + history + set-aside rows
 * would exceed `maxBytes`, the history goes first, then set-aside rows, then the OLDEST unshipped
 * events; dropped unshipped events are replaced by ONE `events.dropped` event with the exact count
 * and seq/time range (a later overflow that drops that summary too folds its count into the new one).
 *
 * Durability: the DB is in WAL mode. With `synchronous=NORMAL` a commit is in the WAL file before
 * `emit` returns, so `kill -9` of guardd at any moment loses nothing; only an OS crash or power loss
 * could lose the last commits. The agent keeps the opener's default `FULL` (one WAL fsync per
 * commit) because a block event must survive a power cut too, and events are rare (bench/outbox.bench.js
 * measures both: FULL still appends thousands of events per second, far above any real rate).
 */
import { GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { uuidv7 } from '../common/uuidv7.js';
import { AGENT_VERSION } from '../common/version.js';
import type { ControlMethods } from '../control/protocol.js';
import { validateEvent } from '../events/event-schema.js';
import {
  type AgentEvent,
  EVENT_TYPES,
  type EventSink,
  type EventType,
  MAX_EVENT_BYTES,
} from '../events/event-types.js';
import type { Db } from './database.js';

/** Event types the shipper sends at once rather than at its next interval. */
export const URGENT_EVENT_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  'process.blocked',
  'process.denied',
  'package.quarantined',
  'path.quarantined',
  'policy.rejected',
  'agent.tamper',
]);

/** Room kept for the events.dropped summary row when making space (its JSON is ~450 bytes). */
const DROPPED_SUMMARY_RESERVE_BYTES = 1024;
/** Shipped history is kept at most this long for `guardctl events` (ms): 30 days. */
export const DEFAULT_HISTORY_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
/** A single set-aside reason is cut to this many characters (it may quote hostile collector text). */
const MAX_REASON_CHARS = 1000;
/** Rows deleted per statement while making room: bounds one transaction's work. */
const PRUNE_CHUNK = 500;

/** The default cap of the shipped history: a quarter of the outbox cap, so unsent events keep most of the room. */
export function historyMaxBytesFor(maxBytes: number): number {
  return Math.floor(maxBytes / 4);
}

export interface OutboxStoreOptions {
  /** The agent state DB (opened with openDatabase + MIGRATIONS). */
  readonly db: Db;
  readonly deviceId: string;
  readonly hostname: string;
  /** Cap of outbox + history + set-aside bytes (event JSON), e.g. `outbox.max_bytes`. */
  readonly maxBytes: number;
  /** Cap of the shipped history alone; default a quarter of maxBytes. */
  readonly historyMaxBytes?: number;
  /** Shipped history older than this is pruned (ms); default 30 days. */
  readonly historyMaxAgeMs?: number;
  readonly logger: Logger;
  /** Called after an urgent event (URGENT_EVENT_TYPES) is durably appended; must not throw. */
  readonly onUrgent?: (event: AgentEvent) => void;
  /** Defaults to the package version. */
  readonly agentVersion?: string;
  /** Clock (ms since the epoch); tests pass a fake. */
  readonly now?: () => number;
}

export type ListedEventState = 'queued' | 'shipped' | 'set_aside';

/** One row of `list`: the event exactly as stored (and sent), plus where it is now. */
export interface ListedEvent {
  readonly state: ListedEventState;
  /** For set-aside events: why. */
  readonly reason?: string;
  readonly event: AgentEvent;
}

export interface ListQuery {
  /** Only events with seq > sinceSeq. */
  readonly sinceSeq?: number;
  /** Only events with time >= sinceTime (RFC 3339). */
  readonly sinceTime?: string;
  readonly type?: EventType;
  /** At most this many: the newest that match (or the oldest with `oldestFirst`), in seq order. */
  readonly limit: number;
  /** Take the oldest matches rather than the newest (follow mode pages forward from sinceSeq). */
  readonly oldestFirst?: boolean;
}

export interface OutboxStatus {
  /** Events waiting to be shipped. */
  readonly depth: number;
  /** Bytes of those events. */
  readonly bytes: number;
  /** Events dropped by the size cap since the DB was created. */
  readonly dropped_total: number;
  /** Events set aside (poison / invalid) since the DB was created. */
  readonly set_aside_total: number;
  /** Events that failed the schema at append (set aside instead of queued), since the DB was created. */
  readonly invalid_total: number;
  /** Appends that failed (storage error) since start; those events are lost and logged. */
  readonly emit_failed: number;
  readonly history_depth: number;
  readonly history_bytes: number;
  readonly set_aside_depth: number;
  readonly last_seq: number;
  readonly max_bytes: number;
}

interface Row {
  seq: number;
  id: string;
  type: string;
  time: string;
  body: string;
  bytes: number;
}

const STATE_LAST_SEQ = 'outbox.last_seq';
const STATE_DROPPED = 'outbox.dropped_total';
const STATE_SET_ASIDE = 'outbox.set_aside_total';
const STATE_INVALID = 'outbox.invalid_total';
/** seq of the events.dropped summary not yet offered to the collector (0 = none). */
const STATE_OPEN_DROPPED = 'outbox.open_dropped_seq';

interface DroppedSummary {
  count: number;
  first_seq: number;
  last_seq: number;
  first_time: string;
  last_time: string;
}

export class OutboxStore implements EventSink {
  private readonly db: Db;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly historyMaxBytes: number;
  private readonly historyMaxAgeMs: number;
  private readonly agentVersion: string;
  private lastSeq: number;
  private outboxBytes = 0;
  private outboxDepth = 0;
  private historyBytes = 0;
  private historyDepth = 0;
  private asideBytes = 0;
  private asideDepth = 0;
  private emitFailed = 0;
  /** seqs handed out by the last `pending` and not acked yet: never dropped by the cap (in flight). */
  private leased = new Set<number>();
  private readonly counters = new Map<string, number>();
  private readonly stmt;

  constructor(private readonly options: OutboxStoreOptions) {
    this.db = options.db;
    this.log = options.logger.child({ component: 'store.outbox' });
    this.now = options.now ?? Date.now;
    this.historyMaxBytes = options.historyMaxBytes ?? historyMaxBytesFor(options.maxBytes);
    this.historyMaxAgeMs = options.historyMaxAgeMs ?? DEFAULT_HISTORY_MAX_AGE_MS;
    this.agentVersion = options.agentVersion ?? AGENT_VERSION;
    const db = this.db;
    this.stmt = {
      getState: db.prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?'),
      setState: db.prepare(
        'INSERT INTO state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
      ),
      insert: db.prepare('INSERT INTO outbox(seq, id, type, time, body, bytes) VALUES (?, ?, ?, ?, ?, ?)'),
      insertAside: db.prepare(
        'INSERT INTO outbox_aside(seq, id, type, time, body, bytes, reason, set_aside_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      pending: db.prepare<[number], Row>('SELECT * FROM outbox ORDER BY seq LIMIT ?'),
      byId: db.prepare<[string], Row>('SELECT * FROM outbox WHERE id = ?'),
      deleteSeq: db.prepare('DELETE FROM outbox WHERE seq = ?'),
      toHistory: db.prepare(
        'INSERT OR IGNORE INTO event_history(seq, id, type, time, body, bytes) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      droppable: db.prepare<[number], Row>(
        "SELECT * FROM outbox WHERE type <> 'events.dropped' ORDER BY seq LIMIT ?",
      ),
      bySeq: db.prepare<[number], Row>('SELECT * FROM outbox WHERE seq = ?'),
      updateBody: db.prepare('UPDATE outbox SET body = ?, bytes = ? WHERE seq = ?'),
      oldestHistory: db.prepare<[number], { seq: number; bytes: number; time: string }>(
        'SELECT seq, bytes, time FROM event_history ORDER BY seq LIMIT ?',
      ),
      deleteHistory: db.prepare('DELETE FROM event_history WHERE seq = ?'),
      oldestAside: db.prepare<[number], { seq: number; bytes: number }>(
        'SELECT seq, bytes FROM outbox_aside ORDER BY seq LIMIT ?',
      ),
      deleteAside: db.prepare('DELETE FROM outbox_aside WHERE seq = ?'),
    };
    const maxSeq = (table: string): number =>
      (db.prepare(`SELECT COALESCE(MAX(seq), 0) AS m FROM ${table}`).get() as { m: number }).m;
    this.lastSeq = Math.max(
      this.counter(STATE_LAST_SEQ),
      maxSeq('outbox'),
      maxSeq('event_history'),
      maxSeq('outbox_aside'),
    );
    this.recount();
  }

  private loadCounters(): void {
    for (const key of [STATE_LAST_SEQ, STATE_DROPPED, STATE_SET_ASIDE, STATE_INVALID, STATE_OPEN_DROPPED])
      this.counter(key);
  }

  /**
   * Appends one event durably (one transaction: seq, cap enforcement, row) and returns it exactly
   * as it will be sent. An event that fails the schema is stored set aside (never sent: nothing
   * undocumented leaves the machine), counted and logged. Returns null only when storage failed
   * (logged and counted in `emit_failed`). Never throws.
   */
  emit(type: EventType, fields: Readonly<Record<string, unknown>>): AgentEvent | null {
    let event: AgentEvent;
    let invalid: string[] | null = null;
    try {
      const nowMs = this.now();
      const event0 = fitToWire({
        ...fields,
        id: uuidv7(nowMs),
        time: new Date(nowMs).toISOString(),
        seq: 0,
        device_id: this.options.deviceId,
        hostname: this.options.hostname,
        type,
        agent_version: this.agentVersion,
      });
      event = this.db.transaction(() => {
        const e = { ...event0, seq: this.nextSeq() } as AgentEvent;
        const body = JSON.stringify(e);
        const bytes = Buffer.byteLength(body);
        const v = validateEvent(e);
        if (!v.ok) {
          invalid = v.errors;
          this.makeRoom(bytes);
          this.stmt.insertAside.run(
            e.seq,
            e.id,
            type,
            e.time,
            body,
            bytes,
            `schema: ${v.errors.join('; ')}`.slice(0, MAX_REASON_CHARS),
            e.time,
          );
          this.bump(STATE_INVALID, 1);
          this.asideBytes += bytes;
          this.asideDepth++;
          return e;
        }
        this.makeRoom(bytes);
        this.stmt.insert.run(e.seq, e.id, type, e.time, body, bytes);
        this.outboxBytes += bytes;
        this.outboxDepth++;
        return e;
      })();
    } catch (err) {
      this.emitFailed++;
      this.recount();
      this.log.error({ err, type }, 'event append failed; event lost');
      return null;
    }
    if (invalid) {
      this.log.error(
        { type, id: event.id, errors: invalid },
        'event violates the schema; set aside, not sent (fix the emitter)',
      );
    } else if (URGENT_EVENT_TYPES.has(type) && this.options.onUrgent) {
      try {
        this.options.onUrgent(event);
      } catch (err) {
        this.log.error({ err }, 'onUrgent callback threw');
      }
    }
    return event;
  }

  /**
   * The oldest queued events in seq order: at most `limit`, and at most `maxBytes` of JSON (but
   * always at least one event when any is queued, so a single large event is still offered).
   * The returned events are "in flight" until the next `pending` call: the size cap never drops them.
   */
  pending(limit: number, maxBytes: number): AgentEvent[] {
    const rows = this.stmt.pending.all(Math.max(1, Math.floor(limit)));
    const out: AgentEvent[] = [];
    let total = 0;
    this.leased = new Set();
    for (const r of rows) {
      if (out.length > 0 && total + r.bytes > maxBytes) break;
      total += r.bytes;
      out.push(JSON.parse(r.body) as AgentEvent);
      this.leased.add(r.seq);
    }
    // Once offered, a summary may be stored at the collector: later drops start a new one.
    const openSeq = this.counter(STATE_OPEN_DROPPED);
    if (openSeq > 0 && this.leased.has(openSeq)) this.setCounter(STATE_OPEN_DROPPED, 0);
    return out;
  }

  /**
   * Marks events as stored by the collector: moves them to the history and deletes them from the
   * outbox, in one transaction. Unknown ids (already acked, dropped) are ignored, so acking twice
   * is safe. Returns how many rows were acknowledged now.
   */
  ack(ids: readonly string[]): number {
    if (ids.length === 0) return 0;
    let n = 0;
    try {
      this.db.transaction(() => {
        for (const id of ids) {
          const row = this.stmt.byId.get(id);
          if (!row) continue;
          this.stmt.toHistory.run(row.seq, row.id, row.type, row.time, row.body, row.bytes);
          this.stmt.deleteSeq.run(row.seq);
          this.leased.delete(row.seq);
          this.outboxBytes -= row.bytes;
          this.outboxDepth--;
          this.historyBytes += row.bytes;
          this.historyDepth++;
          n++;
        }
        this.pruneHistory();
      })();
    } catch (err) {
      this.recount();
      throw err;
    }
    return n;
  }

  /**
   * Moves one queued event out of the queue (the collector refused it as invalid, or it is too
   * large to ever be accepted), keeping it with `reason` for `guardctl events`; counted in
   * `set_aside_total`. Returns false when no queued event has that id.
   */
  setAside(id: string, reason: string): boolean {
    let moved = false;
    try {
      this.db.transaction(() => {
        const row = this.stmt.byId.get(id);
        if (!row) return;
        this.stmt.insertAside.run(
          row.seq,
          row.id,
          row.type,
          row.time,
          row.body,
          row.bytes,
          reason.slice(0, MAX_REASON_CHARS),
          new Date(this.now()).toISOString(),
        );
        this.stmt.deleteSeq.run(row.seq);
        this.bump(STATE_SET_ASIDE, 1);
        this.leased.delete(row.seq);
        this.outboxBytes -= row.bytes;
        this.outboxDepth--;
        this.asideBytes += row.bytes;
        this.asideDepth++;
        moved = true;
      })();
    } catch (err) {
      this.recount();
      throw err;
    }
    if (moved) this.log.warn({ id, reason: reason.slice(0, 200) }, 'event set aside');
    return moved;
  }

  /** Events waiting to be shipped. */
  depth(): number {
    return this.outboxDepth;
  }

  status(): OutboxStatus {
    return {
      depth: this.outboxDepth,
      bytes: this.outboxBytes,
      dropped_total: this.counter(STATE_DROPPED),
      set_aside_total: this.counter(STATE_SET_ASIDE),
      invalid_total: this.counter(STATE_INVALID),
      emit_failed: this.emitFailed,
      history_depth: this.historyDepth,
      history_bytes: this.historyBytes,
      set_aside_depth: this.asideDepth,
      last_seq: this.lastSeq,
      max_bytes: this.options.maxBytes,
    };
  }

  /**
   * Events recorded on this machine (queued, shipped history, set aside), oldest first: the newest
   * `limit` that match. For `guardctl events`.
   */
  list(query: ListQuery): ListedEvent[] {
    return this.listPage(query, Number.POSITIVE_INFINITY).events;
  }

  /**
   * Like `list`, but stops reading once the events' JSON passes `maxBytes` (whole events, at
   * least one), from the end the query asks for: memory stays bounded whatever `limit` is and
   * however large the events are. `truncated` says that matches were left out.
   */
  listPage(query: ListQuery, maxBytes: number): { events: ListedEvent[]; truncated: boolean } {
    const limit = Math.max(1, Math.min(Math.floor(query.limit), 100_000));
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (query.sinceSeq !== undefined) {
      where.push('seq > ?');
      params.push(query.sinceSeq);
    }
    if (query.sinceTime !== undefined) {
      where.push('time >= ?');
      params.push(query.sinceTime);
    }
    if (query.type !== undefined) {
      where.push('type = ?');
      params.push(query.type);
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const sql = `SELECT * FROM (
        SELECT seq, body, 'queued' AS state, NULL AS reason FROM outbox ${w}
        UNION ALL SELECT seq, body, 'shipped' AS state, NULL AS reason FROM event_history ${w}
        UNION ALL SELECT seq, body, 'set_aside' AS state, reason FROM outbox_aside ${w}
      ) ORDER BY seq ${query.oldestFirst ? 'ASC' : 'DESC'} LIMIT ?`;
    const rows: { body: string; state: ListedEventState; reason: string | null }[] = [];
    let bytes = 0;
    let truncated = false;
    for (const r of this.db.prepare(sql).iterate(...params, ...params, ...params, limit) as Iterable<{
      body: string;
      state: ListedEventState;
      reason: string | null;
    }>) {
      bytes += r.body.length + LISTED_EVENT_OVERHEAD_BYTES;
      if (bytes > maxBytes && rows.length > 0) {
        truncated = true;
        break; // leaving the loop early ends the statement (iterator return)
      }
      rows.push(r);
    }
    if (!query.oldestFirst) rows.reverse();
    return {
      events: rows.map((r) => ({
        state: r.state,
        ...(r.reason !== null ? { reason: r.reason } : {}),
        event: JSON.parse(r.body) as AgentEvent,
      })),
      truncated,
    };
  }

  private nextSeq(): number {
    this.lastSeq++;
    this.setCounter(STATE_LAST_SEQ, this.lastSeq);
    return this.lastSeq;
  }

  /** A persisted counter, cached in memory (reloaded by `recount` after a failed transaction). */
  private counter(key: string): number {
    let v = this.counters.get(key);
    if (v === undefined) {
      const row = this.stmt.getState.get(key);
      const parsed = row ? (JSON.parse(row.value) as unknown) : 0;
      v = typeof parsed === 'number' && Number.isSafeInteger(parsed) ? parsed : 0;
      this.counters.set(key, v);
    }
    return v;
  }

  private setCounter(key: string, value: number): void {
    this.stmt.setState.run(key, JSON.stringify(value));
    this.counters.set(key, value);
  }

  private bump(key: string, by: number): void {
    this.setCounter(key, this.counter(key) + by);
  }

  private total(): number {
    return this.outboxBytes + this.historyBytes + this.asideBytes;
  }

  /**
   * Inside the caller's transaction: frees space for `incoming` bytes. History first, then
   * set-aside rows, then the oldest queued events that are not in flight, which are replaced by
   * one events.dropped summary (folding in any summary it drops).
   */
  private makeRoom(incoming: number): void {
    const max = this.options.maxBytes;
    if (this.total() + incoming <= max) return;
    while (this.total() + incoming > max && this.historyDepth > 0) {
      const rows = this.stmt.oldestHistory.all(PRUNE_CHUNK);
      if (rows.length === 0) break;
      for (const r of rows) {
        if (this.total() + incoming <= max) break;
        this.stmt.deleteHistory.run(r.seq);
        this.historyBytes -= r.bytes;
        this.historyDepth--;
      }
    }
    while (this.total() + incoming > max && this.asideDepth > 0) {
      const rows = this.stmt.oldestAside.all(PRUNE_CHUNK);
      if (rows.length === 0) break;
      for (const r of rows) {
        if (this.total() + incoming <= max) break;
        this.stmt.deleteAside.run(r.seq);
        this.asideBytes -= r.bytes;
        this.asideDepth--;
      }
    }
    if (this.total() + incoming <= max) return;
    // Drop the oldest queued events; leave room for the summary that replaces them. Summaries
    // themselves are never dropped (tiny, and one already offered to the collector may be stored there).
    const need = incoming + DROPPED_SUMMARY_RESERVE_BYTES;
    let count = 0;
    let firstSeq = Number.POSITIVE_INFINITY;
    let lastSeq = 0;
    let firstTime = '';
    let lastTime = '';
    for (let round = 0; round < 100_000 && this.total() + need > max; round++) {
      const rows = this.stmt.droppable
        .all(PRUNE_CHUNK + this.leased.size)
        .filter((r) => !this.leased.has(r.seq));
      if (rows.length === 0) break; // only in-flight rows left: the cap is exceeded until they are acked
      for (const r of rows) {
        if (this.total() + need <= max) break;
        this.stmt.deleteSeq.run(r.seq);
        this.outboxBytes -= r.bytes;
        this.outboxDepth--;
        count++;
        if (r.seq < firstSeq) {
          firstSeq = r.seq;
          firstTime = r.time;
        }
        if (r.seq > lastSeq) {
          lastSeq = r.seq;
          lastTime = r.time;
        }
      }
    }
    if (count === 0) return;
    this.bump(STATE_DROPPED, count);
    this.recordDropped({ count, firstSeq, lastSeq, firstTime, lastTime });
  }

  /**
   * Inside the caller's transaction: accounts for `d` in the open events.dropped summary (one not
   * yet offered to the collector, so its content can still change), or starts a new one.
   */
  private recordDropped(d: {
    count: number;
    firstSeq: number;
    lastSeq: number;
    firstTime: string;
    lastTime: string;
  }): void {
    const openSeq = this.counter(STATE_OPEN_DROPPED);
    const open = openSeq > 0 ? this.stmt.bySeq.get(openSeq) : undefined;
    let event: Record<string, unknown>;
    if (open && open.type === 'events.dropped' && !this.leased.has(open.seq)) {
      const prev = JSON.parse(open.body) as Record<string, unknown> & DroppedSummary;
      event = {
        ...prev,
        count: prev.count + d.count,
        ...(d.firstSeq < prev.first_seq ? { first_seq: d.firstSeq, first_time: d.firstTime } : {}),
        ...(d.lastSeq > prev.last_seq ? { last_seq: d.lastSeq, last_time: d.lastTime } : {}),
      };
      const body = JSON.stringify(event);
      const bytes = Buffer.byteLength(body);
      this.stmt.updateBody.run(body, bytes, open.seq);
      this.outboxBytes += bytes - open.bytes;
    } else {
      const nowMs = this.now();
      event = {
        count: d.count,
        first_seq: d.firstSeq,
        last_seq: d.lastSeq,
        first_time: d.firstTime,
        last_time: d.lastTime,
        reason: 'outbox_full',
        id: uuidv7(nowMs),
        time: new Date(nowMs).toISOString(),
        seq: this.nextSeq(),
        device_id: this.options.deviceId,
        hostname: this.options.hostname,
        type: 'events.dropped',
        agent_version: this.agentVersion,
      };
      const body = JSON.stringify(event);
      const bytes = Buffer.byteLength(body);
      this.stmt.insert.run(event.seq, event.id, event.type, event.time, body, bytes);
      this.setCounter(STATE_OPEN_DROPPED, event.seq as number);
      this.outboxBytes += bytes;
      this.outboxDepth++;
    }
    this.log.warn(
      { dropped: d.count, summary_id: event.id, total_in_summary: event.count },
      'outbox full: oldest unshipped events dropped',
    );
  }

  private pruneHistory(): void {
    const cutoff = new Date(this.now() - this.historyMaxAgeMs).toISOString();
    for (let i = 0; i < 1000 && this.historyDepth > 0; i++) {
      const rows = this.stmt.oldestHistory.all(PRUNE_CHUNK);
      let progressed = false;
      for (const r of rows) {
        if (this.historyBytes <= this.historyMaxBytes && r.time >= cutoff) return;
        this.stmt.deleteHistory.run(r.seq);
        this.historyBytes -= r.bytes;
        this.historyDepth--;
        progressed = true;
      }
      if (!progressed) return;
    }
  }

  /** Re-reads the row counts and byte totals (at start, and after a failed transaction). */
  private recount(): void {
    if (!this.db.open) return;
    this.counters.clear();
    this.loadCounters();
    const sum = (table: string): { n: number; b: number } =>
      this.db.prepare(`SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM ${table}`).get() as {
        n: number;
        b: number;
      };
    const o = sum('outbox');
    const h = sum('event_history');
    const a = sum('outbox_aside');
    this.outboxDepth = o.n;
    this.outboxBytes = o.b;
    this.historyDepth = h.n;
    this.historyBytes = h.b;
    this.asideDepth = a.n;
    this.asideBytes = a.b;
  }
}

/** Bytes kept free for the summary argument and a seq with more digits than the placeholder 0. */
const ARGV_CUT_RESERVE_BYTES = 128;
const ARGV_SUMMARY_RE = /^\[\+(\d+) more arguments\]$/;

/**
 * Keeps an event within MAX_EVENT_BYTES (what the collector accepts) by cutting its command line
 * from the end — the only field that can make an event that large — and saying how many arguments
 * were left out, as redaction does. Otherwise a command line padded on purpose would get a block
 * event refused by the collector and set aside, hidden from the SIEM.
 */
function fitToWire<T extends Record<string, unknown>>(e: T): T {
  const argv = e.argv;
  if (!Array.isArray(argv)) return e;
  const over = Buffer.byteLength(JSON.stringify(e)) - (MAX_EVENT_BYTES - ARGV_CUT_RESERVE_BYTES);
  if (over <= 0) return e;
  let keep = argv.length;
  let removed = 0;
  let cut = 0;
  while (keep > 1 && removed < over) {
    keep--;
    const arg = argv[keep];
    removed += Buffer.byteLength(JSON.stringify(arg)) + 1;
    const summary = typeof arg === 'string' ? ARGV_SUMMARY_RE.exec(arg) : null;
    cut += summary ? Number(summary[1]) : 1;
  }
  if (cut === 0) return e; // nothing left to cut: the collector will refuse it and it is set aside
  return { ...e, argv: [...argv.slice(0, keep), `[+${cut} more arguments]`] };
}

/** Bytes a listed event adds besides its JSON (state, reason, framing), for the page byte cap. */
const LISTED_EVENT_OVERHEAD_BYTES = 64;

/** Most events one `events.list` answer carries (a page; guardctl pages with since_seq). */
export const EVENTS_LIST_MAX = 5000;
/** Most event JSON bytes in one answer: far below the control client's 32 MiB response cap. */
export const EVENTS_LIST_MAX_BYTES = 8 * 1024 * 1024;

/** The answer of the `events.list` control method. */
export interface EventsListResult {
  readonly events: readonly ListedEvent[];
  /** The highest seq recorded on this machine (follow mode continues from here when nothing matched). */
  readonly last_seq: number;
  /**
   * True when the byte cap cut the page: with oldest_first the newest matches were left out (ask
   * again from the last seq returned), otherwise the oldest.
   */
  readonly truncated: boolean;
}

/**
 * Control methods over the outbox (public socket, read-only): `events.list` with params
 * `{ since_seq?: integer ≥ 0, since_time?: RFC 3339, type?: event type, limit?: 1..5000 (default 100),
 * oldest_first?: boolean }` → `EventsListResult`. Hostile params → GUARD_CONTROL_BAD_REQUEST.
 */
export function eventsControlMethods(outbox: Pick<OutboxStore, 'listPage' | 'status'>): ControlMethods {
  return {
    'events.list': {
      admin: false,
      summary: 'events recorded on this machine (queued, shipped, set aside)',
      handle(params) {
        const bad = (msg: string): GuardError =>
          new GuardError('GUARD_CONTROL_BAD_REQUEST', `events.list: ${msg}`);
        const { since_seq, since_time, type, limit, oldest_first } = params;
        if (since_seq !== undefined && !(Number.isSafeInteger(since_seq) && (since_seq as number) >= 0))
          throw bad('since_seq must be an integer >= 0');
        if (
          since_time !== undefined &&
          (typeof since_time !== 'string' || since_time.length > 40 || Number.isNaN(Date.parse(since_time)))
        )
          throw bad('since_time must be an RFC 3339 time');
        if (type !== undefined && !(EVENT_TYPES as readonly unknown[]).includes(type))
          throw bad(`type must be one of ${EVENT_TYPES.join(', ')}`);
        if (
          limit !== undefined &&
          !(Number.isSafeInteger(limit) && (limit as number) >= 1 && (limit as number) <= EVENTS_LIST_MAX)
        )
          throw bad(`limit must be an integer 1..${EVENTS_LIST_MAX}`);
        if (oldest_first !== undefined && typeof oldest_first !== 'boolean')
          throw bad('oldest_first must be a boolean');
        // whole events up to the byte cap, from the end the caller asked for, read no further
        const page = outbox.listPage(
          {
            ...(since_seq !== undefined ? { sinceSeq: since_seq as number } : {}),
            ...(since_time !== undefined ? { sinceTime: new Date(since_time as string).toISOString() } : {}),
            ...(type !== undefined ? { type: type as EventType } : {}),
            limit: (limit as number | undefined) ?? 100,
            oldestFirst: oldest_first === true,
          },
          EVENTS_LIST_MAX_BYTES,
        );
        return {
          events: page.events,
          last_seq: outbox.status().last_seq,
          truncated: page.truncated,
        } satisfies EventsListResult;
      },
    },
  };
}
