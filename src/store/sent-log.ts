/**
 * Owns the agent's own record of what it sent: per UTC hour, per request kind (enroll, events,
 * policy) the number of requests and their body bytes on the wire, and per event type the number
 * of events and their JSON bytes. The collector client and the policy fetch record each request
 * that got an answer; `guardctl explain` prints the last 24 hours (control method `sent.summary`).
 * Kept SENT_LOG_KEEP_MS, then pruned: a few hundred rows at most.
 */
import type { ControlMethods } from '../control/protocol.js';
import type { Db } from './database.js';

/** Hours kept: the 24 h summary plus a day of margin (ms). */
const SENT_LOG_KEEP_MS = 48 * 3600_000;
/** The window `guardctl explain` summarises (ms). */
export const SENT_SUMMARY_WINDOW_MS = 24 * 3600_000;
/** Pruning runs every this many records (one DELETE, not one per request). */
const PRUNE_EVERY = 50;

/** Totals of one request kind or one event type over the window. */
export interface SentTotals {
  readonly count: number;
  readonly bytes: number;
}

export interface SentSummary {
  /** Start of the oldest hour counted (RFC 3339): the window is whole UTC hours. */
  readonly since: string;
  /** Per request kind: requests and body bytes on the wire (gzip as sent). */
  readonly requests: Readonly<Record<string, SentTotals>>;
  /** Per event type: events and their JSON bytes before compression. */
  readonly events: Readonly<Record<string, SentTotals>>;
}

function hourOf(ms: number): string {
  return new Date(Math.floor(ms / 3600_000) * 3600_000).toISOString();
}

export class SentLog {
  private readonly addStmt;
  private readonly sumStmt;
  private readonly pruneStmt;
  private records = 0;

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.addStmt = db.prepare(
      `INSERT INTO sent_log(hour, kind, event_type, count, bytes) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(hour, kind, event_type) DO UPDATE SET count = count + excluded.count, bytes = bytes + excluded.bytes`,
    );
    this.sumStmt = db.prepare<[string], { kind: string; event_type: string; count: number; bytes: number }>(
      `SELECT kind, event_type, sum(count) AS count, sum(bytes) AS bytes FROM sent_log
       WHERE hour >= ? GROUP BY kind, event_type ORDER BY kind, event_type`,
    );
    this.pruneStmt = db.prepare('DELETE FROM sent_log WHERE hour < ?');
  }

  /**
   * Records one request of `kind` with `bytes` of body on the wire and, for an events request, the
   * events it carried by type. Never throws (a storage hiccup loses one record, nothing else).
   */
  record(kind: string, bytes: number, events: readonly { type: string; bytes: number }[] = []): void {
    try {
      const hour = hourOf(this.now());
      const byType = new Map<string, SentTotals>();
      for (const e of events) {
        const t = byType.get(e.type) ?? { count: 0, bytes: 0 };
        byType.set(e.type, { count: t.count + 1, bytes: t.bytes + e.bytes });
      }
      this.db.transaction(() => {
        this.addStmt.run(hour, kind, '', 1, bytes);
        for (const [type, t] of byType) this.addStmt.run(hour, kind, type, t.count, t.bytes);
      })();
      if (++this.records % PRUNE_EVERY === 0) this.pruneStmt.run(hourOf(this.now() - SENT_LOG_KEEP_MS));
    } catch {
      // the summary is a courtesy; sending goes on
    }
  }

  /** What was sent in the last `windowMs` (whole UTC hours). */
  summary(windowMs = SENT_SUMMARY_WINDOW_MS): SentSummary {
    const since = hourOf(this.now() - windowMs);
    const requests: Record<string, SentTotals> = {};
    const events: Record<string, SentTotals> = {};
    for (const r of this.sumStmt.all(since)) {
      if (r.event_type === '') requests[r.kind] = { count: r.count, bytes: r.bytes };
      else events[r.event_type] = { count: r.count, bytes: r.bytes };
    }
    return { since, requests, events };
  }
}

/** `sent.summary` on the public socket: counts and bytes only, nothing an event carries. */
export function sentControlMethods(log: Pick<SentLog, 'summary'>): ControlMethods {
  return {
    'sent.summary': {
      admin: false,
      summary: 'what this machine sent to the collector in the last 24 h (requests, events, bytes)',
      handle: () => log.summary(),
    },
  };
}
