/**
 * Owns the Splunk HTTP Event Collector forwarder: `POST <base>/services/collector/event` with
 * `Authorization: Splunk <token>` and a batch of JSON objects `{time, host, source, sourcetype,
 * index?, event}` (HEC's batch format: objects back to back, here one per line), gzip-compressed
 * by default. What each HEC answer leads to (docs.splunk.com "HTTP Event Collector status codes"):
 *
 * - 2xx: the events are accepted; with indexer acknowledgement (`ack`) they count as delivered only
 *   once `POST /services/collector/ack` says their `ackId` is indexed. Every request carries the
 *   sink's `X-Splunk-Request-Channel` (a token with acknowledgement refuses requests without one,
 *   code 10). No acknowledgement within `ackTimeoutMs` = not delivered: the delivery fails and the
 *   runner sends the events again (HEC may then hold them twice; de-duplicate on the event id).
 * - 400 with code 6/12/13 (the data itself is refused) and `invalid-event-number` N: HEC indexed
 *   the N events before it and nothing after. Those N count as delivered (there is no ackId for
 *   them: the answer itself is all HEC ever says about them), event N is set aside as
 *   dead-lettered, and sending continues with the event after it, so nothing is sent twice.
 *   Without `invalid-event-number` (an older HEC that indexes nothing of a refused request) the
 *   batch is halved until the refused event is alone.
 * - 413 (request larger than the indexer's `max_content_length`): the batch is halved and each half
 *   sent; one event that is still too large alone is dead-lettered.
 * - 503/429 with `Retry-After`: the delivery fails and the next attempt does not start before the
 *   time HEC asked for (capped at RETRY_AFTER_CAP_MS); without it, the runner's backoff applies.
 * - anything else (401/403 token, 400 code 7 index, 5xx, network errors, timeouts): the delivery
 *   fails and the runner retries it with exponential backoff (capped), never dropping events.
 *
 * Events confirmed delivered stay confirmed across a failed delivery: when the runner hands the
 * same batch again, the sink skips the confirmed prefix instead of sending it twice (in memory:
 * after a restart the batch is sent whole). Events dead-lettered by a delivery that then failed
 * are reported (dropped, with their ids) by the next delivery that returns.
 */
import { randomUUID } from 'node:crypto';
import { type ClientRequest, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { StoredEventRow } from '../collector-store.js';
import type { DeliveryResult, ForwarderSink } from './forwarder.js';

const gzip = promisify(gzipCb);

/**
 * What a forwarded event's HEC `host` is: `device_id`, the id ingest checked against the device's
 * token (unique, and what the event's id is unique within, so `dedup host, id` is sound), or
 * `hostname`, the name the device put in the event (readable in Splunk, but self-reported: a
 * device may name itself like another, and duplicate names are common).
 */
export type HecHost = 'device_id' | 'hostname';

export interface SplunkHecSinkOptions {
  /** Base URL (`https://splunk:8088`) or the full event endpoint URL. */
  readonly url: string;
  readonly token: string;
  /** PEM CA to pin for an https URL; undefined = system CAs. */
  readonly ca?: string | Buffer;
  /** HEC `source` (default `toolguard`). */
  readonly source?: string;
  /** HEC `sourcetype` (default `toolguard:event`). */
  readonly sourcetype?: string;
  /** Splunk index; undefined = the token's default index. */
  readonly index?: string;
  /** HEC `host` (default `device_id`, see HecHost). */
  readonly host?: HecHost;
  /** One request's time limit, ms. */
  readonly timeoutMs?: number;
  /** Maps a stored event to the HEC `event` field (default: the event as received). */
  readonly transform?: (event: Record<string, unknown>) => unknown;
  /** Wait for indexer acknowledgement before counting events delivered (the token must have it on). */
  readonly ack?: boolean;
  /** The `X-Splunk-Request-Channel` GUID (default: a random UUID, fixed for this sink's life). */
  readonly channel?: string;
  /** Longest wait for an acknowledgement before the events are sent again, ms. */
  readonly ackTimeoutMs?: number;
  /** Longest interval between two acknowledgement polls, ms (polls start fast and back off to it). */
  readonly ackPollMaxMs?: number;
  /** Gzip request bodies (default true). */
  readonly gzip?: boolean;
  /** Called with the events set aside (refused for their content or too large alone); for the metric. */
  readonly onDeadLetter?: (count: number, reason: 'refused' | 'too_large') => void;
}

/**
 * HEC codes that blame the data, not the setup: 6 invalid data format, 12 event field is
 * required, 13 event field cannot be blank. Others, e.g. 7 incorrect index, are configuration
 * errors: retried, never dropped.
 */
const HEC_DATA_CODES = new Set([6, 12, 13]);

/** HEC answers within seconds when healthy; a stuck request must not hold the cursor forever. */
const DEFAULT_TIMEOUT_MS = 15_000;
/**
 * The response body is only read for codes, ack ids and the error message: an answer longer than
 * this fails the request (not read to its end: an endless body would hold the delivery forever).
 */
const MAX_RESPONSE_BYTES = 64 * 1024;
/**
 * Splunk indexes within seconds; an ack not seen after this long means the events are probably
 * lost (indexer restart) and are sent again. Splunk keeps ack state for `ackIdleCleanup` (600 s).
 */
const DEFAULT_ACK_TIMEOUT_MS = 120_000;
/** First ack poll after this; doubling up to ackPollMaxMs (Splunk suggests polling every few seconds). */
const ACK_POLL_FIRST_MS = 10;
const DEFAULT_ACK_POLL_MAX_MS = 2_000;
/** A Retry-After longer than this (s or an HTTP date) is shortened: HEC is asked again after 5 min. */
const RETRY_AFTER_CAP_MS = 300_000;

/** A failed delivery with HEC's status and code, for the log. */
export class HecDeliveryError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly hecCode: number | undefined,
  ) {
    super(message);
    this.name = 'HecDeliveryError';
  }
}

interface HecAnswer {
  readonly status: number;
  readonly body: string;
  readonly json: Record<string, unknown> | undefined;
  readonly retryAfter: string | undefined;
}

function parseJson(body: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(body) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `device_id/id`: an event id is unique only within its device. */
function eventId(row: StoredEventRow): string {
  try {
    return `${row.device_id}/${String((JSON.parse(row.body) as { id?: unknown }).id ?? '')}`;
  } catch {
    return `${row.device_id}/`;
  }
}

/** Milliseconds a `Retry-After` value asks for (delta-seconds or an HTTP date), capped; undefined if unusable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const s = Number(value);
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(RETRY_AFTER_CAP_MS, Math.max(0, ms));
}

export class SplunkHecSink implements ForwarderSink {
  readonly name = 'splunk-hec';
  /** The channel GUID sent with every request. */
  readonly channel: string;
  private readonly endpoint: URL;
  private readonly ackEndpoint: URL;
  private readonly inflight = new Set<ClientRequest>();
  /** Highest rid confirmed delivered (in rid order) by the delivery in progress or the failed one. */
  private confirmedRid = 0;
  /**
   * The failed delivery: its first rid and how far it got. Only a retry of that same batch skips
   * its confirmed part; any other batch (a cursor moved back on purpose) is sent whole.
   */
  private resume: { firstRid: number; confirmedRid: number } | null = null;
  /** Ids dead-lettered by failed deliveries, reported with the next delivery that returns. */
  private deadUnreported: string[] = [];
  /** performance.now() before which no request is sent (HEC's Retry-After). */
  private notBefore = 0;
  /** Set by abort() (shutdown): for good, every later request or wait ends at once. */
  private aborted = false;
  private wakeSleep: (() => void) | null = null;

  constructor(private readonly options: SplunkHecSinkOptions) {
    const u = new URL(options.url);
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/services/collector/event';
    this.endpoint = u;
    this.ackEndpoint = new URL('/services/collector/ack', u);
    this.channel = options.channel || randomUUID();
  }

  async deliver(events: readonly StoredEventRow[]): Promise<DeliveryResult> {
    const first = events[0]?.rid ?? 0;
    const skip = this.resume && this.resume.firstRid === first ? this.resume.confirmedRid : 0;
    this.confirmedRid = skip;
    const rows = events.filter((r) => r.rid > skip);
    const {
      source = 'toolguard',
      sourcetype = 'toolguard:event',
      index,
      transform,
      host = 'device_id',
    } = this.options;
    const parts = rows.map((row) => {
      const ev = JSON.parse(row.body) as Record<string, unknown>;
      const ms = Date.parse(String(ev.time));
      return JSON.stringify({
        time: Number.isFinite(ms) ? ms / 1000 : Date.parse(row.received_at) / 1000,
        host: host === 'hostname' && typeof ev.hostname === 'string' ? ev.hostname : row.device_id,
        source,
        sourcetype,
        ...(index ? { index } : {}),
        event: transform ? transform(ev) : ev,
      });
    });
    const dead: string[] = this.deadUnreported;
    this.deadUnreported = [];
    try {
      await this.sendAll(parts, rows, dead);
    } catch (err) {
      this.resume = { firstRid: first, confirmedRid: this.confirmedRid };
      this.deadUnreported = dead;
      throw err;
    }
    this.resume = null;
    return { dropped: dead.length, droppedIds: dead };
  }

  /** Sends `parts` (the HEC objects of `rows`) until each is delivered or dead-lettered; throws otherwise. */
  private async sendAll(
    parts: readonly string[],
    rows: readonly StoredEventRow[],
    dead: string[],
  ): Promise<void> {
    let i = 0;
    while (i < parts.length) {
      const a = await this.post(this.endpoint, parts.slice(i).join('\n'), true);
      if (a.status >= 200 && a.status < 300) {
        if (this.options.ack) await this.awaitAck(a);
        this.confirm(rows[rows.length - 1] as StoredEventRow);
        return;
      }
      const code = typeof a.json?.code === 'number' ? a.json.code : undefined;
      if (a.status === 400 && code !== undefined && HEC_DATA_CODES.has(code)) {
        const bad = a.json?.['invalid-event-number'];
        if (typeof bad === 'number' && Number.isInteger(bad) && bad >= 0 && i + bad < parts.length) {
          // HEC indexed the `bad` events before it: confirmed; the bad one is set aside
          const row = rows[i + bad] as StoredEventRow;
          dead.push(eventId(row));
          this.options.onDeadLetter?.(1, 'refused');
          this.confirm(row);
          i += bad + 1;
          continue;
        }
        await this.split(parts.slice(i), rows.slice(i), dead, 'refused');
        return;
      }
      if (a.status === 413) {
        await this.split(parts.slice(i), rows.slice(i), dead, 'too_large');
        return;
      }
      const wait = a.status === 503 || a.status === 429 ? retryAfterMs(a.retryAfter) : undefined;
      if (wait !== undefined) this.notBefore = performance.now() + wait;
      throw new HecDeliveryError(
        `HEC answered ${a.status}${wait !== undefined ? ` (retry after ${wait} ms)` : ''}: ${a.body.slice(0, 200)}`,
        a.status,
        code,
      );
    }
  }

  /** Halves a batch HEC refused as a whole; a single event is dead-lettered. */
  private async split(
    parts: readonly string[],
    rows: readonly StoredEventRow[],
    dead: string[],
    reason: 'refused' | 'too_large',
  ): Promise<void> {
    if (parts.length === 1) {
      const row = rows[0] as StoredEventRow;
      dead.push(eventId(row));
      this.options.onDeadLetter?.(1, reason);
      this.confirm(row);
      return;
    }
    const mid = Math.ceil(parts.length / 2);
    await this.sendAll(parts.slice(0, mid), rows.slice(0, mid), dead);
    await this.sendAll(parts.slice(mid), rows.slice(mid), dead);
  }

  private confirm(row: StoredEventRow): void {
    if (row.rid > this.confirmedRid) this.confirmedRid = row.rid;
  }

  /** Polls the ack endpoint until HEC says the request's events are indexed; throws after ackTimeoutMs. */
  private async awaitAck(a: HecAnswer): Promise<void> {
    const ackId = a.json?.ackId;
    if (typeof ackId !== 'number')
      throw new HecDeliveryError(
        'HEC accepted the events without an ackId: is indexer acknowledgement on for this token?',
        a.status,
        undefined,
      );
    const deadline = performance.now() + (this.options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS);
    let interval = ACK_POLL_FIRST_MS;
    const maxInterval = this.options.ackPollMaxMs ?? DEFAULT_ACK_POLL_MAX_MS;
    for (;;) {
      await this.sleep(Math.min(interval, Math.max(0, deadline - performance.now())));
      const r = await this.post(this.ackEndpoint, JSON.stringify({ acks: [ackId] }), false);
      if (r.status < 200 || r.status >= 300)
        throw new HecDeliveryError(
          `HEC ack poll answered ${r.status}: ${r.body.slice(0, 200)}`,
          r.status,
          undefined,
        );
      const acks = r.json?.acks as Record<string, unknown> | undefined;
      if (acks?.[String(ackId)] === true) return;
      if (performance.now() >= deadline)
        throw new HecDeliveryError(
          `HEC did not acknowledge ackId ${ackId} in time; sending again`,
          r.status,
          undefined,
        );
      interval = Math.min(maxInterval, interval * 2);
    }
  }

  /** Waits `ms` unless aborted. */
  private sleep(ms: number): Promise<void> {
    if (this.aborted || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(t);
        self.wakeSleep = null;
        resolve();
      }
      this.wakeSleep = done;
    });
  }

  private async post(url: URL, payload: string, isEvents: boolean): Promise<HecAnswer> {
    const wait = this.notBefore - performance.now();
    if (wait > 0) await this.sleep(wait);
    if (this.aborted) throw new Error('collector shutting down');
    const compress = isEvents && this.options.gzip !== false;
    const body = compress ? await gzip(payload) : Buffer.from(payload);
    const req = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const r = req(
        url,
        {
          method: 'POST',
          headers: {
            authorization: `Splunk ${this.options.token}`,
            'content-type': 'application/json',
            'content-length': body.length,
            'x-splunk-request-channel': this.channel,
            ...(compress ? { 'content-encoding': 'gzip' } : {}),
          },
          ...(this.options.ca ? { ca: this.options.ca } : {}),
          timeout: timeoutMs,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
            if (text.length > MAX_RESPONSE_BYTES)
              r.destroy(new Error(`HEC answer longer than ${MAX_RESPONSE_BYTES} bytes`));
          });
          res.on('end', () => {
            const ra = res.headers['retry-after'];
            resolve({
              status: res.statusCode ?? 0,
              body: text,
              json: parseJson(text),
              retryAfter: Array.isArray(ra) ? ra[0] : ra,
            });
          });
          res.on('error', reject);
        },
      );
      this.inflight.add(r);
      // `timeout` above is the socket's idle time: an answer trickled a byte at a time never
      // trips it, so the whole request also has that long at most.
      const whole = setTimeout(() => r.destroy(new Error('HEC request timed out')), timeoutMs);
      r.on('close', () => {
        clearTimeout(whole);
        this.inflight.delete(r);
      });
      r.on('timeout', () => r.destroy(new Error('HEC request timed out')));
      r.on('error', reject);
      r.end(body);
    });
  }

  abort(): void {
    this.aborted = true;
    this.wakeSleep?.();
    for (const r of this.inflight) r.destroy(new Error('collector shutting down'));
  }

  async close(): Promise<void> {
    this.abort();
  }
}
