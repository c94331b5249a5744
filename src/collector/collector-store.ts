/**
 * Owns the collector's SQLite database: schema migrations (keyed on `PRAGMA user_version`, through
 * `openDatabase`), enrolled devices with hashed tokens, the idempotent event store, the admin
 * queries, and the forwarders' durable cursors.
 *
 * Idempotency is per (device id, enrollment, event id). An event id is only unique within the
 * device that made it, so the device has to be part of the key — otherwise one token could pre-empt
 * (suppress) another device's events by posting their public ids first. And the enrollment
 * generation has to be part of it too: every (re-)enrollment of a device id gets the next
 * `devices.enrollment` number, its token maps to (device id, enrollment), and each stored event
 * records the enrollment it was posted under. Whoever holds the enroll secret can re-enroll an
 * existing device id and post that device's (public) event ids first; those copies belong to the
 * forger's enrollment, so the real machine's events — posted after it re-enrolls, under a newer
 * enrollment — never collide with them. The price: an honest agent whose ack was lost AND that
 * re-enrolled before re-sending stores the batch twice (same device id + event id, two
 * enrollments) — still at-least-once; consumers de-duplicate by (device_id, id).
 *
 * Durability: `synchronous = FULL`. The agent deletes an event from its outbox as soon as the
 * collector acknowledges it, so an ack must mean "on disk, survives power loss" — with NORMAL a
 * power cut could lose the last acknowledged batches that exist nowhere else any more. The fsync
 * cost is paid once per *group* of concurrent batches: `insertGroup` commits several batches in one
 * transaction (the ingest queue groups what arrived together), and requests are answered after it.
 *
 * Forwarder outboxes: the events table is append-only with a strictly increasing `rid`
 * (AUTOINCREMENT: never reused, even after retention deletes). Each forwarder's outbox is
 * "events with rid > its own durable cursor" (`forwarder_cursors`), so every sink has its own
 * queue and retry state, and ingest never waits for any sink — without writing each event twice.
 */
import { type Db, openDatabase } from '../store/database.js';
import { policyStateChange, ruleHourCounts } from './store/console-paging.js';
import type { DevicePolicyState } from './store/console-port.js';

export const COLLECTOR_MIGRATIONS: readonly string[] = [
  // 1: initial schema
  `
  CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    token_hash      TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the bearer token; the token itself is never stored
    hostname        TEXT NOT NULL,
    os              TEXT NOT NULL,
    agent_version   TEXT NOT NULL,
    enrolled_at     TEXT NOT NULL,
    last_seen_at    TEXT NOT NULL,
    policy_version  INTEGER,
    policy_seq      INTEGER                -- seq of the event policy_version came from (newest wins)
  ) STRICT;
  CREATE INDEX devices_last_seen ON devices(last_seen_at);

  CREATE TABLE events (
    rid          INTEGER PRIMARY KEY AUTOINCREMENT,  -- receipt order; forwarder cursors and admin paging
    id           TEXT NOT NULL UNIQUE,               -- the event's UUIDv7: the idempotency key
    device_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    type         TEXT NOT NULL,
    time         TEXT NOT NULL,
    rule_id      TEXT,
    received_at  TEXT NOT NULL,
    body         TEXT NOT NULL                       -- the event JSON exactly as received
  ) STRICT;
  CREATE INDEX events_device ON events(device_id, rid);
  CREATE INDEX events_type ON events(type, rid);
  CREATE INDEX events_time ON events(time);
  CREATE INDEX events_rule ON events(rule_id, rid) WHERE rule_id IS NOT NULL;

  CREATE TABLE forwarder_cursors (
    sink        TEXT PRIMARY KEY,
    last_rid    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
  ) STRICT;
  `,
  // 2: idempotency per (device, enrollment, event id). Event ids are readable on every agent's
  // public socket; with a global key, a device that posted another device's ids first made that
  // device's real events "duplicates" (acknowledged, deleted on the agent, never stored); with a
  // key per device, whoever holds the enroll secret could re-enroll the device's id and do the
  // same (see the header). Each (re-)enrollment of an id is a new generation, `devices.enrollment`,
  // and events are unique within one generation. SQLite cannot drop a
  // UNIQUE constraint, so the table is rebuilt: every row keeps its rid, and the AUTOINCREMENT
  // high-water mark is carried over (rids are never reused, or a forwarder cursor past a
  // pruned-away tail would skip new events).
  `
  CREATE TABLE events_v2 (
    rid          INTEGER PRIMARY KEY AUTOINCREMENT,  -- receipt order; forwarder cursors and admin paging
    id           TEXT NOT NULL,                      -- the event's UUIDv7, unique per device
    device_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    type         TEXT NOT NULL,
    time         TEXT NOT NULL,
    rule_id      TEXT,
    received_at  TEXT NOT NULL,
    body         TEXT NOT NULL,                      -- the event JSON exactly as received
    enrollment   INTEGER NOT NULL,                   -- devices.enrollment of the token it was posted with
    UNIQUE (device_id, enrollment, id)               -- the idempotency key
  ) STRICT;
  -- every device starts at enrollment 1 (its token of today), and so do the events already stored:
  -- an agent re-sending an unacknowledged batch with that token after the upgrade still gets
  -- "duplicate"
  ALTER TABLE devices ADD COLUMN enrollment INTEGER NOT NULL DEFAULT 1;
  INSERT INTO events_v2(rid, id, device_id, seq, type, time, rule_id, received_at, body, enrollment)
    SELECT rid, id, device_id, seq, type, time, rule_id, received_at, body, 1 FROM events ORDER BY rid;
  DELETE FROM sqlite_sequence WHERE name = 'events_v2';
  INSERT INTO sqlite_sequence(name, seq) SELECT 'events_v2', seq FROM sqlite_sequence WHERE name = 'events';
  DROP TABLE events;
  ALTER TABLE events_v2 RENAME TO events;
  CREATE INDEX events_device ON events(device_id, rid);
  CREATE INDEX events_type ON events(type, rid);
  CREATE INDEX events_time ON events(time);
  CREATE INDEX events_rule ON events(rule_id, rid) WHERE rule_id IS NOT NULL;
  `,
  // 3: what each device enforces with (its newest heartbeat's exec_events and exec_deny): which
  // sources run, kernel drops, deadline misses. Guarded by seq like policy_version.
  `
  ALTER TABLE devices ADD COLUMN coverage TEXT;
  ALTER TABLE devices ADD COLUMN coverage_seq INTEGER;
  `,
  // 4: a clean stop: the time of the device's agent.stopped while that is the newest event it
  // sent (cleared by the next new event), so the console tells "stopped cleanly" from "silent".
  `
  ALTER TABLE devices ADD COLUMN stopped_at TEXT;
  `,
  // 5: the record of policy publications through the admin API (who, when, which version, the
  // diff from the previous body, why), append-only.
  `
  CREATE TABLE policy_publications (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    version       INTEGER NOT NULL,
    published_at  TEXT NOT NULL,
    published_by  TEXT NOT NULL,
    message       TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    keyids        TEXT NOT NULL,
    verified      INTEGER NOT NULL,
    diff          TEXT
  );
  `,
  // 6: the browser console (store/console-port.ts). Device columns from the newest heartbeat
  // (tags, outbox depth, dropped total: guarded by coverage_seq, as they come with the coverage)
  // and the policy state (heartbeat / policy.applied / policy.rejected, guarded by
  // policy_state_seq); device_tags for the tag filter; indexes for each sort (id breaks ties: the
  // keyset); events.user_name and its index for the user filter; a covering index for a rule's top
  // devices and users; received_at for the overview's rates; rule_hourly and rule_daily, the per-hour and
  // per-day counts of each rule and type (event time) for the rules chart, added to at ingest. Rows stored before this
  // migration have user_name NULL and are not in rule_hourly (counts of events received from now on).
  `
  ALTER TABLE devices ADD COLUMN tags TEXT;
  ALTER TABLE devices ADD COLUMN outbox_depth INTEGER;
  ALTER TABLE devices ADD COLUMN dropped_total INTEGER;
  ALTER TABLE devices ADD COLUMN policy_state TEXT;
  ALTER TABLE devices ADD COLUMN policy_error TEXT;
  ALTER TABLE devices ADD COLUMN policy_state_seq INTEGER;
  CREATE INDEX devices_hostname ON devices(hostname, id);
  CREATE INDEX devices_last_seen_id ON devices(last_seen_at, id);
  CREATE INDEX devices_agent_version ON devices(agent_version, id);
  CREATE INDEX devices_policy_version ON devices(coalesce(policy_version, -1), id);
  CREATE INDEX devices_rollout ON devices(policy_version, policy_state);
  CREATE INDEX devices_policy_error ON devices(policy_state, policy_error);
  CREATE TABLE device_tags (
    tag        TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (tag, device_id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX device_tags_device ON device_tags(device_id);

  ALTER TABLE events ADD COLUMN user_name TEXT;   -- the event's user (user.name), as on PostgreSQL where USER is reserved
  CREATE INDEX events_user ON events(user_name, rid) WHERE user_name IS NOT NULL;
  CREATE INDEX events_rule_top ON events(rule_id, time, device_id, user_name) WHERE rule_id IS NOT NULL;
  CREATE INDEX events_received ON events(received_at, type);

  CREATE TABLE rule_hourly (
    rule_id  TEXT NOT NULL,
    type     TEXT NOT NULL,
    hour     TEXT NOT NULL,   -- YYYY-MM-DDTHH of the event time (UTC)
    count    INTEGER NOT NULL,
    PRIMARY KEY (hour, rule_id, type)
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE rule_daily (
    rule_id  TEXT NOT NULL,
    type     TEXT NOT NULL,
    day      TEXT NOT NULL,   -- YYYY-MM-DD of the event time (UTC)
    count    INTEGER NOT NULL,
    PRIMARY KEY (day, rule_id, type)
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);
  `,
  // 7: policy channels (shadow policies): the envelope served per channel ('enforced', 'shadow'),
  // so every collector on the database serves the newest publication; the publication record
  // says which channel and what was done (publish, promote, clear).
  `
  ALTER TABLE policy_publications ADD COLUMN channel TEXT NOT NULL DEFAULT 'enforced';
  ALTER TABLE policy_publications ADD COLUMN action TEXT NOT NULL DEFAULT 'publish';
  CREATE TABLE policy_channels (
    channel         TEXT PRIMARY KEY,
    version         INTEGER NOT NULL,   -- highest version ever set on the channel (kept when cleared)
    envelope        TEXT,               -- the served envelope; NULL = cleared
    publication_id  INTEGER NOT NULL,   -- the policy_publications row that set this state
    updated_at      TEXT NOT NULL
  );
  `,
];

/** A policy publication to record (POST /v1/admin/policy). */
export interface NewPolicyPublication {
  /** The published body's `version`. */
  readonly version: number;
  /** RFC 3339. */
  readonly published_at: string;
  /** Who published (the name the admin gave; the admin token has no identity of its own). */
  readonly published_by: string;
  /** Why (the admin's message; empty when none). */
  readonly message: string;
  /** Hex SHA-256 of the body bytes that were signed. */
  readonly sha256: string;
  /** JSON array of the envelope's signature key ids. */
  readonly keyids: string;
  /** True when the collector verified the signatures against its configured trusted keys. */
  readonly verified: boolean;
  /** JSON of the PolicyDiff from the body served before (null for the first publication). */
  readonly diff: string | null;
  /** Which policy channel (default `enforced`). */
  readonly channel?: PolicyChannel;
  /** What was done (default `publish`). */
  readonly action?: PolicyPublicationAction;
}

/** The served policy channels: the enforced ban list, and a candidate evaluated but never acted on. */
export type PolicyChannel = 'enforced' | 'shadow';
/** publish: an envelope uploaded; promote: the shadow made the enforced policy; clear: the shadow withdrawn. */
export type PolicyPublicationAction = 'publish' | 'promote' | 'clear';

/** A recorded publication, with its id (ascending in recording order). */
export interface PolicyPublicationRow extends NewPolicyPublication {
  readonly id: number;
  readonly channel: PolicyChannel;
  readonly action: PolicyPublicationAction;
}

/** A policy channel's state without the envelope (the per-request freshness check). */
export interface PolicyChannelStamp {
  /** The publication that set this state (changes with every publish/promote/clear). */
  readonly publication_id: number;
  /** Highest version ever set on the channel (kept when it is cleared). */
  readonly version: number;
  /** False when the channel was cleared. */
  readonly present: boolean;
}

/** A policy channel's state with its envelope (null when cleared). */
export interface PolicyChannelState extends PolicyChannelStamp {
  readonly envelope: string | null;
  readonly updated_at: string;
}

/** Shadow would-match counts of one rule. */
export interface ShadowRuleCount {
  readonly rule_id: string;
  readonly matches: number;
  readonly devices: number;
  readonly last_at: string;
}

/** Shadow would-match counts of one (device, rule). */
export interface ShadowDeviceCount {
  readonly device_id: string;
  readonly rule_id: string;
  readonly matches: number;
  readonly last_at: string;
}

export interface DeviceRow {
  readonly id: string;
  /** Enrollment generation: 1 at the first enrollment of the id, +1 at every re-enrollment. */
  readonly enrollment: number;
  readonly hostname: string;
  readonly os: string;
  readonly agent_version: string;
  readonly enrolled_at: string;
  readonly last_seen_at: string;
  readonly policy_version: number | null;
  /**
   * The device's newest heartbeat's coverage as JSON text (`{"exec_events":…,"exec_deny":…}`, see
   * DeviceCoverage), or null before its first heartbeat.
   */
  readonly coverage: string | null;
  /** Time of its agent.stopped while that is the newest event it sent; null otherwise. */
  readonly stopped_at: string | null;
}

/** What a device's newest heartbeat says it enforces with (agent.heartbeat exec_events / exec_deny). */
export interface DeviceCoverage {
  readonly exec_events: Record<string, unknown> | null;
  readonly exec_deny: Record<string, unknown> | null;
}

/** Devices by coverage state, and the kernel drops and deadline misses their newest heartbeats report. */
export interface CoverageCounts {
  readonly exec_events: string | null;
  readonly exec_deny: string | null;
  /** The process source the heartbeat names (exec_events.source), as sent: map to fixed labels. */
  readonly source: string | null;
  readonly devices: number;
  readonly drops: number;
  readonly deadline_misses: number;
}

/** One schema-valid event ready to store. */
export interface IncomingEvent {
  readonly id: string;
  readonly seq: number;
  readonly type: string;
  readonly time: string;
  readonly ruleId: string | null;
  readonly agentVersion: string | null;
  /** Set for `agent.heartbeat` / `policy.applied` events that name the policy version in force. */
  readonly policyVersion: number | null;
  /** Set for `agent.heartbeat`: its coverage (DeviceCoverage) as JSON text. */
  readonly coverage: string | null;
  /** Set for `agent.heartbeat`: its `tags` as a JSON array text (`[]` when it sends none). */
  readonly tags: string | null;
  /** Set for `agent.heartbeat`: its outbox_depth and dropped_total. */
  readonly outboxDepth: number | null;
  readonly droppedTotal: number | null;
  /**
   * What the event says about the device's policy state: a heartbeat's `policy_state` (`none` →
   * unknown), `rejected` for policy.rejected, `ok` for policy.applied; null for other events.
   */
  readonly policyState: DevicePolicyState | null;
  /** policy.rejected's reason; null otherwise. */
  readonly policyError: string | null;
  /** The event's `user.name` (process, package and path events), for the console's user filter. */
  readonly user: string | null;
  /** The event's JSON: what was validated (re-serialised, so a duplicate key of the line is gone). */
  readonly body: string;
}

export interface InsertResult {
  readonly accepted: number;
  readonly duplicates: number;
  /**
   * PostgreSQL only (port.ts `insertGroup`): nothing of the batch was stored because its
   * enrollment is no longer the device's current one — its token was replaced after it was checked.
   */
  readonly stale?: true;
}

export interface StoredEventRow {
  readonly rid: number;
  readonly device_id: string;
  /** The enrollment generation of the token the event was posted with. */
  readonly enrollment: number;
  readonly received_at: string;
  readonly body: string;
}

export interface EventQuery {
  readonly deviceId?: string;
  readonly type?: string;
  readonly ruleId?: string;
  /** Inclusive lower bound on the event `time` (RFC 3339 UTC). */
  readonly since?: string;
  /** Exclusive upper bound on the event `time`. */
  readonly until?: string;
  /** Only rows with rid greater than this (the page cursor). */
  readonly afterRid?: number;
  readonly limit: number;
}

/** What a device token authenticates: the device id and the enrollment the token was minted for. */
export interface EnrolledDevice {
  readonly id: string;
  readonly enrollment: number;
}

/** One device's events to store, as `insertGroup` takes them. */
export interface BatchToStore {
  readonly deviceId: string;
  /** The enrollment generation the batch's token belongs to (part of the idempotency key). */
  readonly enrollment: number;
  readonly events: readonly IncomingEvent[];
  readonly receivedAt: string;
}

export interface CollectorStoreOptions {
  readonly file: string;
}

/** The collector's SQLite store. One instance per process (one connection: better-sqlite3 is synchronous). */
export class CollectorStore {
  readonly db: Db;
  /** Set when the DB failed its integrity check at open and was moved aside. */
  readonly recovered: { readonly movedTo: string; readonly problem: string } | null;
  private readonly stmts;
  private closed = false;
  /** Called after every commit that stored at least one new event (forwarders wake up). */
  onStored: (() => void) | null = null;

  constructor(options: CollectorStoreOptions) {
    // 'header': a full integrity check reads every page, minutes at millions of events (database.ts).
    const opened = openDatabase(options.file, {
      migrations: COLLECTOR_MIGRATIONS,
      synchronous: 'FULL',
      integrity: 'header',
    });
    this.db = opened.db;
    this.recovered = opened.recovered;
    const db = this.db;
    this.stmts = {
      deviceByToken: db.prepare<[string], EnrolledDevice>(
        'SELECT id, enrollment FROM devices WHERE token_hash = ?',
      ),
      upsertDevice: db.prepare<
        [
          {
            id: string;
            token_hash: string;
            hostname: string;
            os: string;
            agent_version: string;
            now: string;
          },
        ],
        { enrollment: number }
      >(
        `INSERT INTO devices(id, token_hash, hostname, os, agent_version, enrolled_at, last_seen_at, enrollment)
         VALUES (@id, @token_hash, @hostname, @os, @agent_version, @now, @now, 1)
         ON CONFLICT(id) DO UPDATE SET token_hash = excluded.token_hash, hostname = excluded.hostname,
           os = excluded.os, agent_version = excluded.agent_version, enrolled_at = excluded.enrolled_at,
           last_seen_at = excluded.last_seen_at, policy_seq = NULL, coverage_seq = NULL, policy_state_seq = NULL, enrollment = devices.enrollment + 1
         RETURNING enrollment`,
      ),
      insertEvent: db.prepare(
        `INSERT OR IGNORE INTO events(id, device_id, enrollment, seq, type, time, rule_id, received_at, body, user_name)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      addRuleHour: db.prepare(
        `INSERT INTO rule_hourly(rule_id, type, hour, count) VALUES (?, ?, ?, ?)
         ON CONFLICT(hour, rule_id, type) DO UPDATE SET count = count + excluded.count`,
      ),
      addRuleDay: db.prepare(
        `INSERT INTO rule_daily(rule_id, type, day, count) VALUES (?, ?, ?, ?)
         ON CONFLICT(day, rule_id, type) DO UPDATE SET count = count + excluded.count`,
      ),
      setPolicyState: db.prepare(
        `UPDATE devices SET
           policy_state = CASE WHEN @keeps AND policy_state = 'rejected' THEN policy_state ELSE @state END,
           policy_error = CASE WHEN @keeps AND policy_state = 'rejected' THEN policy_error ELSE @error END,
           policy_state_seq = @seq
         WHERE id = @id AND enrollment = @enrollment AND (policy_state_seq IS NULL OR policy_state_seq <= @seq)`,
      ),
      // device_tags follows devices.tags (only the differences are written)
      dropTags: db.prepare(
        `DELETE FROM device_tags WHERE device_id = @id
           AND tag NOT IN (SELECT value FROM json_each((SELECT tags FROM devices WHERE id = @id)))`,
      ),
      addTags: db.prepare(
        `INSERT OR IGNORE INTO device_tags(tag, device_id)
         SELECT value, @id FROM json_each((SELECT tags FROM devices WHERE id = @id))`,
      ),
      touchDevice: db.prepare('UPDATE devices SET last_seen_at = ? WHERE id = ?'),
      // Versions only from a batch of the current enrollment: a batch posted with a token that was
      // replaced while it waited for its commit must not set the freshly reset policy seq guard.
      setAgentVersion: db.prepare('UPDATE devices SET agent_version = ? WHERE id = ? AND enrollment = ?'),
      setPolicyVersion: db.prepare(
        `UPDATE devices SET policy_version = ?, policy_seq = ?
         WHERE id = ? AND enrollment = ? AND (policy_seq IS NULL OR policy_seq <= ?)`,
      ),
      // Only from a batch of the current enrollment that stored something new: a resent old batch
      // (all duplicates) says nothing about what the device did last.
      setStopped: db.prepare('UPDATE devices SET stopped_at = ? WHERE id = ? AND enrollment = ?'),
      // the newest heartbeat's coverage and status (tags, outbox depth, dropped total)
      setCoverage: db.prepare(
        `UPDATE devices SET coverage = ?, tags = ?, outbox_depth = ?, dropped_total = ?, coverage_seq = ?
         WHERE id = ? AND enrollment = ? AND (coverage_seq IS NULL OR coverage_seq <= ?)`,
      ),
      // total(), not sum(): every device may report counters up to 2^53 - 1, and sum() of
      // integers raises `integer overflow` past 2^63 (1,024 such devices), which would drop the
      // coverage gauges from every scrape. A double never throws; the caller saturates it.
      coverageCounts: db.prepare<[], CoverageCounts>(
        `SELECT json_extract(coverage, '$.exec_events.state') AS exec_events,
                json_extract(coverage, '$.exec_deny.state') AS exec_deny,
                json_extract(coverage, '$.exec_events.source') AS source,
                count(*) AS devices,
                total(json_extract(coverage, '$.exec_events.kernel_drops'))
                  + total(json_extract(coverage, '$.exec_events.queue_drops')) AS drops,
                total(json_extract(coverage, '$.exec_deny.deadline_misses')) AS deadline_misses
         FROM devices GROUP BY 1, 2, 3`,
      ),
      getCursor: db.prepare<[string], { last_rid: number }>(
        'SELECT last_rid FROM forwarder_cursors WHERE sink = ?',
      ),
      setCursor: db.prepare(
        `INSERT INTO forwarder_cursors(sink, last_rid, updated_at) VALUES (?, ?, ?)
         ON CONFLICT(sink) DO UPDATE SET last_rid = excluded.last_rid, updated_at = excluded.updated_at`,
      ),
      eventsAfter: db.prepare<[number, number], StoredEventRow>(
        'SELECT rid, device_id, enrollment, received_at, body FROM events WHERE rid > ? ORDER BY rid LIMIT ?',
      ),
      maxRid: db.prepare<[], { m: number | null }>('SELECT max(rid) AS m FROM events'),
      // rid order is receipt order, so the oldest rows come first and the scan stops early
      prune: db.prepare(
        `DELETE FROM events WHERE rid IN
           (SELECT rid FROM events WHERE rid <= ? AND received_at < ? ORDER BY rid LIMIT ?)`,
      ),
      deviceCounts: db.prepare<[string], { silent: number; total: number }>(
        'SELECT count(*) AS total, coalesce(sum(last_seen_at < ?), 0) AS silent FROM devices',
      ),
    };
  }

  /**
   * The device and enrollment a token hash belongs to, or undefined. Only the newest enrollment's
   * token is stored, so a token of an older enrollment of the id is unknown here.
   */
  deviceForTokenHash(tokenHash: string): EnrolledDevice | undefined {
    const row = this.stmts.deviceByToken.get(tokenHash);
    return row ? { id: row.id, enrollment: row.enrollment } : undefined;
  }

  /**
   * Enrolls (or re-enrolls) a device: a known id gets the new token hash, so its old token stops
   * working at once (rotation), and the next enrollment generation (1 for a new id). The seq guard
   * of the policy version is reset: an agent that re-enrolls may have lost its state (reinstall,
   * recovered DB) and count seq from 1 again. Durable when it returns; returns the generation.
   */
  enrollDevice(
    device: { id: string; hostname: string; os: string; agent_version: string },
    tokenHash: string,
    now: string,
  ): number {
    const row = this.stmts.upsertDevice.get({ ...device, token_hash: tokenHash, now });
    if (!row) throw new Error('enrolling a device returned no row');
    return row.enrollment;
  }

  /**
   * Stores batches (each of one device) idempotently in ONE transaction (INSERT OR IGNORE by
   * (device id, enrollment, event id)) and updates each device's last-seen and — for a batch of the
   * device's current enrollment — its agent and policy versions. Durable when it returns
   * (synchronous=FULL): one fsync for the whole group. Throws (and stores nothing of the group)
   * when the commit fails. Results are in the order of `batches`.
   */
  insertGroup(batches: readonly BatchToStore[]): InsertResult[] {
    if (this.closed) throw new Error('collector store is closed');
    const results: InsertResult[] = [];
    let stored = 0;
    this.db.transaction(() => {
      const fresh: IncomingEvent[] = [];
      for (const b of batches) {
        let accepted = 0;
        let newestPolicy: IncomingEvent | null = null;
        let newestAgent: IncomingEvent | null = null;
        let newestCoverage: IncomingEvent | null = null;
        let newestStored: IncomingEvent | null = null;
        for (const e of b.events) {
          const added = this.stmts.insertEvent.run(
            e.id,
            b.deviceId,
            b.enrollment,
            e.seq,
            e.type,
            e.time,
            e.ruleId,
            b.receivedAt,
            e.body,
            e.user,
          ).changes;
          accepted += added;
          if (added > 0 && e.ruleId !== null) fresh.push(e);
          if (!newestStored || e.seq > newestStored.seq) newestStored = e;
          if (e.policyVersion !== null && (!newestPolicy || e.seq > newestPolicy.seq)) newestPolicy = e;
          if (e.agentVersion !== null && (!newestAgent || e.seq > newestAgent.seq)) newestAgent = e;
          if (e.coverage !== null && (!newestCoverage || e.seq > newestCoverage.seq)) newestCoverage = e;
        }
        this.stmts.touchDevice.run(b.receivedAt, b.deviceId);
        if (newestStored && accepted > 0)
          this.stmts.setStopped.run(
            newestStored.type === 'agent.stopped' ? newestStored.time : null,
            b.deviceId,
            b.enrollment,
          );
        if (newestAgent) this.stmts.setAgentVersion.run(newestAgent.agentVersion, b.deviceId, b.enrollment);
        if (newestPolicy)
          this.stmts.setPolicyVersion.run(
            newestPolicy.policyVersion,
            newestPolicy.seq,
            b.deviceId,
            b.enrollment,
            newestPolicy.seq,
          );
        if (newestCoverage) {
          const applied = this.stmts.setCoverage.run(
            newestCoverage.coverage,
            newestCoverage.tags,
            newestCoverage.outboxDepth,
            newestCoverage.droppedTotal,
            newestCoverage.seq,
            b.deviceId,
            b.enrollment,
            newestCoverage.seq,
          ).changes;
          if (applied > 0) {
            this.stmts.dropTags.run({ id: b.deviceId });
            this.stmts.addTags.run({ id: b.deviceId });
          }
        }
        const policyState = policyStateChange(b.events);
        if (policyState)
          this.stmts.setPolicyState.run({
            ...policyState,
            keeps: policyState.keepsRejected ? 1 : 0,
            id: b.deviceId,
            enrollment: b.enrollment,
          });
        stored += accepted;
        results.push({ accepted, duplicates: b.events.length - accepted });
      }
      for (const c of ruleHourCounts(fresh)) {
        this.stmts.addRuleHour.run(c.rule, c.type, c.hour, c.n);
        this.stmts.addRuleDay.run(c.rule, c.type, c.hour.slice(0, 10), c.n);
      }
    })();
    if (stored > 0) this.onStored?.();
    return results;
  }

  /** Devices ordered by id, after `afterId`, at most `limit`. */
  listDevices(
    afterId: string | undefined,
    limit: number,
    silentBefore?: { before: string; silent: boolean },
  ): DeviceRow[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (afterId !== undefined) {
      where.push('id > ?');
      params.push(afterId);
    }
    if (silentBefore) {
      where.push(silentBefore.silent ? 'last_seen_at < ?' : 'last_seen_at >= ?');
      params.push(silentBefore.before);
    }
    const sql = `SELECT id, enrollment, hostname, os, agent_version, enrolled_at, last_seen_at, policy_version, coverage, stopped_at FROM devices
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`;
    return this.db.prepare(sql).all(...params, limit) as DeviceRow[];
  }

  /** Device counts: total and those last seen before `silentBefore` (RFC 3339). */
  deviceCounts(silentBefore: string): { total: number; silent: number } {
    return this.stmts.deviceCounts.get(silentBefore) ?? { total: 0, silent: 0 };
  }

  /** Devices grouped by exec events / pre-exec deny state (null: no heartbeat says), with their counters. */
  coverageCounts(): CoverageCounts[] {
    return this.stmts.coverageCounts.all();
  }

  /** Events matching `q` in receipt order (rid ascending). */
  queryEvents(q: EventQuery): StoredEventRow[] {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown): void => {
      where.push(sql);
      params.push(v);
    };
    if (q.deviceId !== undefined) add('device_id = ?', q.deviceId);
    if (q.type !== undefined) add('type = ?', q.type);
    if (q.ruleId !== undefined) add('rule_id = ?', q.ruleId);
    if (q.since !== undefined) add('time >= ?', q.since);
    if (q.until !== undefined) add('time < ?', q.until);
    if (q.afterRid !== undefined) add('rid > ?', q.afterRid);
    const sql = `SELECT rid, device_id, enrollment, received_at, body FROM events
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY rid LIMIT ?`;
    return this.db.prepare(sql).all(...params, q.limit) as StoredEventRow[];
  }

  /** The durable cursor of forwarder `sink` (0 when new: a new sink starts from the first event). */
  cursorOf(sink: string): number {
    return this.stmts.getCursor.get(sink)?.last_rid ?? 0;
  }

  /** Moves the cursor of `sink` forward; durable when it returns. */
  setCursor(sink: string, lastRid: number): void {
    this.stmts.setCursor.run(sink, lastRid, new Date().toISOString());
  }

  /** Up to `limit` events with rid > `afterRid`, in rid order. */
  eventsAfter(afterRid: number, limit: number): StoredEventRow[] {
    return this.stmts.eventsAfter.all(afterRid, limit);
  }

  /**
   * Deletes up to `limit` events received before `receivedBefore` (RFC 3339) with rid ≤ `maxRid`,
   * oldest first, in one transaction. Returns how many were deleted. rids are never reused
   * (AUTOINCREMENT), so forwarder cursors stay valid.
   */
  pruneEvents(receivedBefore: string, maxRid: number, limit: number): number {
    return this.stmts.prune.run(maxRid, receivedBefore, limit).changes;
  }

  /** The highest rid stored (0 when empty). */
  maxRid(): number {
    return this.stmts.maxRid.get()?.m ?? 0;
  }

  /** True when the DB answers a trivial query. */
  /** Appends a publication record; durable when it returns. Returns its id. */
  recordPolicyPublication(p: NewPolicyPublication): number | bigint {
    return this.db
      .prepare(
        `INSERT INTO policy_publications (version, published_at, published_by, message, sha256, keyids, verified, diff, channel, action)
         VALUES (@version, @published_at, @published_by, @message, @sha256, @keyids, @verified, @diff, @channel, @action)`,
      )
      .run(publicationParams(p)).lastInsertRowid;
  }

  /** Publications newest first, at most `limit`, before id `beforeId` when given. */
  listPolicyPublications(limit: number, beforeId?: number): PolicyPublicationRow[] {
    const rows = this.db
      .prepare<unknown[], Omit<PolicyPublicationRow, 'verified'> & { verified: number }>(
        `SELECT id, version, published_at, published_by, message, sha256, keyids, verified, diff, channel, action
         FROM policy_publications ${beforeId === undefined ? '' : 'WHERE id < ?'} ORDER BY id DESC LIMIT ?`,
      )
      .all(...(beforeId === undefined ? [limit] : [beforeId, limit]));
    return rows.map((r) => ({ ...r, verified: r.verified === 1 }));
  }

  /** The channel's state without its envelope, or undefined when it was never set. */
  policyChannelStamp(channel: PolicyChannel): PolicyChannelStamp | undefined {
    const r = this.db
      .prepare<[string], { publication_id: number; version: number; present: number }>(
        'SELECT publication_id, version, envelope IS NOT NULL AS present FROM policy_channels WHERE channel = ?',
      )
      .get(channel);
    return r && { ...r, present: r.present === 1 };
  }

  /** The channel's state with its envelope, or undefined when it was never set. */
  policyChannel(channel: PolicyChannel): PolicyChannelState | undefined {
    return this.db
      .prepare<[string], Omit<PolicyChannelState, 'present'>>(
        'SELECT publication_id, version, envelope, updated_at FROM policy_channels WHERE channel = ?',
      )
      .all(channel)
      .map((r) => ({ ...r, present: r.envelope !== null }))[0];
  }

  /**
   * In one transaction: when `p.version` is greater than the channel's version (or it was never
   * set), records `p` and makes `envelope` the channel's; else nothing. The publication id, or null.
   */
  publishToPolicyChannel(channel: PolicyChannel, envelope: string, p: NewPolicyPublication): number | null {
    return this.db
      .transaction(() => {
        const cur = this.policyChannelStamp(channel);
        if (cur && cur.version >= p.version) return null;
        const id = Number(this.recordPolicyPublication({ ...p, channel }));
        this.setChannel(channel, p.version, envelope, id, p.published_at);
        return id;
      })
      .immediate();
  }

  /**
   * In one transaction: when the channel's state is still the one set by publication
   * `expectedPublicationId`, records `p` and clears the channel (its version is kept); else
   * nothing. The publication id, or null.
   */
  clearPolicyChannel(
    channel: PolicyChannel,
    expectedPublicationId: number,
    p: NewPolicyPublication,
  ): number | null {
    return this.db
      .transaction(() => {
        const cur = this.policyChannelStamp(channel);
        if (!cur || cur.publication_id !== expectedPublicationId) return null;
        const id = Number(this.recordPolicyPublication({ ...p, channel, action: 'clear' }));
        this.setChannel(channel, cur.version, null, id, p.published_at);
        return id;
      })
      .immediate();
  }

  private setChannel(
    channel: string,
    version: number,
    envelope: string | null,
    id: number,
    at: string,
  ): void {
    this.db
      .prepare(
        `INSERT INTO policy_channels (channel, version, envelope, publication_id, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (channel) DO UPDATE SET version = excluded.version, envelope = excluded.envelope,
           publication_id = excluded.publication_id, updated_at = excluded.updated_at`,
      )
      .run(channel, version, envelope, id, at);
  }

  /**
   * Would-match counts of shadow `version` per rule, rules after `afterRule` in byte order, at most
   * `limit`. Reads only the `policy.shadow_match` events (the type index), which agents bound.
   */
  shadowMatchesByRule(version: number, afterRule: string | undefined, limit: number): ShadowRuleCount[] {
    return this.db
      .prepare<unknown[], ShadowRuleCount>(
        `SELECT rule_id, count(*) AS matches, count(DISTINCT device_id) AS devices, max(received_at) AS last_at
         FROM events WHERE type = 'policy.shadow_match' AND json_extract(body, '$.shadow_version') = ?
           AND rule_id IS NOT NULL AND rule_id > ?
         GROUP BY rule_id ORDER BY rule_id LIMIT ?`,
      )
      .all(version, afterRule ?? '', limit);
  }

  /** Would-match counts of shadow `version` per (device, rule), after `after` in that order, at most `limit`. */
  shadowMatchesByDevice(
    version: number,
    after: { readonly device_id: string; readonly rule_id: string } | undefined,
    limit: number,
  ): ShadowDeviceCount[] {
    return this.db
      .prepare<unknown[], ShadowDeviceCount>(
        `SELECT device_id, rule_id, count(*) AS matches, max(received_at) AS last_at
         FROM events WHERE type = 'policy.shadow_match' AND json_extract(body, '$.shadow_version') = ?
           AND rule_id IS NOT NULL AND (device_id, rule_id) > (?, ?)
         GROUP BY device_id, rule_id ORDER BY device_id, rule_id LIMIT ?`,
      )
      .all(version, after?.device_id ?? '', after?.rule_id ?? '', limit);
  }

  healthy(): boolean {
    try {
      this.db.prepare('SELECT 1').get();
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the DB. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

/** The named parameters of a publication row (channel and action defaulted). */
function publicationParams(p: NewPolicyPublication): Record<string, unknown> {
  return {
    ...p,
    verified: p.verified ? 1 : 0,
    channel: p.channel ?? 'enforced',
    action: p.action ?? 'publish',
  };
}
