/**
 * Owns the browser fleet console served by the collector under `/console/`: its page and assets
 * (built by `npm run build` into dist/console/ from console/, served from memory, nothing
 * third-party), its JSON API under `/console/api/` and the headers every console answer carries
 * (a strict Content-Security-Policy, nosniff, no referrer; `no-store` on the API).
 *
 * Scopes, so that no route can forget a check: the public scope (the page, assets, `POST
 * /console/api/login`), the session scope (its `onRequest` hook resolves the session cookie and,
 * for POST/PUT/DELETE, checks the same-origin headers and the CSRF token: console-auth.ts), and
 * inside it the admin scope (role admin, else 403) holding `POST /console/api/policy`, which
 * publishes through the same `PolicyPublisher` as `POST /v1/admin/policy`.
 *
 * Every read goes through the store port's paged, bounded console queries (store/console-port.ts);
 * query strings are validated strictly (an unknown, repeated or malformed parameter is a 400
 * `GUARD_COLLECTOR_BAD_QUERY`), the same way as the admin API's.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isGuardError } from '../../common/errors.js';
import { toOcsf } from '../../events/ocsf.js';
import { badQuery, isoTime, queryOf } from '../admin-routes.js';
import { DEVICE_ID_RE } from '../agent-routes.js';
import { HttpError } from '../http-error.js';
import { MAX_PUBLISH_BODY_BYTES, type PolicyPublisher } from '../policy-publish.js';
import { etagMatches, type ServedPolicies } from '../policy-route.js';
import type {
  ConsoleDeviceFilter,
  ConsoleEventFilter,
  ConsoleQueries,
  ConsoleSessions,
  DeviceSort,
  ForwarderCursors,
  PolicyPublications,
} from '../store/port.js';
import {
  assertCsrf,
  assertSameOrigin,
  ConsoleAuth,
  type ConsoleIdentity,
  csrfToken,
} from './console-auth.js';

/** The Content-Security-Policy of every console answer: only the collector's own scripts and styles. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Page size when `limit` is not given, and the largest (the port's bound). */
const DEFAULT_PAGE = 50;
const MAX_PAGE = 500;
/** Recent events on a device's page. */
const DEVICE_RECENT_EVENTS = 25;
/** Devices and users listed per rule on the rules page. */
const RULE_TOP = 5;
/** Rules shown on the rules page at most (one top query each): far above a real ban list. */
const MAX_RULES_SHOWN = 100;
/** Publications listed on the rollout page. */
const ROLLOUT_PUBLICATIONS = 10;
/** Rule activity windows longer than this are refused (a year of day buckets is 366 points). */
const MAX_ACTIVITY_DAYS = 366;
/** Hour buckets only up to this window (a month ≈ 744 points per series). */
const MAX_HOUR_BUCKET_DAYS = 31;
/** A cursor is opaque but short; anything longer or outside this alphabet is refused unread. */
const CURSOR_RE = /^[A-Za-z0-9_.:=~-]{1,512}$/;
/** Event types: dotted lower-case words (`process.blocked`); at most this many in one filter. */
const EVENT_TYPE_RE = /^[a-z][a-z_]*(\.[a-z][a-z_]*)+$/;
const MAX_TYPES = 20;
/** Rule ids, tags, versions, user names: 1-256 characters without control characters. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const TOKEN_RE = /^[^\u0000-\u001f\u007f]{1,256}$/;
/** Expired sessions are deleted this often (ms). */
const SESSION_PRUNE_MS = 10 * 60_000;
const DAY_MS = 86_400_000;

const ASSET_TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

export interface ConsoleOptions {
  readonly store: ConsoleQueries & ConsoleSessions & ForwarderCursors & PolicyPublications;
  readonly adminToken: string;
  /** The viewer token; empty = viewer logins are refused. */
  readonly viewerToken: string;
  /** Session lifetime, seconds. */
  readonly sessionTtlS: number;
  /** The listener is TLS: session cookies are `Secure`. */
  readonly tls: boolean;
  /** A device not seen for this many seconds is silent. */
  readonly silentAfterS: number;
  /** The served policy (version and rules of the rules and rollout pages). */
  readonly policy: ServedPolicies;
  readonly publisher: PolicyPublisher;
  /** The forwarder sinks whose lag the overview shows. */
  readonly sinks: () => readonly string[];
  /** Built assets (default: dist/console/ of this checkout or package). */
  readonly assetsDir?: string;
  readonly now?: () => number;
}

/** The built console: dist/console/ beside dist/collector/ (compiled) or of the checkout (tests run src/). */
export function defaultAssetsDir(): string {
  return join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..'), 'dist', 'console');
}

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** Reads the built assets once (a fixed set: no request path ever reaches the file system). */
function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const manifest = join(dir, 'manifest.json');
  if (!existsSync(manifest)) return assets;
  for (const name of JSON.parse(readFileSync(manifest, 'utf8')) as string[]) {
    if (!/^[a-z0-9-]+\.[a-z0-9]+$/.test(name)) continue;
    const body = readFileSync(join(dir, name));
    const type = ASSET_TYPES[name.slice(name.lastIndexOf('.'))];
    if (type === undefined) continue;
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('hex')}"` });
  }
  return assets;
}

/** Registers the console on `app` (the listener of the admin API). */
export function registerConsole(app: FastifyInstance, options: ConsoleOptions): void {
  const { store, policy, publisher } = options;
  const now = options.now ?? Date.now;
  const auth = new ConsoleAuth({
    store,
    adminToken: options.adminToken,
    viewerToken: options.viewerToken,
    sessionTtlS: options.sessionTtlS,
    tls: options.tls,
    now,
  });
  const assets = loadAssets(options.assetsDir ?? defaultAssetsDir());

  app.register(
    async (scope) => {
      scope.addHook('onSend', async (req, reply, payload) => {
        reply.header('content-security-policy', CONSOLE_CSP);
        reply.header('x-content-type-options', 'nosniff');
        reply.header('referrer-policy', 'no-referrer');
        reply.header('x-frame-options', 'DENY');
        reply.header('cross-origin-opener-policy', 'same-origin');
        reply.header('cross-origin-resource-policy', 'same-origin');
        if (req.url.startsWith('/console/api/') || !reply.hasHeader('cache-control'))
          reply.header('cache-control', 'no-store');
        return payload;
      });
      scope.setNotFoundHandler((req, reply) => {
        reply.code(404).send({
          error: {
            code: 'GUARD_CONSOLE_NOT_FOUND',
            message: `no console route ${req.method} ${req.url.slice(0, 100)}`,
          },
        });
      });

      const timer = setInterval(() => {
        auth.prune();
        store.pruneSessions(new Date(now()).toISOString()).catch(() => undefined);
      }, SESSION_PRUNE_MS);
      timer.unref();
      scope.addHook('onClose', async () => clearInterval(timer));

      // --- public: the page, its assets, login -------------------------------------------------
      const page = (reply: FastifyReply): FastifyReply => {
        const index = assets.get('index.html');
        if (!index)
          throw new HttpError(
            503,
            'GUARD_CONSOLE_NOT_BUILT',
            'the console bundle is missing (npm run build)',
          );
        return reply.type(index.type).send(index.body);
      };
      scope.get('/', async (_req, reply) => page(reply));
      scope.get('/assets/:name', async (req, reply) => {
        const name = (req.params as { name: string }).name;
        const asset = name === 'index.html' ? undefined : assets.get(name);
        if (!asset) throw new HttpError(404, 'GUARD_CONSOLE_NOT_FOUND', 'no such console asset');
        reply.header('etag', asset.etag).header('cache-control', 'no-cache');
        if (etagMatches(req.headers['if-none-match'], asset.etag)) return reply.code(304).send();
        return reply.type(asset.type).send(asset.body);
      });

      scope.post('/api/login', async (req, reply) => {
        assertSameOrigin(req, options.tls);
        const { secret, session } = await auth.login(req.body, req.ip);
        reply.header('set-cookie', auth.cookie(secret));
        return { role: session.role, expires_at: session.expires_at, csrf: csrfToken(secret) };
      });

      // --- session scope: everything else ------------------------------------------------------
      scope.register(async (session) => {
        const identities = new WeakMap<FastifyRequest, ConsoleIdentity>();
        const identity = (req: FastifyRequest): ConsoleIdentity => identities.get(req) as ConsoleIdentity;
        session.addHook('onRequest', async (req) => {
          const mutating = req.method !== 'GET' && req.method !== 'HEAD';
          if (mutating) assertSameOrigin(req, options.tls);
          const id = await auth.identify(req);
          if (mutating) assertCsrf(req, id);
          identities.set(req, id);
        });
        registerReads(session, identity);

        session.post('/api/logout', async (req, reply) => {
          await auth.logout(identity(req));
          reply.header('set-cookie', auth.cookie(null));
          return { ok: true };
        });

        session.register(async (admin) => {
          admin.addHook('onRequest', async (req) => {
            if (identity(req).role !== 'admin')
              throw new HttpError(403, 'GUARD_CONSOLE_FORBIDDEN', 'publishing needs the admin role');
          });
          admin.post('/api/policy', { bodyLimit: MAX_PUBLISH_BODY_BYTES }, async (req, reply) => {
            const record = await publisher.publish(req.body);
            reply.code(201);
            return record;
          });
        });
      });
    },
    { prefix: '/console' },
  );

  function registerReads(session: FastifyInstance, identity: (req: FastifyRequest) => ConsoleIdentity): void {
    session.get('/api/session', async (req) => {
      const id = identity(req);
      return {
        role: id.role,
        expires_at: id.session.expires_at,
        csrf: csrfToken(id.secret),
        silent_after_s: options.silentAfterS,
      };
    });

    session.get('/api/overview', async (req) => {
      queryOf(req, []);
      const t = now();
      const published = await policy.published();
      const [overview, lags] = await Promise.all([
        store.consoleOverview({
          now: new Date(t).toISOString(),
          silentBefore: new Date(t - options.silentAfterS * 1000).toISOString(),
          since24h: new Date(t - DAY_MS).toISOString(),
          publishedVersion: published.version,
        }),
        Promise.all(options.sinks().map(async (sink) => ({ sink, lag: await store.forwarderLag(sink) }))),
      ]);
      return { ...overview, published_version: published.version, forwarders: lags };
    });

    session.get('/api/devices', async (req) => {
      const q = queryOf(req, [
        'search',
        'tag',
        'agent_version',
        'policy_state',
        'silent',
        'sort',
        'order',
        'limit',
        'cursor',
      ]);
      const filter: ConsoleDeviceFilter = {
        search: token('search', q.search),
        tag: token('tag', q.tag),
        agentVersion: token('agent_version', q.agent_version),
        policyState: oneOf('policy_state', q.policy_state, ['ok', 'stale', 'rejected', 'unknown'] as const),
        silentBefore:
          q.silent === undefined
            ? undefined
            : {
                before: new Date(now() - options.silentAfterS * 1000).toISOString(),
                silent: oneOf('silent', q.silent, ['true', 'false'] as const) === 'true',
              },
      };
      const sort: DeviceSort =
        oneOf('sort', q.sort, ['hostname', 'last_seen_at', 'agent_version', 'policy_version'] as const) ??
        'hostname';
      const order = oneOf('order', q.order, ['asc', 'desc'] as const) ?? 'asc';
      const [page, published] = await Promise.all([
        storeCall(() =>
          store.consoleDevices({ filter, sort, order, limit: limit(q.limit), cursor: cursor(q.cursor) }),
        ),
        policy.published(),
      ]);
      return {
        devices: page.items,
        next: page.next,
        silent_after_s: options.silentAfterS,
        published_version: published.version,
      };
    });

    session.get('/api/devices/:id', async (req) => {
      queryOf(req, []);
      const id = (req.params as { id: string }).id;
      if (!DEVICE_ID_RE.test(id)) throw badQuery('id', 'a device id');
      const device = await store.consoleDevice(id);
      if (!device) throw new HttpError(404, 'GUARD_CONSOLE_NOT_FOUND', 'no such device');
      const [recent, published] = await Promise.all([
        store.consoleEvents({ filter: { deviceId: id }, limit: DEVICE_RECENT_EVENTS }),
        policy.published(),
      ]);
      return {
        device,
        events: recent.items,
        silent_after_s: options.silentAfterS,
        published_version: published.version,
      };
    });

    session.get('/api/events', async (req) => {
      const q = queryOf(req, ['type', 'rule', 'device', 'user', 'since', 'until', 'limit', 'cursor']);
      let types: string[] | undefined;
      if (q.type !== undefined) {
        types = q.type.split(',');
        if (types.length > MAX_TYPES || !types.every((t) => EVENT_TYPE_RE.test(t)))
          throw badQuery('type', `up to ${MAX_TYPES} comma-separated event types (process.blocked)`);
      }
      if (q.device !== undefined && !DEVICE_ID_RE.test(q.device)) throw badQuery('device', 'a device id');
      const filter: ConsoleEventFilter = {
        types,
        ruleId: token('rule', q.rule),
        deviceId: q.device,
        user: token('user', q.user),
        since: q.since === undefined ? undefined : isoTime('since', q.since),
        until: q.until === undefined ? undefined : isoTime('until', q.until),
      };
      const page = await storeCall(() =>
        store.consoleEvents({ filter, limit: limit(q.limit), cursor: cursor(q.cursor) }),
      );
      return { events: page.items, next: page.next };
    });

    session.get('/api/events/:rid', async (req) => {
      queryOf(req, []);
      const raw = (req.params as { rid: string }).rid;
      if (!/^[1-9]\d{0,14}$/.test(raw)) throw badQuery('rid', 'an event number');
      const row = await store.consoleEvent(Number(raw));
      if (!row) throw new HttpError(404, 'GUARD_CONSOLE_NOT_FOUND', 'no such event');
      const record = JSON.parse(row.body) as Record<string, unknown>;
      return {
        event: {
          rid: row.rid,
          device_id: row.device_id,
          hostname: row.hostname,
          received_at: row.received_at,
          enrollment: row.enrollment,
          record,
        },
        ocsf: toOcsf(record),
      };
    });

    session.get('/api/rules', async (req) => {
      const q = queryOf(req, ['since', 'until', 'bucket']);
      const t = now();
      const bucket = oneOf('bucket', q.bucket, ['hour', 'day'] as const) ?? 'hour';
      const until = q.until === undefined ? new Date(t).toISOString() : isoTime('until', q.until);
      const since =
        q.since === undefined
          ? new Date(Date.parse(until) - (bucket === 'hour' ? DAY_MS : 30 * DAY_MS)).toISOString()
          : isoTime('since', q.since);
      const days = (Date.parse(until) - Date.parse(since)) / DAY_MS;
      if (!(days > 0)) throw badQuery('since', 'a time before until');
      if (days > (bucket === 'hour' ? MAX_HOUR_BUCKET_DAYS : MAX_ACTIVITY_DAYS))
        throw badQuery(
          'since',
          `a window of at most ${bucket === 'hour' ? MAX_HOUR_BUCKET_DAYS : MAX_ACTIVITY_DAYS} days for ${bucket} buckets`,
        );
      const published = await policy.published();
      const shown = published.rules.slice(0, MAX_RULES_SHOWN);
      const [buckets, tops] = await Promise.all([
        store.ruleActivity({
          since,
          until,
          bucketSeconds: bucket === 'hour' ? 3600 : 86400,
          ruleIds: shown.map((r) => r.id),
        }),
        Promise.all(shown.map((r) => store.ruleTop(r.id, since, RULE_TOP))),
      ]);
      return {
        policy_version: published.version,
        since,
        until,
        bucket_seconds: bucket === 'hour' ? 3600 : 86400,
        rules_total: published.rules.length,
        rules: shown.map((r, i) => ({
          ...r,
          buckets: buckets.filter((b) => b.rule_id === r.id),
          top: tops[i],
        })),
      };
    });

    session.get('/api/rollout', async (req) => {
      queryOf(req, []);
      const [published, rollout, publications] = await Promise.all([
        policy.published(),
        store.policyRollout(),
        store.listPolicyPublications(ROLLOUT_PUBLICATIONS),
      ]);
      return {
        published_version: published.version,
        ...rollout,
        publications: publications.map((p) => ({
          version: p.version,
          published_at: p.published_at,
          published_by: p.published_by,
          message: p.message,
          verified: p.verified,
        })),
      };
    });
  }
}

function limit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_PAGE;
  if (!/^\d{1,3}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_PAGE)
    throw badQuery('limit', `an integer from 1 to ${MAX_PAGE}`);
  return Number(raw);
}

function cursor(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!CURSOR_RE.test(raw)) throw badQuery('cursor', 'the "next" of a previous page');
  return raw;
}

function token(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!TOKEN_RE.test(raw)) throw badQuery(name, '1 to 256 printable characters');
  return raw;
}

function oneOf<T extends string>(
  name: string,
  raw: string | undefined,
  allowed: readonly T[],
): T | undefined {
  if (raw === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) throw badQuery(name, `one of ${allowed.join(', ')}`);
  return raw as T;
}

/** A store call whose cursor the store refused (`GUARD_BAD_CURSOR`) answers 400, like any bad query. */
async function storeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isGuardError(err, 'GUARD_BAD_CURSOR')) throw badQuery('cursor', 'the "next" of a previous page');
    throw err;
  }
}
