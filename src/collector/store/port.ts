/**
 * Owns the collector's storage port: the async role interfaces every part of the collector talks
 * to (routes, ingest, forwarders, retention, metrics), whatever holds the data. Two stores
 * implement it: SQLite (sqlite-store.ts, the embedded default: one process) and PostgreSQL
 * (postgres-store.ts: several collectors on one database). open-store.ts picks one from
 * `store_url`. The contract test (test/collector/store-contract.test.ts) runs the same bodies
 * against both, so a behaviour documented here holds on both.
 *
 * The data types (rows, batches, queries) are the SQLite store's of before the port
 * (collector-store.ts) and are re-exported here; callers import them from this module.
 */
import type {
  BatchToStore,
  CoverageCounts,
  DeviceRow,
  EnrolledDevice,
  EventQuery,
  InsertResult,
  NewPolicyPublication,
  PolicyChannel,
  PolicyChannelStamp,
  PolicyChannelState,
  PolicyPublicationRow,
  ShadowDeviceCount,
  ShadowRuleCount,
  StoredEventRow,
} from '../collector-store.js';
import type { ConsoleQueries, ConsoleSessions } from './console-port.js';

export type {
  BatchToStore,
  CoverageCounts,
  DeviceCoverage,
  DeviceRow,
  EnrolledDevice,
  EventQuery,
  IncomingEvent,
  InsertResult,
  NewPolicyPublication,
  PolicyChannel,
  PolicyChannelStamp,
  PolicyChannelState,
  PolicyPublicationAction,
  PolicyPublicationRow,
  ShadowDeviceCount,
  ShadowRuleCount,
  StoredEventRow,
} from '../collector-store.js';
export type {
  ConsoleDevice,
  ConsoleDeviceFilter,
  ConsoleEventFilter,
  ConsoleEventSummary,
  ConsoleOverview,
  ConsoleQueries,
  ConsoleRole,
  ConsoleSession,
  ConsoleSessions,
  DevicePageRequest,
  DevicePolicyState,
  DeviceSort,
  EventPageRequest,
  Page,
  PolicyRollout,
  RuleActivityRequest,
  RuleBucket,
  RuleTop,
} from './console-port.js';

/** The identity fields of an enrolling device (what `POST /v1/enroll` carries). */
export interface EnrollingDevice {
  readonly id: string;
  readonly hostname: string;
  readonly os: string;
  readonly agent_version: string;
}

/** Devices and their tokens. */
export interface DeviceRegistry {
  /**
   * The device and enrollment a token hash belongs to, or undefined. Only the newest enrollment's
   * token is known, so a token of an older enrollment of the id is unknown — at once through this
   * store; a store that caches tokens (PostgreSQL, token-cache.ts) may still answer for a token
   * replaced through another collector, and `insertGroup` then refuses its batches as `stale`.
   * Safe at any rate.
   */
  deviceForTokenHash(tokenHash: string): Promise<EnrolledDevice | undefined>;
  /**
   * Enrolls (or re-enrolls) a device: a known id gets the new token hash (its old token stops
   * working at once) and the next enrollment generation (1 for a new id); the seq guards of its
   * policy version and coverage are reset. Durable when it resolves; resolves with the generation.
   * Concurrent enrollments of one id each get their own generation.
   */
  enrollDevice(device: EnrollingDevice, tokenHash: string, now: string): Promise<number>;
}

/** The append-only, idempotent event log. */
export interface EventLog {
  /**
   * Stores batches (each of one device) idempotently in one transaction — key (device id,
   * enrollment, event id); an event already stored, or earlier in the same group, is a duplicate —
   * and updates each device's last-seen, agent version, policy version and coverage (newest seq
   * wins; agent, policy and coverage only from a batch of the device's current enrollment).
   * PostgreSQL, which caches tokens, stores only batches of the device's current enrollment: a
   * batch of an older one (the device was enrolled again after its token was checked, possibly
   * through another collector) stores nothing and is reported `stale`; the check and the
   * enrollment are serialised on the device row, so no event of a replaced token is stored once
   * the enrollment has committed. SQLite (one process, no cache) stores such a batch under its
   * old enrollment, as before: it can only be one whose token was checked before the enrollment.
   * Durable when it resolves;
   * rejects (storing nothing of the group) when the commit fails. Results in the order of
   * `batches`. Wakes the `onStored` listener after a commit that stored something.
   */
  insertGroup(batches: readonly BatchToStore[]): Promise<InsertResult[]>;
  /**
   * Events matching `q`, ascending by `rid` (receipt order on SQLite; allocation order on
   * PostgreSQL, where a row may appear later below a rid already seen — admin paging only, never
   * the forwarders' cursor).
   */
  queryEvents(q: EventQuery): Promise<StoredEventRow[]>;
  /**
   * Called after every commit that stored at least one new event — this process's, and on
   * PostgreSQL also another collector's (its forwarders wake up) — and after `rewindForwarder`
   * moved a cursor back, so the runners deliver again without a restart. May be called spuriously.
   */
  onStored: (() => void) | null;
}

/** What one claimed delivery came to. */
export type ClaimOutcome =
  /** `deliver` ran and resolved; the sink's cursor moved past `events` rows. */
  | { readonly kind: 'delivered'; readonly events: number }
  /** Nothing past the sink's cursor (that this store can hand out yet). */
  | { readonly kind: 'empty' }
  /** Another collector is delivering this sink right now; try again soon. */
  | { readonly kind: 'busy' };

export interface ClaimLimits {
  /** Events per delivery at most. */
  readonly maxEvents: number;
  /** Body bytes per delivery at most (at least one event is always handed out). */
  readonly maxBytes: number;
}

/** The forwarders' durable cursors, and the claim that makes one collector at a time deliver a sink. */
export interface ForwarderCursors {
  /**
   * Claims sink `sink`, reads the next events past its durable cursor (within `limits`), calls
   * `deliver` with them and — only when it resolves — moves the cursor past them, then releases
   * the claim. While one collector holds a sink's claim no other collector gets it (`busy`); a
   * claim dies with its holder (process or connection), so a collector killed mid-delivery hands
   * over and the next holder delivers that batch again (at-least-once across a crash, never a
   * gap). A row that commits later than rows after it is still handed out, after them. When
   * `deliver` rejects, the cursor stays and the rejection propagates.
   */
  deliverNext(
    sink: string,
    limits: ClaimLimits,
    deliver: (events: readonly StoredEventRow[]) => Promise<void>,
  ): Promise<ClaimOutcome>;
  /** Events stored but not yet past `sink`'s cursor (exact on SQLite; an estimate from rids on PostgreSQL). */
  forwarderLag(sink: string): Promise<number>;
  /** `sink`'s durable cursor, or undefined when it never delivered (it will start from the first event). */
  forwarderCursor(sink: string): Promise<ForwarderCursor | undefined>;
  /**
   * Moves `sink`'s durable cursor back so that its next deliveries hand out again every
   * still-stored event received at or after `since` (RFC 3339), and whatever follows the first of
   * them in delivery order. Never moves a cursor forward: when the sink has not delivered any
   * stored event received since then, nothing changes (`nothing_delivered_since`); a sink without
   * a cursor delivers everything anyway (`no_cursor`). Taken under the sink's claim, the one
   * `deliverNext` takes, so a delivery in flight on any collector finishes (and moves the cursor)
   * first and cannot overwrite the rewind with its own advance: it waits up to `waitMs` for the
   * claim (and a `pruneEvents` step in progress), then answers `busy` having changed nothing. A
   * rewind and a `pruneEvents` step never interleave, so nothing it counts as due again is then
   * deleted. All or nothing: a collector that dies mid-rewind leaves the cursor as it was. Wakes
   * the `onStored` listener after a rewind.
   */
  rewindForwarder(sink: string, since: string, waitMs: number): Promise<RewindOutcome>;
}

/**
 * A sink's durable cursor: the position of the last event it delivered. On SQLite the position is
 * a rid (receipt order); on PostgreSQL (`txid`, `rid`) in commit order (postgres-store.ts).
 */
export interface ForwarderCursor {
  readonly rid: number;
  /** PostgreSQL: the transaction id of the position (xid8, as text); null on SQLite. */
  readonly txid: string | null;
  /** When the cursor last moved (a delivery or a rewind), RFC 3339. */
  readonly updated_at: string;
}

/** Events counted exactly at most when a rewind reports how many are due again (bounds its time). */
export const REWIND_COUNT_BOUND = 1_000_000;

/** What `rewindForwarder` did. */
export type RewindOutcome =
  /**
   * The cursor moved from `previous` back to `cursor`; `dueAgain` stored events that had been
   * delivered are due again — counted exactly up to REWIND_COUNT_BOUND (`dueAgainExact`), past it
   * an estimate from the rids.
   */
  | {
      readonly kind: 'rewound';
      readonly previous: ForwarderCursor;
      readonly cursor: ForwarderCursor;
      readonly dueAgain: number;
      readonly dueAgainExact: boolean;
    }
  /** Nothing changed: the sink has no cursor yet, or delivered no stored event received since then. */
  | {
      readonly kind: 'unchanged';
      readonly reason: 'no_cursor' | 'nothing_delivered_since';
      readonly cursor: ForwarderCursor | null;
    }
  /** A delivery held the sink's claim for longer than the wait: nothing changed; try again. */
  | { readonly kind: 'busy' };

/** Deleting expired events. */
export interface Retention {
  /**
   * Deletes up to `limit` events received before `receivedBefore` (RFC 3339), oldest first, in one
   * short transaction, never an event some sink in `sinks` has not delivered yet (a sink without a
   * cursor protects everything), nor one a concurrent `rewindForwarder` made due again (the two
   * never interleave). Never blocks ingest for longer than that transaction. Resolves with how
   * many were deleted.
   */
  pruneEvents(receivedBefore: string, sinks: readonly string[], limit: number): Promise<number>;
}

/** The fleet view of the admin API and the metrics. */
export interface FleetQueries {
  /** Devices ordered by id, after `afterId`, at most `limit`; optionally only (non-)silent ones. */
  listDevices(
    afterId: string | undefined,
    limit: number,
    silentBefore?: { readonly before: string; readonly silent: boolean },
  ): Promise<DeviceRow[]>;
  /** Device counts: total and those last seen before `silentBefore` (RFC 3339). */
  deviceCounts(silentBefore: string): Promise<{ total: number; silent: number }>;
  /** Devices grouped by exec events / pre-exec deny state (null: no heartbeat says), with their counters summed. */
  coverageCounts(): Promise<CoverageCounts[]>;
}

/** The record of policy publications (admin API: POST /v1/admin/policy, GET /v1/admin/policy/history). */
export interface PolicyPublications {
  /** Appends one publication record. Durable when it resolves; never deduplicates (each call is one publication). */
  recordPolicyPublication(p: NewPolicyPublication): Promise<void>;
  /** Records newest first (descending id), at most `limit`, only ids below `beforeId` when given (paging). */
  listPolicyPublications(limit: number, beforeId?: number): Promise<PolicyPublicationRow[]>;
}

/**
 * The served policy per channel (`enforced`, `shadow`), shared by every collector on the database:
 * the agent routes serve the newest state, checking the cheap stamp on each request.
 */
export interface PolicyChannels {
  /** The channel's publication id, version and presence (a one-row read; no envelope), or undefined. */
  policyChannelStamp(channel: PolicyChannel): Promise<PolicyChannelStamp | undefined>;
  /** The channel's state with its envelope, or undefined when it was never set. */
  policyChannel(channel: PolicyChannel): Promise<PolicyChannelState | undefined>;
  /**
   * Atomically across collectors: when `p.version` is greater than the channel's version (or it
   * was never set), records `p` (channel set to `channel`) and makes `envelope` the channel's;
   * else writes nothing. Resolves with the publication id, or null when the version was not greater.
   */
  publishToPolicyChannel(
    channel: PolicyChannel,
    envelope: string,
    p: NewPolicyPublication,
  ): Promise<number | null>;
  /**
   * Atomically: when the channel's state is still the one publication `expectedPublicationId` set,
   * records `p` (action `clear`) and clears the channel, keeping its version; else writes nothing.
   * Resolves with the publication id, or null.
   */
  clearPolicyChannel(
    channel: PolicyChannel,
    expectedPublicationId: number,
    p: NewPolicyPublication,
  ): Promise<number | null>;
  /**
   * `policy.shadow_match` counts of shadow `version` per rule: rules after `afterRule` (byte
   * order), at most `limit`. Reads only events of that type (the type index), never the whole log.
   */
  shadowMatchesByRule(
    version: number,
    afterRule: string | undefined,
    limit: number,
  ): Promise<ShadowRuleCount[]>;
  /** The same per (device, rule), after `after` in (device id, rule id) order, at most `limit`. */
  shadowMatchesByDevice(
    version: number,
    after: { readonly device_id: string; readonly rule_id: string } | undefined,
    limit: number,
  ): Promise<ShadowDeviceCount[]>;
}

/** Everything the collector stores. */
export interface CollectorStorePort
  extends DeviceRegistry,
    EventLog,
    ForwarderCursors,
    Retention,
    FleetQueries,
    PolicyPublications,
    ConsoleQueries,
    ConsoleSessions,
    PolicyChannels {
  /** `sqlite` or `postgres`. */
  readonly kind: 'sqlite' | 'postgres';
  /** Where the data lives, for logs (a file path, or the URL without password). */
  readonly location: string;
  /** The schema version found when the store was opened (0: new) and the one it was migrated to. */
  readonly schema: { readonly from: number; readonly to: number };
  /** True when the store answers a trivial query. */
  healthy(): Promise<boolean>;
  /** Releases connections/files. Safe to call twice; other calls after it reject. */
  close(): Promise<void>;
}
