/**
 * Owns the admin API, registered as its own fastify scope whose `onRequest` hook checks the admin
 * bearer token (compared in constant time) before any admin route runs — a route added to the
 * scope cannot forget it: `GET /v1/devices` (fleet state: last seen, agent and policy versions,
 * the enrollment generation, the `silent` flag, and `state`: stopped = its last event was a clean
 * stop, silent = not heard from for silent_after_s without one, else active) and `GET /v1/events` (filters and
 * cursor paging), and policy publishing (`POST /v1/admin/policy`, `GET /v1/admin/policy/history`,
 * the shadow channel's promote/clear and would-match counts: policy-publish.ts), and the forwarders:
 * `GET /v1/admin/forwarders` (each configured sink's cursor and lag) and
 * `POST /v1/admin/forwarders/:sink/rewind` (deliver again every stored event received since a
 * time: `ForwarderCursors.rewindForwarder`, store/port.ts). Query parameters are validated strictly — an unknown or malformed parameter is a
 * 400 `GUARD_COLLECTOR_BAD_QUERY`, never silently ignored, so a typo cannot widen a query.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from '../common/logger.js';
import { bearerToken, secretEquals } from './auth.js';
import { HttpError } from './http-error.js';
import type { CollectorMetrics } from './metrics.js';
import { type PolicyPublisher, registerPolicyPublishRoutes } from './policy-publish.js';
import { checkTime } from './store/console-paging.js';
import type {
  DeviceCoverage,
  EventLog,
  FleetQueries,
  ForwarderCursor,
  ForwarderCursors,
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
/** A rewind request is `{"since": "<RFC 3339>"}`: well under this. */
const REWIND_BODY_LIMIT = 1024;
/**
 * How long a rewind waits for a delivery of the sink in flight (one batch: milliseconds to a file,
 * a round trip or a few to HEC) before answering 503 `GUARD_COLLECTOR_FORWARDER_BUSY`; a delivery
 * that takes longer is a SIEM timing out, and the operator retries after Retry-After.
 */
export const REWIND_WAIT_MS = 10_000;
const REWIND_RETRY_AFTER_S = 5;

export interface AdminRoutesOptions {
  readonly store: EventLog & FleetQueries & PolicyPublications & PolicyChannels & ForwarderCursors;
  readonly adminToken: string;
  /** The forwarder sinks configured on this collector (their names: `ndjson`, `splunk-hec`, …). */
  readonly sinks: () => readonly string[];
  readonly logger: Logger;
  readonly metrics: CollectorMetrics;
  /** A device not seen for this many seconds is `silent`. */
  readonly silentAfterS: number;
  /** Clock in ms (tests may pass a fixed one). */
  readonly now?: () => number;
  /** Policy publishing (policy-publish.ts), shared with the console. */
  readonly publisher: PolicyPublisher;
  /** How long a rewind waits for a delivery in flight (default REWIND_WAIT_MS). */
  readonly rewindWaitMs?: number;
}

/** Registers the admin routes on `app`, in their own scope behind the admin token. */
export function registerAdminRoutes(app: FastifyInstance, options: AdminRoutesOptions): void {
  const { store, adminToken, silentAfterS, sinks, metrics } = options;
  const now = options.now ?? Date.now;
  const log = options.logger.child({ component: 'collector.admin' });

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

    admin.get('/v1/admin/forwarders', async (req) => {
      queryOf(req, []);
      return {
        forwarders: await Promise.all(
          sinks().map(async (name) => {
            const cursor = (await store.forwarderCursor(name)) ?? null;
            return {
              name,
              updated_at: cursor?.updated_at ?? null,
              lag: await store.forwarderLag(name),
              cursor,
            };
          }),
        ),
      };
    });

    admin.post('/v1/admin/forwarders/:sink/rewind', { bodyLimit: REWIND_BODY_LIMIT }, async (req) => {
      queryOf(req, []);
      const sink = (req.params as { sink: string }).sink;
      if (!sinks().includes(sink))
        throw new HttpError(
          404,
          'GUARD_COLLECTOR_UNKNOWN_FORWARDER',
          `no forwarder "${sink.slice(0, 40)}" on this collector; configured: ${sinks().join(', ') || 'none'}`,
        );
      const since = rewindSince(req.body, now());
      const waitMs = options.rewindWaitMs ?? REWIND_WAIT_MS;
      const outcome = await store.rewindForwarder(sink, since, waitMs);
      metrics.inc(
        'forwarder_rewinds_total',
        'Admin rewinds of a forwarder sink (POST /v1/admin/forwarders/:sink/rewind), by result: rewound, unchanged, busy.',
        { sink, result: outcome.kind },
      );
      if (outcome.kind === 'busy') {
        log.warn(
          { by: 'admin token', from: req.ip, sink, since, wait_ms: waitMs },
          'forwarder rewind gave up waiting for a delivery',
        );
        throw new HttpError(
          503,
          'GUARD_COLLECTOR_FORWARDER_BUSY',
          `a delivery to "${sink}" held it for more than ${waitMs / 1000} s; nothing changed, retry`,
          REWIND_RETRY_AFTER_S,
        );
      }
      const lag = await store.forwarderLag(sink);
      const rewound = outcome.kind === 'rewound';
      const answer = {
        sink,
        since,
        result: outcome.kind,
        reason: rewound ? null : outcome.reason,
        previous: rewound ? outcome.previous : outcome.cursor,
        cursor: outcome.cursor,
        due_again: rewound ? outcome.dueAgain : 0,
        due_again_exact: rewound ? outcome.dueAgainExact : true,
        lag,
      };
      if (rewound)
        metrics.inc(
          'forwarder_rewound_events_total',
          'Delivered events that admin rewinds made due again, per forwarder sink (estimated past a million per rewind).',
          { sink },
          outcome.dueAgain,
        );
      log.info(
        {
          by: 'admin token',
          from: req.ip,
          ...answer,
          previous: position(answer.previous),
          cursor: position(answer.cursor),
        },
        rewound ? 'forwarder rewound' : 'forwarder rewind changed nothing',
      );
      return answer;
    });
  }
}

/** A cursor for the log: its position only. */
function position(c: ForwarderCursor | null): string | null {
  return c === null ? null : c.txid === null ? String(c.rid) : `${c.txid}/${c.rid}`;
}

/**
 * The `since` of a rewind body `{"since": "<RFC 3339 with offset>"}`, as UTC RFC 3339 (ms); no
 * other field, a real calendar time, not after `nowMs`. Throws 400 `GUARD_COLLECTOR_BAD_REQUEST`.
 */
function rewindSince(body: unknown, nowMs: number): string {
  const bad = (message: string): HttpError => new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', message);
  const b = body as Record<string, unknown> | null | undefined;
  if (!b || typeof b !== 'object' || Array.isArray(b))
    throw bad('the body must be a JSON object {"since": "<RFC 3339 time>"}');
  for (const k of Object.keys(b)) if (k !== 'since') throw bad(`unknown field "${k.slice(0, 40)}"`);
  if (b.since === undefined) throw bad('"since" is missing');
  const expected = '"since" must be an RFC 3339 time with an offset, e.g. 2026-11-24T09:00:00Z';
  let ms: number;
  try {
    ms = checkTime('since', b.since);
  } catch {
    throw bad(expected);
  }
  // Date.parse rolls 2026-02-30 over into March and 24:00 into the next day: refuse, not guess
  const [y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0] = (b.since as string).split(/[-T:.Z+]/, 6).map(Number);
  const days = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (mo < 1 || mo > 12 || d < 1 || d > days || h > 23 || mi > 59 || se > 59) throw bad(expected);
  if (ms > nowMs)
    throw bad(`"since" is in the future (${new Date(ms).toISOString()}); nothing was delivered after now`);
  return new Date(ms).toISOString();
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
