/**
 * Owns turning an untrusted `POST /v1/events` body into stored events: reading the body with hard
 * limits (size after decompression, gzip ratio, a total and an idle deadline, a process-wide
 * in-flight byte budget), splitting NDJSON and checking every line (`parseBatch`: JSON, schema via
 * `validateEvent`, device id = the token's device), and storing parsed batches in group commits
 * (`IngestQueue`). Valid events of a batch are stored even when others are rejected; rejected ones
 * are reported by id so the agent can set exactly those aside. Where `parseBatch` runs (worker
 * threads or the main thread) is parse-pool.ts.
 *
 * Memory: a request never holds more than `maxBytes` of decompressed body (gunzip runs as a stream
 * and is stopped at the cap), and all requests together never more than the in-flight budget.
 */
import type { IncomingMessage } from 'node:http';
import { createGunzip } from 'node:zlib';
import { validateEvent } from '../events/event-schema.js';
import { MAX_EVENT_BYTES } from '../events/event-types.js';
import { HttpError } from './http-error.js';
import type { BatchParser } from './parse-pool.js';
import type { EnrolledDevice, EventLog, IncomingEvent, InsertResult } from './store/port.js';

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

/** An event time already in the stored form (UTC, milliseconds, seconds < 60): no re-formatting. */
const CANONICAL_TIME =
  /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;

/**
 * The event time as the store keeps it (UTC with milliseconds, so the admin API's since/until
 * compare as strings), or null when it is not a representable date (`…T23:59:60Z` passes the
 * schema's date-time format but not `Date`). The schema has already checked the calendar
 * (month lengths, leap years), so a canonical-looking time is returned as it is.
 */
function storedTime(time: string): string | null {
  if (CANONICAL_TIME.test(time)) return time;
  const t = new Date(time);
  return Number.isNaN(t.getTime()) ? null : t.toISOString();
}

/**
 * Splits an NDJSON body and checks each line. Blank lines are skipped; `\r\n` is accepted.
 * Never throws, whatever the bytes are.
 *
 * The body is decoded once: a `\n` byte never occurs inside a UTF-8 sequence, so lines decode the
 * same whole or one by one (invalid bytes become U+FFFD either way).
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
  const text = body.toString('utf8');
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    let lineEnd = end;
    if (lineEnd > start && text.charCodeAt(lineEnd - 1) === 0x0d) lineEnd--;
    const line = text.slice(start, lineEnd);
    start = end + 1;
    if (line.length === 0) continue;
    // A UTF-16 unit is at most 3 UTF-8 bytes: only long lines need their bytes counted.
    if (line.length > MAX_EVENT_BYTES / 3 && Buffer.byteLength(line) > MAX_EVENT_BYTES) {
      reject(null, 'too_large', 'too_large');
      continue;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      if (line.trim() !== '') reject(null, 'invalid_json', 'invalid_json');
      continue;
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      reject(null, 'not_an_object', 'not_an_object');
      continue;
    }
    const raw = obj as Record<string, unknown>;
    const id = typeof raw.id === 'string' ? raw.id.slice(0, MAX_ECHOED_ID_CHARS) : null;
    const check = validate(raw);
    if (!check.ok) {
      reject(id, `schema: ${check.errors.slice(0, 3).join('; ')}`, 'schema');
      continue;
    }
    if (raw.device_id !== deviceId) {
      reject(id, 'device_mismatch: device_id is not the device of the token', 'device_mismatch');
      continue;
    }
    // What was validated, re-serialised: the raw line could carry duplicate keys (JSON.parse
    // keeps the last, a SIEM's parser may keep the first — another device's id, say).
    let body = JSON.stringify(raw);
    let ev = raw;
    // JSON.stringify escapes U+0000 and a lone surrogate (`\u0000`, `\udxxx`), and only those
    // (or a backslash before such text: then textOnly changes nothing); the schema bounds the depth
    if (body.includes('\\u0000') || body.includes('\\ud')) {
      ev = textOnly(raw) as Record<string, unknown>;
      body = JSON.stringify(ev);
    }
    const time = storedTime(ev.time as string);
    if (time === null) {
      reject(id, 'schema: /time: not a representable date-time', 'schema');
      continue;
    }
    const rule = ev.rule as { id?: unknown } | undefined;
    const type = ev.type as string;
    const pv = ev.policy_version;
    const fields = consoleFields(type, ev);
    valid.push({
      id: ev.id as string,
      seq: ev.seq as number,
      type,
      time,
      ruleId: rule && typeof rule.id === 'string' ? rule.id : null,
      agentVersion: typeof ev.agent_version === 'string' ? ev.agent_version : null,
      // the shadow channel's policy.applied is a candidate evaluated beside the enforced policy:
      // the device's policy version and state stay the enforced policy's
      policyVersion:
        (type === 'agent.heartbeat' || (type === 'policy.applied' && ev.channel !== 'shadow')) &&
        typeof pv === 'number' &&
        Number.isInteger(pv)
          ? pv
          : null,
      coverage: type === 'agent.heartbeat' ? coverageOf(ev) : null,
      // field by field, not a spread: one object shape, no copy per event
      tags: fields.tags,
      outboxDepth: fields.outboxDepth,
      droppedTotal: fields.droppedTotal,
      policyState: fields.policyState,
      policyError: fields.policyError,
      user: typeof ev.user === 'string' ? ev.user : null,
      body,
    });
  }
  return { valid, rejected, rejectedTotal, rejectedByReason: byReason };
}

/** U+0000, or a lone surrogate (in `u` mode a pair is one code point, not Cs). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching U+0000 is the point
const NOT_TEXT = /\u0000|\p{Cs}/gu;

/**
 * A validated event with every U+0000 and every lone surrogate (in strings and keys) replaced by
 * U+FFFD: text as PostgreSQL takes it. No real field holds either (a C string cannot hold U+0000,
 * UTF-8 cannot hold a surrogate), and PostgreSQL's jsonb refuses both escapes: one such event body
 * made every query that reads bodies as jsonb fail for the whole fleet (the shadow would-match
 * counts). Both stores keep the same body. Object.fromEntries defines keys, so a `__proto__` key
 * (which the schema refuses anyway) stays a key.
 */
function textOnly(v: unknown): unknown {
  if (typeof v === 'string') return v.replace(NOT_TEXT, '\uFFFD');
  if (Array.isArray(v)) return v.map(textOnly);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [textOnly(k) as string, textOnly(x)]));
  return v;
}

/**
 * The coverage a heartbeat reports (schema-validated objects, stored as they are): which exec
 * sources run and their counters. A heartbeat of an agent without them says null (unknown).
 */
function coverageOf(ev: Record<string, unknown>): string {
  const part = (v: unknown): unknown => (v && typeof v === 'object' ? v : null);
  return JSON.stringify({ exec_events: part(ev.exec_events), exec_deny: part(ev.exec_deny) });
}

/** What a heartbeat or enforced-channel policy event says for the console's device view (IncomingEvent's fields). */
function consoleFields(
  type: string,
  ev: Record<string, unknown>,
): Pick<IncomingEvent, 'tags' | 'outboxDepth' | 'droppedTotal' | 'policyState' | 'policyError'> {
  const count = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) ? v : null);
  if (type === 'agent.heartbeat')
    return {
      tags: JSON.stringify(Array.isArray(ev.tags) ? ev.tags.map(String) : []),
      outboxDepth: count(ev.outbox_depth),
      droppedTotal: count(ev.dropped_total),
      policyState: ev.policy_state === 'ok' ? 'ok' : ev.policy_state === 'stale' ? 'stale' : 'unknown',
      policyError: null,
    };
  // a shadow's acceptance or refusal says nothing about the enforced policy's state
  if (ev.channel === 'shadow') return NO_CONSOLE_FIELDS;
  if (type === 'policy.rejected')
    return {
      tags: null,
      outboxDepth: null,
      droppedTotal: null,
      policyState: 'rejected',
      policyError: typeof ev.reason === 'string' ? ev.reason : null,
    };
  if (type === 'policy.applied')
    return { tags: null, outboxDepth: null, droppedTotal: null, policyState: 'ok', policyError: null };
  return NO_CONSOLE_FIELDS;
}

/** What most events say for the device view: nothing (shared, never mutated). */
const NO_CONSOLE_FIELDS: Pick<
  IncomingEvent,
  'tags' | 'outboxDepth' | 'droppedTotal' | 'policyState' | 'policyError'
> = Object.freeze({
  tags: null,
  outboxDepth: null,
  droppedTotal: null,
  policyState: null,
  policyError: null,
});

/** A commit covers at most this many batches. */
const MAX_GROUP_BATCHES = 64;
/**
 * A commit covers at most this many events (more when one batch alone is larger): storing costs
 * ~8 µs an event on the main thread, so a group blocks it for ~16 ms. Without a cap, groups grow
 * with the previous commit's length (workers keep parsing while it runs): commits of 15,000 events
 * blocked a saturated collector for 100-150 ms each. 2,000 keeps GET /healthz at ~50 ms p50 under
 * full load and costs no measurable throughput against 4,000 (bench/collector.bench.js).
 */
const MAX_GROUP_EVENTS = 2000;
/** A parsed batch waits at most this long for companions before its group is committed. */
const MAX_GROUP_AGE_MS = 50;

export interface IngestOutcome {
  readonly batch: ParsedBatch;
  readonly result: InsertResult;
}

interface Waiting {
  readonly device: EnrolledDevice;
  readonly receivedAt: string;
  resolve(o: IngestOutcome): void;
  reject(e: unknown): void;
}

interface Parsed {
  readonly entry: Waiting;
  readonly parsed: ParsedBatch;
}

export interface IngestQueueOptions {
  readonly store: Pick<EventLog, 'insertGroup'>;
  /** Where bodies are parsed and validated (worker threads or the main thread). */
  readonly parser: BatchParser;
  /** Batches per commit at most (default 64). */
  readonly maxGroupBatches?: number;
  /** Events per commit at most, unless one batch alone is larger (default 2000). */
  readonly maxGroupEvents?: number;
  /** Longest wait of a parsed batch for companions, ms (default 50). */
  readonly maxGroupAgeMs?: number;
  /**
   * Group commits in flight at once (default 1). A synchronous store (SQLite) finishes each commit
   * within its turn anyway; a networked store (PostgreSQL) overlaps this many, and batches parsed
   * meanwhile wait and form the next, larger group.
   */
  readonly maxConcurrentCommits?: number;
}

/**
 * Hands received bodies to the parser and stores the parsed batches together (group commit: one
 * fsync per group). A group is committed when no body is left being parsed, when it is full
 * (`MAX_GROUP_BATCHES` / `MAX_GROUP_EVENTS`), or when its oldest batch waited `MAX_GROUP_AGE_MS`.
 * A request is answered after the commit of its group, so an answer means "durable".
 *
 * Commits run in their own event-loop turn (setImmediate), one group per turn, so sockets are
 * served between two commits however many batches are waiting. With worker threads the main
 * thread commits one group while the workers parse the next bodies.
 */
export class IngestQueue {
  private ready: Parsed[] = [];
  private readyEvents = 0;
  private ageTimer: NodeJS.Timeout | null = null;
  private commitScheduled = false;
  private parsing = 0;
  private committing = 0;
  /** The age timer fired while every commit slot was busy: commit as soon as one frees up. */
  private ageDue = false;

  constructor(private readonly options: IngestQueueOptions) {}

  /**
   * Queues `body` of `device` (the id and enrollment its token authenticated), taking ownership
   * of `body` (it may be transferred to a worker); resolves once its events are durably stored (or none were valid), rejects when it could not be
   * parsed (`GUARD_COLLECTOR_WORKER_FAILED`) or the commit of its group failed (nothing of that
   * group is stored).
   *
   * `admit`, when given, is called on the main thread once the body is parsed and before it is
   * queued for storing (the per-device quota is charged there, where the event count is known);
   * when it throws, nothing of the batch is stored and the promise rejects with its error.
   */
  submit(device: EnrolledDevice, body: Buffer, admit?: (batch: ParsedBatch) => void): Promise<IngestOutcome> {
    return new Promise((resolve, reject) => {
      const entry: Waiting = { device, receivedAt: new Date().toISOString(), resolve, reject };
      this.parsing++;
      this.options.parser.parse(device.id, body).then(
        (parsed) => {
          this.parsing--;
          try {
            admit?.(parsed);
          } catch (err) {
            reject(err);
            this.commitIfDue();
            return;
          }
          this.ready.push({ entry, parsed });
          this.readyEvents += parsed.valid.length;
          this.ageTimer ??= setTimeout(() => this.scheduleCommit(), this.maxAgeMs);
          this.commitIfDue();
        },
        (err: unknown) => {
          this.parsing--;
          reject(err);
          this.commitIfDue();
        },
      );
    });
  }

  /** Bodies received and not yet stored (being parsed, or parsed and waiting for their commit). */
  get depth(): number {
    return this.parsing + this.ready.length;
  }

  private get maxAgeMs(): number {
    return this.options.maxGroupAgeMs ?? MAX_GROUP_AGE_MS;
  }

  private commitIfDue(): void {
    if (
      this.ready.length > 0 &&
      this.committing < (this.options.maxConcurrentCommits ?? 1) &&
      (this.parsing === 0 ||
        this.ready.length >= (this.options.maxGroupBatches ?? MAX_GROUP_BATCHES) ||
        this.readyEvents >= (this.options.maxGroupEvents ?? MAX_GROUP_EVENTS))
    )
      this.scheduleCommit();
  }

  private scheduleCommit(): void {
    if (this.commitScheduled) return;
    this.commitScheduled = true;
    setImmediate(() => {
      this.commitScheduled = false;
      this.commit();
    });
  }

  /** Commits the oldest ready batches up to the group limits (at least one batch). */
  private commit(): void {
    // all commit slots busy: the end of one commits what is due
    if (this.committing >= (this.options.maxConcurrentCommits ?? 1) || this.ready.length === 0) {
      if (this.ready.length > 0) this.ageDue = true;
      if (this.ageTimer) clearTimeout(this.ageTimer);
      this.ageTimer = null;
      return;
    }
    this.ageDue = false;
    if (this.ageTimer) clearTimeout(this.ageTimer);
    this.ageTimer = null;
    const maxBatches = this.options.maxGroupBatches ?? MAX_GROUP_BATCHES;
    const maxEvents = this.options.maxGroupEvents ?? MAX_GROUP_EVENTS;
    let n = 0;
    let events = 0;
    while (n < this.ready.length && n < maxBatches) {
      const size = (this.ready[n] as Parsed).parsed.valid.length;
      if (n > 0 && events + size > maxEvents) break;
      events += size;
      n++;
    }
    const group = this.ready.splice(0, n);
    this.readyEvents -= events;
    if (this.ready.length > 0) {
      this.ageTimer = setTimeout(() => this.scheduleCommit(), this.maxAgeMs);
      this.commitIfDue();
    }
    this.store(group);
  }

  private store(group: readonly Parsed[]): void {
    const toStore = group.filter((g) => g.parsed.valid.length > 0);
    let results: Promise<InsertResult[]>;
    try {
      results =
        toStore.length === 0
          ? Promise.resolve([])
          : this.options.store.insertGroup(
              toStore.map((g) => ({
                deviceId: g.entry.device.id,
                enrollment: g.entry.device.enrollment,
                events: g.parsed.valid,
                receivedAt: g.entry.receivedAt,
              })),
            );
    } catch (err) {
      results = Promise.reject(err);
    }
    this.committing++;
    const settled = (): void => {
      this.committing--;
      if (this.ageDue) this.scheduleCommit();
      else this.commitIfDue();
    };
    results.then(
      (stored) => {
        settled();
        let k = 0;
        for (const g of group) {
          const result =
            g.parsed.valid.length > 0 ? (stored[k++] as InsertResult) : { accepted: 0, duplicates: 0 };
          g.entry.resolve({ batch: g.parsed, result });
        }
      },
      (err: unknown) => {
        settled();
        for (const g of group) g.entry.reject(err);
      },
    );
  }
}
