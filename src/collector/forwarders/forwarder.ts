/**
 * Owns delivering stored events to one external sink with its own durable outbox and retry loop.
 * The outbox of a sink is "events past the sink's durable cursor"; the store hands the next batch
 * out under the sink's claim (`ForwarderCursors.deliverNext`, store/port.ts), the runner gives it
 * to the sink, and the store advances the cursor only after the sink confirmed delivery —
 * at-least-once (a crash between delivery and cursor write repeats that batch; every event carries
 * its `device_id` and `id`, unique together, for downstream de-duplication — the `id` alone is
 * not: another device may replay it as its own). With several collectors on one PostgreSQL
 * database every collector runs a runner per sink and the claim lets one at a time deliver
 * (postgres-store.ts says how a late-committing row is never skipped); a runner that finds the
 * claim taken (`busy`) tries again after BUSY_RETRY_MS.
 *
 * A failing or slow sink only delays its own cursor: ingest never waits for a runner, and runners
 * never wait for each other. Failures back off exponentially with full jitter up to a cap.
 */
import type { Logger } from '../../common/logger.js';
import type { CollectorMetrics } from '../metrics.js';
import type { ForwarderCursors, StoredEventRow } from '../store/port.js';

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
  readonly store: ForwarderCursors;
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
/**
 * Another collector holds the sink's claim: ask again after this long (a delivery to a file takes
 * milliseconds, to HEC tens of ms; one cheap query per retry).
 */
const BUSY_RETRY_MS = 250;
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
  lag(): Promise<number> {
    return this.options.store.forwarderLag(this.options.sink.name);
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
    const limits = {
      maxEvents: this.options.batchSize ?? DEFAULT_BATCH,
      maxBytes: this.options.batchBytes ?? DEFAULT_FORWARD_BATCH_BYTES,
    };
    while (!this.stopped) {
      let result: DeliveryResult | undefined;
      let delivering = false;
      try {
        const outcome = await store.deliverNext(sink.name, limits, async (rows) => {
          delivering = true;
          const started = performance.now();
          try {
            result = await sink.deliver(rows);
          } catch (err) {
            metrics.observeDelivery(sink.name, 'error', (performance.now() - started) / 1000);
            throw err;
          }
          metrics.observeDelivery(sink.name, 'ok', (performance.now() - started) / 1000);
        });
        if (outcome.kind === 'empty') {
          await this.pause(this.options.pollMs ?? DEFAULT_POLL_MS, true);
          continue;
        }
        if (outcome.kind === 'busy') {
          await this.pause(BUSY_RETRY_MS);
          continue;
        }
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
          outcome.events,
        );
        if (this.failures > 0) this.log.info({ after_failures: this.failures }, 'forwarding resumed');
        this.failures = 0;
      } catch (err) {
        if (this.stopped) break;
        this.failures++;
        const delay = this.backoff();
        if (!delivering) {
          this.log.error({ err, retry_in_ms: delay }, 'cannot read the events to forward');
        } else {
          metrics.inc('forward_errors_total', 'Failed deliveries to a forwarder sink (each is retried).', {
            sink: sink.name,
          });
          this.log.warn(
            { err: (err as Error).message, retry_in_ms: delay, failures: this.failures },
            'delivery failed; will retry',
          );
        }
        await this.pause(delay);
      }
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
