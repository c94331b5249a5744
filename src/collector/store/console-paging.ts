/**
 * Owns what both stores share of the console port (console-port.ts) apart from SQL: request
 * checks (bounded limits), the opaque keyset cursors, the device policy state a batch of events
 * leads to, the rule rollup keys of a group, and the row → ConsoleDevice mapping. One mechanism
 * for both stores, so the contract test's behaviour holds on each.
 */
import { GuardError } from '../../common/errors.js';
import type { DeviceCoverage, IncomingEvent } from '../collector-store.js';
import type {
  ConsoleDevice,
  ConsoleEventSummary,
  DevicePolicyState,
  DeviceSort,
  Page,
} from './console-port.js';

/** Largest page of any console list. */
export const MAX_CONSOLE_LIMIT = 500;
export const DEVICE_SORTS: readonly DeviceSort[] = [
  'hostname',
  'last_seen_at',
  'agent_version',
  'policy_version',
];
/** Event types counted as blocks on the overview. */
export const BLOCK_TYPES: readonly string[] = [
  'process.blocked',
  'process.denied',
  'package.quarantined',
  'path.quarantined',
];
/** Sort key of a device without a policy version (below every real version, which is ≥ 0). */
export const NO_POLICY_VERSION = -1;

/** Rejects a limit outside 1..MAX_CONSOLE_LIMIT (or not an integer) with GUARD_BAD_REQUEST. */
export function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CONSOLE_LIMIT)
    throw new GuardError('GUARD_BAD_REQUEST', `limit must be an integer from 1 to ${MAX_CONSOLE_LIMIT}`, {
      limit,
    });
  return limit;
}

/** Rejects with GUARD_BAD_REQUEST unless `v` is one of `allowed`. */
export function checkOneOf<T extends string>(what: string, v: T, allowed: readonly T[]): T {
  if (!allowed.includes(v))
    throw new GuardError('GUARD_BAD_REQUEST', `${what} must be one of ${allowed.join(', ')}`, { [what]: v });
  return v;
}

function badCursor(): never {
  throw new GuardError('GUARD_BAD_CURSOR', 'the page cursor is malformed or belongs to another listing');
}

function encode(v: unknown): string {
  return Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
}

function decode(cursor: string): unknown {
  // bounded before decoding: a cursor is a few dozen bytes (a hostname key at most ~1 KiB)
  if (cursor.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(cursor)) badCursor();
  try {
    return JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return badCursor();
  }
}

/** Position after a device row in one listing: its sort key and id, and which listing it belongs to. */
export interface DeviceCursor {
  readonly key: string | number;
  readonly id: string;
}

export function deviceCursor(
  sort: DeviceSort,
  order: 'asc' | 'desc',
  key: string | number,
  id: string,
): string {
  return encode({ s: sort, o: order, k: key, i: id });
}

/** The cursor's position; GUARD_BAD_CURSOR when malformed or of another sort/order. */
export function readDeviceCursor(cursor: string, sort: DeviceSort, order: 'asc' | 'desc'): DeviceCursor {
  const c = decode(cursor) as Record<string, unknown> | null;
  if (typeof c !== 'object' || c === null || c.s !== sort || c.o !== order || typeof c.i !== 'string')
    badCursor();
  const numeric = sort === 'policy_version';
  if (numeric ? !Number.isSafeInteger(c.k) : typeof c.k !== 'string') badCursor();
  return { key: c.k as string | number, id: c.i };
}

export function eventCursor(rid: number): string {
  return encode({ r: rid });
}

/** The rid the next page starts below; GUARD_BAD_CURSOR when malformed. */
export function readEventCursor(cursor: string): number {
  const c = decode(cursor) as Record<string, unknown> | null;
  if (typeof c !== 'object' || c === null || !Number.isSafeInteger(c.r) || (c.r as number) < 1) badCursor();
  return c.r as number;
}

/**
 * What a device's events say about its policy state, folded in seq order: a heartbeat says ok /
 * stale / unknown (its `policy_state`, `none` → unknown) but leaves a rejection standing (the
 * agent keeps enforcing its last good policy and says `ok` meanwhile); policy.rejected sets
 * `rejected` with its reason; policy.applied clears to `ok`. `keepsRejected`: the change does not
 * replace a stored `rejected` (only heartbeats since the last policy.applied/rejected). `seq`:
 * the newest seq it came from (the store's guard, like the policy version's).
 */
export interface PolicyStateChange {
  readonly state: DevicePolicyState;
  readonly error: string | null;
  readonly keepsRejected: boolean;
  readonly seq: number;
}

export function policyStateChange(events: readonly IncomingEvent[]): PolicyStateChange | null {
  const said = events.filter((e) => e.policyState !== null).sort((a, b) => a.seq - b.seq);
  return said.reduce<PolicyStateChange | null>((acc, e) => {
    const state = e.policyState as DevicePolicyState;
    if (e.type !== 'agent.heartbeat')
      return { state, error: e.policyError, keepsRejected: false, seq: e.seq };
    if (acc?.state === 'rejected')
      return { state: acc.state, error: acc.error, keepsRejected: false, seq: e.seq };
    return { state, error: null, keepsRejected: acc?.keepsRejected ?? true, seq: e.seq };
  }, null);
}

/** One rule rollup row's increment: events of `rule` and `type` whose time falls in `hour`. */
export interface RuleHourCount {
  readonly rule: string;
  readonly type: string;
  /** `YYYY-MM-DDTHH` of the event time (UTC). */
  readonly hour: string;
  readonly n: number;
}

/** The rule-hour counts of the events a commit stored (`stored(e)`: it was new). */
export function ruleHourCounts(events: Iterable<IncomingEvent>): RuleHourCount[] {
  const m = new Map<string, RuleHourCount>();
  for (const e of events) {
    if (e.ruleId === null) continue;
    const hour = e.time.slice(0, 13);
    const k = `${e.ruleId}\u0000${e.type}\u0000${hour}`;
    const c = m.get(k);
    m.set(k, { rule: e.ruleId, type: e.type, hour, n: (c?.n ?? 0) + 1 });
  }
  return [...m.values()].sort((a, b) =>
    a.rule !== b.rule
      ? a.rule < b.rule
        ? -1
        : 1
      : a.type !== b.type
        ? a.type < b.type
          ? -1
          : 1
        : a.hour < b.hour
          ? -1
          : a.hour > b.hour
            ? 1
            : 0,
  );
}

/** A devices row as both stores read it for the console. */
export interface ConsoleDeviceRow {
  readonly id: string;
  readonly hostname: string;
  readonly os: string;
  readonly agent_version: string;
  readonly tags: string | null;
  readonly enrolled_at: string;
  readonly last_seen_at: string;
  readonly stopped_at: string | null;
  readonly policy_version: number | null;
  readonly policy_state: string | null;
  readonly policy_error: string | null;
  readonly coverage: string | null;
  readonly outbox_depth: number | null;
  readonly dropped_total: number | null;
}

/** The columns of ConsoleDeviceRow, for SELECT lists. */
export const CONSOLE_DEVICE_COLUMNS =
  'id, hostname, os, agent_version, tags, enrolled_at, last_seen_at, stopped_at, policy_version, policy_state, policy_error, coverage, outbox_depth, dropped_total';

export function consoleDevice(r: ConsoleDeviceRow): ConsoleDevice {
  return {
    id: r.id,
    hostname: r.hostname,
    os: r.os,
    agent_version: r.agent_version,
    tags: r.tags === null ? [] : (JSON.parse(r.tags) as string[]),
    enrolled_at: r.enrolled_at,
    last_seen_at: r.last_seen_at,
    stopped_at: r.stopped_at,
    policy_version: r.policy_version,
    policy_state: (r.policy_state ?? 'unknown') as DevicePolicyState,
    policy_error: r.policy_error,
    coverage: r.coverage === null ? null : (JSON.parse(r.coverage) as DeviceCoverage),
    outbox_depth: r.outbox_depth,
    dropped_total: r.dropped_total,
  };
}

/** The sort key of a device row for `sort` (what its cursor carries). */
export function deviceSortKey(r: ConsoleDeviceRow, sort: DeviceSort): string | number {
  return sort === 'policy_version' ? (r.policy_version ?? NO_POLICY_VERSION) : r[sort];
}

/** `LIKE` pattern of a substring search, with `\` as the escape character. */
export function likeContains(s: string): string {
  return `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Rejects with GUARD_BAD_REQUEST unless `s` is an RFC 3339 date-time; returns its epoch ms. */
export function checkTime(what: string, s: unknown): number {
  const ms =
    typeof s === 'string' &&
    s.length <= 64 &&
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(s)
      ? Date.parse(s)
      : Number.NaN;
  if (Number.isNaN(ms)) throw new GuardError('GUARD_BAD_REQUEST', `${what} must be an RFC 3339 date-time`);
  return ms;
}

/** The most buckets one ruleActivity answer covers (100 days of hours). */
export const MAX_ACTIVITY_BUCKETS = 2400;
/** The most rules one ruleActivity request names. */
export const MAX_ACTIVITY_RULES = 200;
const HOUR_MS = 3_600_000;

/**
 * The rollup hours (`YYYY-MM-DDTHH`) a ruleActivity request reads, `from` inclusive to `to`
 * exclusive: whole buckets, `since` rounded down and `until` up to the bucket width. Rejects
 * (GUARD_BAD_REQUEST) a bad time, width, an empty range or more than MAX_ACTIVITY_BUCKETS buckets.
 */
export function activityHours(req: {
  since: string;
  until: string;
  bucketSeconds: number;
  ruleIds: readonly string[];
}): {
  from: string;
  to: string;
  /** Characters of the hour key that name the bucket: 13 (hour) or 10 (day). */
  keyLength: 13 | 10;
  /** Every bucket's key, `from` to `to` (exclusive), for index lookups (the rollup's key leads with it). */
  keys: string[];
} {
  if (
    !Array.isArray(req.ruleIds) ||
    req.ruleIds.length > MAX_ACTIVITY_RULES ||
    req.ruleIds.some((r) => typeof r !== 'string')
  )
    throw new GuardError('GUARD_BAD_REQUEST', `ruleIds must be at most ${MAX_ACTIVITY_RULES} rule ids`);
  const since = checkTime('since', req.since);
  const until = checkTime('until', req.until);
  if (req.bucketSeconds !== 3600 && req.bucketSeconds !== 86400)
    throw new GuardError('GUARD_BAD_REQUEST', 'bucketSeconds must be 3600 or 86400');
  const w = req.bucketSeconds * 1000;
  const start = Math.floor(since / w) * w;
  const end = Math.ceil(until / w) * w;
  if (end <= start || (end - start) / w > MAX_ACTIVITY_BUCKETS)
    throw new GuardError('GUARD_BAD_REQUEST', `since..until must span 1 to ${MAX_ACTIVITY_BUCKETS} buckets`);
  const hourKey = (ms: number): string =>
    new Date(Math.floor(ms / HOUR_MS) * HOUR_MS).toISOString().slice(0, 13);
  const keyLength = req.bucketSeconds === 3600 ? 13 : 10;
  const keys: string[] = [];
  for (let t = start; t < end; t += w) keys.push(hourKey(t).slice(0, keyLength));
  return { from: hourKey(start), to: hourKey(end), keyLength, keys };
}

/** The RFC 3339 start of a bucket named by an hour (`…THH`) or day (`YYYY-MM-DD`) key. */
export function bucketStart(key: string): string {
  return key.length === 10 ? `${key}T00:00:00.000Z` : `${key}:00:00.000Z`;
}

/** Rejects an event filter that is not plain strings (GUARD_BAD_REQUEST); at most 32 types. */
export function checkEventFilter(f: {
  types?: readonly string[];
  ruleId?: string;
  deviceId?: string;
  user?: string;
  since?: string;
  until?: string;
}): void {
  if (
    f.types !== undefined &&
    (!Array.isArray(f.types) || f.types.length > 32 || f.types.some((t) => typeof t !== 'string'))
  )
    throw new GuardError('GUARD_BAD_REQUEST', 'types must be at most 32 event types');
  for (const k of ['ruleId', 'deviceId', 'user', 'since', 'until'] as const)
    if (f[k] !== undefined && typeof f[k] !== 'string')
      throw new GuardError('GUARD_BAD_REQUEST', `${k} must be a string`);
}

/** Devices of a policy rollout group that count as stale on the overview. */
export function staleGroup(
  g: { version: number | null; state: DevicePolicyState },
  publishedVersion: number | null,
): boolean {
  return (
    g.state === 'stale' ||
    g.state === 'rejected' ||
    (publishedVersion !== null && (g.version ?? NO_POLICY_VERSION) < publishedVersion)
  );
}

/** Expired sessions deleted per pruneSessions call at most. */
export const SESSION_PRUNE_BATCH = 1000;

/** A page of devices from `limit + 1` rows in listing order. */
export function devicePage(
  rows: readonly ConsoleDeviceRow[],
  limit: number,
  sort: DeviceSort,
  order: 'asc' | 'desc',
): Page<ConsoleDevice> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return {
    items: items.map(consoleDevice),
    next: rows.length > limit && last ? deviceCursor(sort, order, deviceSortKey(last, sort), last.id) : null,
  };
}

/** A page of events from `limit + 1` rows, newest first. */
export function eventPage(rows: readonly ConsoleEventSummary[], limit: number): Page<ConsoleEventSummary> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next: rows.length > limit && last ? eventCursor(last.rid) : null };
}

/**
 * Rollout groups with one entry per (version, state): a device row without a state yet (NULL) and
 * one whose heartbeat said `none` both count as `unknown`.
 */
export function mergeGroups(
  rows: readonly { version: number | null; state: DevicePolicyState; devices: number }[],
): { version: number | null; state: DevicePolicyState; devices: number }[] {
  const m = new Map<string, { version: number | null; state: DevicePolicyState; devices: number }>();
  for (const r of rows) {
    const k = `${r.version}\u0000${r.state}`;
    const g = m.get(k);
    if (g) g.devices += r.devices;
    else m.set(k, { version: r.version, state: r.state, devices: r.devices });
  }
  return [...m.values()];
}

/**
 * Whether a timeline query with a time range should read the range first and sort it by rid
 * (cost: the events in the range) rather than walk rids down from the newest and skip what is
 * newer than `until` (cost: the events after `until`). Planners guess this badly (time and rid
 * are correlated; PostgreSQL walked 1.3 million rows for a one-day range 4 days back), so the
 * store decides from the newest event's time: the range first when it is shorter than the time
 * after it.
 */
export function rangeFirst(
  since: string | undefined,
  until: string | undefined,
  newest: string | undefined,
): boolean {
  if (since === undefined || until === undefined || newest === undefined) return false;
  const s = Date.parse(since);
  const u = Date.parse(until);
  const n = Date.parse(newest);
  return !Number.isNaN(s) && !Number.isNaN(u) && !Number.isNaN(n) && u - s < n - u;
}
