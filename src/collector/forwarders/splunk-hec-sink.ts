/**
 * Owns the Splunk HTTP Event Collector forwarder: `POST <base>/services/collector/event` with
 * `Authorization: Splunk <token>` and a batch of concatenated JSON objects
 * `{time, host, source, sourcetype, event}` (HEC's batch format: objects back to back, here one
 * per line). Any answer other than 2xx, a network error or a timeout is a failure: the runner
 * retries the same batch with backoff, so nothing is skipped while Splunk is down or throttling.
 * The one exception: when HEC blames the data itself (400 with code 6/12/13), the batch is split
 * until the refused event is isolated; that event alone is dropped and counted.
 */
import { type ClientRequest, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { StoredEventRow } from '../collector-store.js';
import type { DeliveryResult, ForwarderSink } from './forwarder.js';

export interface SplunkHecSinkOptions {
  /** Base URL (`https://splunk:8088`) or the full event endpoint URL. */
  readonly url: string;
  readonly token: string;
  /** PEM CA to pin for an https URL; undefined = system CAs. */
  readonly ca?: string | Buffer;
  readonly source?: string;
  readonly sourcetype?: string;
  /** Splunk index; undefined = the token's default index. */
  readonly index?: string;
  /** One request's time limit, ms. */
  readonly timeoutMs?: number;
  /** Maps a stored event to the HEC `event` field (default: the event as received). */
  readonly transform?: (event: Record<string, unknown>) => unknown;
}

/**
 * HEC codes that blame the data, not the setup (docs.splunk.com "HTTP Event Collector status
 * codes"): 6 invalid data format, 12 event field is required, 13 event field cannot be blank.
 * Others, e.g. 7 incorrect index, are configuration errors: retried, never dropped.
 */
const HEC_DATA_CODES = new Set([6, 12, 13]);

function isDataFormatRefusal(body: string): boolean {
  try {
    const code = (JSON.parse(body) as { code?: unknown }).code;
    return typeof code === 'number' && HEC_DATA_CODES.has(code);
  } catch {
    return false;
  }
}

/** `device_id/id`: an event id is unique only within its device. */
function eventId(row: StoredEventRow | undefined): string {
  if (!row) return '';
  try {
    return `${row.device_id}/${String((JSON.parse(row.body) as { id?: unknown }).id ?? '')}`;
  } catch {
    return `${row.device_id}/`;
  }
}

/** HEC answers within seconds when healthy; a stuck request must not hold the cursor forever. */
const DEFAULT_TIMEOUT_MS = 15_000;
/** The response body is only read for the error message. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export class SplunkHecSink implements ForwarderSink {
  readonly name = 'splunk-hec';
  private readonly endpoint: URL;
  private readonly inflight = new Set<ClientRequest>();

  constructor(private readonly options: SplunkHecSinkOptions) {
    const u = new URL(options.url);
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/services/collector/event';
    this.endpoint = u;
  }

  async deliver(events: readonly StoredEventRow[]): Promise<DeliveryResult> {
    const { source = 'toolguard', sourcetype = 'toolguard:event', index, transform } = this.options;
    const parts: string[] = [];
    for (const row of events) {
      const ev = JSON.parse(row.body) as Record<string, unknown>;
      const ms = Date.parse(String(ev.time));
      parts.push(
        JSON.stringify({
          time: Number.isFinite(ms) ? ms / 1000 : Date.parse(row.received_at) / 1000,
          host: typeof ev.hostname === 'string' ? ev.hostname : row.device_id,
          source,
          sourcetype,
          ...(index ? { index } : {}),
          event: transform ? transform(ev) : ev,
        }),
      );
    }
    return this.send(parts, events);
  }

  /**
   * Posts `parts`; on a data-format refusal splits the batch to find the event(s) HEC refuses, so
   * one poison event is dropped (and counted) instead of blocking the sink forever. Any other
   * failure throws (the runner retries the whole batch later).
   */
  private async send(parts: readonly string[], rows: readonly StoredEventRow[]): Promise<DeliveryResult> {
    const { status, body } = await this.post(parts.join('\n'));
    if (status >= 200 && status < 300) return { dropped: 0 };
    if (status === 400 && isDataFormatRefusal(body)) {
      if (parts.length === 1) return { dropped: 1, droppedIds: [eventId(rows[0])] };
      const mid = Math.ceil(parts.length / 2);
      const a = await this.send(parts.slice(0, mid), rows.slice(0, mid));
      const b = await this.send(parts.slice(mid), rows.slice(mid));
      return {
        dropped: a.dropped + b.dropped,
        droppedIds: [...(a.droppedIds ?? []), ...(b.droppedIds ?? [])],
      };
    }
    throw new Error(`HEC answered ${status}: ${body.slice(0, 200)}`);
  }

  private post(payload: string): Promise<{ status: number; body: string }> {
    const u = this.endpoint;
    const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const r = req(
        u,
        {
          method: 'POST',
          headers: {
            authorization: `Splunk ${this.options.token}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
          },
          ...(this.options.ca ? { ca: this.options.ca } : {}),
          timeout: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            if (body.length < MAX_RESPONSE_BYTES) body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        },
      );
      this.inflight.add(r);
      r.on('close', () => this.inflight.delete(r));
      r.on('timeout', () => r.destroy(new Error('HEC request timed out')));
      r.on('error', reject);
      r.end(payload);
    });
  }

  abort(): void {
    for (const r of this.inflight) r.destroy(new Error('collector shutting down'));
  }

  async close(): Promise<void> {
    this.abort();
  }
}
