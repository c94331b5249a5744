/**
 * Owns the PostgreSQL store's cache of device tokens: token hash → the device and enrollment it
 * authenticates, so a device posting every minute costs no token query per request (at 100,000
 * devices that query was a third of the round trips to the database).
 *
 * Why it can never let an old token store an event: the cache only answers "which device and
 * enrollment did this token belong to"; the insert transaction then locks the device rows and
 * stores only batches of each device's current enrollment (postgres-store.ts `insertGroup`), so a
 * batch of a replaced token is refused as stale whichever collector enrolled the device again and
 * whatever this cache still holds. Staleness is cleared at once on this collector (`enrolled`,
 * when it enrolls the device) and, for an enrollment through another collector, on the first
 * batch the insert refuses (`forget`). Unknown tokens are never cached, so a device enrolled
 * through another collector is found on its first request, and random tokens cannot fill it.
 *
 * Bounded: at most `max` entries; past it the oldest inserted entry goes (insertion order, so a hit
 * costs one Map lookup). Set the bound above the fleet size: devices posting round-robin over a
 * cache smaller than the fleet evict each other and every request misses (it still works, at the
 * cost of the query).
 */
import type { EnrolledDevice } from './port.js';

/** Default bound: a 100,000-device fleet with room to grow, ~40 MiB at ~150 bytes an entry. */
export const DEFAULT_TOKEN_CACHE_ENTRIES = 250_000;

export class TokenCache {
  private readonly byHash = new Map<string, EnrolledDevice>();
  /** The cached token hash of each device id (one current token per device). */
  private readonly hashOf = new Map<string, string>();

  constructor(private readonly max = DEFAULT_TOKEN_CACHE_ENTRIES) {}

  get(tokenHash: string): EnrolledDevice | undefined {
    return this.byHash.get(tokenHash);
  }

  /** Remembers what the database answered for `tokenHash` (a known token only). */
  set(tokenHash: string, device: EnrolledDevice): void {
    if (this.max <= 0) return;
    const previous = this.hashOf.get(device.id);
    if (previous !== undefined && previous !== tokenHash) this.byHash.delete(previous);
    this.byHash.delete(tokenHash);
    this.byHash.set(tokenHash, { id: device.id, enrollment: device.enrollment });
    this.hashOf.set(device.id, tokenHash);
    while (this.byHash.size > this.max) {
      const [oldest, d] = this.byHash.entries().next().value as [string, EnrolledDevice];
      this.byHash.delete(oldest);
      if (this.hashOf.get(d.id) === oldest) this.hashOf.delete(d.id);
    }
  }

  /** Device `id` was enrolled again (through this collector): its cached token stops at once. */
  enrolled(id: string): void {
    const h = this.hashOf.get(id);
    if (h === undefined) return;
    this.hashOf.delete(id);
    this.byHash.delete(h);
  }

  /** The store refused a batch of `id`'s `enrollment` as stale: drop the token cached for it. */
  forget(id: string, enrollment: number): void {
    const h = this.hashOf.get(id);
    if (h !== undefined && this.byHash.get(h)?.enrollment === enrollment) this.enrolled(id);
  }

  get size(): number {
    return this.byHash.size;
  }
}
