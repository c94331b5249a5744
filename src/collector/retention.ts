/**
 * Owns pruning old events from the collector's store: events received more than `retentionDays`
 * ago are deleted, oldest first, in small steps (each its own short transaction, so ingest is
 * never blocked for long) — but never an event a forwarder has not delivered yet, so a SIEM that
 * was down for longer than the retention still receives everything.
 */
import { isGuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Retention } from './store/port.js';

/** Rows deleted per transaction: ~10-50 ms of work, short enough not to delay ingest noticeably. */
const PRUNE_STEP_ROWS = 5_000;
/** At most this many steps per run; the next run continues (bounds one run's duration). */
const PRUNE_MAX_STEPS = 200;
/** How often retention runs. */
export const PRUNE_INTERVAL_MS = 60 * 60 * 1000;

export interface PruneOptions {
  readonly store: Retention;
  /** Keep events received within this many days; 0 = keep forever (nothing is pruned). */
  readonly retentionDays: number;
  /** Names of the configured forwarder sinks: their undelivered events are kept. */
  readonly sinks: readonly string[];
  /** Clock in ms. */
  readonly now?: () => number;
  readonly logger?: Logger;
}

/**
 * Deletes expired events. Resolves with how many were deleted. Yields to the event loop between
 * steps. Never throws: a failing step is logged and ends the run (retried next interval).
 */
export async function pruneExpiredEvents(options: PruneOptions): Promise<number> {
  const { store, retentionDays, sinks } = options;
  if (retentionDays <= 0) return 0;
  const cutoff = new Date((options.now ?? Date.now)() - retentionDays * 86_400_000).toISOString();
  let deleted = 0;
  try {
    for (let step = 0; step < PRUNE_MAX_STEPS; step++) {
      // each step re-reads the cursors: events past any sink's cursor are still owed to that sink
      const n = await store.pruneEvents(cutoff, sinks, PRUNE_STEP_ROWS);
      deleted += n;
      if (n < PRUNE_STEP_ROWS) break;
      await new Promise((r) => setImmediate(r));
    }
  } catch (err) {
    if (isGuardError(err, 'GUARD_STORE_BUSY'))
      options.logger?.warn(
        { code: err.code, err: err.message },
        'pruning expired events waited too long; will retry',
      );
    else options.logger?.error({ err }, 'pruning expired events failed; will retry');
  }
  if (deleted > 0) options.logger?.info({ deleted, cutoff }, 'pruned expired events');
  return deleted;
}
