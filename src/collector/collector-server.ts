/**
 * Owns guard-collector's HTTP(S) server (fastify) and what every route shares: the error
 * rendering, the shutdown and metrics hooks, the limiters and the ingest queue. The routes are
 * scopes of their own: the agent API (agent-routes.ts: `POST /v1/enroll`, `POST /v1/events`,
 * `GET /v1/policy`), the admin API (admin-routes.ts, its token checked in the scope's hook),
 * the browser console (console/console-plugin.ts, under `/console/`) and operations here
 * (`GET /healthz`, `GET /metrics`). Also the lifecycle of the store (store/,
 * chosen by `store_url`) and the forwarders. `startCollector` is the one
 * entry point, used by `guard-collector` (collector-main.ts), by guardd's local mode (embedded,
 * same process) and by tests (test/helpers/collector.ts).
 *
 * Hostile input: every refusal is an `HttpError` with a stable code, rendered as
 * `{"error":{"code","message"}}`. Slow clients are cut by the header and body deadlines; body
 * memory is bounded per request (`maxBodyBytes`) and overall (`maxInflightBytes`). When a request
 * is refused before its body was read, the rest is discarded briefly, then the connection is cut.
 */
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyReply } from 'fastify';
import { type Logger, silentLogger } from '../common/logger.js';
import { AGENT_VERSION } from '../common/version.js';
import { toEcs } from '../events/ecs.js';
import { toOcsf } from '../events/ocsf.js';
import type { TrustedKey } from '../policy/keys.js';
import { registerAdminRoutes } from './admin-routes.js';
import { registerAgentRoutes } from './agent-routes.js';
import { hostAllowed } from './allowed-hosts.js';
import { COLLECTOR_SETTINGS, type ForwardFormat } from './collector-config.js';
import { registerConsole } from './console/console-plugin.js';
import { ForwarderRunner, type ForwarderSink } from './forwarders/forwarder.js';
import { NdjsonFileSink } from './forwarders/ndjson-file-sink.js';
import { type HecHost, SplunkHecSink } from './forwarders/splunk-hec-sink.js';
import { HttpError } from './http-error.js';
import { InflightBudget, IngestQueue } from './ingest.js';
import { CollectorMetrics } from './metrics.js';
import { type BatchParser, defaultIngestWorkers, InlineParser, ParsePool } from './parse-pool.js';
import { PolicyPublisher } from './policy-publish.js';
import { PolicyChannelCache, PolicyFileCache, ServedPolicies } from './policy-route.js';
import { type Limiter, TokenBucketLimiter } from './rate-limit.js';
import { PRUNE_INTERVAL_MS, pruneExpiredEvents } from './retention.js';
import { openStore, type StoreConnection } from './store/open-store.js';
import type { CollectorStorePort } from './store/port.js';

/** Enroll bodies are ~300 bytes; 16 KiB leaves room and refuses junk early. */
const ENROLL_BODY_LIMIT = 16 * 1024;
/** How often node checks header/request deadlines (its default, 30 s, lets slowloris linger). */
const CONNECTIONS_CHECK_MS = 1_000;
/** Idle keep-alive connections are closed after this (agents send every few seconds at most). */
const KEEP_ALIVE_MS = 5_000;
/** A refused request's body is drained this long so the client reads the answer, then cut. */
const LINGER_MS = 2_000;
/**
 * Group commits in flight at once on PostgreSQL: each holds one pool connection for a few ms of
 * round trips; 4 keeps the database busy while the next groups form, and leaves pool connections
 * for token lookups, forwarders and admin queries (postgres-store.ts's pool is larger).
 */
const PG_CONCURRENT_COMMITS = 4;
/**
 * Bodies up to this size are parsed on the main thread even with workers (parse-pool.ts
 * `inlineMaxBytes`): a heartbeat or a few events (~0.1 ms of parsing), not a 500-event batch.
 */
const INLINE_PARSE_MAX_BYTES = 8 * 1024;
/**
 * Events per group commit on PostgreSQL: a commit there does not block the main thread (the
 * database works while sockets are served), so groups may be larger than SQLite's 2,000, which
 * saves a round trip set and a WAL flush per 2,000 events.
 */
const PG_GROUP_EVENTS = 5000;
/** Forgotten rate-limit buckets are pruned this often. */
const RATE_PRUNE_MS = 60_000;
export interface NdjsonForwarderOptions {
  readonly file: string;
  /** Rotate before this size (default 100 MiB). */
  readonly maxBytes?: number;
  /** Rotated files kept (default 5). */
  readonly keep?: number;
  /** `raw` (default), `ocsf` or `ecs`. */
  readonly format?: ForwardFormat;
}

export interface SplunkHecForwarderOptions {
  readonly url: string;
  readonly token: string;
  readonly ca?: string | Buffer;
  readonly source?: string;
  readonly sourcetype?: string;
  readonly index?: string;
  readonly format?: ForwardFormat;
  /** What goes in HEC `host` (see splunk-hec-sink.ts). */
  readonly host?: HecHost;
  readonly timeoutMs?: number;
  /** Indexer acknowledgement (see splunk-hec-sink.ts). */
  readonly ack?: boolean;
  readonly channel?: string;
  readonly ackTimeoutMs?: number;
  readonly ackPollMaxMs?: number;
  /** Gzip request bodies (default true). */
  readonly gzip?: boolean;
}

export interface CollectorForwardersOptions {
  readonly ndjson?: NdjsonForwarderOptions;
  readonly splunkHec?: SplunkHecForwarderOptions;
  /** Other sinks (tests, future forwarders). */
  readonly extra?: readonly ForwarderSink[];
  /** Retry backoff of every runner, ms (tests shorten it). */
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** Safety poll of every runner without a wake-up, ms (tests lengthen it to show that a wake-up came). */
  readonly pollMs?: number;
  /** How long an admin rewind waits for a delivery in flight, ms (admin-routes.ts REWIND_WAIT_MS; tests shorten it). */
  readonly rewindWaitMs?: number;
}

export interface CollectorLimits {
  /** Largest events body after decompression (default 8 MiB). */
  readonly maxBodyBytes: number;
  /** Largest gzip expansion ratio (default 200). */
  readonly maxGzipRatio: number;
  /** Body bytes buffered across all requests (default 128 MiB). */
  readonly maxInflightBytes: number;
  /** A whole body must arrive within this (default 30 s). */
  readonly bodyTimeoutMs: number;
  /** Request headers must arrive within this (default 10 s). */
  readonly headersTimeoutMs: number;
  /** Sustained requests/s per device token (default 10). */
  readonly ratePerS: number;
  /** Burst per device token (default 40). */
  readonly rateBurst: number;
  /** Window of the per-device quotas, seconds (default 3600). */
  readonly quotaWindowS: number;
  /** Events per device per quota window (default 100,000). */
  readonly quotaEvents: number;
  /** Decompressed body bytes per device per quota window (default 64 MiB). */
  readonly quotaBytes: number;
  /** Enroll attempts per minute per source address (default 120). */
  readonly enrollPerMin: number;
  /** Enroll attempts at once per source address (default 60). */
  readonly enrollBurst: number;
  /** Failed enroll attempts per hour per source address (default 60). */
  readonly enrollFailuresPerHour: number;
  /** Failed enroll attempts at once per source address (default 10). */
  readonly enrollFailureBurst: number;
}

/** The defaults of the settings table (collector-config.ts), so embedded and CLI use cannot drift. */
export const DEFAULT_LIMITS: CollectorLimits = Object.freeze({
  maxBodyBytes: COLLECTOR_SETTINGS.max_body_bytes.default as number,
  maxGzipRatio: COLLECTOR_SETTINGS.max_gzip_ratio.default as number,
  maxInflightBytes: COLLECTOR_SETTINGS.max_inflight_bytes.default as number,
  bodyTimeoutMs: COLLECTOR_SETTINGS.body_timeout_ms.default as number,
  headersTimeoutMs: COLLECTOR_SETTINGS.headers_timeout_ms.default as number,
  ratePerS: COLLECTOR_SETTINGS.rate_limit.default as number,
  rateBurst: COLLECTOR_SETTINGS.rate_burst.default as number,
  quotaWindowS: COLLECTOR_SETTINGS.quota_window_s.default as number,
  quotaEvents: COLLECTOR_SETTINGS.quota_events.default as number,
  quotaBytes: COLLECTOR_SETTINGS.quota_bytes.default as number,
  enrollPerMin: COLLECTOR_SETTINGS.enroll_rate_per_min.default as number,
  enrollBurst: COLLECTOR_SETTINGS.enroll_burst.default as number,
  enrollFailuresPerHour: COLLECTOR_SETTINGS.enroll_failures_per_hour.default as number,
  enrollFailureBurst: COLLECTOR_SETTINGS.enroll_failure_burst.default as number,
});

export interface StartCollectorOptions {
  /** Interface to bind (default 127.0.0.1). */
  readonly host?: string;
  /** Names a request's Host may say (allowed-hosts.ts); null or undefined = any. */
  readonly allowedHosts?: ReadonlySet<string> | null;
  /** Port (default 8443; 0 = any free port, see `url`). */
  readonly port?: number;
  /** The SQLite database file (created with its directory if missing), unless `store` names another store. */
  readonly dbFile: string;
  /** The store (store_url & co); absent or an empty url = SQLite at `dbFile`. */
  readonly store?: StoreConnection;
  /** The signed policy envelope served at GET /v1/policy; empty/undefined = 503 there. */
  readonly policyFile?: string;
  /**
   * Keys a policy published through POST /v1/admin/policy must verify against (policy_trusted_keys);
   * empty/undefined = publications are checked for shape and schema only and recorded unverified.
   */
  readonly policyTrustedKeys?: readonly TrustedKey[];
  /** Distinct trusted keys a published policy needs (policy_threshold, default 1). */
  readonly policyThreshold?: number;
  /** Secret agents present to enroll (≥ 16 chars recommended; the CLI enforces it). */
  readonly enrollSecret: string;
  /** Bearer token of the admin API (also the console's admin login). */
  readonly adminToken: string;
  /** The console's read-only login (console_viewer_token); empty/undefined = none. */
  readonly consoleViewerToken?: string;
  /** Console session lifetime, seconds (console_session_ttl_s, default 8 h). */
  readonly consoleSessionTtlS?: number;
  /** The console's built assets (default dist/console/ of this checkout or package). */
  readonly consoleAssetsDir?: string;
  /** Serve HTTPS with this PEM certificate (chain) and key. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  readonly forwarders?: CollectorForwardersOptions;
  readonly limits?: Partial<CollectorLimits>;
  /** A device not seen for this many seconds is flagged silent (default 900). */
  readonly silentAfterS?: number;
  /** Delete events received more than this many days ago, once forwarded (default 0 = keep forever). */
  readonly retentionDays?: number;
  readonly logger?: Logger;
  /** Threads that parse and validate bodies; 0 = on the main thread (default `defaultIngestWorkers()`). */
  readonly ingestWorkers?: number;
}

export interface RunningCollector {
  /** Base URL, e.g. `http://127.0.0.1:43121` (the real port when 0 was asked for). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly store: CollectorStorePort;
  readonly metrics: CollectorMetrics;
  /** Stops accepting, finishes in-flight requests, stops forwarders, closes the DB. Safe twice. */
  close(): Promise<void>;
}

/** Starts a collector and resolves once it listens. Throws when the DB cannot be opened or the port is taken. */
export async function startCollector(options: StartCollectorOptions): Promise<RunningCollector> {
  const limits: CollectorLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const logger = (options.logger ?? silentLogger()).child({ component: 'collector' });
  const silentAfterS = options.silentAfterS ?? (COLLECTOR_SETTINGS.silent_after_s.default as number);
  const metrics = new CollectorMetrics();
  const store = await openStore({ dbFile: options.dbFile, ...options.store }, logger);
  const policy = new ServedPolicies(
    new PolicyFileCache(options.policyFile ?? ''),
    new PolicyChannelCache(store),
  );
  const limiters = buildLimiters(limits);
  const budget = new InflightBudget(limits.maxInflightBytes);
  const runners = buildRunners(options.forwarders, store, logger, metrics);
  store.onStored = () => {
    for (const r of runners) r.wake();
  };
  const workers = options.ingestWorkers ?? defaultIngestWorkers();
  let parser: BatchParser;
  try {
    parser =
      workers > 0
        ? await ParsePool.start({
            workers,
            inlineMaxBytes: INLINE_PARSE_MAX_BYTES,
            onWorkerExit: (info) =>
              logger.error(
                { err: info.error, code: info.code },
                'a parse worker stopped; its bodies got 503',
              ),
          })
        : new InlineParser();
  } catch (err) {
    await store.close();
    throw err;
  }
  const ingest = new IngestQueue({
    store,
    parser,
    maxConcurrentCommits: store.kind === 'postgres' ? PG_CONCURRENT_COMMITS : 1,
    maxGroupEvents: store.kind === 'postgres' ? PG_GROUP_EVENTS : undefined,
  });

  metrics.gauge(
    'devices',
    'Enrolled devices by state (silent = not seen for silent_after_s).',
    ['state'],
    async () => {
      const c = await deviceCounts();
      return [
        [{ state: 'active' }, c.total - c.silent],
        [{ state: 'silent' }, c.silent],
      ];
    },
  );
  // Coverage from each device's newest heartbeat. Label values are fixed (on/off/unknown), never
  // what a device sent, so a hostile heartbeat cannot add series.
  const state = (v: string | null): string => (v === 'on' || v === 'off' ? v : 'unknown');
  // /metrics needs no token, and a scan of the devices table costs ~0.06-0.15 s of store time at
  // 50,000 devices (on SQLite, of blocked event loop): one coverage scan serves the four gauges
  // below, and each scan is reused (reusedScan), so back-to-back scrapes cannot stall ingest
  // (reviewers: 10 parallel scrapes held /healthz for 3 s; 4 sequential scrape loops took an
  // honest batch from 1.5 ms to 250 ms).
  const coverage = reusedScan(() => store.coverageCounts());
  const deviceCounts = reusedScan(() =>
    store.deviceCounts(new Date(Date.now() - silentAfterS * 1000).toISOString()),
  );
  // A sum of devices' counters past 2^53 - 1 has no exact double: shown as that bound (a device
  // reporting the schema's largest counter pins it there, which is as alarming as it should be).
  const saturated = (n: number): number => Math.min(n, Number.MAX_SAFE_INTEGER);
  metrics.gauge(
    'devices_coverage',
    'Devices by what their newest heartbeat says enforces: exec events (kernel push) and pre-exec deny (on/off/unknown).',
    ['exec_events', 'exec_deny'],
    async () => {
      const byLabels = new Map<string, number>();
      for (const c of await coverage()) {
        const k = `${state(c.exec_events)} ${state(c.exec_deny)}`;
        byLabels.set(k, (byLabels.get(k) ?? 0) + c.devices);
      }
      return [...byLabels].map(([k, n]) => {
        const [exec_events, exec_deny] = k.split(' ') as [string, string];
        return [{ exec_events, exec_deny }, n] as const;
      });
    },
  );
  // Fixed label values again: a source name outside the schema's enum counts as unknown.
  const SOURCES = new Set(['exec-events', 'eslogger', 'windows-start', 'procfs', 'ps-list']);
  metrics.gauge(
    'devices_process_source',
    'Devices by the process source their newest heartbeat names (exec-events, eslogger, windows-start: real time; procfs, ps-list: polling; unknown: none named yet).',
    ['source'],
    async () => {
      const bySource = new Map<string, number>();
      for (const c of await coverage()) {
        const k = c.source !== null && SOURCES.has(c.source) ? c.source : 'unknown';
        bySource.set(k, (bySource.get(k) ?? 0) + Number(c.devices));
      }
      return [...bySource].map(([source, n]) => [{ source }, n] as const);
    },
  );
  metrics.gauge(
    'devices_exec_event_drops',
    'Sum over devices of the exec events the kernel dropped since their guardd started (newest heartbeat each).',
    [],
    async () => [[{}, saturated((await coverage()).reduce((n, c) => n + c.drops, 0))]],
  );
  metrics.gauge(
    'devices_exec_deny_deadline_misses',
    'Sum over devices of the execs allowed without a verdict (deadline passed) since their guardd started (newest heartbeat each).',
    [],
    async () => [[{}, saturated((await coverage()).reduce((n, c) => n + c.deadline_misses, 0))]],
  );
  metrics.gauge(
    'forwarder_lag_events',
    'Stored events not yet delivered, per forwarder sink.',
    ['sink'],
    () => Promise.all(runners.map(async (r) => [{ sink: r.name }, await r.lag()] as const)),
  );
  metrics.gauge('inflight_body_bytes', 'Request body bytes buffered right now.', [], () => [
    [{}, budget.inUse],
  ]);
  metrics.gauge('ingest_queue_depth', 'Received bodies waiting to be parsed and stored.', [], () => [
    [{}, ingest.depth],
  ]);

  const serverFactory = (handler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const common = {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.bodyTimeoutMs + limits.headersTimeoutMs,
      connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
      keepAliveTimeout: KEEP_ALIVE_MS,
    };
    const server = options.tls
      ? createHttpsServer({ ...common, cert: options.tls.cert, key: options.tls.key }, handler)
      : createHttpServer(common, handler);
    return server as Server;
  };

  const app = Fastify({
    serverFactory,
    logger: false,
    bodyLimit: ENROLL_BODY_LIMIT,
    forceCloseConnections: 'idle',
    // shutting down is answered by the onRequest hook below (with a code and Retry-After)
    return503OnClosing: false,
    // Even what fails before routing (malformed URL, broken HTTP, slow headers) answers with a code.
    frameworkErrors: (err, _req, reply) => {
      sendError(reply, new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', String(err.message).slice(0, 200)));
    },
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, code, text] =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'GUARD_COLLECTOR_BODY_TIMEOUT', 'request not received in time']
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? [431, 'GUARD_COLLECTOR_BAD_REQUEST', 'request headers too large']
            : [400, 'GUARD_COLLECTOR_BAD_REQUEST', 'malformed HTTP request'];
      metrics.inc('client_errors_total', 'Connections refused before a request could be routed.', {
        status: String(status),
      });
      const body = JSON.stringify({ error: { code, message: text } });
      if (socket.writable)
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
      socket.destroy();
    },
  });

  // JSON only (and the agent's NDJSON, parsed by its own route): fastify's default text/plain
  // parser would hand a string to the JSON routes, which then answered 400 instead of 415.
  app.removeContentTypeParser('text/plain');

  let shuttingDown = false;
  const allowedHosts = options.allowedHosts ?? null;
  app.addHook('onRequest', async (req) => {
    if (!hostAllowed(req.headers.host, allowedHosts))
      throw new HttpError(
        421,
        'GUARD_COLLECTOR_HOST_NOT_ALLOWED',
        `Host ${JSON.stringify(String(req.headers.host ?? '').slice(0, 100))} is not a name this collector serves (allowed_hosts)`,
      );
    if (shuttingDown)
      throw new HttpError(503, 'GUARD_COLLECTOR_BUSY', 'the collector is shutting down; retry later', 5);
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.observeRequest(route, req.method, reply.elapsedTime / 1000);
    metrics.inc('http_requests_total', 'HTTP requests by route template and status.', {
      route,
      status: String(reply.statusCode),
    });
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({
      error: {
        code: 'GUARD_COLLECTOR_NOT_FOUND',
        message: `no route ${req.method} ${req.url.slice(0, 100)}`,
      },
    });
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof HttpError) return sendError(reply, err);
    const e = err as { statusCode?: number; code?: string; message?: string };
    const status = e.statusCode ?? 500;
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return sendError(reply, new HttpError(413, 'GUARD_COLLECTOR_BODY_TOO_LARGE', 'request body too large'));
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return sendError(
        reply,
        new HttpError(
          415,
          'GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE',
          'unsupported Content-Type (use application/json)',
        ),
      );
    if (status >= 400 && status < 500)
      return sendError(
        reply,
        new HttpError(
          status,
          'GUARD_COLLECTOR_BAD_REQUEST',
          String(e.message ?? 'bad request').slice(0, 200),
        ),
      );
    logger.error({ err, route: req.routeOptions.url }, 'unexpected collector error');
    return sendError(reply, new HttpError(500, 'GUARD_COLLECTOR_INTERNAL', 'internal error (logged)', 5));
  });

  registerAgentRoutes(app, {
    store,
    ingest,
    policy,
    enrollSecret: options.enrollSecret,
    limits,
    limiters,
    budget,
    metrics,
    logger,
  });

  // --- admin, console, health, metrics ---------------------------------------------------------
  const publisher = new PolicyPublisher({
    store,
    served: policy,
    now: Date.now,
    trustedKeys: options.policyTrustedKeys ?? [],
    threshold: options.policyThreshold ?? 1,
  });
  registerAdminRoutes(app, {
    store,
    adminToken: options.adminToken,
    silentAfterS,
    publisher,
    sinks: () => runners.map((r) => r.name),
    rewindWaitMs: options.forwarders?.rewindWaitMs,
    logger,
    metrics,
  });
  // On the admin API's listener (the only one): the console logs in with the admin token.
  registerConsole(app, {
    store,
    adminToken: options.adminToken,
    viewerToken: options.consoleViewerToken ?? '',
    sessionTtlS: options.consoleSessionTtlS ?? (COLLECTOR_SETTINGS.console_session_ttl_s.default as number),
    tls: options.tls !== undefined,
    silentAfterS,
    policy,
    publisher,
    sinks: () => runners.map((r) => r.name),
    assetsDir: options.consoleAssetsDir,
  });

  app.get('/healthz', async (_req, reply) => {
    const ok = await store.healthy();
    reply.code(ok ? 200 : 503);
    return { status: ok ? 'ok' : 'db_unavailable', version: AGENT_VERSION };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.contentType);
    return await metrics.render();
  });

  function sendError(reply: FastifyReply, err: HttpError): FastifyReply {
    if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS));
    // A refused request whose body was not (fully) read: the rest is discarded for a moment so
    // the client can read this answer (closing at once makes most clients report EPIPE/ECONNRESET
    // instead), then the connection is cut if the body is still coming (lingering close).
    const req = reply.request.raw;
    if (!req.complete) reply.raw.once('finish', () => lingerThenClose(req));
    return reply.code(err.status).send({ error: { code: err.code, message: err.message } });
  }

  const pruneTimer = setInterval(() => {
    for (const l of Object.values(limiters)) l.prune();
  }, RATE_PRUNE_MS);
  pruneTimer.unref();
  let retentionRun: Promise<unknown> = Promise.resolve();
  const runRetention = (): void => {
    retentionRun = retentionRun.then(() =>
      pruneExpiredEvents({
        store,
        retentionDays: options.retentionDays ?? 0,
        sinks: runners.map((r) => r.name),
        logger,
      }),
    );
  };
  const retentionTimer = setInterval(runRetention, PRUNE_INTERVAL_MS);
  retentionTimer.unref();

  const host = options.host ?? '127.0.0.1';
  try {
    await app.listen({ host, port: options.port ?? 8443 });
  } catch (err) {
    clearInterval(pruneTimer);
    clearInterval(retentionTimer);
    await parser.close();
    await store.close();
    throw err;
  }
  for (const r of runners) r.start();
  if ((options.retentionDays ?? 0) > 0) runRetention();
  const addr = app.server.address() as AddressInfo;
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${options.tls ? 'https' : 'http'}://${urlHost}:${addr.port}`;
  logger.info(
    { url, store: store.kind, db: store.location, forwarders: runners.map((r) => r.name) },
    'collector listening',
  );

  let closing: Promise<void> | null = null;
  return {
    url,
    host: addr.address,
    port: addr.port,
    store,
    metrics,
    close: () => {
      closing ??= (async () => {
        shuttingDown = true;
        clearInterval(pruneTimer);
        clearInterval(retentionTimer);
        await app.close();
        await parser.close();
        await retentionRun;
        await Promise.all(runners.map((r) => r.stop()));
        await store.close();
        logger.info('collector closed');
      })();
      return closing;
    },
  };
}

/**
 * Keeps reading (and discarding) a refused request's body for up to `LINGER_MS`, then destroys the
 * socket (or keeps it for the next request when the body did end: a plain keep-alive). No
 * `Connection: close` is sent because node would then end the socket at once.
 */
function lingerThenClose(req: IncomingMessage): void {
  if (req.complete) return;
  const socket = req.socket;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  req.once('end', () => clearTimeout(timer));
  req.resume();
}

/** The collector's limiters (in-memory: the limits hold per collector process). */
export interface CollectorLimiters {
  /** Requests per device token. */
  readonly requests: Limiter;
  /** Events and bytes per device token (dimensions: `QUOTA_DIMENSIONS`). */
  readonly quota: Limiter;
  /** Enroll attempts per source address. */
  readonly enrollAttempts: Limiter;
  /** Failed enroll attempts per source address. */
  readonly enrollFailures: Limiter;
}

function buildLimiters(limits: CollectorLimits): CollectorLimiters {
  const w = limits.quotaWindowS;
  return {
    requests: new TokenBucketLimiter({
      buckets: [{ capacity: limits.rateBurst, refillPerS: limits.ratePerS }],
    }),
    quota: new TokenBucketLimiter({
      buckets: [
        { capacity: limits.quotaEvents, refillPerS: limits.quotaEvents / w },
        { capacity: limits.quotaBytes, refillPerS: limits.quotaBytes / w },
      ],
    }),
    enrollAttempts: new TokenBucketLimiter({
      buckets: [{ capacity: limits.enrollBurst, refillPerS: limits.enrollPerMin / 60 }],
    }),
    enrollFailures: new TokenBucketLimiter({
      buckets: [{ capacity: limits.enrollFailureBurst, refillPerS: limits.enrollFailuresPerHour / 3600 }],
    }),
  };
}

/** The mapping of each forwarder format (raw = the event as received). */
const FORMATS: Readonly<Record<ForwardFormat, ((e: Record<string, unknown>) => unknown) | undefined>> = {
  raw: undefined,
  ocsf: toOcsf,
  ecs: toEcs,
};

function buildRunners(
  f: CollectorForwardersOptions | undefined,
  store: CollectorStorePort,
  logger: Logger,
  metrics: CollectorMetrics,
): ForwarderRunner[] {
  if (!f) return [];
  const sinks: ForwarderSink[] = [];
  if (f.ndjson)
    sinks.push(
      new NdjsonFileSink({
        file: f.ndjson.file,
        maxBytes: f.ndjson.maxBytes ?? (COLLECTOR_SETTINGS.ndjson_max_bytes.default as number),
        keep: f.ndjson.keep ?? (COLLECTOR_SETTINGS.ndjson_keep.default as number),
        transform: FORMATS[f.ndjson.format ?? 'raw'],
      }),
    );
  if (f.splunkHec)
    sinks.push(
      new SplunkHecSink({
        url: f.splunkHec.url,
        token: f.splunkHec.token,
        ca: f.splunkHec.ca,
        source: f.splunkHec.source,
        sourcetype: f.splunkHec.sourcetype,
        index: f.splunkHec.index,
        host: f.splunkHec.host,
        timeoutMs: f.splunkHec.timeoutMs,
        transform: FORMATS[f.splunkHec.format ?? 'raw'],
        ack: f.splunkHec.ack,
        channel: f.splunkHec.channel,
        ackTimeoutMs: f.splunkHec.ackTimeoutMs,
        ackPollMaxMs: f.splunkHec.ackPollMaxMs,
        gzip: f.splunkHec.gzip,
        onDeadLetter: (n) => metrics.deadLettered('splunk-hec', n),
      }),
    );
  sinks.push(...(f.extra ?? []));
  for (const sink of sinks) metrics.deadLettered(sink.name, 0);
  return sinks.map(
    (sink) =>
      new ForwarderRunner({
        sink,
        store,
        logger,
        metrics,
        backoffInitialMs: f.backoffInitialMs,
        backoffMaxMs: f.backoffMaxMs,
        pollMs: f.pollMs,
      }),
  );
}

/** Reads a PEM file for `tls`; exported for collector-main. */
export function readPem(file: string): Buffer {
  return readFileSync(file);
}

/** How long /metrics reuses a scan of the devices table after it finished (reusedScan). */
export const METRICS_SCAN_REUSE_MS = 5_000;

/**
 * `scan`, shared while it runs and its result reused for METRICS_SCAN_REUSE_MS after it finished,
 * so whoever reaches /metrics gets at most one scan per period out of the store, however fast they
 * scrape; gauges are at most that old (well under a scrape interval). A failed scan is not kept.
 */
function reusedScan<T>(scan: () => Promise<T>): () => Promise<T> {
  let last: { run: Promise<T>; until: number } | null = null;
  return () => {
    if (last && performance.now() < last.until) return last.run;
    const entry = { run: scan(), until: Number.POSITIVE_INFINITY };
    last = entry;
    entry.run.then(
      () => {
        entry.until = performance.now() + METRICS_SCAN_REUSE_MS;
      },
      () => {
        if (last === entry) last = null;
      },
    );
    return entry.run;
  };
}
