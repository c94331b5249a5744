/**
 * Owns the admin API, registered as its own fastify scope whose `onRequest` hook checks the admin
 * bearer token (compared in constant time) before any admin route runs — a route added to the
 * scope cannot forget it: `GET /v1/devices` (fleet state: last seen, agent and policy versions,
 * the enrollment generation, the `silent` flag, and `state`: stopped = its last event was a clean
 * stop, silent = not heard from for silent_after_s without one, else active) and `GET /v1/events` (filters and
 * cursor paging), and policy publishing (`POST /v1/admin/policy`, `GET /v1/admin/policy/history`,
 * the shadow channel's promote/clear and would-match counts: policy-publish.ts). Query parameters are validated strictly — an unknown or malformed parameter is a
 * 400 `GUARD_COLLECTOR_BAD_QUERY`, never silently ignored, so a typo cannot widen a query.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { bearerToken, secretEquals } from './auth.js';
import { HttpError } from './http-error.js';
import { type PolicyPublisher, registerPolicyPublishRoutes } from './policy-publish.js';
import type {
  DeviceCoverage,
  EventLog,
  FleetQueries,
  PolicyChannels,
  PolicyPublications,
  StoredEventRow,
} from './store/port.js';

/** Page size when `limit` is not given. */
export const DEFAULT_PAGE = 100;
/** Largest page: bounds the memory and time of one admin answer. */
export const MAX_PAGE = 1000;
/** A page of events stops growing past this many body bytes (events may be up to 256 KiB each). */
export const MAX_PAGE_BYTES = 8 * 1024 * 1024;
/** Events read from the store per step while filling a page. */
const READ_CHUNK = 100;
/** Filter values longer than this are refused (ids and types are short). */
const MAX_FILTER_CHARS = 256;

export interface AdminRoutesOptions {
  readonly store: EventLog & FleetQueries & PolicyPublications & PolicyChannels;
  readonly adminToken: string;
  /** A device not seen for this many seconds is `silent`. */
  readonly silentAfterS: number;
  /** Clock in ms (tests may pass a fixed one). */
  readonly now?: () => number;
  /** Policy publishing (policy-publish.ts), shared with the console. */
  readonly publisher: PolicyPublisher;
}

/** Registers the admin routes on `app`, in their own scope behind the admin token. */
export function registerAdminRoutes(app: FastifyInstance, options: AdminRoutesOptions): void {
  const { store, adminToken, silentAfterS } = options;
  const now = options.now ?? Date.now;

  const authorize = (req: FastifyRequest): void => {
    const token = bearerToken(req.headers.authorization);
    if (token === null || !secretEquals(token, adminToken))
      throw new HttpError(401, 'GUARD_COLLECTOR_UNAUTHORIZED', 'missing or wrong admin bearer token');
  };

  app.register(async (admin) => {
    admin.addHook('onRequest', async (req) => authorize(req));
    registerRoutes(admin);
    registerPolicyPublishRoutes(admin, options.publisher);
  });

  function registerRoutes(admin: FastifyInstance): void {
    admin.get('/v1/devices', async (req) => {
      const q = queryOf(req, ['limit', 'cursor', 'silent']);
      const limit = pageLimit(q.limit);
      let silent: boolean | undefined;
      if (q.silent !== undefined) {
        if (q.silent !== 'true' && q.silent !== 'false') throw badQuery('silent', 'true or false');
        silent = q.silent === 'true';
      }
      const t = now();
      const before = new Date(t - silentAfterS * 1000).toISOString();
      const rows = await store.listDevices(
        q.cursor,
        limit,
        silent === undefined ? undefined : { before, silent },
      );
      return {
        devices: rows.map((d) => {
          const silentFor = Math.max(0, Math.floor((t - Date.parse(d.last_seen_at)) / 1000));
          const coverage = d.coverage === null ? null : (JSON.parse(d.coverage) as DeviceCoverage);
          const silentNow = d.last_seen_at < before;
          // stopped = its last word was agent.stopped (a clean stop); silent = not heard from and no clean stop.
          const state = d.stopped_at !== null ? 'stopped' : silentNow ? 'silent' : 'active';
          return { ...d, coverage, silent: silentNow, silent_for_s: silentFor, state };
        }),
        silent_after_s: silentAfterS,
        next_cursor: rows.length === limit ? (rows[rows.length - 1]?.id ?? null) : null,
      };
    });

    admin.get('/v1/events', async (req) => {
      const q = queryOf(req, ['limit', 'cursor', 'device_id', 'type', 'rule', 'since', 'until']);
      const limit = pageLimit(q.limit);
      let afterRid: number | undefined;
      if (q.cursor !== undefined) {
        if (!/^\d{1,15}$/.test(q.cursor)) throw badQuery('cursor', 'the next_cursor of a previous page');
        afterRid = Number(q.cursor);
      }
      const filter = {
        deviceId: q.device_id,
        type: q.type,
        ruleId: q.rule,
        since: q.since === undefined ? undefined : isoTime('since', q.since),
        until: q.until === undefined ? undefined : isoTime('until', q.until),
      };
      // Read in chunks and stop at the byte cap, so a page of large events stays bounded in memory.
      const rows: StoredEventRow[] = [];
      let bytes = 0;
      // at most limit / READ_CHUNK + 1 rounds: every round but the last adds READ_CHUNK rows
      for (;;) {
        const want = Math.min(READ_CHUNK, limit - rows.length);
        const chunk = await store.queryEvents({ ...filter, afterRid, limit: want });
        for (const row of chunk) {
          rows.push(row);
          bytes += row.body.length;
          afterRid = row.rid;
          if (bytes >= MAX_PAGE_BYTES) break;
        }
        if (chunk.length < want || rows.length >= limit || bytes >= MAX_PAGE_BYTES) break;
      }
      const full = rows.length === limit || bytes >= MAX_PAGE_BYTES;
      return {
        events: rows.map(toApiEvent),
        next_cursor: full && rows.length > 0 ? String((rows[rows.length - 1] as StoredEventRow).rid) : null,
      };
    });
  }
}

/**
 * An event as the admin API shows it: the body as received, plus the collector's metadata —
 * `received_at` and `enrollment` (the device's enrollment generation it was posted under; two
 * copies of one (device_id, id) under different enrollments are a re-sent batch across a
 * re-enrollment, or a forger's copies).
 */
function toApiEvent(row: StoredEventRow): Record<string, unknown> {
  return {
    ...(JSON.parse(row.body) as Record<string, unknown>),
    received_at: row.received_at,
    enrollment: row.enrollment,
  };
}

export function queryOf(req: FastifyRequest, allowed: readonly string[]): Record<string, string | undefined> {
  const q = (req.query ?? {}) as Record<string, unknown>;
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(q)) {
    if (!allowed.includes(k))
      throw new HttpError(
        400,
        'GUARD_COLLECTOR_BAD_QUERY',
        `unknown query parameter "${k.slice(0, 40)}"; allowed: ${allowed.join(', ')}`,
      );
    if (typeof v !== 'string') throw badQuery(k, 'a single value');
    if (v.length > MAX_FILTER_CHARS) throw badQuery(k, `at most ${MAX_FILTER_CHARS} characters`);
    out[k] = v;
  }
  return out;
}

function pageLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_PAGE;
  if (!/^\d{1,6}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_PAGE)
    throw badQuery('limit', `an integer from 1 to ${MAX_PAGE}`);
  return Number(raw);
}

export function isoTime(name: string, raw: string): string {
  const ms = Date.parse(raw);
  if (!/^\d{4}-\d{2}-\d{2}/.test(raw) || Number.isNaN(ms))
    throw badQuery(name, 'an RFC 3339 time, e.g. 2026-11-24T09:00:00Z');
  return new Date(ms).toISOString();
}

export function badQuery(name: string, expected: string): HttpError {
  return new HttpError(400, 'GUARD_COLLECTOR_BAD_QUERY', `query parameter "${name}": expected ${expected}`);
}
