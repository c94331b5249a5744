/**
 * Owns folding repeated refusals into counted events, so a user who loops a refused exec in one
 * process, or opens a marked file from process after process, cannot flood the outbox (whose size
 * cap would then drop older unsent events) or the collector. Per key (the enforcer's: user, rule,
 * file, exec or open), the first `burst` refusals of a window of `windowMs` are events of their
 * own; the later ones of that window are counted and recorded as ONE event when the window ends:
 * the last of them, with `repeats` = how many refusals it stands for. Nothing is lost: every
 * refusal is an event or counted in one, and `flush()` records what is pending (at stop).
 */

/** Length of one fold window (ms). */
export const DENY_FOLD_WINDOW_MS = 10_000;
/** Refusals of one key recorded one by one per window before the rest are folded. */
export const DENY_BURST = 20;
/** Keys tracked at most; the oldest window is closed (its fold recorded) to make room. */
const FOLD_KEYS_MAX = 4096;

interface Window<T> {
  readonly start: number;
  emitted: number;
  folded: number;
  last: T | null;
  timer: NodeJS.Timeout | null;
}

export interface DenialFoldOptions<T> {
  /** Records one event for `item`, standing for `repeats` refusals (1: itself only). */
  readonly emit: (item: T, repeats: number) => void;
  /** Called when `emit` throws from the window's timer (no caller to throw to). */
  readonly onError?: (err: unknown) => void;
  readonly now?: () => number;
  readonly windowMs?: number;
  readonly burst?: number;
}

export class DenialFold<T> {
  private readonly windows = new Map<string, Window<T>>();
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly burst: number;

  constructor(private readonly options: DenialFoldOptions<T>) {
    this.now = options.now ?? Date.now;
    this.windowMs = options.windowMs ?? DENY_FOLD_WINDOW_MS;
    this.burst = options.burst ?? DENY_BURST;
  }

  /** One refusal under `key`: recorded now, or counted into its window's folded event. */
  add(key: string, item: T): void {
    const now = this.now();
    let w = this.windows.get(key);
    // A window over (or a clock stepped back) records its fold and a new one starts.
    if (w && !(now >= w.start && now < w.start + this.windowMs)) {
      this.close(key);
      w = undefined;
    }
    if (!w) {
      w = { start: now, emitted: 0, folded: 0, last: null, timer: null };
      this.windows.set(key, w);
      if (this.windows.size > FOLD_KEYS_MAX) {
        const oldest = this.windows.keys().next().value;
        if (oldest !== undefined) this.close(oldest);
      }
    }
    if (w.emitted < this.burst) {
      w.emitted++;
      this.options.emit(item, 1);
      return;
    }
    w.folded++;
    w.last = item;
    if (w.timer === null) {
      w.timer = setTimeout(
        () => {
          try {
            this.close(key);
          } catch (err) {
            this.options.onError?.(err);
          }
        },
        Math.max(0, w.start + this.windowMs - now),
      );
      w.timer.unref();
    }
  }

  /** Records every pending fold now (guardd stopping). */
  flush(): void {
    for (const key of [...this.windows.keys()]) this.close(key);
  }

  private close(key: string): void {
    const w = this.windows.get(key);
    if (!w) return;
    this.windows.delete(key);
    if (w.timer !== null) clearTimeout(w.timer);
    if (w.folded > 0 && w.last !== null) this.options.emit(w.last, w.folded);
  }
}
