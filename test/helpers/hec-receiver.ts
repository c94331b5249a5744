/**
 * A Splunk HTTP Event Collector stand-in on 127.0.0.1 that answers the way HEC documents it
 * ("HTTP Event Collector status codes", "About HEC Indexer Acknowledgment", "Troubleshoot HEC"):
 *
 * - `POST /services/collector/event` with `Authorization: Splunk <token>` (401 code 2 without, 403
 *   code 4 for a wrong one), a body of JSON objects back to back, optionally gzip-compressed;
 * - indexer acknowledgement (`ack: true`): a request without a channel (`X-Splunk-Request-Channel`
 *   header or `?channel=`) gets 400 code 10; a good one gets `{"code":0,"ackId":N}` (ids counted per
 *   channel) and `POST /services/collector/ack` `{"acks":[…]}` answers `{"acks":{"N":true|false}}`.
 *   `ackMode` `immediate` indexes at once; `lost` never indexes (the sink must re-send);
 * - partial indexing: the events before a bad one are indexed, the answer is 400 with code 6
 *   (unparsable, or `poison(event)` true), 12 (no `event` field) or 13 (blank `event`) and
 *   `invalid-event-number` (0-based index of the bad event in the request); nothing after it is
 *   (`reportsInvalidEventNumber: false`: an older HEC that indexes nothing of a refused request);
 * - 413 when the (decompressed) body exceeds `maxContentLength`;
 * - `busy(n, retryAfterS)`: the next n event requests get 503 code 9 with `Retry-After`; `down`
 *   answers 503 code 9 without it; `refuse` answers every event request with a given status/code
 *   (e.g. 400 code 7, incorrect index); `stall` holds answers until `release()`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** Returned once an answer was sent (lets handlers `return send(…)`). */
type Answered = true;

/** The `poison` of tests: an event whose own hostname is `poison.test` (whatever HEC \`host\` it went under). */
export function isPoisoned(obj: Record<string, unknown>): boolean {
  return (obj.event as { hostname?: unknown } | undefined)?.hostname === 'poison.test';
}

export interface HecReceiverOptions {
  readonly token?: string;
  readonly ack?: boolean;
  readonly ackMode?: 'immediate' | 'lost';
  /** Largest accepted (decompressed) body, bytes. */
  readonly maxContentLength?: number;
  /** An event HEC refuses as data (code 6). */
  readonly poison?: (obj: Record<string, unknown>) => boolean;
  /** Includes `invalid-event-number` in data refusals (real HEC does; false = an older HEC). */
  readonly reportsInvalidEventNumber?: boolean;
}

/** One HTTP request as HEC saw it. */
export interface HecRequestRecord {
  readonly path: string;
  readonly status: number;
  readonly authorization: string | undefined;
  readonly channel: string | undefined;
  readonly contentEncoding: string | undefined;
  /** Milliseconds on a monotonic clock (performance.now) when the request ended. */
  readonly at: number;
  readonly bodyBytes: number;
}

export class HecReceiver {
  /** Every indexed HEC event object (`{time, host, source, sourcetype, index?, event}`), in order. */
  readonly events: Record<string, unknown>[] = [];
  readonly requests: HecRequestRecord[] = [];
  readonly token: string;
  ackMode: 'immediate' | 'lost';
  poison: ((obj: Record<string, unknown>) => boolean) | undefined;
  maxContentLength: number;
  /** Answers every event request with 503 code 9 (no Retry-After) while true. */
  down = false;
  /** Answers every event request with this while set. */
  refuse: { status: number; code: number; text: string } | null = null;
  /** Holds every answer until `release()` while true. */
  stall = false;
  private stalled: (() => void)[] = [];
  private busyLeft = 0;
  private busyRetryAfterS = 0;
  private readonly ackState = new Map<string, { next: number; indexed: Map<number, boolean> }>();
  private server!: Server;
  url = '';

  constructor(private readonly options: HecReceiverOptions = {}) {
    this.token = options.token ?? `hec-${randomUUID()}`;
    this.ackMode = options.ackMode ?? 'immediate';
    this.poison = options.poison;
    this.maxContentLength = options.maxContentLength ?? 1024 * 1024 * 1024;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The next `n` event requests get 503 code 9 with `Retry-After: retryAfterS`. */
  busy(n: number, retryAfterS: number): void {
    this.busyLeft = n;
    this.busyRetryAfterS = retryAfterS;
  }

  /** Event requests by answer status. */
  eventRequests(status?: number): HecRequestRecord[] {
    return this.requests.filter(
      (r) => r.path === '/services/collector/event' && (status === undefined || r.status === status),
    );
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://x');
      const channel =
        (req.headers['x-splunk-request-channel'] as string | undefined) ??
        url.searchParams.get('channel') ??
        undefined;
      const send = (
        status: number,
        body: Record<string, unknown>,
        headers: Record<string, string> = {},
      ): Answered => {
        this.requests.push({
          path: url.pathname,
          status,
          authorization: req.headers.authorization,
          channel,
          contentEncoding: req.headers['content-encoding'],
          at: performance.now(),
          bodyBytes: raw.length,
        });
        res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
        return true;
      };
      if (this.stall) {
        this.stalled.push(() => this.answer(req, res, raw, url, channel, send));
        return;
      }
      this.answer(req, res, raw, url, channel, send);
    });
  }

  /** Answers held by `stall`. */
  get stalledCount(): number {
    return this.stalled.length;
  }

  /** Sends the answers held so far (and stops holding new ones only if `stall` was cleared). */
  release(): void {
    const pending = this.stalled;
    this.stalled = [];
    for (const a of pending) a();
  }

  private answer(
    req: IncomingMessage,
    _res: ServerResponse,
    raw: Buffer,
    url: URL,
    channel: string | undefined,
    send: (status: number, body: Record<string, unknown>, headers?: Record<string, string>) => Answered,
  ): Answered {
    {
      const auth = req.headers.authorization;
      if (!auth) return send(401, { text: 'Token is required', code: 2 });
      if (auth !== `Splunk ${this.token}`) return send(403, { text: 'Invalid token', code: 4 });
      if (url.pathname === '/services/collector/ack') return this.answerAck(raw, channel, send);
      if (url.pathname !== '/services/collector/event') return send(404, { text: 'Not found', code: 404 });
      if (this.down) return send(503, { text: 'Server is busy', code: 9 });
      if (this.refuse) return send(this.refuse.status, { text: this.refuse.text, code: this.refuse.code });
      if (this.busyLeft > 0) {
        this.busyLeft--;
        return send(
          503,
          { text: 'Server is busy', code: 9 },
          { 'retry-after': String(this.busyRetryAfterS) },
        );
      }
      if (this.options.ack && !channel) return send(400, { text: 'Data channel is missing', code: 10 });
      let body: Buffer;
      try {
        body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
      } catch {
        return send(400, { text: 'Invalid data format', code: 6 });
      }
      if (body.length > this.maxContentLength) return send(413, { text: 'Content too large', code: 27 });
      const objects = splitObjects(body.toString('utf8'));
      if (objects.length === 0) return send(400, { text: 'No data', code: 5 });
      const accepted: Record<string, unknown>[] = [];
      for (const [i, text] of objects.entries()) {
        const refusal = this.check(text);
        if (refusal) {
          // HEC indexes what precedes the bad event and stops there (the older HEC modelled by
          // reportsInvalidEventNumber: false indexes nothing of the request)
          if (this.options.reportsInvalidEventNumber !== false) this.events.push(...accepted);
          return send(400, {
            ...refusal,
            ...(this.options.reportsInvalidEventNumber === false ? {} : { 'invalid-event-number': i }),
          });
        }
        accepted.push(JSON.parse(text) as Record<string, unknown>);
      }
      if (!this.options.ack) {
        this.events.push(...accepted);
        return send(200, { text: 'Success', code: 0 });
      }
      const state = this.channelState(channel as string);
      const ackId = state.next++;
      const indexed = this.ackMode === 'immediate';
      if (indexed) this.events.push(...accepted);
      state.indexed.set(ackId, indexed);
      return send(200, { text: 'Success', code: 0, ackId });
    }
  }

  private check(text: string): { text: string; code: number } | null {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      return { text: 'Invalid data format', code: 6 };
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
      return { text: 'Invalid data format', code: 6 };
    const o = obj as Record<string, unknown>;
    if (!('event' in o)) return { text: 'Event field is required', code: 12 };
    if (o.event === '' || o.event === null) return { text: 'Event field cannot be blank', code: 13 };
    if (this.poison?.(o)) return { text: 'Invalid data format', code: 6 };
    return null;
  }

  private channelState(channel: string): { next: number; indexed: Map<number, boolean> } {
    let s = this.ackState.get(channel);
    if (!s) {
      s = { next: 0, indexed: new Map() };
      this.ackState.set(channel, s);
    }
    return s;
  }

  private answerAck(
    raw: Buffer,
    channel: string | undefined,
    send: (status: number, body: Record<string, unknown>) => Answered,
  ): Answered {
    if (!this.options.ack) return send(400, { text: 'ACK is disabled', code: 14 });
    if (!channel) return send(400, { text: 'Data channel is missing', code: 10 });
    let ids: unknown;
    try {
      ids = (JSON.parse(raw.toString('utf8')) as { acks?: unknown }).acks;
    } catch {
      return send(400, { text: 'Invalid data format', code: 6 });
    }
    if (!Array.isArray(ids)) return send(400, { text: 'Invalid data format', code: 6 });
    const state = this.channelState(channel);
    const acks: Record<string, boolean> = {};
    for (const id of ids) acks[String(id)] = state.indexed.get(Number(id)) === true;
    return send(200, { acks });
  }

  async close(): Promise<void> {
    this.stall = false;
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** HEC's batch format: JSON objects back to back (whitespace between them allowed). */
function splitObjects(body: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let inString = false;
  let start = -1;
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (ch === '}') {
      depth--;
      if (depth === 0) out.push(body.slice(start, i + 1));
    } else if (depth === 0 && !/\s/.test(ch ?? '')) {
      // garbage between objects: one unparsable "event"
      const end = body.indexOf('{', i);
      out.push(body.slice(i, end < 0 ? body.length : end));
      if (end < 0) break;
      i = end - 1;
    }
  }
  return out;
}
