/**
 * Owns the SQLite implementation of the storage port (port.ts): the embedded default, one
 * collector process on one file. The schema, migrations, durability and idempotency are
 * collector-store.ts's (`CollectorStore`, synchronous better-sqlite3); this adapter gives them the
 * port's async shape and adds the forwarder claim, which in one process is the runner itself
 * (one runner per sink; SQLite has one writer, so rid order is commit order and "rid > cursor"
 * never skips a row). A rewind waiting for a sink's claim is run by the delivery that releases
 * it, synchronously in its `finally`, so the runner's next delivery cannot take the claim first.
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { GuardError } from '../../common/errors.js';
import type { CollectorStoreOptions } from '../collector-store.js';
import { COLLECTOR_MIGRATIONS, CollectorStore } from '../collector-store.js';
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
  eventCursor,
  eventPage,
  likeContains,
  mergeGroups,
  NO_POLICY_VERSION,
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

/** Rows read per step while filling a forwarder batch, so the byte cap also bounds what is read. */
const READ_CHUNK = 50;
/**
 * Events (by rid) one console timeline page may look through at most. SQLite runs on the
 * collector's main thread, so a filter no index narrows (a type with a time range in the past, say)
 * would otherwise walk the whole log on every request, stalling ingest — a viewer could repeat it.
 * A page that reached the bound without filling ends there and its cursor continues below it (a
 * short or empty page with a `next`). ~0.1 s of scanning at most.
 */
export const CONSOLE_SCAN_WINDOW = 1_000_000;

export class SqliteCollectorStore implements CollectorStorePort {
  readonly kind = 'sqlite' as const;
  readonly location: string;
  readonly schema: { readonly from: number; readonly to: number };
  /** The synchronous engine (sqlite-only tests and tools; the collector itself uses the port). */
  readonly engine: CollectorStore;
  /**
   * Sinks whose delivery runs right now in this process (a second runner of one sink gets `busy`),
   * each with the rewinds waiting for its claim (run when it is released).
   */
  private readonly claims = new Map<string, (() => void)[]>();

  /**
   * Opens (creating or migrating) the database. Throws `GUARD_STORE_SCHEMA_NEWER` for a database
   * of a newer collector (left untouched), `GUARD_STORE_IO` when it cannot be opened.
   */
  /** `consoleScanWindow`: CONSOLE_SCAN_WINDOW unless a test makes it small. */
  constructor(
    options: CollectorStoreOptions,
    private readonly tuning: { readonly consoleScanWindow?: number } = {},
  ) {
    const from = refuseNewerSchema(options.file);
    this.engine = new CollectorStore(options);
    this.location = options.file;
    this.schema = { from: this.engine.recovered ? 0 : from, to: COLLECTOR_MIGRATIONS.length };
  }

  /** Set when the DB failed its integrity check at open and was moved aside. */
  get recovered(): CollectorStore['recovered'] {
    return this.engine.recovered;
  }

  get onStored(): (() => void) | null {
    return this.engine.onStored;
  }
  set onStored(f: (() => void) | null) {
    this.engine.onStored = f;
  }

  async deviceForTokenHash(tokenHash: string): Promise<EnrolledDevice | undefined> {
    return this.engine.deviceForTokenHash(tokenHash);
  }

  async enrollDevice(device: EnrollingDevice, tokenHash: string, now: string): Promise<number> {
    return this.engine.enrollDevice(device, tokenHash, now);
  }

  async insertGroup(batches: readonly BatchToStore[]): Promise<InsertResult[]> {
    return this.engine.insertGroup(batches);
  }

  async queryEvents(q: EventQuery): Promise<StoredEventRow[]> {
    return this.engine.queryEvents(q);
  }

  async deliverNext(
    sink: string,
    limits: ClaimLimits,
    deliver: (events: readonly StoredEventRow[]) => Promise<void>,
  ): Promise<ClaimOutcome> {
    if (this.claims.has(sink)) return { kind: 'busy' };
    const waiting: (() => void)[] = [];
    this.claims.set(sink, waiting);
    try {
      const rows = this.nextBatch(sink, limits);
      if (rows.length === 0) return { kind: 'empty' };
      await deliver(rows);
      this.engine.setCursor(sink, (rows[rows.length - 1] as StoredEventRow).rid);
      return { kind: 'delivered', events: rows.length };
    } finally {
      this.claims.delete(sink);
      for (const run of waiting) run();
    }
  }

  async forwarderCursor(sink: string): Promise<ForwarderCursor | undefined> {
    return this.cursorRow(sink);
  }

  private cursorRow(sink: string): ForwarderCursor | undefined {
    const row = this.engine.db
      .prepare<[string], { rid: number; updated_at: string }>(
        'SELECT last_rid AS rid, updated_at FROM forwarder_cursors WHERE sink = ?',
      )
      .get(sink);
    return row && { rid: row.rid, txid: null, updated_at: row.updated_at };
  }

  async rewindForwarder(sink: string, since: string, waitMs: number): Promise<RewindOutcome> {
    const from = new Date(checkTime('since', since)).toISOString();
    const waiting = this.claims.get(sink);
    if (!waiting) return this.rewindNow(sink, from);
    return new Promise<RewindOutcome>((resolve, reject) => {
      const run = (): void => {
        clearTimeout(timer);
        try {
          resolve(this.rewindNow(sink, from));
        } catch (err) {
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(run), 1);
        resolve({ kind: 'busy' });
      }, waitMs);
      waiting.push(run);
    });
  }

  /** The rewind itself, synchronous: no delivery of `sink` holds the claim (see rewindForwarder). */
  private rewindNow(sink: string, from: string): RewindOutcome {
    const db = this.engine.db;
    const was = this.cursorRow(sink);
    if (!was) return { kind: 'unchanged', reason: 'no_cursor', cursor: null };
    // a range scan of the index events_received(received_at, …), which holds the rid (no table
    // reads) — left alone, the planner walks the table in rid order from the oldest event instead
    const first = db
      .prepare<[string], { r: number | null }>(
        'SELECT min(rid) AS r FROM events INDEXED BY events_received WHERE received_at >= ?',
      )
      .get(from)?.r;
    if (first === null || first === undefined || first - 1 >= was.rid)
      return { kind: 'unchanged', reason: 'nothing_delivered_since', cursor: was };
    const to = first - 1;
    const counted =
      db
        .prepare<[number, number, number], { n: number }>(
          'SELECT count(*) AS n FROM (SELECT 1 FROM events WHERE rid > ? AND rid <= ? LIMIT ?)',
        )
        .get(to, was.rid, REWIND_COUNT_BOUND + 1)?.n ?? 0;
    const at = new Date().toISOString();
    db.prepare('UPDATE forwarder_cursors SET last_rid = ?, updated_at = ? WHERE sink = ?').run(to, at, sink);
    this.onStored?.();
    const exact = counted <= REWIND_COUNT_BOUND;
    return {
      kind: 'rewound',
      previous: was,
      cursor: { rid: to, txid: null, updated_at: at },
      dueAgain: exact ? counted : Math.max(counted, was.rid - to),
      dueAgainExact: exact,
    };
  }

  /** The next events after the cursor: at most `maxEvents`, and at most `maxBytes` of bodies (but at least one). */
  private nextBatch(sink: string, limits: ClaimLimits): StoredEventRow[] {
    const rows: StoredEventRow[] = [];
    let bytes = 0;
    let after = this.engine.cursorOf(sink);
    for (;;) {
      const want = Math.min(READ_CHUNK, limits.maxEvents - rows.length);
      const chunk = this.engine.eventsAfter(after, want);
      for (const row of chunk) {
        if (rows.length > 0 && bytes + row.body.length > limits.maxBytes) return rows;
        rows.push(row);
        bytes += row.body.length;
        after = row.rid;
      }
      if (chunk.length < want || rows.length >= limits.maxEvents) return rows;
    }
  }

  async forwarderLag(sink: string): Promise<number> {
    return Math.max(0, this.engine.maxRid() - this.engine.cursorOf(sink));
  }

  async pruneEvents(receivedBefore: string, sinks: readonly string[], limit: number): Promise<number> {
    // events past every sink's cursor are still owed to that sink
    const protectAbove =
      sinks.length === 0 ? Number.MAX_SAFE_INTEGER : Math.min(...sinks.map((s) => this.engine.cursorOf(s)));
    return this.engine.pruneEvents(receivedBefore, protectAbove, limit);
  }

  async listDevices(
    afterId: string | undefined,
    limit: number,
    silentBefore?: { readonly before: string; readonly silent: boolean },
  ): Promise<DeviceRow[]> {
    return this.engine.listDevices(afterId, limit, silentBefore);
  }

  async deviceCounts(silentBefore: string): Promise<{ total: number; silent: number }> {
    return this.engine.deviceCounts(silentBefore);
  }

  async coverageCounts(): Promise<CoverageCounts[]> {
    return this.engine.coverageCounts();
  }

  async recordPolicyPublication(p: NewPolicyPublication): Promise<void> {
    void this.engine.recordPolicyPublication(p);
  }

  async listPolicyPublications(limit: number, beforeId?: number): Promise<PolicyPublicationRow[]> {
    return this.engine.listPolicyPublications(limit, beforeId);
  }

  async policyChannelStamp(channel: PolicyChannel): Promise<PolicyChannelStamp | undefined> {
    return this.engine.policyChannelStamp(channel);
  }

  async policyChannel(channel: PolicyChannel): Promise<PolicyChannelState | undefined> {
    return this.engine.policyChannel(channel);
  }

  async publishToPolicyChannel(
    channel: PolicyChannel,
    envelope: string,
    p: NewPolicyPublication,
  ): Promise<number | null> {
    return this.engine.publishToPolicyChannel(channel, envelope, p);
  }

  async clearPolicyChannel(
    channel: PolicyChannel,
    expectedPublicationId: number,
    p: NewPolicyPublication,
  ): Promise<number | null> {
    return this.engine.clearPolicyChannel(channel, expectedPublicationId, p);
  }

  async shadowMatchesByRule(
    version: number,
    afterRule: string | undefined,
    limit: number,
  ): Promise<ShadowRuleCount[]> {
    return this.engine.shadowMatchesByRule(version, afterRule, limit);
  }

  async shadowMatchesByDevice(
    version: number,
    after: { readonly device_id: string; readonly rule_id: string } | undefined,
    limit: number,
  ): Promise<ShadowDeviceCount[]> {
    return this.engine.shadowMatchesByDevice(version, after, limit);
  }

  async consoleDevices(req: DevicePageRequest): Promise<Page<ConsoleDevice>> {
    const limit = checkLimit(req.limit);
    const sort = checkOneOf('sort', req.sort, DEVICE_SORTS);
    const order = checkOneOf('order', req.order, ['asc', 'desc'] as const);
    const where: string[] = [];
    const params: unknown[] = [];
    const f = req.filter;
    if (f.search !== undefined && f.search !== '') {
      where.push("(hostname LIKE ? ESCAPE '\\' OR id = ?)");
      params.push(likeContains(f.search), f.search);
    }
    if (f.tag !== undefined) {
      where.push('id IN (SELECT device_id FROM device_tags WHERE tag = ?)');
      params.push(f.tag);
    }
    if (f.agentVersion !== undefined) {
      where.push('agent_version = ?');
      params.push(f.agentVersion);
    }
    if (f.policyState !== undefined) {
      where.push(f.policyState === 'unknown' ? "coalesce(policy_state, 'unknown') = ?" : 'policy_state = ?');
      params.push(f.policyState);
    }
    if (f.silentBefore) {
      where.push(f.silentBefore.silent ? 'last_seen_at < ?' : 'last_seen_at >= ?');
      params.push(f.silentBefore.before);
    }
    const key = sort === 'policy_version' ? `coalesce(policy_version, ${NO_POLICY_VERSION})` : sort;
    if (req.cursor !== undefined) {
      const c = readDeviceCursor(req.cursor, sort, order);
      where.push(`(${key}, id) ${order === 'asc' ? '>' : '<'} (?, ?)`);
      params.push(c.key, c.id);
    }
    const dir = order === 'asc' ? 'ASC' : 'DESC';
    const rows = this.engine.db
      .prepare<unknown[], ConsoleDeviceRow>(
        `SELECT ${CONSOLE_DEVICE_COLUMNS} FROM devices ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
         ORDER BY ${key} ${dir}, id ${dir} LIMIT ?`,
      )
      .all(...params, limit + 1);
    return devicePage(rows, limit, sort, order);
  }

  async consoleDevice(id: string): Promise<ConsoleDevice | undefined> {
    const row = this.engine.db
      .prepare<[string], ConsoleDeviceRow>(`SELECT ${CONSOLE_DEVICE_COLUMNS} FROM devices WHERE id = ?`)
      .get(id);
    return row ? consoleDevice(row) : undefined;
  }

  async consoleEvents(req: EventPageRequest): Promise<Page<ConsoleEventSummary>> {
    const limit = checkLimit(req.limit);
    const f = req.filter;
    checkEventFilter(f);
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, ...v: unknown[]): void => {
      where.push(sql);
      params.push(...v);
    };
    if (f.types !== undefined) add(`e.type IN (${f.types.map(() => '?').join(', ') || 'NULL'})`, ...f.types);
    if (f.ruleId !== undefined) add('e.rule_id = ?', f.ruleId);
    if (f.deviceId !== undefined) add('e.device_id = ?', f.deviceId);
    if (f.user !== undefined) add('e.user_name = ?', f.user);
    if (f.since !== undefined) add('e.time >= ?', f.since);
    if (f.until !== undefined) add('e.time < ?', f.until);
    const db = this.engine.db;
    const below =
      req.cursor !== undefined
        ? readEventCursor(req.cursor)
        : ((db.prepare('SELECT max(rid) AS m FROM events').get() as { m: number | null }).m ?? 0) + 1;
    // rids in [floor, below): at most the scan window (CONSOLE_SCAN_WINDOW)
    const floor = Math.max(0, below - (this.tuning.consoleScanWindow ?? CONSOLE_SCAN_WINDOW));
    add('e.rid < ?', below);
    add('e.rid >= ?', floor);
    const rows = db
      .prepare<unknown[], ConsoleEventSummary>(
        `SELECT e.rid, e.id, e.device_id, coalesce(d.hostname, '') AS hostname, e.type, e.time, e.received_at,
                e.rule_id, e.user_name AS "user"
         FROM events e LEFT JOIN devices d ON d.id = e.device_id
         WHERE ${where.join(' AND ')} ORDER BY e.rid DESC LIMIT ?`,
      )
      .all(...params, limit + 1);
    const page = eventPage(rows, limit);
    // Not filled within the window, and older events remain: continue below the window.
    if (page.next === null && rows.length <= limit && floor > 0)
      return { items: page.items, next: eventCursor(floor) };
    return page;
  }

  async consoleEvent(rid: number): Promise<(StoredEventRow & { readonly hostname: string }) | undefined> {
    if (!Number.isSafeInteger(rid)) return undefined;
    return this.engine.db
      .prepare<[number], StoredEventRow & { hostname: string }>(
        `SELECT e.rid, e.device_id, e.enrollment, e.received_at, e.body, coalesce(d.hostname, '') AS hostname
         FROM events e LEFT JOIN devices d ON d.id = e.device_id WHERE e.rid = ?`,
      )
      .get(rid);
  }

  async ruleActivity(req: RuleActivityRequest): Promise<RuleBucket[]> {
    const h = activityHours(req);
    if (req.ruleIds.length === 0) return [];
    // one primary-key lookup per (bucket, rule): never a scan of every rule id devices sent
    const rows = this.engine.db
      .prepare<[string, string], { rule_id: string; type: string; k: string; count: number }>(
        h.keyLength === 13
          ? `SELECT rule_id, type, hour AS k, count FROM rule_hourly
             WHERE hour IN (SELECT value FROM json_each(?)) AND rule_id IN (SELECT value FROM json_each(?))
             ORDER BY hour, rule_id, type`
          : `SELECT rule_id, type, day AS k, count FROM rule_daily
             WHERE day IN (SELECT value FROM json_each(?)) AND rule_id IN (SELECT value FROM json_each(?))
             ORDER BY day, rule_id, type`,
      )
      .all(JSON.stringify(h.keys), JSON.stringify(req.ruleIds));
    return rows.map((r) => ({
      rule_id: r.rule_id,
      type: r.type,
      bucket_start: bucketStart(r.k),
      count: r.count,
    }));
  }

  async ruleTop(ruleId: string, since: string, limit: number): Promise<RuleTop> {
    checkLimit(limit);
    checkTime('since', since);
    const db = this.engine.db;
    const devices = db
      .prepare<[string, string, number], { device_id: string; hostname: string; count: number }>(
        `SELECT t.device_id, coalesce(d.hostname, '') AS hostname, t.count FROM
           (SELECT device_id, count(*) AS count FROM events WHERE rule_id = ? AND time >= ?
            GROUP BY device_id ORDER BY count DESC, device_id LIMIT ?) t
         LEFT JOIN devices d ON d.id = t.device_id ORDER BY t.count DESC, t.device_id`,
      )
      .all(ruleId, since, limit);
    const users = db
      .prepare<[string, string, number], { user: string; count: number }>(
        `SELECT user_name AS "user", count(*) AS count FROM events
         WHERE rule_id = ? AND time >= ? AND user_name IS NOT NULL
         GROUP BY user_name ORDER BY count DESC, user_name LIMIT ?`,
      )
      .all(ruleId, since, limit);
    return { devices, users };
  }

  async policyRollout(): Promise<PolicyRollout> {
    const db = this.engine.db;
    const versions = db
      .prepare<[], { version: number | null; state: DevicePolicyState; devices: number }>(
        `SELECT policy_version AS version, coalesce(policy_state, 'unknown') AS state, count(*) AS devices
         FROM devices GROUP BY policy_version, policy_state ORDER BY policy_version DESC, state`,
      )
      .all();
    const rejections = db
      .prepare<[], { error: string; devices: number }>(
        `SELECT coalesce(policy_error, '') AS error, count(*) AS devices FROM devices
         WHERE policy_state = 'rejected' GROUP BY policy_error ORDER BY devices DESC, error LIMIT 20`,
      )
      .all();
    return { versions: mergeGroups(versions), rejections };
  }

  async consoleOverview(q: {
    readonly now: string;
    readonly silentBefore: string;
    readonly since24h: string;
    readonly publishedVersion: number | null;
  }): Promise<ConsoleOverview> {
    const fiveMinAgo = new Date(checkTime('now', q.now) - 300_000).toISOString();
    const db = this.engine.db;
    const counts = this.engine.deviceCounts(q.silentBefore);
    const { versions } = await this.policyRollout();
    const blocks = db
      .prepare<unknown[], { n: number }>(
        `SELECT count(*) AS n FROM events WHERE received_at >= ? AND +type IN (${BLOCK_TYPES.map(() => '?').join(', ')})`,
      )
      .get(q.since24h, ...BLOCK_TYPES);
    const recent = db
      .prepare<[string, string], { n: number }>(
        'SELECT count(*) AS n FROM events WHERE received_at >= ? AND received_at <= ?',
      )
      .get(fiveMinAgo, q.now);
    return {
      devices_total: counts.total,
      devices_silent: counts.silent,
      devices_stale_policy: versions
        .filter((g) => staleGroup(g, q.publishedVersion))
        .reduce((n, g) => n + g.devices, 0),
      blocks_24h: blocks?.n ?? 0,
      ingest_per_s: (recent?.n ?? 0) / 300,
    };
  }

  async createSession(idHash: string, session: ConsoleSession): Promise<void> {
    this.engine.db
      .prepare('INSERT INTO console_sessions(id_hash, role, created_at, expires_at) VALUES (?, ?, ?, ?)')
      .run(idHash, session.role, session.created_at, session.expires_at);
  }

  async sessionByHash(idHash: string, now: string): Promise<ConsoleSession | undefined> {
    return this.engine.db
      .prepare<[string, string], ConsoleSession>(
        'SELECT role, created_at, expires_at FROM console_sessions WHERE id_hash = ? AND expires_at > ?',
      )
      .get(idHash, now);
  }

  async deleteSession(idHash: string): Promise<void> {
    this.engine.db.prepare('DELETE FROM console_sessions WHERE id_hash = ?').run(idHash);
  }

  async pruneSessions(now: string): Promise<number> {
    return this.engine.db
      .prepare(
        `DELETE FROM console_sessions WHERE id_hash IN
           (SELECT id_hash FROM console_sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)`,
      )
      .run(now, SESSION_PRUNE_BATCH).changes;
  }

  async healthy(): Promise<boolean> {
    return this.engine.healthy();
  }

  async close(): Promise<void> {
    this.engine.close();
  }
}

/**
 * The schema version `file` holds (0 when missing or unreadable); throws `GUARD_STORE_SCHEMA_NEWER`
 * when it is newer than COLLECTOR_MIGRATIONS.
 */
function refuseNewerSchema(file: string): number {
  if (!existsSync(file)) return 0;
  let version: number;
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      version = db.pragma('user_version', { simple: true }) as number;
    } finally {
      db.close();
    }
  } catch {
    return 0; // unreadable or corrupt: the engine's open reports or recovers it
  }
  if (version > COLLECTOR_MIGRATIONS.length)
    throw new GuardError(
      'GUARD_STORE_SCHEMA_NEWER',
      `the collector database ${file} has schema version ${version}, newer than this collector knows (${COLLECTOR_MIGRATIONS.length}); upgrade the collector, never downgrade the database`,
      { found: version, known: COLLECTOR_MIGRATIONS.length },
    );
  return version;
}
