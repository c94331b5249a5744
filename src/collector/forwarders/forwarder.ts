/**
 * Owns delivering stored events to one external sink with its own durable outbox and retry loop.
 * The outbox of a sink is "events with rid > the sink's cursor" (see collector-store.ts): the
 * runner reads a batch after the cursor, hands it to the sink, and advances the cursor only after
 * the sink confirmed delivery — at-least-once (a crash between delivery and cursor write repeats
 * that batch; every event carries its `device_id` and `id`, unique together, for downstream
 * de-duplication — the `id` alone is not: another device may replay it as its own).
 *
 * A failing or slow sink only delays its own cursor: ingest never waits for a runner, and runners
 * never wait for each other. Failures back off exponentially with full jitter up to a cap.
 */
import type { Logger } from '../../common/logger.js';
import type { CollectorStore, StoredEventRow } from '../collector-store.js';
import type { CollectorMetrics } from '../metrics.js';

/** What a delivery came to when it did not throw. */
export interface DeliveryResult {
  /** Events the destination refused for their content and that were skipped (never retried). */
  readonly dropped: number;
  /** Which events, as `device_id/id` (for the log). */
  readonly droppedIds?: readonly string[];
}

/** A destination for events (NDJSON file, Splunk HEC, …). */
export interface ForwarderSink {
  /** Stable name: the cursor key and the metrics label (e.g. `ndjson`, `splunk-hec`). */
  readonly name: string;
  /**
   * Delivers `events` (in rid order) durably or throws. Called by one runner, never concurrently
   * with itself; may be called again with the same events after a failure or a restart. May skip
   * an event the destination refuses for its content (a poison event), reporting it as dropped.
   */
  deliver(events: readonly StoredEventRow[]): Promise<DeliveryResult | undefined>;
  /**
   * Optional: makes a `deliver` in progress fail fast (shutdown must not wait for a stuck SIEM).
   * The aborted batch stays in the outbox and is delivered after the next start.
   */
  abort?(): void;
  /** Releases files/sockets. Called once, after the last `deliver` finished. */
  close(): Promise<void>;
}

export interface ForwarderRunnerOptions {
  readonly sink: ForwarderSink;
  readonly store: CollectorStore;
  readonly logger: Logger;
  readonly metrics: CollectorMetrics;
  /** Events per delivery. */
  readonly batchSize?: number;
  /** Event body bytes per delivery (at least one event is always delivered). */
  readonly batchBytes?: number;
  /** First retry delay after a failure, ms. */
  readonly backoffInitialMs?: number;
  /** Retry delay cap, ms. */
  readonly backoffMaxMs?: number;
  /** Safety poll when no wake-up arrives, ms (covers events stored by another process). */
  readonly pollMs?: number;
}

/** 500 events ≈ 250 KiB: a comfortable HEC request and a cheap file write. */
const DEFAULT_BATCH = 500;
/**
 * Events may be up to 256 KiB each (an enrolled device can send only such events), so 500 of them
 * could be 128 MiB, and a sink holds a few copies while it transforms them: batches stop at this size.
 */
export const DEFAULT_FORWARD_BATCH_BYTES = 8 * 1024 * 1024;
/** Rows read from SQLite per step while filling a batch, so the byte cap also bounds what is read. */
const READ_CHUNK = 50;
const DEFAULT_BACKOFF_INITIAL_MS = 500;
/** A SIEM down for hours is retried every minute at most. */
const DEFAULT_BACKOFF_MAX_MS = 60_000;
/** Safety poll without a wake-up (wake-ups come from this process; this covers anything else). */
const DEFAULT_POLL_MS = 5_000;

/** The loop of one sink. `start()` once; `wake()` after new events; `stop()` to finish. */
export class ForwarderRunner {
  private readonly log: Logger;
  private stopped = false;
  private running: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private woken = false;
  private failures = 0;

  constructor(private readonly options: ForwarderRunnerOptions) {
    this.log = options.logger.child({ component: `collector.forwarder.${options.sink.name}` });
  }

  /** The sink's name. */
  get name(): string {
    return this.options.sink.name;
  }

  /** Events stored but not yet delivered to this sink. */
  lag(): number {
    const { store, sink } = this.options;
    return Math.max(0, store.maxRid() - store.cursorOf(sink.name));
  }

  /** Starts the loop (idempotent). */
  start(): void {
    if (!this.running) this.running = this.loop();
  }

  /** Signals that new events were stored; cheap, safe at any rate. */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Stops after the delivery in progress (if any) and closes the sink. Safe to call twice. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeUp?.();
    this.options.sink.abort?.();
    await this.running;
    this.running = null;
    await this.options.sink.close().catch(() => {});
  }

  private async loop(): Promise<void> {
    const { sink, store, metrics } = this.options;
    const batchSize = this.options.batchSize ?? DEFAULT_BATCH;
    while (!this.stopped) {
      let rows: StoredEventRow[];
      try {
        rows = this.nextBatch(batchSize);
      } catch (err) {
        if (this.stopped) break;
        this.log.error({ err }, 'cannot read the events to forward');
        await this.pause(this.backoff());
        continue;
      }
      if (rows.length === 0) {
        await this.pause(this.options.pollMs ?? DEFAULT_POLL_MS, true);
        continue;
      }
      try {
        const result = await sink.deliver(rows);
        store.setCursor(sink.name, (rows[rows.length - 1] as StoredEventRow).rid);
        if (result && result.dropped > 0) {
          metrics.inc(
            'forward_dropped_total',
            'Events a sink refused for their content (poison), skipped after isolating them.',
            { sink: sink.name },
            result.dropped,
          );
          this.log.error(
            { dropped: result.dropped, ids: result.droppedIds?.slice(0, 20) },
            'sink refused events; skipped',
          );
        }
        metrics.inc(
          'forwarded_events_total',
          'Events delivered to a forwarder sink.',
          { sink: sink.name },
          rows.length,
        );
        if (this.failures > 0) this.log.info({ after_failures: this.failures }, 'forwarding resumed');
        this.failures = 0;
      } catch (err) {
        if (this.stopped) break;
        this.failures++;
        metrics.inc('forward_errors_total', 'Failed deliveries to a forwarder sink (each is retried).', {
          sink: sink.name,
        });
        const delay = this.backoff();
        this.log.warn(
          { err: (err as Error).message, retry_in_ms: delay, failures: this.failures },
          'delivery failed; will retry',
        );
        await this.pause(delay);
      }
    }
  }

  /** The next events after the cursor: at most `batchSize`, and at most `batchBytes` of bodies (but at least one). */
  private nextBatch(batchSize: number): StoredEventRow[] {
    const { store, sink } = this.options;
    const maxBytes = this.options.batchBytes ?? DEFAULT_FORWARD_BATCH_BYTES;
    const rows: StoredEventRow[] = [];
    let bytes = 0;
    let after = store.cursorOf(sink.name);
    for (;;) {
      const want = Math.min(READ_CHUNK, batchSize - rows.length);
      const chunk = store.eventsAfter(after, want);
      for (const row of chunk) {
        if (rows.length > 0 && bytes + row.body.length > maxBytes) return rows;
        rows.push(row);
        bytes += row.body.length;
        after = row.rid;
      }
      if (chunk.length < want || rows.length >= batchSize) return rows;
    }
  }

  private backoff(): number {
    const initial = this.options.backoffInitialMs ?? DEFAULT_BACKOFF_INITIAL_MS;
    const max = this.options.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    const ceiling = Math.min(max, initial * 2 ** Math.min(this.failures, 20));
    return Math.max(initial / 2, Math.random() * ceiling);
  }

  /** Waits `ms`, or less when stopped (or woken, if `wakeable`). */
  private pause(ms: number, wakeable = false): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (wakeable && this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wakeUp = () => {
        if (this.stopped || wakeable) {
          this.wakeUp = null;
          this.woken = false;
          done();
        }
      };
    });
  }
}
