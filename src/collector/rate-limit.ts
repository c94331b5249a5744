/**
 * Owns the per-token rate limit: a token bucket per key (the authenticated device id), refilled
 * continuously at `ratePerS` up to `burst`. Memory is bounded: keys are only created for
 * authenticated devices, and buckets that have refilled completely are forgotten by `prune`.
 */

export interface RateLimiterOptions {
  /** Sustained requests per second per key. */
  readonly ratePerS: number;
  /** Requests a key may make at once after being idle. */
  readonly burst: number;
  /** Clock in ms (tests pass a fake one); defaults to `performance.now`. */
  readonly now?: () => number;
}

export type RateDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterS: number };

interface Bucket {
  tokens: number;
  at: number;
}

/** Token buckets keyed by device id. */
export class TokenBucketRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;

  constructor(private readonly options: RateLimiterOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /** Takes one request from `key`'s bucket. Safe at any rate; O(1). */
  take(key: string): RateDecision {
    const now = this.now();
    const { ratePerS, burst } = this.options;
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * ratePerS);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterS: Math.max(1, Math.ceil((1 - b.tokens) / ratePerS)) };
  }

  /** Forgets buckets that are full again (idle keys). Call periodically. */
  prune(): void {
    const now = this.now();
    const { ratePerS, burst } = this.options;
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * ratePerS >= burst) this.buckets.delete(key);
    }
  }

  /** Keys currently tracked (for metrics and tests). */
  get size(): number {
    return this.buckets.size;
  }
}
