/**
 * Owns the console's side of the storage port: the paged, filtered fleet views the browser
 * console (src/collector/console/) shows, and the console's login sessions. Both stores implement
 * it (sqlite-store.ts, postgres-store.ts); the contract test (test/collector/store-contract.test.ts)
 * runs the same bodies against both. Every list is keyset-paged and bounded (`limit` 1..500): no
 * call reads a whole table, and every answer stays fast at 100,000 devices and 10 million events
 * (bench/console.bench.js).
 *
 * Where the answers come from (kept at ingest, in the transaction that stores the events):
 * - device columns from the newest heartbeat (tags, outbox_depth, dropped_total, with the
 *   coverage: newest seq of the current enrollment wins) and the policy state (see
 *   DevicePolicyState), both guarded by seq like the policy version;
 * - events.user_name (the event's `user`) and indexes for every filter and sort;
 * - rollups rule_hourly / rule_daily: events per (rule, type, hour/day of the event time).
 *   They are COUNTS OF EVENTS RECEIVED, NOT OF EVENTS KEPT: retention (pruneEvents) deletes events
 *   and leaves the rollups, so the rules chart still shows activity older than the events kept (a
 *   rollup row is per rule, type and hour: a few hundred rows an hour at most, kept). A duplicate
 *   (resent) event is not counted. Events stored before the console's migration are not counted.
 * ruleTop and the timeline read the events themselves (through indexes), so they only see events
 * still kept.
 *
 * Text comparisons are byte order (C collation on PostgreSQL), so both stores sort alike; the
 * hostname search is case-insensitive for ASCII letters only, and `%`, `_`, `\` in it are literal.
 */
import type { DeviceCoverage, StoredEventRow } from '../collector-store.js';

/**
 * Where a device stands with the policy: from its newest heartbeat's policy_state / policy.* events.
 * A heartbeat says ok / stale / unknown (`none`: no policy yet); policy.rejected makes it `rejected`
 * and that stands over later heartbeats (the agent keeps enforcing its last good policy and says
 * `ok` meanwhile) until a policy.applied (`ok`). Before any of them: `unknown`.
 */
export type DevicePolicyState = 'ok' | 'stale' | 'rejected' | 'unknown';

export interface ConsoleDeviceFilter {
  /** Case-insensitive (ASCII) substring of the hostname, or an exact device id. */
  readonly search?: string;
  /** Devices whose tags include this tag exactly. */
  readonly tag?: string;
  readonly agentVersion?: string;
  readonly policyState?: DevicePolicyState;
  /** Only devices last seen before `before` (silent: true) or at/after it (silent: false). */
  readonly silentBefore?: { readonly before: string; readonly silent: boolean };
}

export type DeviceSort = 'hostname' | 'last_seen_at' | 'agent_version' | 'policy_version';

export interface DevicePageRequest {
  readonly filter: ConsoleDeviceFilter;
  readonly sort: DeviceSort;
  readonly order: 'asc' | 'desc';
  /** 1..500. */
  readonly limit: number;
  /** The previous page's `next`, verbatim (opaque; a malformed one rejects with code GUARD_BAD_CURSOR). */
  readonly cursor?: string;
}

export interface ConsoleDevice {
  readonly id: string;
  readonly hostname: string;
  readonly os: string;
  readonly agent_version: string;
  /** From the device's newest heartbeat (`tags`); [] before one says. */
  readonly tags: readonly string[];
  readonly enrolled_at: string;
  readonly last_seen_at: string;
  readonly stopped_at: string | null;
  readonly policy_version: number | null;
  readonly policy_state: DevicePolicyState;
  /** The reason of its newest policy.rejected while the state is `rejected`; null otherwise. */
  readonly policy_error: string | null;
  readonly coverage: DeviceCoverage | null;
  /** From the newest heartbeat; null before one. */
  readonly outbox_depth: number | null;
  readonly dropped_total: number | null;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Cursor for the next page, or null at the end. */
  readonly next: string | null;
}

export interface ConsoleEventFilter {
  readonly types?: readonly string[];
  readonly ruleId?: string;
  readonly deviceId?: string;
  /** The event's user name (`user.name`) exactly. */
  readonly user?: string;
  /** Event time (agent clock) >= since, RFC 3339. */
  readonly since?: string;
  /** Event time < until, RFC 3339. */
  readonly until?: string;
}

export interface EventPageRequest {
  readonly filter: ConsoleEventFilter;
  /** 1..500. Newest first (descending rid). */
  readonly limit: number;
  readonly cursor?: string;
}

/** One timeline row: what the list shows without the body. */
export interface ConsoleEventSummary {
  readonly rid: number;
  readonly id: string;
  readonly device_id: string;
  readonly hostname: string;
  readonly type: string;
  readonly time: string;
  readonly received_at: string;
  readonly rule_id: string | null;
  readonly user: string | null;
}

export interface RuleActivityRequest {
  /** RFC 3339, inclusive. */
  readonly since: string;
  /** RFC 3339, exclusive. */
  readonly until: string;
  /**
   * Bucket width: 3600 (hour) or 86400 (day). Buckets are whole (UTC): `since` rounds down and
   * `until` up to the width; at most 2,400 buckets (else GUARD_BAD_REQUEST).
   */
  readonly bucketSeconds: 3600 | 86400;
  /**
   * The rules whose buckets are read (the rules shown; at most MAX_ACTIVITY_RULES, else
   * GUARD_BAD_REQUEST). Any device can post events naming any rule id, each a rollup row: the read
   * is bounded by what is asked (buckets × rules index lookups), not by what devices sent.
   */
  readonly ruleIds: readonly string[];
}

/** Events of one rule and type in one time bucket (bucket_start: RFC 3339 UTC). */
export interface RuleBucket {
  readonly rule_id: string;
  readonly type: string;
  readonly bucket_start: string;
  readonly count: number;
}

export interface RuleTop {
  readonly devices: readonly {
    readonly device_id: string;
    readonly hostname: string;
    readonly count: number;
  }[];
  readonly users: readonly { readonly user: string; readonly count: number }[];
}

export interface PolicyRollout {
  /** Devices per policy version in force (null: none yet) and state. */
  readonly versions: readonly {
    readonly version: number | null;
    readonly state: DevicePolicyState;
    readonly devices: number;
  }[];
  /** Devices in state `rejected`, grouped by their error (most frequent first, at most 20). */
  readonly rejections: readonly { readonly error: string; readonly devices: number }[];
}

export interface ConsoleOverview {
  readonly devices_total: number;
  /** Last seen before `silentBefore`. */
  readonly devices_silent: number;
  /** Policy version below `publishedVersion`, or state stale/rejected. */
  readonly devices_stale_policy: number;
  /** process.blocked + process.denied + package.quarantined + path.quarantined received since `since24h`. */
  readonly blocks_24h: number;
  /** Events received in the last 5 minutes before `now`, divided by 300. */
  readonly ingest_per_s: number;
}

export type ConsoleRole = 'admin' | 'viewer';

export interface ConsoleSession {
  readonly role: ConsoleRole;
  readonly created_at: string;
  readonly expires_at: string;
}

/** The console's reads. */
export interface ConsoleQueries {
  consoleDevices(req: DevicePageRequest): Promise<Page<ConsoleDevice>>;
  consoleDevice(id: string): Promise<ConsoleDevice | undefined>;
  /**
   * The timeline, newest first. A page may hold fewer items than `limit`, even none, with a
   * non-null `next`: SQLite looks through a bounded window of events per page (it runs on the
   * collector's main thread; sqlite-store.ts CONSOLE_SCAN_WINDOW), and paging on finds the rest.
   */
  consoleEvents(req: EventPageRequest): Promise<Page<ConsoleEventSummary>>;
  /** One stored event with its device's hostname, or undefined. */
  consoleEvent(rid: number): Promise<(StoredEventRow & { readonly hostname: string }) | undefined>;
  ruleActivity(req: RuleActivityRequest): Promise<RuleBucket[]>;
  /**
   * The devices and users with the most events of `ruleId` since `since` (event time; at most
   * `limit` each, 1..500), most first, ties by id / name.
   */
  ruleTop(ruleId: string, since: string, limit: number): Promise<RuleTop>;
  policyRollout(): Promise<PolicyRollout>;
  consoleOverview(q: {
    readonly now: string;
    readonly silentBefore: string;
    readonly since24h: string;
    readonly publishedVersion: number | null;
  }): Promise<ConsoleOverview>;
}

/**
 * Console login sessions, shared by every collector on the database (a load balancer may send
 * each request to another one). Only the SHA-256 of the session secret is stored.
 */
export interface ConsoleSessions {
  createSession(idHash: string, session: ConsoleSession): Promise<void>;
  /** The session, when it exists and `now` < expires_at. */
  sessionByHash(idHash: string, now: string): Promise<ConsoleSession | undefined>;
  deleteSession(idHash: string): Promise<void>;
  /** Deletes expired sessions (at most 1,000 per call: call again while it returns 1,000); resolves with how many. */
  pruneSessions(now: string): Promise<number>;
}
