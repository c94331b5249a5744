/**
 * Owns the agent API, registered as its own fastify scope: `POST /v1/enroll` (the enroll secret,
 * limits per source address before the body is read), `POST /v1/events` (device token, rate limit,
 * per-device quotas and in-flight slots, then the streamed body to the ingest queue) and
 * `GET /v1/policy`. What the answers mean is docs/collector.md's API section.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { bearerToken, hashToken, mintDeviceToken, secretEquals } from './auth.js';
import type { CollectorLimiters, CollectorLimits } from './collector-server.js';
import { HttpError } from './http-error.js';
import { type InflightBudget, type IngestOutcome, type IngestQueue, readBody } from './ingest.js';
import type { CollectorMetrics } from './metrics.js';
import { etagMatches, type ServedPolicies, type ServedPolicy } from './policy-route.js';
import { type LimitDecision, sourceKey } from './rate-limit.js';
import type { DeviceRegistry, EnrolledDevice } from './store/port.js';

/** A slow client gets at most this long without sending a body byte. */
const MAX_BODY_IDLE_MS = 10_000;
/**
 * Event requests one device token may have in flight: an agent sends one batch at a time (a second
 * only after a client-side timeout), and 8 × max_body_bytes (64 MiB by default) is half of the
 * shared in-flight budget, so one token cannot hold all of it with slow bodies.
 */
const MAX_REQUESTS_IN_FLIGHT_PER_DEVICE = 8;
/** Media types accepted for event batches. */
const NDJSON_TYPES = new Set([
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonl',
  'application/x-jsonlines',
]);
/** Device ids: what the event schema allows (1-128 chars), printable and without separators. */
export const DEVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

/** The dimensions of the per-device quota limiter, in the order of its costs. */
const QUOTA_DIMENSIONS = ['events', 'bytes'] as const;

export interface AgentRoutesOptions {
  readonly store: DeviceRegistry;
  readonly ingest: IngestQueue;
  readonly policy: ServedPolicies;
  /** The secret agents present to enroll. */
  readonly enrollSecret: string;
  readonly limits: CollectorLimits;
  readonly limiters: CollectorLimiters;
  /** The process-wide budget of buffered body bytes. */
  readonly budget: InflightBudget;
  readonly metrics: CollectorMetrics;
  readonly logger: Logger;
}

/** Registers the agent API on `app`, in its own scope. */
export function registerAgentRoutes(app: FastifyInstance, options: AgentRoutesOptions): void {
  const { store, ingest, policy, limits, limiters, budget, metrics, logger } = options;
  const { requests: limiter, quota, enrollAttempts, enrollFailures } = limiters;
  /** Event requests in flight per device id (entries exist only while a request runs). */
  const inflightByDevice = new Map<string, number>();

  app.register(async (agent) => {
    // Attempts are limited per source address before the body is read; a wrong secret also costs
    // from a much smaller allowance, so guessing stops long before honest enrollment would.
    const enrollLimit = async (req: FastifyRequest): Promise<void> => {
      const addr = sourceKey(req.socket.remoteAddress);
      const failed = enrollFailures.check(addr);
      const attempt = failed.allowed ? enrollAttempts.take(addr) : failed;
      if (!attempt.allowed) {
        const reason = failed.allowed ? 'attempts' : 'failures';
        metrics.inc('enroll_rate_limited_total', 'Enroll attempts refused by the per-address limits.', {
          reason,
        });
        throw new HttpError(
          429,
          'GUARD_COLLECTOR_ENROLL_RATE_LIMITED',
          reason === 'failures'
            ? 'too many failed enroll attempts from this address'
            : 'too many enroll attempts from this address',
          attempt.retryAfterS,
        );
      }
    };

    agent.post('/v1/enroll', { onRequest: enrollLimit }, async (req) => {
      const { enrollSecret, device } = parseEnroll(req.body);
      if (!secretEquals(enrollSecret, options.enrollSecret)) {
        enrollFailures.take(sourceKey(req.socket.remoteAddress));
        metrics.inc('enroll_total', 'Enrollment attempts by outcome.', { outcome: 'denied' });
        throw new HttpError(403, 'GUARD_COLLECTOR_ENROLL_DENIED', 'wrong enrollment secret');
      }
      const token = mintDeviceToken();
      const enrollment = await store.enrollDevice(device, hashToken(token), new Date().toISOString());
      metrics.inc('enroll_total', 'Enrollment attempts by outcome.', { outcome: 'ok' });
      // A device id enrolled again: its previous token stops working. Normal after a reinstall or a
      // lost token; a count that keeps climbing for one id is two parties fighting over it.
      if (enrollment > 1)
        metrics.inc(
          'reenroll_total',
          'Enrollments of a device id that was already enrolled (token replaced).',
        );
      logger.info({ device_id: device.id, hostname: device.hostname, enrollment }, 'device enrolled');
      return { device_token: token };
    });

    agent.register(async (scope) => {
      // Event bodies are read by ingest.readBody (streamed, capped, gunzipped), not by fastify.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
      scope.post('/v1/events', async (req, reply) => {
        const device = await authenticateDevice(req);
        const deviceId = device.id;
        const rate = limiter.take(deviceId);
        if (!rate.allowed) {
          metrics.inc('rate_limited_total', 'Requests refused by the per-token rate limit.');
          throw new HttpError(
            429,
            'GUARD_COLLECTOR_RATE_LIMITED',
            'too many requests for this device token',
            rate.retryAfterS,
          );
        }
        const ctype = String(req.headers['content-type'] ?? '')
          .split(';')[0]
          ?.trim()
          .toLowerCase();
        if (!ctype || !NDJSON_TYPES.has(ctype))
          throw new HttpError(
            415,
            'GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE',
            'events must be sent as application/x-ndjson',
          );
        // Before reading the body: refuse at once when even the smallest batch (one event, or the
        // declared length of an uncompressed body) is over the quota, so a flooding token costs no
        // body reading and parsing. The exact charge is taken once the batch is parsed.
        const early = quotaRefusal(
          quota.check(deviceId, [1, declaredIdentityBytes(req, limits.maxBodyBytes)]),
        );
        if (early) throw early;
        return withInflightSlot(deviceId, () => ingestBody(device, req, reply));
      });
    });

    /** A 429 for a quota decision that refused (counted by resource), or null when it allowed. */
    function quotaRefusal(d: LimitDecision): HttpError | null {
      if (d.allowed) return null;
      const resource = QUOTA_DIMENSIONS[d.dimension] ?? 'events';
      metrics.inc('quota_exceeded_total', 'Event batches refused by the per-device quotas.', { resource });
      const allowance = resource === 'events' ? limits.quotaEvents : limits.quotaBytes;
      return new HttpError(
        429,
        'GUARD_COLLECTOR_QUOTA_EXCEEDED',
        `this device sent its quota of ${resource} (${allowance} per ${limits.quotaWindowS} s)`,
        d.retryAfterS,
      );
    }

    /**
     * Runs `fn` holding one of the device's `MAX_REQUESTS_IN_FLIGHT_PER_DEVICE` slots, or refuses
     * with 429 when all are taken. An agent sends one batch at a time; a few more leave room for a
     * retry after a client-side timeout, and keep one token from holding the shared byte budget.
     */
    async function withInflightSlot<T>(deviceId: string, fn: () => Promise<T>): Promise<T> {
      const held = inflightByDevice.get(deviceId) ?? 0;
      if (held >= MAX_REQUESTS_IN_FLIGHT_PER_DEVICE) {
        metrics.inc('rate_limited_total', 'Requests refused by the per-token rate limit.');
        throw new HttpError(
          429,
          'GUARD_COLLECTOR_RATE_LIMITED',
          `already ${MAX_REQUESTS_IN_FLIGHT_PER_DEVICE} requests in flight for this device token`,
          1,
        );
      }
      inflightByDevice.set(deviceId, held + 1);
      try {
        return await fn();
      } finally {
        const n = (inflightByDevice.get(deviceId) ?? 1) - 1;
        if (n > 0) inflightByDevice.set(deviceId, n);
        else inflightByDevice.delete(deviceId);
      }
    }

    /** Reads, parses, charges to the quota and stores one events body; the answer of POST /v1/events. */
    async function ingestBody(
      device: EnrolledDevice,
      req: FastifyRequest,
      reply: FastifyReply,
    ): Promise<unknown> {
      const deviceId = device.id;
      const { body, reserved } = await readBody(
        req.raw,
        {
          maxBytes: limits.maxBodyBytes,
          maxGzipRatio: limits.maxGzipRatio,
          timeoutMs: limits.bodyTimeoutMs,
          idleTimeoutMs: Math.min(MAX_BODY_IDLE_MS, limits.bodyTimeoutMs),
        },
        budget,
      );
      try {
        let outcome: IngestOutcome;
        const bodyBytes = body.length;
        const received = performance.now();
        try {
          outcome = await ingest.submit(device, body, (batch) => {
            const refused = quotaRefusal(quota.take(deviceId, [batch.valid.length, bodyBytes]));
            if (refused) throw refused;
          });
        } catch (err) {
          if (err instanceof HttpError) throw err;
          logger.error({ err, device_id: deviceId }, 'storing a batch failed; nothing acknowledged');
          if (err instanceof GuardError && err.code === 'GUARD_COLLECTOR_WORKER_FAILED')
            throw new HttpError(503, err.code, 'events could not be parsed; retry', 1);
          throw new HttpError(503, 'GUARD_COLLECTOR_STORE_FAILED', 'events could not be stored; retry', 5);
        }
        metrics.observeIngest((performance.now() - received) / 1000);
        // the device was enrolled again (here or through another collector) after its token was
        // checked: the store refused the batch, and the token is unknown from now on
        if (outcome.result.stale) throw unauthorized();
        const { batch } = outcome;
        const { accepted, duplicates } = outcome.result;
        metrics.ingested(batch.valid, await policy.ruleIds());
        metrics.inc('events_accepted_total', 'Events stored (new ids).', {}, accepted);
        metrics.inc(
          'events_duplicate_total',
          'Events received again (already stored; acknowledged, not stored twice).',
          {},
          duplicates,
        );
        for (const [reason, n] of Object.entries(batch.rejectedByReason))
          metrics.inc('events_rejected_total', 'Events refused, by reason class.', { reason }, n);
        if (batch.rejectedTotal > 0) {
          logger.debug(
            { device_id: deviceId, rejected: batch.rejectedTotal, accepted },
            'batch with rejected events',
          );
          reply.code(400);
          return {
            error: {
              code: 'GUARD_COLLECTOR_INVALID_EVENTS',
              message: `${batch.rejectedTotal} event(s) rejected; the ${batch.valid.length} valid one(s) were stored`,
            },
            accepted,
            duplicates,
            rejected: batch.rejected,
            rejected_total: batch.rejectedTotal,
          };
        }
        if (batch.valid.length === 0)
          throw new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', 'empty batch: no events in the body');
        return { accepted, duplicates };
      } finally {
        budget.give(reserved);
      }
    }

    const serve = (req: FastifyRequest, reply: FastifyReply, p: ServedPolicy): FastifyReply => {
      reply.header('etag', p.etag).header('cache-control', 'no-cache');
      if (etagMatches(req.headers['if-none-match'], p.etag)) return reply.code(304).send();
      return reply.type('application/json').send(p.bytes);
    };
    agent.get('/v1/policy', async (req, reply) => serve(req, reply, await policy.current()));
    // The shadow candidate (docs/policy.md "Shadow policies"); 204 = no shadow: the agent drops its own.
    agent.get('/v1/policy/shadow', async (req, reply) => {
      const p = await policy.shadow();
      if (!p) return reply.header('cache-control', 'no-cache').code(204).send();
      return serve(req, reply, p);
    });
  });

  /** The device and enrollment of the request's token; 401 for a missing, unknown or replaced token. */
  async function authenticateDevice(req: FastifyRequest): Promise<EnrolledDevice> {
    const token = bearerToken(req.headers.authorization);
    const device = token === null ? undefined : await store.deviceForTokenHash(hashToken(token));
    if (device === undefined) throw unauthorized();
    return device;
  }

  /** The 401 of a missing, unknown or replaced device token (counted). */
  function unauthorized(): HttpError {
    metrics.inc('unauthorized_total', 'Requests with a missing or unknown device token.');
    return new HttpError(
      401,
      'GUARD_COLLECTOR_UNAUTHORIZED',
      'missing or unknown device token; enroll again',
    );
  }
}

/**
 * The decompressed size a request declares: its Content-Length when not compressed, else 1 (a
 * gzip body may expand, or even shrink). A body over `maxBodyBytes` counts 1 too: it is refused
 * with 413 for its size, which says more than a 429 would.
 */
function declaredIdentityBytes(req: FastifyRequest, maxBodyBytes: number): number {
  const enc = String(req.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  const len = Number(req.headers['content-length']);
  return enc === 'identity' && Number.isSafeInteger(len) && len > 0 && len <= maxBodyBytes ? len : 1;
}

function parseEnroll(body: unknown): {
  enrollSecret: string;
  device: { id: string; hostname: string; os: string; agent_version: string };
} {
  const bad = (what: string): HttpError =>
    new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', `enroll body: ${what}`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('expected a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.enroll_secret !== 'string' || b.enroll_secret.length > 4096)
    throw bad('enroll_secret must be a string');
  const d = b.device;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw bad('device must be an object');
  const dev = d as Record<string, unknown>;
  const str = (k: string, max: number): string => {
    const v = dev[k];
    if (typeof v !== 'string' || v.length === 0 || v.length > max)
      throw bad(`device.${k} must be a string of 1-${max} characters`);
    return v;
  };
  const id = str('id', 128);
  if (!DEVICE_ID_RE.test(id)) throw bad('device.id may hold letters, digits and . _ : @ - only');
  return {
    enrollSecret: b.enroll_secret,
    device: {
      id,
      hostname: str('hostname', 255),
      os: str('os', 64),
      agent_version: str('agent_version', 64),
    },
  };
}
