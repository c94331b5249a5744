/**
 * Owns turning an untrusted `POST /v1/events` body into stored events: reading the body with hard
 * limits (size after decompression, gzip ratio, a total and an idle deadline, a process-wide
 * in-flight byte budget), splitting NDJSON, and checking every line (JSON, schema via
 * `validateEvent`, device id = the token's device). Valid events of a batch are stored even when
 * others are rejected; rejected ones are reported by id so the agent can set exactly those aside.
 *
 * Memory: a request never holds more than `maxBytes` of decompressed body (gunzip runs as a stream
 * and is stopped at the cap), and all requests together never more than the in-flight budget.
 */
import type { IncomingMessage } from 'node:http';
import { createGunzip } from 'node:zlib';
import { validateEvent } from '../events/event-schema.js';
import { MAX_EVENT_BYTES } from '../events/event-types.js';
import type { CollectorStore, IncomingEvent, InsertResult } from './collector-store.js';
import { HttpError } from './http-error.js';

/** A single event line longer than this is rejected (the agent's outbox keeps events within it). */
export { MAX_EVENT_BYTES };
/** At most this many rejected entries are listed in a 400 answer (the total is always given). */
export const MAX_REJECTED_LISTED = 1000;
/** The gzip ratio check starts once this much was decompressed: tiny bodies may compress oddly. */
const RATIO_CHECK_AFTER_BYTES = 1024 * 1024;
/** The longest `id` echoed back in a rejection (hostile ids are not reflected whole). */
const MAX_ECHOED_ID_CHARS = 64;

export interface BodyLimits {
  /** Largest body after decompression, in bytes. */
  readonly maxBytes: number;
  /** Largest decompressed/compressed ratio of a gzip body. */
  readonly maxGzipRatio: number;
  /** The whole body must arrive within this many ms of the start of reading. */
  readonly timeoutMs: number;
  /** No byte for this many ms ends the request. */
  readonly idleTimeoutMs: number;
}

/** Process-wide budget of buffered body bytes (all concurrent requests together). */
export class InflightBudget {
  private used = 0;
  constructor(readonly limitBytes: number) {}
  /** Reserves `n` bytes; false (nothing reserved) when that would exceed the limit. */
  tryTake(n: number): boolean {
    if (this.used + n > this.limitBytes) return false;
    this.used += n;
    return true;
  }
  /** Returns `n` bytes taken earlier. */
  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
  /** Bytes currently reserved. */
  get inUse(): number {
    return this.used;
  }
}

/**
 * Reads the whole body of `req` within `limits`, gunzipping when `Content-Encoding: gzip`.
 * Resolves with the decompressed bytes and how many budget bytes to `give` back when done.
 * Rejects with a `HttpError` (413 too large / gzip bomb, 408 too slow, 415 encoding, 400 corrupt
 * gzip, 503 over budget); on rejection nothing stays reserved and the rest of the body is discarded.
 */
export function readBody(
  req: IncomingMessage,
  limits: BodyLimits,
  budget: InflightBudget,
): Promise<{ body: Buffer; reserved: number }> {
  const encoding = String(req.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'x-gzip')
    return Promise.reject(
      new HttpError(
        415,
        'GUARD_COLLECTOR_BAD_ENCODING',
        `Content-Encoding "${encoding.slice(0, 40)}" is not supported (use gzip or none)`,
      ),
    );
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes)
    return Promise.reject(
      new HttpError(
        413,
        'GUARD_COLLECTOR_BODY_TOO_LARGE',
        `body of ${declared} bytes exceeds the limit of ${limits.maxBytes}`,
      ),
    );
  const gzip = encoding !== 'identity';

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let rawBytes = 0;
    let outBytes = 0;
    let reserved = 0;
    let done = false;
    // Ratio = output / compressed bytes the inflater has consumed so far (not merely received),
    // so a bomb sent in one small write is caught after ~1 MiB of output, not at the size cap.
    const gunzip = gzip ? createGunzip() : null;

    const finish = (err: HttpError | null): void => {
      if (done) return;
      done = true;
      clearTimeout(total);
      clearTimeout(idle);
      req.off('data', onRaw);
      req.off('end', onRawEnd);
      req.off('error', onReqError);
      req.off('aborted', onAborted);
      if (gunzip) {
        gunzip.off('data', onOut);
        gunzip.removeAllListeners('end');
        gunzip.destroy();
      }
      if (err) {
        // Discard the rest (nothing is buffered): the client sees the answer instead of a reset;
        // the server's linger timer ends the connection if the body keeps coming.
        req.resume();
        budget.give(reserved);
        chunks.length = 0;
        reject(err);
      } else {
        resolve({ body: Buffer.concat(chunks, outBytes), reserved });
      }
    };

    const total = setTimeout(
      () =>
        finish(
          new HttpError(
            408,
            'GUARD_COLLECTOR_BODY_TIMEOUT',
            `body not received within ${limits.timeoutMs} ms`,
          ),
        ),
      limits.timeoutMs,
    );
    let idle = setTimeout(onIdle, limits.idleTimeoutMs);
    function onIdle(): void {
      finish(
        new HttpError(408, 'GUARD_COLLECTOR_BODY_TIMEOUT', `no body bytes for ${limits.idleTimeoutMs} ms`),
      );
    }

    const onOut = (chunk: Buffer): void => {
      if (done) return;
      outBytes += chunk.length;
      if (outBytes > limits.maxBytes) {
        finish(
          new HttpError(
            413,
            'GUARD_COLLECTOR_BODY_TOO_LARGE',
            `body exceeds the limit of ${limits.maxBytes} bytes (decompressed)`,
          ),
        );
        return;
      }
      if (
        gzip &&
        outBytes > RATIO_CHECK_AFTER_BYTES &&
        outBytes / Math.max(1, gunzip?.bytesWritten ?? rawBytes) > limits.maxGzipRatio
      ) {
        finish(
          new HttpError(
            413,
            'GUARD_COLLECTOR_GZIP_BOMB',
            `gzip body expands more than ${limits.maxGzipRatio}:1; refused`,
          ),
        );
        return;
      }
      if (!budget.tryTake(chunk.length)) {
        finish(
          new HttpError(
            503,
            'GUARD_COLLECTOR_BUSY',
            'the collector is at its in-flight body budget; retry later',
            1,
          ),
        );
        return;
      }
      reserved += chunk.length;
      chunks.push(chunk);
    };

    const onRaw = (chunk: Buffer): void => {
      if (done) return;
      clearTimeout(idle);
      idle = setTimeout(onIdle, limits.idleTimeoutMs);
      rawBytes += chunk.length;
      if (rawBytes > limits.maxBytes) {
        finish(
          new HttpError(
            413,
            'GUARD_COLLECTOR_BODY_TOO_LARGE',
            `body exceeds the limit of ${limits.maxBytes} bytes`,
          ),
        );
        return;
      }
      if (gunzip) gunzip.write(chunk);
      else onOut(chunk);
    };
    const onRawEnd = (): void => {
      if (gunzip) gunzip.end();
      else finish(null);
    };
    const onReqError = (): void =>
      finish(new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', 'the request body stream failed'));
    const onAborted = (): void =>
      finish(new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', 'the client aborted the body'));

    if (gunzip) {
      gunzip.on('data', onOut);
      gunzip.on('end', () => finish(null));
      gunzip.on('error', (err) =>
        finish(new HttpError(400, 'GUARD_COLLECTOR_BAD_ENCODING', `corrupt gzip body: ${err.message}`)),
      );
    }
    req.on('data', onRaw);
    req.on('end', onRawEnd);
    req.on('error', onReqError);
    req.on('aborted', onAborted);
  });
}

export interface Rejection {
  /** The event's id when it had a usable one, else null. */
  readonly id: string | null;
  /** Why: `invalid_json`, `not_an_object`, `too_large`, `device_mismatch`, or `schema: <path>: <msg>`. */
  readonly reason: string;
}

export interface ParsedBatch {
  readonly valid: IncomingEvent[];
  /** The first `MAX_REJECTED_LISTED` rejections. */
  readonly rejected: Rejection[];
  readonly rejectedTotal: number;
  /** Rejections per reason class (for metrics; a fixed vocabulary). */
  readonly rejectedByReason: Record<string, number>;
}

export type EventValidator = (obj: unknown) => { ok: true } | { ok: false; errors: string[] };

/**
 * Splits an NDJSON body and checks each line. Blank lines are skipped; `\r\n` is accepted.
 * Never throws, whatever the bytes are.
 */
export function parseBatch(
  body: Buffer,
  deviceId: string,
  validate: EventValidator = validateEvent,
): ParsedBatch {
  const valid: IncomingEvent[] = [];
  const rejected: Rejection[] = [];
  const byReason: Record<string, number> = {};
  let rejectedTotal = 0;
  const reject = (id: string | null, reason: string, cls: string): void => {
    rejectedTotal++;
    byReason[cls] = (byReason[cls] ?? 0) + 1;
    if (rejected.length < MAX_REJECTED_LISTED) rejected.push({ id, reason });
  };
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf(0x0a, start);
    if (end === -1) end = body.length;
    let lineEnd = end;
    if (lineEnd > start && body[lineEnd - 1] === 0x0d) lineEnd--;
    const len = lineEnd - start;
    const lineStart = start;
    start = end + 1;
    if (len === 0) continue;
    if (len > MAX_EVENT_BYTES) {
      reject(null, 'too_large', 'too_large');
      continue;
    }
    const line = body.toString('utf8', lineStart, lineEnd);
    if (line.trim() === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      reject(null, 'invalid_json', 'invalid_json');
      continue;
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      reject(null, 'not_an_object', 'not_an_object');
      continue;
    }
    const ev = obj as Record<string, unknown>;
    const id = typeof ev.id === 'string' ? ev.id.slice(0, MAX_ECHOED_ID_CHARS) : null;
    const check = validate(ev);
    if (!check.ok) {
      reject(id, `schema: ${check.errors.slice(0, 3).join('; ')}`, 'schema');
      continue;
    }
    if (ev.device_id !== deviceId) {
      reject(id, 'device_mismatch: device_id is not the device of the token', 'device_mismatch');
      continue;
    }
    const time = new Date(ev.time as string);
    if (Number.isNaN(time.getTime())) {
      reject(id, 'schema: /time: not a representable date-time', 'schema');
      continue;
    }
    const rule = ev.rule as { id?: unknown } | undefined;
    const type = ev.type as string;
    const pv = ev.policy_version;
    valid.push({
      id: ev.id as string,
      seq: ev.seq as number,
      type,
      // normalised to UTC with ms so the admin API's since/until compare as strings
      time: time.toISOString(),
      ruleId: rule && typeof rule.id === 'string' ? rule.id : null,
      agentVersion: typeof ev.agent_version === 'string' ? ev.agent_version : null,
      policyVersion:
        (type === 'agent.heartbeat' || type === 'policy.applied') &&
        typeof pv === 'number' &&
        Number.isInteger(pv)
          ? pv
          : null,
      // What was validated, re-serialised: the raw line could carry duplicate keys (JSON.parse
      // keeps the last, a SIEM's parser may keep the first — another device's id, say).
      body: JSON.stringify(ev),
    });
  }
  return { valid, rejected, rejectedTotal, rejectedByReason: byReason };
}

/** A commit covers at most this many batches (≈ 32,000 events of 500-event batches). */
const MAX_GROUP_BATCHES = 64;
/** A parsed batch waits at most this long for companions before its group is committed. */
const MAX_GROUP_AGE_MS = 50;

export interface IngestOutcome {
  readonly batch: ParsedBatch;
  readonly result: InsertResult;
}

interface QueuedBody {
  readonly deviceId: string;
  readonly body: Buffer;
  readonly receivedAt: string;
  resolve(o: IngestOutcome): void;
  reject(e: unknown): void;
}

export interface IngestQueueOptions {
  readonly store: Pick<CollectorStore, 'insertGroup'>;
  readonly validate?: EventValidator;
  /** Batches per commit at most (default 64). */
  readonly maxGroupBatches?: number;
  /** Longest wait of a parsed batch for companions, ms (default 50). */
  readonly maxGroupAgeMs?: number;
}

/**
 * Parses and stores received bodies in arrival order, ONE body per event-loop turn, committing
 * the parsed batches together (group commit: one fsync per group) when the queue runs dry, the
 * group holds `MAX_GROUP_BATCHES`, or its oldest batch waited `MAX_GROUP_AGE_MS`.
 *
 * Why one per turn: parsing and validating a 500-event batch takes ~10 ms of CPU. Doing it for
 * every body that completed in one I/O phase would make each turn as long as the whole backlog,
 * and a connection that needs several turns (a new one: accept, slow-start, body) would starve
 * behind connections that are already open. Slicing keeps turns short, so health checks and new
 * agents are served while the collector is saturated.
 */
export class IngestQueue {
  private queue: QueuedBody[] = [];
  private group: { readonly entry: QueuedBody; readonly parsed: ParsedBatch }[] = [];
  private groupOpenedAt = 0;
  private scheduled = false;

  constructor(private readonly options: IngestQueueOptions) {}

  /**
   * Queues `body` of `deviceId`; resolves once its events are durably stored (or none were
   * valid), rejects when the commit of its group failed (nothing of that group is stored).
   */
  submit(deviceId: string, body: Buffer): Promise<IngestOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ deviceId, body, receivedAt: new Date().toISOString(), resolve, reject });
      this.schedule();
    });
  }

  /** Bodies waiting to be parsed. */
  get depth(): number {
    return this.queue.length;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.turn());
  }

  private turn(): void {
    this.scheduled = false;
    const entry = this.queue.shift();
    if (entry) {
      if (this.group.length === 0) this.groupOpenedAt = performance.now();
      this.group.push({ entry, parsed: parseBatch(entry.body, entry.deviceId, this.options.validate) });
    }
    if (
      this.group.length > 0 &&
      (this.queue.length === 0 ||
        this.group.length >= (this.options.maxGroupBatches ?? MAX_GROUP_BATCHES) ||
        performance.now() - this.groupOpenedAt >= (this.options.maxGroupAgeMs ?? MAX_GROUP_AGE_MS))
    )
      this.commit();
    if (this.queue.length > 0) this.schedule();
  }

  private commit(): void {
    const group = this.group;
    this.group = [];
    const toStore = group.filter((g) => g.parsed.valid.length > 0);
    let results: InsertResult[];
    try {
      results =
        toStore.length === 0
          ? []
          : this.options.store.insertGroup(
              toStore.map((g) => ({
                deviceId: g.entry.deviceId,
                events: g.parsed.valid,
                receivedAt: g.entry.receivedAt,
              })),
            );
    } catch (err) {
      for (const g of group) g.entry.reject(err);
      return;
    }
    let k = 0;
    for (const g of group) {
      const result =
        g.parsed.valid.length > 0 ? (results[k++] as InsertResult) : { accepted: 0, duplicates: 0 };
      g.entry.resolve({ batch: g.parsed, result });
    }
  }
}
