/**
 * Owns the agent state DB schema. Migration N brings `PRAGMA user_version` from N-1 to N; they run
 * in order, each in its own transaction, and are never edited once released (0.1.0 is unreleased:
 * until then migration 1 is still the place to add a table).
 */
export const MIGRATIONS: readonly string[] = [
  // 1: initial schema
  `
  CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT;

  -- The event outbox: every event is appended here before anything is sent; rows are deleted
  -- only once the collector acknowledged them. seq is the per-device monotonic sequence number.
  CREATE TABLE outbox (
    seq    INTEGER PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    type   TEXT NOT NULL,
    time   TEXT NOT NULL,
    body   TEXT NOT NULL,
    bytes  INTEGER NOT NULL
  ) STRICT;

  -- Shipped events kept for guardctl events (local transparency), pruned by age and size.
  CREATE TABLE event_history (
    seq    INTEGER PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    type   TEXT NOT NULL,
    time   TEXT NOT NULL,
    body   TEXT NOT NULL,
    bytes  INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX event_history_time ON event_history(time);

  -- Events set aside: the collector refused them as invalid (poison), or they failed the schema at
  -- append. Kept (counted, visible in guardctl events) so they never block the outbox queue.
  CREATE TABLE outbox_aside (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    type          TEXT NOT NULL,
    time          TEXT NOT NULL,
    body          TEXT NOT NULL,
    bytes         INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    set_aside_at  TEXT NOT NULL
  ) STRICT;

  -- Every policy ever accepted or rejected (anti-rollback keeps the highest accepted version).
  CREATE TABLE policy_history (
    version     INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    received_at TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    envelope    TEXT
  ) STRICT;

  -- The decision last reported per running process identity (pid + start time), so a process
  -- that keeps running is not reported again at a policy change or restart (process-reports.ts).
  CREATE TABLE process_reports (
    pid          INTEGER NOT NULL,
    start_time   REAL NOT NULL,
    decision     TEXT NOT NULL,
    reported_at  TEXT NOT NULL,
    PRIMARY KEY (pid, start_time)
  ) STRICT;

  -- What the agent sent, per UTC hour: one row per request kind (event_type '') with requests and
  -- body bytes, and one per event type with events and JSON bytes (sent-log.ts; 48 h kept).
  CREATE TABLE sent_log (
    hour        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    count       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    PRIMARY KEY (hour, kind, event_type)
  ) STRICT;

  -- Quarantined packages and artifacts (manifest as JSON).
  CREATE TABLE quarantine (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    state       TEXT NOT NULL,
    manifest    TEXT NOT NULL
  ) STRICT;
  `,
  // 2: shadow policies: policy_history rows say which channel (enforced or shadow) they belong to.
  `
  ALTER TABLE policy_history ADD COLUMN channel TEXT NOT NULL DEFAULT 'enforced';
  `,
];
