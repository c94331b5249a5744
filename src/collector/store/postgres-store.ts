/**
 * Owns the PostgreSQL implementation of the storage port (port.ts): several stateless collectors
 * share one database. Its schema and versioned migrations (`PG_MIGRATIONS`, version in
 * `collector_schema`; a database newer than the code is refused with `GUARD_STORE_SCHEMA_NEWER`),
 * the connection pool, idempotent batched ingest, the forwarders' claims and cursors, retention.
 *
 * Idempotency is the SQLite store's (collector-store.ts explains why): UNIQUE (device_id,
 * enrollment, id); an event earlier in the same group is a duplicate too. A group first locks its
 * device rows (in device-id order, as every writer of them does, so concurrent groups of this and
 * other collectors take their row locks in one order; a deadlock or serialization failure is
 * retried) and stores only batches of each device's current enrollment. A group of more than
 * PARAM_ROWS_MAX_EVENTS is then COPYed (pg-copy-streams, text format) straight into events,
 * optimistically: resent events are rare, and COPY is the cheapest way in (the collector-store
 * bench's ceiling is a COPY into this table); when the unique index fails the COPY (a duplicate)
 * or a batch's enrollment was replaced, the transaction is rolled back and the group redone by one
 * `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`, the way small groups go at
 * once; a device that resent lately (RESENDER_MS) has its batches go that way beside the COPY of
 * the others, so a device that keeps resending cannot make every group it is in redo. The
 * console's rule counts are summed in node from what the group stored and added by the group's
 * last statement (DEVICE_UPDATE_SQL) to rows of its own shard (rule_hourly_shards /
 * rule_daily_shards): every (bucket, rule, type) has up to ROLLUP_SHARDS rows there, a reader sums
 * them with the row of the unsharded rule_hourly / rule_daily (written by collectors of schema 5
 * and older, which keep running until they are upgraded one at a time), and a group writes the
 * lowest shard no concurrent group holds (a transaction-scoped advisory try-lock per shard, taken
 * in that statement and held to the commit like the rows). Unsharded, every group of every
 * collector upserted the same rows of the current hour and held them through its commit (the WAL
 * flush), so groups queued on each other's commits; with 3 collectors (each group sees a third of
 * the agents: 3–4× the commits per event) the collector-store bench's backends, sampled, were
 * waiting on that statement's row locks in 9–23 % of their active samples, against ≤ 2 % with
 * one collector, and in none once sharded. Why not a shard fixed per connection (backend pid
 * modulo N, or one per pool client): connections of different
 * collectors collide on a shard by chance, and every live connection spreads its counts over
 * another row; the try-lock gives concurrent groups distinct rows for certain and keeps a quiet
 * database on shard 0. Lock order, which keeps concurrent groups free of deadlocks: device rows
 * in id order, then rollup rows in key order (the try-locks never wait; with more than
 * ROLLUP_SHARDS groups committing at once the rest share a shard and wait, in key order). The
 * commit stays synchronous (`synchronous_commit` as the server sets it: keep it `on`): an
 * acknowledged batch is durable.
 *
 * Forwarder outbox — a commit-ordered log, not claims on rows. A `bigint` identity (rid) is handed
 * out when a row is inserted, not when it commits: a transaction holding rid 10 may commit after
 * one holding rid 11, so "rid > cursor" would skip 10 for good. Every row therefore also records
 * the id of the transaction that wrote it (`txid xid8 DEFAULT pg_current_xact_id()`), and a sink's
 * cursor is a position in (txid, rid) order. A reader only takes rows with
 * `txid < pg_snapshot_xmin(pg_current_snapshot())`: every transaction below that horizon has ended,
 * so no row can ever appear before a position already handed out — a late commit is delivered
 * after, never skipped. Why not `SELECT … FOR UPDATE SKIP LOCKED` over a queue: it needs a queue
 * row per event per sink written at ingest (twice the writes, delete churn, and a sink added later
 * would race the ingest that did not yet know it), and a row lock assigns the locking transaction
 * an xid, which would hold the horizon back for every sink while one delivers.
 *
 * The claim: one collector at a time delivers a sink. `deliverNext` opens a transaction on its own
 * pool connection, takes `pg_try_advisory_xact_lock` on the sink (no xid, so it does not hold the
 * horizon back), reads the cursor and the batch, awaits the delivery, writes the cursor and
 * commits. A second collector finds the lock taken (`busy`). A collector that dies mid-delivery
 * loses its connection; PostgreSQL aborts its transaction, releasing the lock with the cursor
 * unmoved, and the next claimant delivers that batch again (at-least-once across a crash, as on
 * SQLite). A writer transaction left open (idle in transaction) stops forwarding at its xid until
 * it ends — delayed, never lost. `rewindForwarder` takes the same lock, waiting for it
 * (`pg_advisory_xact_lock` under a `lock_timeout`): while it waits in the lock's queue the
 * claimants' try-locks fail (a lock request that conflicts with a waiter's is refused), so it gets
 * the lock as soon as the delivery in flight commits its cursor, and moves the cursor back after.
 * It then locks the cursor row (FOR NO KEY UPDATE) before counting, and a retention step reads the
 * cursors FOR SHARE in the transaction of its DELETE, so the two never interleave (read apart, a
 * rewind committing between the step's read and its DELETE would make events due again that the
 * step then deletes). A collector that dies mid-rewind leaves nothing: the rewind is one transaction.
 *
 * Wake-ups across collectors: after a commit that stored events the collector sends `NOTIFY
 * toolguard_events` in a transaction of its own (`wakeOthers`); every collector LISTENs on one
 * connection and wakes its runners (the runners' poll covers a lost one). Not inside the group's
 * transaction: a transaction that notifies takes one cluster-wide lock at its commit and holds it
 * until its commit record is flushed (PostgreSQL's async.c, so that notifications queue in commit
 * order), which made every group commit of every collector wait for the previous one's WAL
 * flush. The wake-up is at most one statement in flight per collector (commits meanwhile are
 * folded into one more after it); writing nothing else, it waits for no flush.
 */

// pg is CommonJS: its named exports are not visible to ESM, the default export is.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { GuardError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import {
  activityHours,
  BLOCK_TYPES,
  bucketStart,
  CONSOLE_DEVICE_COLUMNS,
  type ConsoleDeviceRow,
  checkEventFilter,
  checkLimit,
  checkOneOf,
  checkTime,
  consoleDevice,
  DEVICE_SORTS,
  devicePage,
  eventPage,
  likeContains,
  mergeGroups,
  NO_POLICY_VERSION,
  type PolicyStateChange,
  policyStateChange,
  rangeFirst,
  readDeviceCursor,
  readEventCursor,
  SESSION_PRUNE_BATCH,
  staleGroup,
} from './console-paging.js';
import type {
  ConsoleDevice,
  ConsoleEventSummary,
  ConsoleOverview,
  ConsoleSession,
  DevicePageRequest,
  DevicePolicyState,
  EventPageRequest,
  Page,
  PolicyRollout,
  RuleActivityRequest,
  RuleBucket,
  RuleTop,
} from './console-port.js';
import type {
  BatchToStore,
  ClaimLimits,
  ClaimOutcome,
  CollectorStorePort,
  CoverageCounts,
  DeviceRow,
  EnrolledDevice,
  EnrollingDevice,
  EventQuery,
  ForwarderCursor,
  IncomingEvent,
  InsertResult,
  NewPolicyPublication,
  PolicyChannel,
  PolicyChannelStamp,
  PolicyChannelState,
  PolicyPublicationRow,
  RewindOutcome,
  ShadowDeviceCount,
  ShadowRuleCount,
  StoredEventRow,
} from './port.js';
import { REWIND_COUNT_BOUND } from './port.js';
import { TokenCache } from './token-cache.js';

/** Versioned migrations; index + 1 = the version it brings the schema to. Never edit one that shipped. */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: the schema of SQLite schema 3, plus the commit-order column. Text columns compared or
  // ordered by the code use the C collation: byte order, as in SQLite (RFC 3339 times compare as
  // strings; device paging by id).
  `
  CREATE TABLE devices (
    id              text COLLATE "C" PRIMARY KEY,
    token_hash      text NOT NULL UNIQUE,
    hostname        text NOT NULL,
    os              text NOT NULL,
    agent_version   text NOT NULL,
    enrolled_at     text COLLATE "C" NOT NULL,
    last_seen_at    text COLLATE "C" NOT NULL,
    policy_version  bigint,
    policy_seq      bigint,
    enrollment      integer NOT NULL DEFAULT 1,
    coverage        text,
    coverage_seq    bigint
  );
  CREATE INDEX devices_last_seen ON devices(last_seen_at);

  CREATE TABLE events (
    rid          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- commit order: see the module header
    id           text COLLATE "C" NOT NULL,
    device_id    text COLLATE "C" NOT NULL,
    enrollment   integer NOT NULL,
    seq          bigint NOT NULL,
    type         text COLLATE "C" NOT NULL,
    time         text COLLATE "C" NOT NULL,
    rule_id      text COLLATE "C",
    received_at  text COLLATE "C" NOT NULL,
    body         text NOT NULL,
    UNIQUE (device_id, enrollment, id)
  );
  CREATE INDEX events_commit_order ON events(txid, rid);
  CREATE INDEX events_device ON events(device_id, rid);
  CREATE INDEX events_type ON events(type, rid);
  CREATE INDEX events_time ON events(time);
  CREATE INDEX events_rule ON events(rule_id, rid) WHERE rule_id IS NOT NULL;

  CREATE TABLE forwarder_cursors (
    sink        text PRIMARY KEY,
    last_txid   xid8 NOT NULL,
    last_rid    bigint NOT NULL,
    updated_at  text NOT NULL
  );
  `,
  // 2: a clean stop (SQLite schema 4): the time of the device's agent.stopped while that is the
  // newest event it sent, cleared by the next new one.
  `
  ALTER TABLE devices ADD COLUMN stopped_at text COLLATE "C";
  `,
  // 3: the record of policy publications (SQLite schema 5), append-only.
  `
  CREATE TABLE policy_publications (
    id            bigserial PRIMARY KEY,
    version       bigint NOT NULL,
    published_at  text COLLATE "C" NOT NULL,
    published_by  text NOT NULL,
    message       text NOT NULL,
    sha256        text NOT NULL,
    keyids        text NOT NULL,
    verified      boolean NOT NULL,
    diff          text
  );
  `,
  // 4: the browser console (SQLite schema 6; store/console-port.ts). The device columns, tag rows,
  // sort indexes, events.user_name, the rule covering index and the sessions are SQLite's.
  // rule_hourly / rule_daily take one upsert per (bucket, rule, type) a group stored, in key order
  // (concurrent groups wait on each other's row of the current hour until commit, never deadlock:
  // every group locks its device rows in id order first, then these rows in key order — the
  // statement of the time this shipped was insertCurrentSql; now DEVICE_UPDATE_SQL does it).
  // Hostname search uses a
  // pg_trgm index when the extension can be created (Debian's postgresql package ships it; it is a
  // trusted extension, so the database owner may create it); without it the search scans.
  `
  ALTER TABLE devices ADD COLUMN tags text;
  ALTER TABLE devices ADD COLUMN outbox_depth bigint;
  ALTER TABLE devices ADD COLUMN dropped_total bigint;
  ALTER TABLE devices ADD COLUMN policy_state text COLLATE "C";
  ALTER TABLE devices ADD COLUMN policy_error text COLLATE "C";
  ALTER TABLE devices ADD COLUMN policy_state_seq bigint;
  ALTER TABLE devices ALTER COLUMN hostname TYPE text COLLATE "C";
  ALTER TABLE devices ALTER COLUMN agent_version TYPE text COLLATE "C";
  CREATE INDEX devices_hostname ON devices(hostname, id);
  CREATE INDEX devices_last_seen_id ON devices(last_seen_at, id);
  CREATE INDEX devices_agent_version ON devices(agent_version, id);
  CREATE INDEX devices_policy_version ON devices((coalesce(policy_version, -1)), id);
  CREATE INDEX devices_rollout ON devices(policy_version, policy_state);
  CREATE INDEX devices_policy_error ON devices(policy_state, policy_error);
  DO $$ BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX devices_hostname_trgm ON devices USING gin (hostname gin_trgm_ops);
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): the console hostname search scans the devices', SQLERRM;
  END $$;
  CREATE TABLE device_tags (
    tag        text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C" NOT NULL,
    PRIMARY KEY (tag, device_id)
  );
  CREATE INDEX device_tags_device ON device_tags(device_id);

  ALTER TABLE events ADD COLUMN user_name text COLLATE "C";
  CREATE INDEX events_user ON events(user_name, rid) WHERE user_name IS NOT NULL;
  CREATE INDEX events_rule_top ON events(rule_id, time, device_id, user_name) WHERE rule_id IS NOT NULL;
  CREATE INDEX events_received ON events(received_at, type);

  CREATE TABLE rule_hourly (
    hour     text COLLATE "C" NOT NULL,
    rule_id  text COLLATE "C" NOT NULL,
    type     text COLLATE "C" NOT NULL,
    count    bigint NOT NULL,
    PRIMARY KEY (hour, rule_id, type)
  );
  CREATE TABLE rule_daily (
    day      text COLLATE "C" NOT NULL,
    rule_id  text COLLATE "C" NOT NULL,
    type     text COLLATE "C" NOT NULL,
    count    bigint NOT NULL,
    PRIMARY KEY (day, rule_id, type)
  );

  CREATE TABLE console_sessions (
    id_hash     text COLLATE "C" PRIMARY KEY,
    role        text NOT NULL,
    created_at  text COLLATE "C" NOT NULL,
    expires_at  text COLLATE "C" NOT NULL
  );
  CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);
  `,
  // 5: policy channels (SQLite schema 7): the envelope served per channel, shared by every
  // collector; the publication record says which channel and what was done.
  `
  ALTER TABLE policy_publications ADD COLUMN channel text NOT NULL DEFAULT 'enforced';
  ALTER TABLE policy_publications ADD COLUMN action text NOT NULL DEFAULT 'publish';
  CREATE TABLE policy_channels (
    channel         text PRIMARY KEY,
    version         bigint NOT NULL,
    envelope        text,
    publication_id  bigint NOT NULL,
    updated_at      text NOT NULL
  );
  `,
  // 6: the rule-count rows sharded by writer (ROLLUP_SHARDS, module header): a group adds its counts
  // to the rows of a shard no other group is writing at that moment, so groups of several
  // collectors no longer queue on the current hour's row to each other's commits; a count is the
  // sum over its shards and the unsharded row. In tables of their own: rule_hourly / rule_daily
  // keep their primary keys, which the rule-count upserts of collectors not yet upgraded name
  // (`ON CONFLICT (hour, rule_id, type)`; without such a key every ingest of theirs fails).
  `
  CREATE TABLE rule_hourly_shards (
    hour     text COLLATE "C" NOT NULL,
    rule_id  text COLLATE "C" NOT NULL,
    type     text COLLATE "C" NOT NULL,
    shard    smallint NOT NULL,
    count    bigint NOT NULL,
    PRIMARY KEY (hour, rule_id, type, shard)
  );
  CREATE TABLE rule_daily_shards (
    day      text COLLATE "C" NOT NULL,
    rule_id  text COLLATE "C" NOT NULL,
    type     text COLLATE "C" NOT NULL,
    shard    smallint NOT NULL,
    count    bigint NOT NULL,
    PRIMARY KEY (day, rule_id, type, shard)
  );
  `,
];

/** Advisory lock classes (first key of the two-key form), so toolguard's locks never meet others'. */
const LOCK_MIGRATE = 0x7467_0001;
const LOCK_FORWARDER = 0x7467_0002;
/** Serializes policy-channel writes across collectors (publish, promote, clear). */
const LOCK_POLICY_CHANNEL = 0x7467_0003;
/** A group's rule-count shard while it commits (second key: the shard; ROLLUP_SHARDS). */
export const LOCK_ROLLUP_SHARD = 0x7467_0004;
/**
 * Shards of each rule count (rule_hourly_shards / rule_daily_shards rows). A group writes the lowest shard whose advisory lock
 * it gets at once (pg_try_advisory_xact_lock, held to its commit like the rows): concurrent groups
 * of every collector write different rows and never wait on each other's; a quiet database writes
 * shard 0 only, so a (bucket, rule, type) has as many rows as groups ever committed it at once.
 * With more than this many at once, the others share a shard by backend pid and wait their turn
 * (correct, as before migration 6). 16 > the 4 group commits of each of a few collectors.
 */
const ROLLUP_SHARDS = 16;
/**
 * A group of more than this many events is first COPYed straight into events (COPY_EVENTS_SQL,
 * optimistic: COPY cannot skip a conflicting row, so a duplicate fails it); a group of at most
 * this many, and a group whose COPY met a duplicate or a replaced enrollment, is inserted from
 * parameter arrays by INSERT_PARAMS_SQL, which skips conflicts. COPY costs two round trips of its
 * own (query, then data), which for a heartbeat-sized group cost more than its rows; for larger
 * groups it is the cheapest way in (docs/collector.md, Ingest).
 */
const PARAM_ROWS_MAX_EVENTS = 64;
/**
 * A device whose batch carried a resent event (a duplicate) sends its batches around the COPY,
 * through INSERT_PARAMS_SQL in the same transaction, for this long; at most MAX_RESENDERS devices
 * are remembered (the oldest forgotten first). So a device that keeps resending — a bug, or a
 * token in hostile hands — costs one redo per collector and period, not one for every group it is in.
 */
const RESENDER_MS = 10 * 60_000;
const MAX_RESENDERS = 10_000;
/** The optimistic COPY: every event of the group, in batch order (COPY text format). */
const COPY_EVENTS_SQL =
  'COPY events(id, device_id, enrollment, seq, type, time, rule_id, received_at, body, user_name) FROM STDIN';
/** Locks the group's device rows ($1, sorted ids) in id order; returns each one's current enrollment. */
const LOCK_DEVICES_SQL =
  'SELECT id, enrollment FROM devices WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE';
/**
 * Stores the rows given as parameters $2–$12 (one array per column; `ord` is the batch order) of
 * each device's current enrollment: locks the group's device rows ($1, sorted ids) first, inserts
 * idempotently, and returns the inserted rows plus one row per locked device with its current
 * enrollment (id NULL).
 */
const INSERT_PARAMS_SQL = `WITH locked AS (${LOCK_DEVICES_SQL}),
    ins AS (
      INSERT INTO events(id, device_id, enrollment, seq, type, time, rule_id, received_at, body, user_name)
      SELECT s.id, s.device_id, s.enrollment, s.seq, s.type, s.time, s.rule_id, s.received_at, s.body, s.user_name
      FROM unnest($2::int4[], $3::text[], $4::text[], $5::int4[], $6::int8[], $7::text[], $8::text[],
        $9::text[], $10::text[], $11::text[], $12::text[])
        AS s(ord, id, device_id, enrollment, seq, type, time, rule_id, received_at, body, user_name)
      JOIN locked l ON l.id = s.device_id COLLATE "C" AND l.enrollment = s.enrollment
      ORDER BY s.ord
      ON CONFLICT DO NOTHING
      RETURNING device_id, enrollment, id, rule_id, type, time)
    SELECT device_id, enrollment, id, rule_id, type, time FROM ins
    UNION ALL SELECT id, enrollment, NULL, NULL, NULL, NULL FROM locked`;
/** Channel of the "events stored" notification. */
const NOTIFY_CHANNEL = 'toolguard_events';
/**
 * The wake-up after a commit that stored events (module header): a transaction that writes nothing
 * else, so its commit waits for no WAL flush and holds the notification lock only for a moment.
 */
const NOTIFY_SQL = `SELECT pg_notify('${NOTIFY_CHANNEL}', '')`;
/**
 * The end of a group's transaction in one statement: the device changes — last-seen of every
 * device ($1, $2, sorted by id); agent version ($3–$5), policy ($6–$9) and coverage ($10–$13,
 * $17–$19) of the highest seq, policy state ($20–$25) and the clean stop ($14–$16), each only on
 * the row of the same enrollment and the policy/coverage/state only when not older than the
 * stored seq —, and the stored events' counts added to rule_hourly_shards ($26–$29: hour, rule,
 * type, count, sorted by that key; rollups()) and to rule_daily_shards (summed per day here). The
 * NOTIFY follows the commit (`wakeOthers`). At most one entry per (device, enrollment) per list, so each subquery
 * yields at most one row. The rollup rows go to the group's shard (`sh`: the lowest one whose
 * advisory lock it gets at once, none taken when it counted nothing; module header), locked in
 * key order by the last statement before COMMIT (device rows are locked before them by every
 * group: no deadlock).
 */
const DEVICE_UPDATE_SQL = `
  WITH a AS (SELECT * FROM unnest($3::text[], $4::int4[], $5::text[]) AS a(id, enrollment, v)),
       p AS (SELECT * FROM unnest($6::text[], $7::int4[], $8::int8[], $9::int8[]) AS p(id, enrollment, v, seq)),
       cv AS (SELECT * FROM unnest($10::text[], $11::int4[], $12::text[], $13::int8[], $17::text[], $18::int8[], $19::int8[])
              AS cv(id, enrollment, v, seq, tags, outbox, dropped)),
       ps AS (SELECT * FROM unnest($20::text[], $21::int4[], $22::text[], $23::text[], $24::bool[], $25::int8[])
              AS ps(id, enrollment, state, error, keeps, seq)),
       s AS (SELECT * FROM unnest($14::text[], $15::int4[], $16::text[]) AS s(id, enrollment, v)),
       u AS (
         UPDATE devices d SET
           last_seen_at = t.at,
           agent_version = COALESCE(
             (SELECT a.v FROM a WHERE a.id = d.id AND a.enrollment = d.enrollment), d.agent_version),
           (policy_version, policy_seq) = (
             SELECT CASE WHEN ok THEN p.v ELSE d.policy_version END, CASE WHEN ok THEN p.seq ELSE d.policy_seq END
             FROM (SELECT 1) one
             LEFT JOIN p ON p.id = d.id AND p.enrollment = d.enrollment
             CROSS JOIN LATERAL (SELECT p.seq IS NOT NULL AND (d.policy_seq IS NULL OR d.policy_seq <= p.seq) AS ok) k),
           (coverage, tags, outbox_depth, dropped_total, coverage_seq) = (
             SELECT CASE WHEN ok THEN cv.v ELSE d.coverage END, CASE WHEN ok THEN cv.tags ELSE d.tags END,
                    CASE WHEN ok THEN cv.outbox ELSE d.outbox_depth END,
                    CASE WHEN ok THEN cv.dropped ELSE d.dropped_total END,
                    CASE WHEN ok THEN cv.seq ELSE d.coverage_seq END
             FROM (SELECT 1) one
             LEFT JOIN cv ON cv.id = d.id AND cv.enrollment = d.enrollment
             CROSS JOIN LATERAL (SELECT cv.seq IS NOT NULL AND (d.coverage_seq IS NULL OR d.coverage_seq <= cv.seq) AS ok) k),
           (policy_state, policy_error, policy_state_seq) = (
             SELECT CASE WHEN NOT ok THEN d.policy_state WHEN keep THEN d.policy_state ELSE ps.state END,
                    CASE WHEN NOT ok THEN d.policy_error WHEN keep THEN d.policy_error ELSE ps.error END,
                    CASE WHEN ok THEN ps.seq ELSE d.policy_state_seq END
             FROM (SELECT 1) one
             LEFT JOIN ps ON ps.id = d.id AND ps.enrollment = d.enrollment
             CROSS JOIN LATERAL (SELECT ps.seq IS NOT NULL AND (d.policy_state_seq IS NULL OR d.policy_state_seq <= ps.seq) AS ok,
                                        coalesce(ps.keeps, false) AND d.policy_state IS NOT DISTINCT FROM 'rejected' AS keep) k),
           stopped_at = CASE
             WHEN EXISTS (SELECT 1 FROM s WHERE s.id = d.id AND s.enrollment = d.enrollment)
             THEN (SELECT s.v FROM s WHERE s.id = d.id AND s.enrollment = d.enrollment)
             ELSE d.stopped_at END
         FROM unnest($1::text[], $2::text[]) AS t(id, at)
         WHERE d.id = t.id
         RETURNING 1),
       r AS (SELECT * FROM unnest($26::text[], $27::text[], $28::text[], $29::int8[]) AS r(hour, rule_id, type, n)),
       sh AS (SELECT coalesce(
                (SELECT k FROM generate_series(0, CASE WHEN cardinality($26::text[]) > 0 THEN ${ROLLUP_SHARDS - 1} ELSE -1 END) k
                 WHERE pg_try_advisory_xact_lock(${LOCK_ROLLUP_SHARD}, k) LIMIT 1),
                pg_backend_pid() % ${ROLLUP_SHARDS}) AS shard),
       hourly AS (
         INSERT INTO rule_hourly_shards(hour, rule_id, type, shard, count)
         SELECT hour, rule_id, type, sh.shard, n FROM r CROSS JOIN sh ORDER BY 1, 2, 3
         ON CONFLICT (hour, rule_id, type, shard) DO UPDATE SET count = rule_hourly_shards.count + excluded.count),
       daily AS (
         INSERT INTO rule_daily_shards(day, rule_id, type, shard, count)
         SELECT left(hour, 10), rule_id, type, sh.shard, sum(n) FROM r CROSS JOIN sh GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3
         ON CONFLICT (day, rule_id, type, shard) DO UPDATE SET count = rule_daily_shards.count + excluded.count)
  SELECT count(*) FROM u`;
/**
 * device_tags follows devices.tags of the given devices (after their update in the same
 * transaction): tags no longer listed are deleted, new ones inserted.
 */
const TAGS_SYNC_SQL = `
  WITH t AS (SELECT d.id, ARRAY(SELECT json_array_elements_text(coalesce(d.tags, '[]')::json)) AS tags
             FROM devices d WHERE d.id = ANY($1::text[])),
       del AS (DELETE FROM device_tags x USING t WHERE x.device_id = t.id AND NOT (x.tag = ANY(t.tags)))
  INSERT INTO device_tags(tag, device_id)
  SELECT u.tag, t.id FROM t CROSS JOIN LATERAL unnest(t.tags) AS u(tag) ORDER BY 2, 1
  ON CONFLICT DO NOTHING`;
/** Connections per collector: 4 group commits, the NOTIFY after them (one), token lookups, forwarder claims, admin, listener. */
export const DEFAULT_PG_POOL = 10;
/** Rows read per step while filling a forwarder batch, so the byte cap also bounds what is read. */
const READ_CHUNK = 100;
/** A group that hit a deadlock / serialization failure is retried this often before failing. */
const MAX_TX_RETRIES = 3;
/** SQLSTATEs worth retrying a whole transaction for. */
const RETRYABLE = new Set(['40P01', '40001']);
/** Connecting / a query on a broken network fails after this (the agent retries its batch). */
const CONNECT_TIMEOUT_MS = 10_000;
/** A lost notification connection is re-opened after this (the runners poll meanwhile). */
const LISTEN_RETRY_MS = 5_000;
/** Idle pool connections are closed after this. */
const IDLE_TIMEOUT_MS = 30_000;
/** TCP keepalive after this idle time: a claim of a collector whose host vanished ends within ~minutes. */
const KEEPALIVE_DELAY_MS = 10_000;

export interface PostgresStoreOptions {
  /** `postgres://user@host:port/db` (no password: that comes from `password`). */
  readonly url: string;
  readonly password?: string;
  /** PEM CA: TLS with certificate and host name verification against it. */
  readonly ca?: string | Buffer;
  /** Pool size (default DEFAULT_PG_POOL). */
  readonly poolSize?: number;
  /** Token hashes cached at most (token-cache.ts; default DEFAULT_TOKEN_CACHE_ENTRIES, 0 = none). */
  readonly tokenCacheEntries?: number;
  /** Delay before re-opening a lost notification connection, ms (default LISTEN_RETRY_MS). */
  readonly listenRetryMs?: number;
  readonly logger?: Logger;
}

/** A sink's cursor as a ForwarderCursor. */
const CURSOR_SQL =
  'SELECT last_rid AS rid, last_txid::text AS txid, updated_at FROM forwarder_cursors WHERE sink = $1';
/** SQLSTATE lock_not_available: a lock wait ended by `lock_timeout`. */
const LOCK_NOT_AVAILABLE = '55P03';
/**
 * How long a retention step waits for the sinks' cursor rows (ms). A delivery holds its sink's row
 * from its cursor write to its COMMIT, and a rewind while it counts: milliseconds. A session left
 * between the two (a collector hung, or cut off without its connection closing) would hold the
 * step — and a pool connection — until PostgreSQL ends that session: the step gives up instead,
 * GUARD_STORE_BUSY, and retention tries again at its next run.
 */
const RETENTION_CURSOR_WAIT_MS = 10_000;

/** True when outbox position `a` comes before `b` in (txid, rid) order (txids as xid8 text). */
function positionBefore(
  a: { readonly txid: string; readonly rid: number },
  b: { readonly txid: string; readonly rid: number },
): boolean {
  const x = BigInt(a.txid);
  const y = BigInt(b.txid);
  return x < y || (x === y && a.rid < b.rid);
}

/** `int8` as a JS number (rids, counts, seqs stay below 2^53). */
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** Query parameters of a PostgreSQL URL that pg reads as secrets (pg-connection-string). */
export const SECRET_URL_PARAMS: readonly string[] = ['password', 'sslpassword'];

/** The URL with any password (userinfo or query) replaced, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const k of SECRET_URL_PARAMS) if (u.searchParams.has(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}

export class PostgresCollectorStore implements CollectorStorePort {
  readonly kind = 'postgres' as const;
  readonly location: string;
  schema = { from: 0, to: PG_MIGRATIONS.length };
  onStored: (() => void) | null = null;
  private readonly pool: pg.Pool;
  private listener: pg.Client | null = null;
  private relisten: NodeJS.Timeout | null = null;
  /** A NOTIFY is in flight / one more is due after it (wakeOthers). */
  private waking = false;
  private wakeAgain = false;
  private closed = false;
  private readonly log: Logger | undefined;
  /**
   * Groups whose optimistic COPY was rolled back (a duplicate event, or a batch of a replaced
   * enrollment) and that were then inserted from parameter arrays; for tests and diagnosis.
   */
  copyRedone = 0;
  /** Device id → until when its batches skip the COPY (RESENDER_MS), oldest mark first. */
  private readonly resenders = new Map<string, number>();
  /** Token hash → device, checked again by every insert (token-cache.ts). */
  private readonly tokens: TokenCache;
  /** Enrollments through this store so far: a token lookup that spans one is not cached. */
  private enrollEpoch = 0;

  private constructor(
    private readonly options: PostgresStoreOptions,
    pool: pg.Pool,
  ) {
    this.pool = pool;
    this.tokens = new TokenCache(options.tokenCacheEntries);
    this.location = redactUrl(options.url);
    this.log = options.logger?.child({ component: 'collector.store.postgres' });
  }

  /**
   * Connects, migrates (serialised across collectors by an advisory lock) and starts listening.
   * Throws `GUARD_STORE_SCHEMA_NEWER` for a database newer than this code, `GUARD_STORE_UNAVAILABLE`
   * when the server cannot be reached or refuses the login.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresCollectorStore> {
    const config = clientConfig(options);
    const pool = new pg.Pool({
      ...config,
      max: options.poolSize ?? DEFAULT_PG_POOL,
      idleTimeoutMillis: IDLE_TIMEOUT_MS,
    });
    // an idle client losing its server (restart, failover) must not crash the process
    pool.on('error', (err) =>
      options.logger?.warn({ err: err.message }, 'idle PostgreSQL connection failed'),
    );
    const store = new PostgresCollectorStore(options, pool);
    try {
      await store.migrate();
      await store.listen();
    } catch (err) {
      await store.close();
      if (err instanceof GuardError) throw err;
      throw new GuardError(
        'GUARD_STORE_UNAVAILABLE',
        `cannot use the PostgreSQL store ${store.location}: ${(err as Error).message}`,
        { url: store.location },
        { cause: err },
      );
    }
    return store;
  }

  private async migrate(): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_MIGRATE]);
      await c.query('CREATE TABLE IF NOT EXISTS collector_schema (version integer NOT NULL)');
      const r = await c.query<{ version: number }>('SELECT version FROM collector_schema');
      let current = r.rows[0]?.version ?? 0;
      this.schema = { from: current, to: PG_MIGRATIONS.length };
      if (r.rows.length === 0) await c.query('INSERT INTO collector_schema(version) VALUES (0)');
      if (current > PG_MIGRATIONS.length)
        throw new GuardError(
          'GUARD_STORE_SCHEMA_NEWER',
          `the collector database schema is version ${current}, newer than this collector knows (${PG_MIGRATIONS.length}); upgrade the collector, never downgrade the database`,
          { found: current, known: PG_MIGRATIONS.length },
        );
      for (; current < PG_MIGRATIONS.length; current++) {
        await c.query(PG_MIGRATIONS[current] as string);
        await c.query('UPDATE collector_schema SET version = $1', [current + 1]);
      }
    });
  }

  /** After a commit that stored events: this collector's runners now, the others by `wakeOthers`. */
  private stored(): void {
    this.onStored?.();
    this.wakeOthers();
  }

  /**
   * Sends the NOTIFY (NOTIFY_SQL, outside any group's transaction: module header), at most one in
   * flight; a commit meanwhile asks for one more after it. A failure is logged at debug: the
   * runners' poll still finds the events.
   */
  private wakeOthers(): void {
    if (this.closed) return;
    if (this.waking) {
      this.wakeAgain = true;
      return;
    }
    this.waking = true;
    this.pool
      .query(NOTIFY_SQL)
      .catch((err: Error) => this.log?.debug({ err: err.message }, 'NOTIFY after a commit failed'))
      .finally(() => {
        this.waking = false;
        if (!this.wakeAgain) return;
        this.wakeAgain = false;
        this.wakeOthers();
      });
  }

  /**
   * LISTENs for other collectors' commits on a connection of its own. When that connection fails
   * (server restart, failover) it is re-opened after LISTEN_RETRY_MS; meanwhile the runners' poll
   * keeps forwarding going.
   */
  private async listen(): Promise<void> {
    const client = new pg.Client(clientConfig(this.options));
    let failed = false;
    const retry = (err?: Error): void => {
      if (failed || this.closed) return;
      failed = true;
      this.log?.warn({ err: err?.message }, 'PostgreSQL notification connection lost; reconnecting');
      client.end().catch(() => {});
      if (this.listener === client) this.listener = null;
      this.relisten = setTimeout(() => {
        this.relisten = null;
        this.listen().catch((e: Error) => retry(e));
      }, this.options.listenRetryMs ?? LISTEN_RETRY_MS);
      this.relisten.unref();
    };
    client.on('error', retry);
    client.on('end', () => retry());
    client.on('notification', () => this.onStored?.());
    try {
      await client.connect();
      await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch (err) {
      failed = true;
      client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.listener = client;
  }

  /** Runs `fn` in one transaction on one pooled connection; retries on deadlock/serialization failure. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new GuardError('GUARD_STORE_IO', 'collector store is closed');
      const c = await this.pool.connect();
      let broken = false;
      try {
        await c.query('BEGIN');
        const out = await fn(c);
        await c.query('COMMIT');
        return out;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {
          broken = true;
        });
        const code = (err as { code?: string }).code;
        if (attempt < MAX_TX_RETRIES && code !== undefined && RETRYABLE.has(code)) continue;
        throw err;
      } finally {
        c.release(broken);
      }
    }
  }

  async deviceForTokenHash(tokenHash: string): Promise<EnrolledDevice | undefined> {
    const cached = this.tokens.get(tokenHash);
    if (cached) return cached;
    const epoch = this.enrollEpoch;
    const r = await this.pool.query<EnrolledDevice>(
      'SELECT id, enrollment FROM devices WHERE token_hash = $1',
      [tokenHash],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    const device = { id: row.id, enrollment: row.enrollment };
    // an answer that may predate an enrollment through this store is used, not cached
    if (epoch === this.enrollEpoch) this.tokens.set(tokenHash, device);
    return device;
  }

  async enrollDevice(device: EnrollingDevice, tokenHash: string, now: string): Promise<number> {
    const r = await this.pool.query<{ enrollment: number }>(
      `INSERT INTO devices(id, token_hash, hostname, os, agent_version, enrolled_at, last_seen_at, enrollment)
       VALUES ($1, $2, $3, $4, $5, $6, $6, 1)
       ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, hostname = excluded.hostname,
         os = excluded.os, agent_version = excluded.agent_version, enrolled_at = excluded.enrolled_at,
         last_seen_at = excluded.last_seen_at, policy_seq = NULL, coverage_seq = NULL, policy_state_seq = NULL,
         enrollment = devices.enrollment + 1
       RETURNING enrollment`,
      [device.id, tokenHash, pgText(device.hostname), pgText(device.os), pgText(device.agent_version), now],
    );
    this.enrollEpoch++;
    this.tokens.enrolled(device.id);
    const row = r.rows[0];
    if (!row) throw new GuardError('GUARD_STORE_IO', 'enrolling a device returned no row');
    return row.enrollment;
  }

  async insertGroup(batches: readonly BatchToStore[]): Promise<InsertResult[]> {
    const now = Date.now();
    const resent = new Set(batches.filter((b) => (this.resenders.get(b.deviceId) ?? 0) > now));
    let fresh = 0;
    for (const b of batches) if (!resent.has(b)) fresh += b.events.length;
    let results = fresh > PARAM_ROWS_MAX_EVENTS ? await this.copyGroup(batches, resent) : null;
    if (!results) {
      if (fresh > PARAM_ROWS_MAX_EVENTS) this.copyRedone++;
      results = await this.insertParams(batches);
    }
    // a device whose batch carried a resent event sends its next batches the conflict-skipping way
    // for a while, so a device that keeps resending cannot make other devices' groups redo
    results.forEach((r, i) => {
      if (r.duplicates > 0) this.markResender((batches[i] as BatchToStore).deviceId, now);
    });
    return results;
  }

  private markResender(deviceId: string, now: number): void {
    this.resenders.delete(deviceId);
    this.resenders.set(deviceId, now + RESENDER_MS);
    // oldest first (insertion order): drop the oldest beyond the bound
    for (const k of this.resenders.keys()) {
      if (this.resenders.size <= MAX_RESENDERS) break;
      this.resenders.delete(k);
    }
  }

  /**
   * The optimistic path of a large group: lock the group's device rows (id order, as every writer
   * of them does, so the device locks always come before any event row's) and, when every batch
   * is of its device's current enrollment, COPY every event into events — all rows are new then,
   * and the rollups count every event — except the batches in `resent` (devices that resent lately),
   * which go through INSERT_PARAMS_SQL in the same transaction. Resolves null with nothing stored
   * (rolled back) when a batch's enrollment was replaced or a COPYed row was a duplicate (the
   * unique index fails the COPY; one still uncommitted by another transaction is waited for, as an
   * INSERT does); the caller then inserts the group with insertParams, which sorts those out.
   */
  private async copyGroup(
    batches: readonly BatchToStore[],
    resent: ReadonlySet<BatchToStore>,
  ): Promise<InsertResult[] | null> {
    let text = '';
    const counts = new RuleCounts();
    for (const b of batches) {
      if (resent.has(b)) continue;
      const device = copyField(b.deviceId);
      const received = copyField(b.receivedAt);
      for (const e of b.events) {
        const rule = e.ruleId === null ? null : pgText(e.ruleId);
        const type = pgText(e.type);
        counts.add(rule, type, e.time);
        text += `${copyField(e.id)}\t${device}\t${b.enrollment}\t${e.seq}\t${copyField(type)}\t${copyField(e.time)}\t${rule === null ? '\\N' : copyField(rule)}\t${received}\t${copyField(e.body)}\t${e.user === null ? '\\N' : copyField(e.user)}\n`;
      }
    }
    const others = batches.filter((b) => resent.has(b));
    const copiedIds = new Set(batches.filter((b) => !resent.has(b)).map((b) => b.deviceId));
    let insertedOthers: InsertedRows | undefined;
    try {
      await this.tx(async (c) => {
        const r = await c.query<{ id: string; enrollment: number }>({
          name: 'tg_lock_devices',
          text: LOCK_DEVICES_SQL,
          values: [sortedDeviceIds(batches)],
        });
        const current = new Map(r.rows.map((x) => [x.id, x.enrollment]));
        if (batches.some((b) => current.get(b.deviceId) !== b.enrollment)) throw new RedoGroup();
        await pipeline(Readable.from([text]), c.query(copyFrom(COPY_EVENTS_SQL)));
        // this attempt's counts: a deadlock retry runs this again, and must not count the rows
        // `others` inserted in the rolled-back attempt a second time
        const attempt = counts.copy();
        const ins = others.length > 0 ? await insertRows(c, others, attempt) : undefined;
        await finishGroup(
          c,
          batches,
          (id, enrollment) => copiedIds.has(id) || (ins?.stored(id, enrollment) ?? false),
          attempt,
        );
        insertedOthers = ins;
      });
    } catch (err) {
      if (err instanceof RedoGroup || (err as { code?: string }).code === UNIQUE_VIOLATION) return null;
      throw err;
    }
    this.stored();
    const fromOthers = insertedOthers ? this.attribute(others, insertedOthers) : [];
    let k = 0;
    return batches.map((b) =>
      resent.has(b) ? (fromOthers[k++] as InsertResult) : { accepted: b.events.length, duplicates: 0 },
    );
  }

  /** A group inserted by INSERT_PARAMS_SQL alone (conflicts skipped, replaced enrollments left out). */
  private async insertParams(batches: readonly BatchToStore[]): Promise<InsertResult[]> {
    const inserted = await this.tx(async (c) => {
      const counts = new RuleCounts();
      const ins = await insertRows(c, batches, counts);
      // stopped_at follows the newest event of each (device, enrollment) that stored something new:
      // a resent old batch (all duplicates) says nothing about what the device did last.
      await finishGroup(
        c,
        batches.filter((b) => ins.current.get(b.deviceId) === b.enrollment),
        ins.stored,
        counts,
      );
      return ins;
    });
    if (inserted.rows.length > 0) this.stored();
    return this.attribute(batches, inserted);
  }

  /**
   * Each batch's outcome: stale when its enrollment is not the device's current one (its token
   * is dropped from the cache), else each inserted row counted for the first batch (in order)
   * that carried its key, so a key seen earlier in the group is a duplicate too.
   */
  private attribute(batches: readonly BatchToStore[], inserted: InsertedRows): InsertResult[] {
    const fresh = new Set<string>();
    for (const row of inserted.rows) fresh.add(`${row.device_id}\u0000${row.enrollment}\u0000${row.id}`);
    return batches.map((b): InsertResult => {
      if (inserted.current.get(b.deviceId) !== b.enrollment) {
        this.tokens.forget(b.deviceId, b.enrollment);
        return { accepted: 0, duplicates: 0, stale: true };
      }
      let accepted = 0;
      for (const e of b.events)
        if (fresh.delete(`${b.deviceId}\u0000${b.enrollment}\u0000${e.id}`)) accepted++;
      return { accepted, duplicates: b.events.length - accepted };
    });
  }

  async queryEvents(q: EventQuery): Promise<StoredEventRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown): void => {
      params.push(v);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (q.deviceId !== undefined) add('device_id = ?', q.deviceId);
    if (q.type !== undefined) add('type = ?', q.type);
    if (q.ruleId !== undefined) add('rule_id = ?', q.ruleId);
    if (q.since !== undefined) add('time >= ?', q.since);
    if (q.until !== undefined) add('time < ?', q.until);
    if (q.afterRid !== undefined) add('rid > ?', q.afterRid);
    params.push(q.limit);
    const r = await this.pool.query<StoredEventRow>(
      `SELECT rid, device_id, enrollment, received_at, body FROM events
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY rid LIMIT $${params.length}`,
      params,
    );
    return r.rows;
  }

  async deliverNext(
    sink: string,
    limits: ClaimLimits,
    deliver: (events: readonly StoredEventRow[]) => Promise<void>,
  ): Promise<ClaimOutcome> {
    if (this.closed) throw new GuardError('GUARD_STORE_IO', 'collector store is closed');
    const c = await this.pool.connect();
    // the connection may die while the sink delivers (no query in flight): reported by COMMIT
    const onError = (): void => {};
    c.on('error', onError);
    let broken = false;
    try {
      await c.query('BEGIN');
      const lock = await c.query<{ got: boolean }>(
        'SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS got',
        [LOCK_FORWARDER, sink],
      );
      if (!lock.rows[0]?.got) {
        await c.query('ROLLBACK');
        return { kind: 'busy' };
      }
      const cur = await c.query<{ txid: string; rid: number }>(
        'SELECT last_txid::text AS txid, last_rid AS rid FROM forwarder_cursors WHERE sink = $1',
        [sink],
      );
      let after = cur.rows[0] ?? { txid: '0', rid: 0 };
      const rows: StoredEventRow[] = [];
      let bytes = 0;
      fill: for (;;) {
        const want = Math.min(READ_CHUNK, limits.maxEvents - rows.length);
        // ORDER BY names the table's columns: an output column named `txid` (the text form)
        // would be sorted as text, "1000" before "999", and the cursor would pass over 999
        const chunk = await c.query<StoredEventRow & { tx: string }>(
          `SELECT rid, txid::text AS tx, device_id, enrollment, received_at, body FROM events
           WHERE (txid, rid) > ($1::xid8, $2::int8) AND txid < pg_snapshot_xmin(pg_current_snapshot())
           ORDER BY events.txid, events.rid LIMIT $3`,
          [after.txid, after.rid, want],
        );
        for (const row of chunk.rows) {
          if (rows.length > 0 && bytes + row.body.length > limits.maxBytes) break fill;
          const { tx, ...event } = row;
          rows.push(event);
          bytes += row.body.length;
          after = { txid: tx, rid: row.rid };
        }
        if (chunk.rows.length < want || rows.length >= limits.maxEvents) break;
      }
      if (rows.length === 0) {
        await c.query('ROLLBACK');
        return { kind: 'empty' };
      }
      await deliver(rows);
      await c.query(
        `INSERT INTO forwarder_cursors(sink, last_txid, last_rid, updated_at) VALUES ($1, $2::xid8, $3, $4)
         ON CONFLICT (sink) DO UPDATE SET last_txid = excluded.last_txid, last_rid = excluded.last_rid,
           updated_at = excluded.updated_at`,
        [sink, after.txid, after.rid, new Date().toISOString()],
      );
      await c.query('COMMIT');
      return { kind: 'delivered', events: rows.length };
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      c.off('error', onError);
      c.release(broken);
    }
  }

  async forwarderCursor(sink: string): Promise<ForwarderCursor | undefined> {
    const r = await this.pool.query<ForwarderCursor>(CURSOR_SQL, [sink]);
    return r.rows[0];
  }

  async rewindForwarder(sink: string, since: string, waitMs: number): Promise<RewindOutcome> {
    if (this.closed) throw new GuardError('GUARD_STORE_IO', 'collector store is closed');
    const from = new Date(checkTime('since', since)).toISOString();
    const c = await this.pool.connect();
    let broken = false;
    try {
      await c.query('BEGIN');
      const deadline = performance.now() + waitMs;
      const waitAtMost = (): Promise<unknown> =>
        c.query("SELECT set_config('lock_timeout', $1, true)", [
          `${Math.max(1, Math.ceil(deadline - performance.now()))}ms`,
        ]);
      let was: ForwarderCursor | undefined;
      try {
        // the claim, waited for (module header); lock_timeout ends the wait with 55P03
        await waitAtMost();
        await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_FORWARDER, sink]);
        // then the cursor row, before anything is counted: a retention step (pruneEvents reads
        // the cursors FOR SHARE and deletes in the same transaction) ends first, or waits and
        // then reads the rewound cursor — it never deletes what this rewind makes due again
        await waitAtMost();
        was = (await c.query<ForwarderCursor>(`${CURSOR_SQL} FOR NO KEY UPDATE`, [sink])).rows[0];
      } catch (err) {
        if ((err as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw err;
        await c.query('ROLLBACK');
        return { kind: 'busy' };
      }
      if (!was) {
        await c.query('ROLLBACK');
        return { kind: 'unchanged', reason: 'no_cursor', cursor: null };
      }
      // The first stored event received since then, in delivery order; the cursor goes just before
      // it. Read from the receipt-time index (cost ∝ the events received since then, which the sink
      // is about to deliver anyway): left alone, the planner walks the commit-order index from the
      // oldest event and filters (LIMIT 1, as if matches were spread evenly), ~0.6 s for a rewind
      // of the last 20,000 of 2 million events (bench/forwarder-rewind.bench.js).
      const first = await c.query<{ tx: string; rid: number }>(
        `WITH since AS MATERIALIZED (SELECT txid, rid FROM events WHERE received_at >= $1)
         SELECT txid::text AS tx, rid FROM since ORDER BY since.txid, since.rid LIMIT 1`,
        [from],
      );
      const f = first.rows[0];
      const to = f && { txid: f.tx, rid: f.rid - 1 };
      if (!to || !positionBefore(to, { txid: was.txid as string, rid: was.rid })) {
        await c.query('ROLLBACK');
        return { kind: 'unchanged', reason: 'nothing_delivered_since', cursor: was };
      }
      const n = await c.query<{ n: number }>(
        `SELECT count(*) AS n FROM (SELECT 1 FROM events
           WHERE (txid, rid) > ($1::xid8, $2::int8) AND (txid, rid) <= ($3::xid8, $4::int8) LIMIT $5) t`,
        [to.txid, to.rid, was.txid, was.rid, REWIND_COUNT_BOUND + 1],
      );
      const counted = n.rows[0]?.n ?? 0;
      const at = new Date().toISOString();
      await c.query(
        'UPDATE forwarder_cursors SET last_txid = $2::xid8, last_rid = $3, updated_at = $4 WHERE sink = $1',
        [sink, to.txid, to.rid, at],
      );
      await c.query('COMMIT');
      this.stored();
      const exact = counted <= REWIND_COUNT_BOUND;
      return {
        kind: 'rewound',
        previous: was,
        cursor: { rid: to.rid, txid: to.txid, updated_at: at },
        // past the bound: the rids between the positions, roughly (commit order is not rid order)
        dueAgain: exact ? counted : Math.max(counted, was.rid - to.rid),
        dueAgainExact: exact,
      };
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      c.release(broken);
    }
  }

  async forwarderLag(sink: string): Promise<number> {
    // an estimate: rids past the cursor's (a late commit below it is not counted)
    const r = await this.pool.query<{ lag: number }>(
      `SELECT greatest(0, coalesce((SELECT max(rid) FROM events), 0)
         - coalesce((SELECT last_rid FROM forwarder_cursors WHERE sink = $1), 0)) AS lag`,
      [sink],
    );
    return r.rows[0]?.lag ?? 0;
  }

  async pruneEvents(receivedBefore: string, sinks: readonly string[], limit: number): Promise<number> {
    if (sinks.length === 0) {
      const r = await this.pool.query(
        `DELETE FROM events WHERE rid IN
           (SELECT rid FROM events WHERE received_at < $1 ORDER BY rid LIMIT $2)`,
        [receivedBefore, limit],
      );
      return r.rowCount ?? 0;
    }
    // The lowest cursor in (txid, rid) order; a sink without one protects everything. The cursors
    // are read FOR SHARE and the rows deleted in the same transaction: a rewind (which locks its
    // cursor row first) waits for this step, or this step waits for it and reads the rewound
    // cursor — read apart, a rewind committing in between would make events due again (and
    // count them in its answer) that this step then deletes.
    return this.tx(async (c) => {
      await c.query("SELECT set_config('lock_timeout', $1, true)", [`${RETENTION_CURSOR_WAIT_MS}ms`]);
      const r = await c
        .query<{ sink: string; txid: string; rid: number }>(
          `SELECT sink, last_txid::text AS txid, last_rid AS rid FROM forwarder_cursors
           WHERE sink = ANY($1::text[]) ORDER BY sink FOR SHARE`,
          [sinks],
        )
        .catch((err: unknown) => {
          if ((err as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw err;
          throw new GuardError(
            'GUARD_STORE_BUSY',
            `a sink's cursor stayed locked for ${RETENTION_CURSOR_WAIT_MS} ms (a delivery or rewind that has not ended); nothing deleted, retried at the next run`,
          );
        });
      // only the cursor wait is bounded: the server's own setting again for the DELETE
      await c.query('SET LOCAL lock_timeout TO DEFAULT');
      if (r.rows.length < new Set(sinks).size) return 0;
      let low = r.rows[0] as { txid: string; rid: number };
      for (const row of r.rows) if (positionBefore(row, low)) low = row;
      const d = await c.query(
        `DELETE FROM events WHERE rid IN
           (SELECT rid FROM events WHERE (txid, rid) <= ($1::xid8, $2::int8) AND received_at < $3
            ORDER BY events.txid, events.rid LIMIT $4)`,
        [low.txid, low.rid, receivedBefore, limit],
      );
      return d.rowCount ?? 0;
    });
  }

  async listDevices(
    afterId: string | undefined,
    limit: number,
    silentBefore?: { readonly before: string; readonly silent: boolean },
  ): Promise<DeviceRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (afterId !== undefined) {
      params.push(afterId);
      where.push(`id > $${params.length}`);
    }
    if (silentBefore) {
      params.push(silentBefore.before);
      where.push(
        silentBefore.silent ? `last_seen_at < $${params.length}` : `last_seen_at >= $${params.length}`,
      );
    }
    params.push(limit);
    const r = await this.pool.query<DeviceRow>(
      `SELECT id, enrollment, hostname, os, agent_version, enrolled_at, last_seen_at, policy_version, coverage, stopped_at
       FROM devices ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT $${params.length}`,
      params,
    );
    return r.rows;
  }

  async deviceCounts(silentBefore: string): Promise<{ total: number; silent: number }> {
    const r = await this.pool.query<{ total: number; silent: number }>(
      'SELECT count(*) AS total, count(*) FILTER (WHERE last_seen_at < $1) AS silent FROM devices',
      [silentBefore],
    );
    return r.rows[0] ?? { total: 0, silent: 0 };
  }

  async coverageCounts(): Promise<CoverageCounts[]> {
    // float8 sums, like SQLite's total(): never an overflow error (the caller saturates)
    const r = await this.pool.query<CoverageCounts>(
      `SELECT c->'exec_events'->>'state' AS exec_events, c->'exec_deny'->>'state' AS exec_deny,
              c->'exec_events'->>'source' AS source, count(*)::int AS devices,
              coalesce(sum((c->'exec_events'->>'kernel_drops')::float8), 0)
                + coalesce(sum((c->'exec_events'->>'queue_drops')::float8), 0) AS drops,
              coalesce(sum((c->'exec_deny'->>'deadline_misses')::float8), 0) AS deadline_misses
       FROM (SELECT coverage::jsonb AS c FROM devices) d GROUP BY 1, 2, 3`,
    );
    return r.rows;
  }

  async recordPolicyPublication(p: NewPolicyPublication): Promise<void> {
    await insertPublication(this.pool, p);
  }

  async listPolicyPublications(limit: number, beforeId?: number): Promise<PolicyPublicationRow[]> {
    const params: unknown[] = beforeId === undefined ? [limit] : [limit, beforeId];
    const r = await this.pool.query<PolicyPublicationRow>(
      `SELECT id::float8 AS id, version::float8 AS version, published_at, published_by, message, sha256, keyids, verified, diff, channel, action
       FROM policy_publications ${beforeId === undefined ? '' : 'WHERE id < $2'} ORDER BY id DESC LIMIT $1`,
      params,
    );
    return r.rows;
  }

  async policyChannelStamp(channel: PolicyChannel): Promise<PolicyChannelStamp | undefined> {
    const r = await this.pool.query<PolicyChannelStamp>(
      `SELECT publication_id::float8 AS publication_id, version::float8 AS version, envelope IS NOT NULL AS present
       FROM policy_channels WHERE channel = $1`,
      [channel],
    );
    return r.rows[0];
  }

  async policyChannel(channel: PolicyChannel): Promise<PolicyChannelState | undefined> {
    const r = await this.pool.query<PolicyChannelState>(
      `SELECT publication_id::float8 AS publication_id, version::float8 AS version, envelope IS NOT NULL AS present,
              envelope, updated_at
       FROM policy_channels WHERE channel = $1`,
      [channel],
    );
    return r.rows[0];
  }

  async publishToPolicyChannel(
    channel: PolicyChannel,
    envelope: string,
    p: NewPolicyPublication,
  ): Promise<number | null> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_POLICY_CHANNEL]);
      const cur = await c.query<{ version: number }>(
        'SELECT version::float8 AS version FROM policy_channels WHERE channel = $1',
        [channel],
      );
      const version = cur.rows[0]?.version;
      if (version !== undefined && version >= p.version) return null;
      const id = await insertPublication(c, { ...p, channel });
      await setChannel(c, channel, p.version, envelope, id, p.published_at);
      return id;
    });
  }

  async clearPolicyChannel(
    channel: PolicyChannel,
    expectedPublicationId: number,
    p: NewPolicyPublication,
  ): Promise<number | null> {
    return this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_POLICY_CHANNEL]);
      const cur = await c.query<{ version: number; publication_id: number }>(
        'SELECT version::float8 AS version, publication_id::float8 AS publication_id FROM policy_channels WHERE channel = $1',
        [channel],
      );
      const row = cur.rows[0];
      if (!row || row.publication_id !== expectedPublicationId) return null;
      const id = await insertPublication(c, { ...p, channel, action: 'clear' });
      await setChannel(c, channel, row.version, null, id, p.published_at);
      return id;
    });
  }

  async shadowMatchesByRule(
    version: number,
    afterRule: string | undefined,
    limit: number,
  ): Promise<ShadowRuleCount[]> {
    const r = await this.pool.query<ShadowRuleCount>(
      `SELECT rule_id, count(*)::float8 AS matches, count(DISTINCT device_id)::float8 AS devices, max(received_at) AS last_at
       FROM events WHERE type = 'policy.shadow_match' AND (body::jsonb->>'shadow_version') = $1::text
         AND rule_id IS NOT NULL AND rule_id > $2
       GROUP BY rule_id ORDER BY rule_id LIMIT $3`,
      [String(version), afterRule ?? '', limit],
    );
    return r.rows;
  }

  async shadowMatchesByDevice(
    version: number,
    after: { readonly device_id: string; readonly rule_id: string } | undefined,
    limit: number,
  ): Promise<ShadowDeviceCount[]> {
    const r = await this.pool.query<ShadowDeviceCount>(
      `SELECT device_id, rule_id, count(*)::float8 AS matches, max(received_at) AS last_at
       FROM events WHERE type = 'policy.shadow_match' AND (body::jsonb->>'shadow_version') = $1::text
         AND rule_id IS NOT NULL AND (device_id, rule_id) > ($2, $3)
       GROUP BY device_id, rule_id ORDER BY device_id, rule_id LIMIT $4`,
      [String(version), after?.device_id ?? '', after?.rule_id ?? '', limit],
    );
    return r.rows;
  }

  async consoleDevices(req: DevicePageRequest): Promise<Page<ConsoleDevice>> {
    const limit = checkLimit(req.limit);
    const sort = checkOneOf('sort', req.sort, DEVICE_SORTS);
    const order = checkOneOf('order', req.order, ['asc', 'desc'] as const);
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    const f = req.filter;
    if (f.search !== undefined && f.search !== '')
      where.push(`(hostname ILIKE ${p(likeContains(pgText(f.search)))} OR id = ${p(pgText(f.search))})`);
    if (f.tag !== undefined)
      where.push(
        `EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id AND t.tag = ${p(pgText(f.tag))})`,
      );
    if (f.agentVersion !== undefined) where.push(`agent_version = ${p(pgText(f.agentVersion))}`);
    if (f.policyState !== undefined)
      where.push(
        f.policyState === 'unknown'
          ? `coalesce(policy_state, 'unknown') = ${p(f.policyState)}`
          : `policy_state = ${p(pgText(f.policyState))}`,
      );
    if (f.silentBefore)
      where.push(`last_seen_at ${f.silentBefore.silent ? '<' : '>='} ${p(pgText(f.silentBefore.before))}`);
    const key = sort === 'policy_version' ? `(coalesce(policy_version, ${NO_POLICY_VERSION}))` : sort;
    if (req.cursor !== undefined) {
      const c = readDeviceCursor(req.cursor, sort, order);
      where.push(
        `(${key}, id) ${order === 'asc' ? '>' : '<'} (${p(typeof c.key === 'string' ? pgText(c.key) : c.key)}, ${p(pgText(c.id))})`,
      );
    }
    const dir = order === 'asc' ? 'ASC' : 'DESC';
    // With a tag: the tag's devices first (hash join), then the top rows sorted — not a walk down
    // the sort index probing each device's tags, which the planner picks when it assumes the
    // tagged devices are spread evenly over the order (tags often follow hostnames: 60,000 probes
    // for one page in the bench). The sort key as an expression keeps the planner off that index.
    const sortExpr = f.tag === undefined ? key : sort === 'policy_version' ? `${key} + 0` : `(${key} || '')`;
    const r = await this.pool.query<ConsoleDeviceRow>(
      `SELECT ${CONSOLE_DEVICE_COLUMNS} FROM devices ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY ${sortExpr} ${dir}, id ${dir} LIMIT ${p(limit + 1)}`,
      params,
    );
    return devicePage(r.rows, limit, sort, order);
  }

  async consoleDevice(id: string): Promise<ConsoleDevice | undefined> {
    const r = await this.pool.query<ConsoleDeviceRow>(
      `SELECT ${CONSOLE_DEVICE_COLUMNS} FROM devices WHERE id = $1`,
      [pgText(id)],
    );
    return r.rows[0] ? consoleDevice(r.rows[0]) : undefined;
  }

  async consoleEvents(req: EventPageRequest): Promise<Page<ConsoleEventSummary>> {
    const limit = checkLimit(req.limit);
    const f = req.filter;
    checkEventFilter(f);
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown): string => {
      params.push(typeof v === 'string' ? pgText(v) : v);
      return `$${params.length}`;
    };
    if (f.types !== undefined) where.push(`e.type = ANY(${p(f.types.map(pgText))}::text[])`);
    if (f.ruleId !== undefined) where.push(`e.rule_id = ${p(f.ruleId)}`);
    if (f.deviceId !== undefined) where.push(`e.device_id = ${p(f.deviceId)}`);
    if (f.user !== undefined) where.push(`e.user_name = ${p(f.user)}`);
    if (f.since !== undefined) where.push(`e.time >= ${p(f.since)}`);
    if (f.until !== undefined) where.push(`e.time < ${p(f.until)}`);
    if (req.cursor !== undefined) where.push(`e.rid < ${p(readEventCursor(req.cursor))}`);
    const newest =
      f.since !== undefined && f.until !== undefined
        ? (await this.pool.query<{ time: string }>('SELECT time FROM events ORDER BY rid DESC LIMIT 1'))
            .rows[0]?.time
        : undefined;
    // `rid + 0`: not the rid index's order, so the range is read through the time/rule indexes
    const order = rangeFirst(f.since, f.until, newest) ? 'e.rid + 0' : 'e.rid';
    const r = await this.pool.query<ConsoleEventSummary>(
      `SELECT e.rid, e.id, e.device_id, coalesce(d.hostname, '') AS hostname, e.type, e.time, e.received_at,
              e.rule_id, e.user_name AS "user"
       FROM events e LEFT JOIN devices d ON d.id = e.device_id
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order} DESC LIMIT ${p(limit + 1)}`,
      params,
    );
    return eventPage(r.rows, limit);
  }

  async consoleEvent(rid: number): Promise<(StoredEventRow & { readonly hostname: string }) | undefined> {
    if (!Number.isSafeInteger(rid)) return undefined;
    const r = await this.pool.query<StoredEventRow & { hostname: string }>(
      `SELECT e.rid, e.device_id, e.enrollment, e.received_at, e.body, coalesce(d.hostname, '') AS hostname
       FROM events e LEFT JOIN devices d ON d.id = e.device_id WHERE e.rid = $1`,
      [rid],
    );
    return r.rows[0];
  }

  async ruleActivity(req: RuleActivityRequest): Promise<RuleBucket[]> {
    const h = activityHours(req);
    if (req.ruleIds.length === 0) return [];
    // one primary-key range per (bucket, rule) in each table, the unsharded row (schema ≤ 5
    // writers) and the shards summed: never a scan of every rule id devices sent
    const [t, k] = h.keyLength === 13 ? ['rule_hourly', 'hour'] : ['rule_daily', 'day'];
    const r = await this.pool.query<{ rule_id: string; type: string; k: string; count: number }>(
      `SELECT rule_id, type, k, sum(count)::int8 AS count FROM (
         SELECT rule_id, type, ${k} AS k, count FROM ${t}
         WHERE ${k} = ANY($1::text[]) AND rule_id = ANY($2::text[])
         UNION ALL
         SELECT rule_id, type, ${k}, count FROM ${t}_shards
         WHERE ${k} = ANY($1::text[]) AND rule_id = ANY($2::text[])) c
       GROUP BY k, rule_id, type ORDER BY k, rule_id, type`,
      [h.keys, [...req.ruleIds]],
    );
    return r.rows.map((x) => ({
      rule_id: x.rule_id,
      type: x.type,
      bucket_start: bucketStart(x.k),
      count: x.count,
    }));
  }

  async ruleTop(ruleId: string, since: string, limit: number): Promise<RuleTop> {
    checkLimit(limit);
    checkTime('since', since);
    const [devices, users] = await Promise.all([
      this.pool.query<{ device_id: string; hostname: string; count: number }>(
        `SELECT t.device_id, coalesce(d.hostname, '') AS hostname, t.count FROM
           (SELECT device_id, count(*) AS count FROM events WHERE rule_id = $1 AND time >= $2
            GROUP BY device_id ORDER BY count DESC, device_id LIMIT $3) t
         LEFT JOIN devices d ON d.id = t.device_id ORDER BY t.count DESC, t.device_id`,
        [pgText(ruleId), since, limit],
      ),
      this.pool.query<{ user: string; count: number }>(
        `SELECT user_name AS "user", count(*) AS count FROM events
         WHERE rule_id = $1 AND time >= $2 AND user_name IS NOT NULL
         GROUP BY user_name ORDER BY count DESC, user_name LIMIT $3`,
        [pgText(ruleId), since, limit],
      ),
    ]);
    return { devices: devices.rows, users: users.rows };
  }

  async policyRollout(): Promise<PolicyRollout> {
    const [versions, rejections] = await Promise.all([
      this.pool.query<{ version: number | null; state: DevicePolicyState; devices: number }>(
        `SELECT policy_version AS version, coalesce(policy_state, 'unknown') AS state, count(*) AS devices
         FROM devices GROUP BY policy_version, policy_state ORDER BY policy_version DESC NULLS LAST, 2`,
      ),
      this.pool.query<{ error: string; devices: number }>(
        `SELECT coalesce(policy_error, '') AS error, count(*) AS devices FROM devices
         WHERE policy_state = 'rejected' GROUP BY policy_error ORDER BY devices DESC, 1 LIMIT 20`,
      ),
    ]);
    return { versions: mergeGroups(versions.rows), rejections: rejections.rows };
  }

  async consoleOverview(q: {
    readonly now: string;
    readonly silentBefore: string;
    readonly since24h: string;
    readonly publishedVersion: number | null;
  }): Promise<ConsoleOverview> {
    const fiveMinAgo = new Date(checkTime('now', q.now) - 300_000).toISOString();
    const [counts, rollout, events] = await Promise.all([
      this.deviceCounts(q.silentBefore),
      this.policyRollout(),
      this.pool.query<{ blocks: number; recent: number }>(
        `SELECT (SELECT count(*) FROM events WHERE received_at >= $1 AND type = ANY($2::text[])) AS blocks,
                (SELECT count(*) FROM events WHERE received_at >= $3 AND received_at <= $4) AS recent`,
        [q.since24h, BLOCK_TYPES, fiveMinAgo, q.now],
      ),
    ]);
    const e = events.rows[0] ?? { blocks: 0, recent: 0 };
    return {
      devices_total: counts.total,
      devices_silent: counts.silent,
      devices_stale_policy: rollout.versions
        .filter((g) => staleGroup(g, q.publishedVersion))
        .reduce((n, g) => n + g.devices, 0),
      blocks_24h: e.blocks,
      ingest_per_s: e.recent / 300,
    };
  }

  async createSession(idHash: string, session: ConsoleSession): Promise<void> {
    await this.pool.query(
      'INSERT INTO console_sessions(id_hash, role, created_at, expires_at) VALUES ($1, $2, $3, $4)',
      [pgText(idHash), session.role, session.created_at, session.expires_at],
    );
  }

  async sessionByHash(idHash: string, now: string): Promise<ConsoleSession | undefined> {
    const r = await this.pool.query<ConsoleSession>(
      'SELECT role, created_at, expires_at FROM console_sessions WHERE id_hash = $1 AND expires_at > $2',
      [pgText(idHash), pgText(now)],
    );
    return r.rows[0];
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.pool.query('DELETE FROM console_sessions WHERE id_hash = $1', [pgText(idHash)]);
  }

  async pruneSessions(now: string): Promise<number> {
    const r = await this.pool.query(
      `DELETE FROM console_sessions WHERE id_hash IN
         (SELECT id_hash FROM console_sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)`,
      [pgText(now), SESSION_PRUNE_BATCH],
    );
    return r.rowCount ?? 0;
  }

  async healthy(): Promise<boolean> {
    try {
      await this.pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.relisten) clearTimeout(this.relisten);
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => {});
    await this.pool.end().catch(() => {});
  }
}

function clientConfig(options: PostgresStoreOptions): pg.ClientConfig {
  // pg lets what the connection string says (even an absent password) win over the other fields,
  // so the password goes into the string given to pg (never into `location`, which is logged)
  const u = new URL(options.url);
  if (options.password !== undefined) u.password = encodeURIComponent(options.password);
  // the CA file decides TLS: a sslmode in the URL would replace the verified config
  if (options.ca !== undefined) u.searchParams.delete('sslmode');
  return {
    connectionString: u.toString(),
    ssl: options.ca !== undefined ? { ca: options.ca, rejectUnauthorized: true } : undefined,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    application_name: 'guard-collector',
    types,
  };
}

/**
 * A string PostgreSQL's text accepts: U+0000 is the one character it cannot store, and the
 * schema allows it in free-form strings (a rule id, an agent version, a hostname), so it becomes
 * U+FFFD — one hostile value must not fail the group commit of other devices' batches. Events
 * come without it (parseBatch replaces it the same way, body included: jsonb refuses `\u0000`);
 * enrollment fields need it here.
 */
function pgText(s: string): string {
  return s.includes('\u0000') ? s.replaceAll('\u0000', '\uFFFD') : s;
}

/**
 * A text value as a field of COPY's text format (pgText, then backslash escapes). Four `includes`
 * scans are several times cheaper than one character-class test on a ~600-character event body.
 */
function copyField(s: string): string {
  const t = pgText(s);
  return t.includes('\\') || t.includes('\t') || t.includes('\n') || t.includes('\r')
    ? t.replace(/[\\\t\n\r]/g, copyEscape)
    : t;
}
function copyEscape(ch: string): string {
  return ch === '\\' ? '\\\\' : ch === '\t' ? '\\t' : ch === '\n' ? '\\n' : '\\r';
}

/** What INSERT_PARAMS_SQL stored: the new rows, each locked device's current enrollment. */
interface InsertedRows {
  readonly rows: readonly { device_id: string; enrollment: number; id: string }[];
  readonly current: ReadonlyMap<string, number>;
  /** Whether that (device, enrollment) stored a new row. */
  stored(id: string, enrollment: number): boolean;
}

/** The batches' device ids, sorted (byte order of UTF-16 units; every group sorts alike). */
function sortedDeviceIds(batches: readonly BatchToStore[]): string[] {
  return [...new Set(batches.map((b) => b.deviceId))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Runs INSERT_PARAMS_SQL for `batches` (which locks their device rows first) and adds the stored
 * rows to `counts`.
 */
async function insertRows(
  c: pg.PoolClient,
  batches: readonly BatchToStore[],
  counts: RuleCounts,
): Promise<InsertedRows> {
  const cols: unknown[][] = Array.from({ length: 11 }, () => []);
  let ord = 0;
  for (const b of batches)
    for (const e of b.events) {
      const row = [
        ord++,
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
      ];
      for (let k = 0; k < row.length; k++) {
        const v = row[k];
        (cols[k] as unknown[]).push(typeof v === 'string' ? pgText(v) : v);
      }
    }
  // Locks the group's device rows (in id order, as every writer of them does) and stores only the
  // rows of each device's current enrollment: a token replaced by an enrollment that committed
  // before this lock is refused here, whichever collector checked it (its cache).
  const r = await c.query<{
    device_id: string;
    enrollment: number;
    id: string | null;
    rule_id: string | null;
    type: string;
    time: string;
  }>({ name: 'tg_insert_params', text: INSERT_PARAMS_SQL, values: [sortedDeviceIds(batches), ...cols] });
  const current = new Map<string, number>();
  const rows: { device_id: string; enrollment: number; id: string }[] = [];
  const keys = new Set<string>();
  for (const x of r.rows) {
    if (x.id === null) current.set(x.device_id, x.enrollment);
    else {
      rows.push(x as { device_id: string; enrollment: number; id: string });
      keys.add(`${x.device_id}\u0000${x.enrollment}`);
      counts.add(x.rule_id, x.type, x.time);
    }
  }
  return { rows, current, stored: (id, enrollment) => keys.has(`${id}\u0000${enrollment}`) };
}

/** PostgreSQL's unique_violation: the optimistic COPY met a row already stored (or earlier in the group). */
const UNIQUE_VIOLATION = '23505';

/** Thrown inside copyGroup's transaction to roll it back: the group is redone by insertParams. */
class RedoGroup extends Error {}

/**
 * Counts of stored events per (hour of the event time, rule id, type): what a group adds to
 * rule_hourly_shards / rule_daily_shards (DEVICE_UPDATE_SQL $27–$30). Keys are the stored values (after pgText);
 * events without a rule id are not counted.
 */
class RuleCounts {
  private readonly counts = new Map<string, { hour: string; rule: string; type: string; n: number }>();
  /** The entry of the previous add: a batch's events mostly share hour, rule and type. */
  private last: { hour: string; rule: string; type: string; n: number } | undefined;

  add(rule: string | null, type: string, time: string): void {
    if (rule === null) return;
    const last = this.last;
    if (last && last.rule === rule && last.type === type && time.startsWith(last.hour)) {
      last.n++;
      return;
    }
    const hour = time.slice(0, 13);
    const k = `${hour}\u0000${rule}\u0000${type}`;
    let c = this.counts.get(k);
    if (c) c.n++;
    else {
      c = { hour, rule, type, n: 1 };
      this.counts.set(k, c);
    }
    this.last = c;
  }

  /** A copy to add to without changing this one. */
  copy(): RuleCounts {
    const c = new RuleCounts();
    for (const [k, v] of this.counts) c.counts.set(k, { ...v });
    return c;
  }

  params(): [string[], string[], string[], number[]] {
    const v = [...this.counts.values()];
    return [v.map((c) => c.hour), v.map((c) => c.rule), v.map((c) => c.type), v.map((c) => c.n)];
  }
}

/**
 * Ends a group's transaction: the device changes of its `current` batches (those of each
 * device's current enrollment) and the rule counts (DEVICE_UPDATE_SQL, one
 * round trip while the rows are locked; each SET reads the locked row, so a change of another
 * enrollment is skipped), then the tag rows. `stored(id, enrollment)` says whether that
 * (device, enrollment) stored a new row: only then does its newest event decide the clean stop.
 */
async function finishGroup(
  c: pg.PoolClient,
  current: readonly BatchToStore[],
  stored: (id: string, enrollment: number) => boolean,
  counts: RuleCounts,
): Promise<void> {
  const updates = deviceUpdates(current);
  if (updates.touch.ids.length === 0) return;
  const stops = updates.newest.filter((n) => stored(n.id, n.enrollment));
  await c.query({
    name: 'tg_update_devices',
    text: DEVICE_UPDATE_SQL,
    values: [
      updates.touch.ids,
      updates.touch.at,
      updates.agent.ids,
      updates.agent.enrollments,
      updates.agent.values,
      updates.policy.ids,
      updates.policy.enrollments,
      updates.policy.values,
      updates.policy.seqs,
      updates.coverage.ids,
      updates.coverage.enrollments,
      updates.coverage.values,
      updates.coverage.seqs,
      stops.map((n) => n.id),
      stops.map((n) => n.enrollment),
      stops.map((n) => (n.e.type === 'agent.stopped' ? n.e.time : null)),
      updates.coverage.tags,
      updates.coverage.outbox,
      updates.coverage.dropped,
      updates.policyState.ids,
      updates.policyState.enrollments,
      updates.policyState.states,
      updates.policyState.errors,
      updates.policyState.keeps,
      updates.policyState.seqs,
      ...counts.params(),
    ],
  });
  if (updates.coverage.ids.length > 0)
    await c.query({ name: 'tg_sync_tags', text: TAGS_SYNC_SQL, values: [updates.coverage.ids] });
}

interface DeviceUpdates {
  readonly touch: { ids: string[]; at: string[] };
  readonly agent: { ids: string[]; enrollments: number[]; values: string[] };
  readonly policy: { ids: string[]; enrollments: number[]; values: number[]; seqs: number[] };
  readonly coverage: {
    ids: string[];
    enrollments: number[];
    values: string[];
    seqs: number[];
    tags: (string | null)[];
    outbox: (number | null)[];
    dropped: (number | null)[];
  };
  /** The policy state change of each (device, enrollment) (console-paging.ts policyStateChange). */
  readonly policyState: {
    ids: string[];
    enrollments: number[];
    states: string[];
    errors: (string | null)[];
    keeps: boolean[];
    seqs: number[];
  };
  /** The highest-seq event of each (device, enrollment), sorted by device id (clean-stop state). */
  readonly newest: { id: string; enrollment: number; e: IncomingEvent }[];
}

/**
 * What a group changes on device rows, one entry per device (last-seen) or per (device,
 * enrollment), sorted by device id so concurrent groups lock rows in one order. Same outcome as
 * the SQLite store's batch-by-batch updates: the last batch's receipt time and agent version, the
 * policy version and coverage of the highest seq.
 */
function deviceUpdates(batches: readonly BatchToStore[]): DeviceUpdates {
  const touch = new Map<string, string>();
  const agent = new Map<string, { id: string; enrollment: number; v: string }>();
  const policy = new Map<string, { id: string; enrollment: number; e: IncomingEvent }>();
  const coverage = new Map<string, { id: string; enrollment: number; e: IncomingEvent }>();
  const newest = new Map<string, { id: string; enrollment: number; e: IncomingEvent }>();
  const said = new Map<string, { id: string; enrollment: number; events: IncomingEvent[] }>();
  for (const b of batches) {
    touch.set(b.deviceId, b.receivedAt);
    const k = `${b.deviceId}\u0000${b.enrollment}`;
    let newestAgent: IncomingEvent | null = null;
    for (const e of b.events) {
      if (e.agentVersion !== null && (!newestAgent || e.seq > newestAgent.seq)) newestAgent = e;
      const p = policy.get(k);
      if (e.policyVersion !== null && (!p || e.seq >= p.e.seq))
        policy.set(k, { id: b.deviceId, enrollment: b.enrollment, e });
      const cv = coverage.get(k);
      if (e.coverage !== null && (!cv || e.seq >= cv.e.seq))
        coverage.set(k, { id: b.deviceId, enrollment: b.enrollment, e });
      const nw = newest.get(k);
      if (!nw || e.seq >= nw.e.seq) newest.set(k, { id: b.deviceId, enrollment: b.enrollment, e });
      if (e.policyState !== null) {
        const p = said.get(k) ?? { id: b.deviceId, enrollment: b.enrollment, events: [] };
        p.events.push(e);
        said.set(k, p);
      }
    }
    if (newestAgent)
      agent.set(k, {
        id: b.deviceId,
        enrollment: b.enrollment,
        v: pgText(newestAgent.agentVersion as string),
      });
  }
  const byId = <T extends { id: string }>(m: Map<string, T>): T[] =>
    [...m.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const touchSorted = [...touch].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const agents = byId(agent);
  const policies = byId(policy);
  const coverages = byId(coverage);
  const states = byId(said).map((p) => ({ ...p, change: policyStateChange(p.events) as PolicyStateChange }));
  return {
    touch: { ids: touchSorted.map((t) => t[0]), at: touchSorted.map((t) => t[1]) },
    agent: {
      ids: agents.map((a) => a.id),
      enrollments: agents.map((a) => a.enrollment),
      values: agents.map((a) => a.v),
    },
    policy: {
      ids: policies.map((p) => p.id),
      enrollments: policies.map((p) => p.enrollment),
      values: policies.map((p) => p.e.policyVersion as number),
      seqs: policies.map((p) => p.e.seq),
    },
    newest: byId(newest),
    coverage: {
      ids: coverages.map((p) => p.id),
      enrollments: coverages.map((p) => p.enrollment),
      values: coverages.map((p) => p.e.coverage as string),
      seqs: coverages.map((p) => p.e.seq),
      tags: coverages.map((p) => p.e.tags),
      outbox: coverages.map((p) => p.e.outboxDepth),
      dropped: coverages.map((p) => p.e.droppedTotal),
    },
    policyState: {
      ids: states.map((p) => p.id),
      enrollments: states.map((p) => p.enrollment),
      states: states.map((p) => p.change.state),
      errors: states.map((p) => (p.change.error === null ? null : pgText(p.change.error))),
      keeps: states.map((p) => p.change.keepsRejected),
      seqs: states.map((p) => p.change.seq),
    },
  };
}

/** Inserts one publication record (channel and action defaulted); resolves with its id. */
async function insertPublication(q: pg.Pool | pg.PoolClient, p: NewPolicyPublication): Promise<number> {
  const r = await q.query<{ id: number }>(
    `INSERT INTO policy_publications (version, published_at, published_by, message, sha256, keyids, verified, diff, channel, action)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id::float8 AS id`,
    [
      p.version,
      p.published_at,
      p.published_by,
      p.message,
      p.sha256,
      p.keyids,
      p.verified,
      p.diff,
      p.channel ?? 'enforced',
      p.action ?? 'publish',
    ],
  );
  return (r.rows[0] as { id: number }).id;
}

async function setChannel(
  c: pg.PoolClient,
  channel: string,
  version: number,
  envelope: string | null,
  id: number,
  at: string,
): Promise<void> {
  await c.query(
    `INSERT INTO policy_channels (channel, version, envelope, publication_id, updated_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (channel) DO UPDATE SET version = excluded.version, envelope = excluded.envelope,
       publication_id = excluded.publication_id, updated_at = excluded.updated_at`,
    [channel, version, envelope, id, at],
  );
}
