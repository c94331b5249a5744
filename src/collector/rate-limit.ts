/**
 * Owns the collector's allowances: token buckets per key (a device id, a source address), in one
 * or more dimensions (requests; events and bytes), refilled continuously up to their capacity.
 * Every limit of the collector — request rate and quotas per device token, enroll attempts per
 * source address — goes through the small `Limiter` interface, so a limiter shared by several
 * collectors (in their common database) can replace this in-memory one without touching the
 * routes. Today each collector process limits on its own. The calls are synchronous (they sit on
 * the request path and between parsing and storing a batch); a shared implementation can keep them
 * so by holding a local view that it reconciles with the database every few seconds (the limits
 * then hold to within one reconcile interval), or the interface becomes async.
 *
 * Memory is bounded: buckets that have refilled completely are forgotten by `prune`, and past
 * `maxKeys` tracked keys, new keys share one overflow bucket (an attacker spraying source
 * addresses throttles itself, not the table's size).
 */

/** One dimension of an allowance: it holds at most `capacity` units and regains `refillPerS` a second. */
export interface BucketSpec {
  readonly capacity: number;
  readonly refillPerS: number;
}

export type LimitDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** Whole seconds (≥ 1) until the same request would be allowed. */
      readonly retryAfterS: number;
      /** Index of the (first) dimension that refused. */
      readonly dimension: number;
    };

/** Per-key allowances. Calls are synchronous and O(dimensions); safe at any rate. */
export interface Limiter {
  /**
   * Takes `costs` (one per dimension, default 1 each) from `key` when every dimension holds its
   * cost — all or nothing. A cost larger than a dimension's capacity is taken from a full bucket
   * (it then runs into debt and refills from below zero), so no request is refused forever.
   */
  take(key: string, costs?: readonly number[]): LimitDecision;
  /** What `take(key, costs)` would answer now, without taking anything. */
  check(key: string, costs?: readonly number[]): LimitDecision;
  /** Forgets keys whose buckets are full again. Call periodically; safe any time. */
  prune(): void;
  /** Keys currently tracked (metrics, tests). */
  readonly size: number;
}

export interface TokenBucketLimiterOptions {
  /** The dimensions, in the order of `costs`. */
  readonly buckets: readonly BucketSpec[];
  /** Keys tracked at most; past it, new keys share one overflow bucket (default 100,000). */
  readonly maxKeys?: number;
  /** Monotonic clock in ms (tests pass a fake one); defaults to `performance.now`. */
  readonly now?: () => number;
}

/**
 * 100,000 keys ≈ 20 MB of buckets: room for every device of a large fleet, or every address that
 * tried to enroll within the refill time, while bounding what a sprayer can make us hold.
 */
const DEFAULT_MAX_KEYS = 100_000;
/** The key the keys past `maxKeys` share. Not a valid device id or address, so it cannot collide. */
const OVERFLOW_KEY = '\0overflow';

/** A full key table is pruned at most this often (ms); in between, new keys use the overflow bucket. */
const FULL_PRUNE_EVERY_MS = 1000;

interface Bucket {
  /** Units per dimension at `at` (may be negative after an oversized take). */
  readonly tokens: number[];
  at: number;
}

/** In-memory token buckets: one collector process's view. */
export class TokenBucketLimiter implements Limiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;
  private readonly maxKeys: number;
  private fullPruneAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: TokenBucketLimiterOptions) {
    if (options.buckets.length === 0) throw new Error('a limiter needs at least one bucket');
    for (const b of options.buckets)
      if (!(b.capacity > 0) || !(b.refillPerS > 0))
        throw new Error(`bucket capacity and refill must be positive (got ${b.capacity}, ${b.refillPerS}/s)`);
    this.now = options.now ?? (() => performance.now());
    this.maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
  }

  take(key: string, costs?: readonly number[]): LimitDecision {
    const b = this.refilled(key);
    const decision = this.decide(b, costs);
    if (decision.allowed)
      for (let i = 0; i < b.tokens.length; i++) (b.tokens[i] as number) -= costs?.[i] ?? 1;
    return decision;
  }

  check(key: string, costs?: readonly number[]): LimitDecision {
    return this.decide(this.refilled(key), costs);
  }

  prune(): void {
    const now = this.now();
    const specs = this.options.buckets;
    for (const [key, b] of this.buckets) {
      const elapsedS = (now - b.at) / 1000;
      if (specs.every((s, i) => (b.tokens[i] as number) + elapsedS * s.refillPerS >= s.capacity))
        this.buckets.delete(key);
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  /** The bucket of `key` brought up to now (created full). */
  private refilled(key: string): Bucket {
    const now = this.now();
    const specs = this.options.buckets;
    let b = this.buckets.get(key);
    if (!b) {
      if (key !== OVERFLOW_KEY && this.buckets.size >= this.maxKeys) {
        // a full table is pruned at most once a second: pruning is O(keys)
        if (now - this.fullPruneAt >= FULL_PRUNE_EVERY_MS) {
          this.fullPruneAt = now;
          this.prune();
        }
        if (this.buckets.size >= this.maxKeys) return this.refilled(OVERFLOW_KEY);
      }
      b = { tokens: specs.map((s) => s.capacity), at: now };
      this.buckets.set(key, b);
      return b;
    }
    const elapsedS = Math.max(0, now - b.at) / 1000;
    for (let i = 0; i < specs.length; i++) {
      const s = specs[i] as BucketSpec;
      b.tokens[i] = Math.min(s.capacity, (b.tokens[i] as number) + elapsedS * s.refillPerS);
    }
    b.at = now;
    return b;
  }

  private decide(b: Bucket, costs: readonly number[] | undefined): LimitDecision {
    const specs = this.options.buckets;
    let waitS = 0;
    let dimension = -1;
    for (let i = 0; i < specs.length; i++) {
      const s = specs[i] as BucketSpec;
      // an oversized cost needs a full bucket, a normal one needs its cost
      const need = Math.min(costs?.[i] ?? 1, s.capacity);
      const have = b.tokens[i] as number;
      if (have >= need) continue;
      const w = (need - have) / s.refillPerS;
      if (dimension === -1 || w > waitS) {
        waitS = w;
        if (dimension === -1) dimension = i;
      }
    }
    if (dimension === -1) return { allowed: true };
    return { allowed: false, retryAfterS: Math.max(1, Math.ceil(waitS)), dimension };
  }
}

/**
 * The limiter key of a source address: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its /64 — one
 * host usually holds a whole /64, so per-address keys would give it 2^64 allowances.
 */
export function sourceKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1] as string;
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('%')[0]?.split('::') ?? [];
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::')
    ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => (g === '' ? '0' : g.toLowerCase().replace(/^0+(?=.)/, '')))
    .join(':')}::/64`;
}
