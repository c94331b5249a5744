/**
 * Owns the Splunk HTTP Event Collector forwarder: `POST <base>/services/collector/event` with
 * `Authorization: Splunk <token>` and a batch of concatenated JSON objects
 * `{time, host, source, sourcetype, event}` (HEC's batch format: objects back to back, here one
 * per line). Any answer other than 2xx, a network error or a timeout is a failure: the runner
 * retries the same batch with backoff, so nothing is skipped while Splunk is down or throttling.
 */
import { type ClientRequest, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { StoredEventRow } from '../collector-store.js';
import type { ForwarderSink } from './forwarder.js';

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

  async deliver(events: readonly StoredEventRow[]): Promise<void> {
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
    const { status, body } = await this.post(parts.join('\n'));
    if (status < 200 || status >= 300) throw new Error(`HEC answered ${status}: ${body.slice(0, 200)}`);
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
