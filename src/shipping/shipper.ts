/**
 * Owns moving events from the outbox to the collector (osquery's buffered TLS logger, Santa's
 * event upload): batches by count and bytes, sends, and deletes (acks) only what the collector
 * answered for. Failures back off exponentially with jitter up to a cap; 429/503 `Retry-After`
 * is honoured; 401 re-enrolls once, then backs off; 413 halves the batch (a single event too large
 * is set aside); events the collector rejects as invalid (named in its answer) are set aside and
 * counted, so one poison event never blocks the queue. Urgent events (blocks) call `flushNow` to be sent at once.
 *
 * Delivery is at-least-once and the collector is idempotent by event id, so a batch whose answer
 * was lost (timeout, kill -9 of either side) is simply sent again: nothing lost, nothing twice.
 */
import type { Logger } from '../common/logger.js';
import type { OutboxStore } from '../store/outbox-store.js';
import type { CollectorClient, PostResult } from './collector-client.js';

/** First retry delay after a failure (ms); doubles per consecutive failure up to backoffMaxS. */
const BACKOFF_BASE_MS = 1000;
/**
 * How long a clean stop waits for the collector to take the queued events, agent.stopped last
 * (ms): one request on a slow link, well inside systemd's 90 s stop timeout. If the collector is
 * down or slower, the events stay in the outbox and go at the next start.
 */
export const STOP_SEND_BUDGET_MS = 3000;

/** At most this many batches per send cycle, so one cycle yields and `stop` is prompt. */
const MAX_BATCHES_PER_CYCLE = 10_000;

export interface ShipperOptions {
  readonly outbox: Pick<OutboxStore, 'pending' | 'ack' | 'setAside' | 'depth'>;
  readonly client: Pick<CollectorClient, 'postEvents' | 'enroll' | 'enrolled' | 'url'> &
    Partial<Pick<CollectorClient, 'close'>>;
  /** Events per batch at most (`shipper.batch_max_events`). */
  readonly batchMaxEvents: number;
  /** Uncompressed JSON bytes per batch at most (`shipper.batch_max_bytes`). */
  readonly batchMaxBytes: number;
  /** Pause between send cycles while nothing urgent is queued (`shipper.interval_ms`). */
  readonly intervalMs: number;
  /** Cap of the backoff after failures, seconds (`shipper.backoff_max_s`). */
  readonly backoffMaxS: number;
  readonly logger: Logger;
  /** Clock (ms since the epoch), for status timestamps. */
  readonly now?: () => number;
  /** Random in [0, 1) for the jitter; tests pass a fixed one. */
  readonly random?: () => number;
}

export interface ShipperStatus {
  readonly collector_url: string | null;
  readonly enrolled: boolean;
  readonly last_success_at: string | null;
  readonly last_error: string | null;
  /** Events the collector acknowledged (stored or already had) since start. */
  readonly shipped_total: number;
  /** Events set aside by this shipper since start (rejected as invalid, or too large). */
  readonly set_aside: number;
  readonly consecutive_failures: number;
  /** When the next attempt is due after a failure (RFC 3339), or null. */
  readonly retry_at: string | null;
}

type CycleOutcome = { ok: true } | { ok: false; delayMs: number };

export class Shipper {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private started = false;
  private stopped = false;
  private again = false;
  private failures = 0;
  private retryAt: number | null = null;
  /** Current batch size limit: halved on 413 / unattributable 400, grown back after successes. */
  private batchLimit: number;
  private shippedTotal = 0;
  private setAsideCount = 0;
  private lastSuccessAt: string | null = null;
  private lastError: string | null = null;

  constructor(private readonly options: ShipperOptions) {
    this.log = options.logger.child({ component: 'shipping.shipper' });
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.batchLimit = options.batchMaxEvents;
  }

  /** Starts the send loop (the first cycle runs at once). Calling it again does nothing. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.schedule(0);
  }

  /**
   * Stops the loop: no new request starts; resolves once the request in flight (if any) finished
   * and its answer was applied to the outbox. Idempotent.
   *
   * With `finalSendMs` > 0 (guardd's clean stop, so the collector hears agent.stopped), what is
   * queued is first sent once more, backoff or not, for at most that long; a request still open
   * then is abandoned (its connection closed) and its events stay queued for the next start.
   */
  async stop(finalSendMs = 0): Promise<void> {
    if (finalSendMs > 0 && this.started && !this.stopped) {
      let timer: NodeJS.Timeout | undefined;
      const budget = new Promise<'late'>((r) => {
        timer = setTimeout(() => r('late'), finalSendMs);
      });
      const send = (async () => {
        await this.running;
        if (this.stopped) return;
        this.retryAt = null;
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        await this.cycle();
      })();
      const outcome = await Promise.race([send, budget]);
      clearTimeout(timer);
      if (outcome === 'late') {
        this.log.warn({ budget_ms: finalSendMs }, 'collector did not answer before stop; events stay queued');
        this.stopped = true;
        this.options.client.close?.();
      }
    }
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /**
   * Sends what is queued now (an urgent event was appended). While a cycle runs, another follows
   * it at once; while backing off after a failure, the backoff is kept (the collector is not
   * hammered) and the events go with the next attempt. Resolves when the triggered cycle ends.
   */
  flushNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.retryAt !== null && this.now() < this.retryAt) return this.running ?? Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    return this.cycle();
  }

  status(): ShipperStatus {
    return {
      collector_url: this.options.client.url,
      enrolled: this.options.client.enrolled(),
      last_success_at: this.lastSuccessAt,
      last_error: this.lastError,
      shipped_total: this.shippedTotal,
      set_aside: this.setAsideCount,
      consecutive_failures: this.failures,
      retry_at: this.retryAt !== null ? new Date(this.retryAt).toISOString() : null,
    };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.cycle();
    }, delayMs);
    this.timer.unref();
  }

  private cycle(): Promise<void> {
    if (this.running) return this.running;
    const run = (async () => {
      let outcome: CycleOutcome;
      do {
        this.again = false;
        try {
          outcome = await this.sendAll();
        } catch (err) {
          // Never expected (outbox and client report failures as values); keep the loop alive.
          this.log.error({ err }, 'send cycle failed');
          outcome = this.fail(`internal: ${(err as Error).message}`, null);
        }
      } while (outcome.ok && this.again && !this.stopped);
      if (outcome.ok) {
        this.failures = 0;
        this.retryAt = null;
        this.schedule(this.options.intervalMs);
      } else {
        this.retryAt = this.now() + outcome.delayMs;
        this.schedule(outcome.delayMs);
      }
    })();
    this.running = run.finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Sends batches until the outbox is empty or a failure needs a pause. */
  private async sendAll(): Promise<CycleOutcome> {
    let reenrolled = false;
    for (let i = 0; i < MAX_BATCHES_PER_CYCLE && !this.stopped; i++) {
      const batch = this.options.outbox.pending(this.batchLimit, this.options.batchMaxBytes);
      if (batch.length === 0) return { ok: true };
      const r: PostResult = await this.options.client.postEvents(batch);
      switch (r.kind) {
        case 'ok': {
          // Every event of the batch must be accounted for (stored, already there, or rejected);
          // anything else is not an acknowledgement and nothing is deleted.
          const accounted = r.accepted + r.duplicates + r.rejectedTotal;
          if (accounted !== batch.length)
            return this.fail(
              `collector accounted for ${accounted} of ${batch.length} events (HTTP ${r.status}); nothing acknowledged`,
              null,
            );
          const rejectedIds = new Set<string>();
          for (const rej of r.rejected) {
            if (rej.id === null || !batch.some((e) => e.id === rej.id)) continue;
            rejectedIds.add(rej.id);
            if (this.options.outbox.setAside(rej.id, `collector rejected: ${rej.reason}`))
              this.setAsideCount++;
          }
          if (r.rejectedTotal > rejectedIds.size) {
            // Some refused events are not named (no readable id, or the list was cut): acking the
            // rest would record them as shipped. Nothing is acked; the batch is resent without the
            // named ones (what was stored comes back as duplicates), halved while none is named,
            // until each refused event is named or alone, and set aside.
            if (rejectedIds.size === 0)
              this.shrinkOrSetAside(batch, 'collector rejected an event it could not identify');
            continue;
          }
          const acked = batch.filter((e) => !rejectedIds.has(e.id)).map((e) => e.id);
          this.options.outbox.ack(acked);
          this.shippedTotal += acked.length;
          this.lastSuccessAt = new Date(this.now()).toISOString();
          this.lastError = null;
          this.failures = 0;
          this.batchLimit = Math.min(this.options.batchMaxEvents, this.batchLimit * 2);
          break;
        }
        case 'unauthorized': {
          if (reenrolled) return this.fail(`collector refused the device token: ${r.message}`, null);
          reenrolled = true;
          const e = await this.options.client.enroll();
          if (e.kind !== 'enrolled') return this.fail(`enroll failed: ${describe(e)}`, retryAfterOf(e));
          break;
        }
        case 'too_large':
          this.shrinkOrSetAside(batch, 'too large for the collector (413)');
          break;
        case 'invalid':
          // Only a 400 is the collector refusing the batch's content; any other 4xx/3xx (a wrong
          // URL, a proxy, a redirect) says nothing about the events and must not set them aside.
          if (r.status !== 400) return this.fail(describe(r), null);
          // A 400 that names no event refuses the request, not an event (guard-collector names
          // every event it refuses, in `rejected`): halve in case the size is the trouble, but a
          // single event is not set aside for it — that would empty the outbox behind a proxy.
          if (batch.length > 1) {
            this.batchLimit = Math.max(1, Math.floor(batch.length / 2));
            break;
          }
          return this.fail(`collector refused the request without naming an event: ${describe(r)}`, null);
        case 'retry_later':
        case 'server_error':
        case 'network':
        case 'timeout':
          return this.fail(describe(r), retryAfterOf(r));
      }
    }
    return { ok: true };
  }

  /** Halves the batch limit; a batch of one is set aside instead. */
  private shrinkOrSetAside(batch: readonly { id: string }[], reason: string): void {
    if (batch.length <= 1) {
      const id = batch[0]?.id;
      if (id && this.options.outbox.setAside(id, reason)) {
        this.setAsideCount++;
        this.log.warn({ id, reason }, 'event set aside');
      }
      return;
    }
    this.batchLimit = Math.max(1, Math.floor(batch.length / 2));
  }

  private fail(message: string, retryAfterS: number | null): CycleOutcome {
    this.failures++;
    this.lastError = message;
    const capMs = this.options.backoffMaxS * 1000;
    const exp = Math.min(capMs, BACKOFF_BASE_MS * 2 ** Math.min(this.failures - 1, 30));
    // Equal jitter: half fixed, half random, so a fleet that failed together does not retry together.
    let delayMs = Math.round(exp / 2 + (this.random() * exp) / 2);
    if (retryAfterS !== null) delayMs = Math.min(capMs, Math.max(delayMs, retryAfterS * 1000));
    this.log.warn(
      { failures: this.failures, delay_ms: delayMs, error: message },
      'shipping failed; backing off',
    );
    return { ok: false, delayMs };
  }
}

function describe(r: { kind: string; message?: string; status?: number }): string {
  return `${r.kind}${r.status ? ` (HTTP ${r.status})` : ''}${r.message ? `: ${r.message}` : ''}`;
}

function retryAfterOf(r: { kind: string; retryAfterS?: number | null }): number | null {
  return r.kind === 'retry_later' ? (r.retryAfterS ?? null) : null;
}
