/**
 * Owns the agent's HTTP conversation with guard-collector (DESIGN.md "Collector API (v1)"):
 * enrolling (`POST /v1/enroll` → device token, kept in the device identity file, never logged) and posting
 * event batches (`POST /v1/events`, gzip NDJSON, bearer token). Every answer becomes a typed
 * result the shipper decides on — nothing here retries, sleeps or throws for a network problem.
 * TLS: when `caFile` is set, only that CA is trusted for the collector (pinned).
 */
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { platform, release } from 'node:os';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { AGENT_VERSION } from '../common/version.js';
import type { AgentEvent } from '../events/event-types.js';
import type { StateStore } from '../store/database.js';
import type { SentLog } from '../store/sent-log.js';
import { agentUserAgent, enrollBody } from './agent-requests.js';

const gzip = promisify(gzipCb);

/** A collector answer larger than this is not read further (an ack is a few hundred bytes; a 400 lists ≤ 1000 rejections). */
const MAX_RESPONSE_BYTES = 1024 * 1024;
/** A Retry-After beyond this (seconds) is treated as this: a broken header must not park the agent for days. */
const MAX_RETRY_AFTER_S = 24 * 3600;
/** An enroll secret file longer than this is cut (secrets are a few dozen characters). */
const MAX_SECRET_CHARS = 4096;
/** Key of the device token in the identity file (root only, 0600; the token is a bearer secret). */
export const STATE_DEVICE_TOKEN = 'collector.device_token';
/**
 * State key of the device id the token was issued for: when `device.id` changes (set by MDM after
 * the first enroll), the old token belongs to another device and the collector would refuse every
 * event as device_mismatch, so the token is not used and the agent enrolls again.
 */
export const STATE_DEVICE_TOKEN_DEVICE = 'collector.device_token_device';

export interface CollectorClientOptions {
  /** Base URL, e.g. https://collector.example:8443 (a path prefix is kept). */
  readonly url: string;
  /** PEM CA bundle to pin for https; empty/undefined = system CAs. */
  readonly caFile?: string;
  /** Time limit of one request, connect to last byte (ms). */
  readonly timeoutMs: number;
  /** Where the device token is kept (guardd: the device identity file, src/store/device-identity.ts). */
  readonly state: Pick<StateStore, 'get' | 'set'>;
  readonly deviceId: string;
  readonly hostname: string;
  /** Reported at enroll (≤ 64 chars); default `<platform> <release>` of this machine. */
  readonly os?: string;
  /** The enroll secret (`collector.enroll_secret`), or a function returning it. */
  readonly enrollSecret?: string | (() => string);
  /**
   * File holding the enroll secret (`collector.enroll_secret_file`), read at each enroll so a
   * rotated file is picked up; wins over `enrollSecret` when set.
   */
  readonly enrollSecretFile?: string;
  readonly agentVersion?: string;
  /** Told of every request that got an answer: kind, body bytes on the wire, events by type (the state DB's sent log). */
  readonly sent?: Pick<SentLog, 'record'>;
  readonly logger: Logger;
}

export interface Rejected {
  readonly id: string | null;
  readonly reason: string;
}

/** What one request came to. `status` is the HTTP status when there was one. */
export type PostResult =
  | {
      /** 200, or 400 listing rejected events (the valid rest of the batch was stored). */
      readonly kind: 'ok';
      readonly status: number;
      readonly accepted: number;
      readonly duplicates: number;
      /** Rejected events the collector named (at most the first 1000). */
      readonly rejected: readonly Rejected[];
      /** How many were rejected in all (≥ rejected.length). */
      readonly rejectedTotal: number;
    }
  /** 401/403: the token is unknown or revoked (or there is none yet): enroll again. */
  | { readonly kind: 'unauthorized'; readonly status: number; readonly message: string }
  /** 413: the batch is too large for the collector. */
  | { readonly kind: 'too_large'; readonly status: 413; readonly message: string }
  /** 429/503 (and 408): come back later, after `retryAfterS` when the collector said so. */
  | {
      readonly kind: 'retry_later';
      readonly status: number;
      readonly retryAfterS: number | null;
      readonly message: string;
    }
  /** Another 4xx: the collector refuses the request as a whole (not attributable to an event). */
  | { readonly kind: 'invalid'; readonly status: number; readonly message: string }
  /** 5xx (other than 503). */
  | { readonly kind: 'server_error'; readonly status: number; readonly message: string }
  /** Could not connect / connection broke / TLS failure. */
  | { readonly kind: 'network'; readonly message: string }
  | { readonly kind: 'timeout'; readonly message: string };

export type EnrollResult = { readonly kind: 'enrolled' } | Exclude<PostResult, { kind: 'ok' }>;

interface RawResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

export class CollectorClient {
  private readonly base: URL;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly log: Logger;
  private readonly agentVersion: string;

  constructor(private readonly options: CollectorClientOptions) {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch {
      throw new GuardError('GUARD_CONFIG_INVALID_VALUE', `collector.url "${options.url}" is not a URL`, {
        key: 'collector.url',
      });
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:')
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `collector.url must be http(s), got "${base.protocol}"`,
        {
          key: 'collector.url',
        },
      );
    if (options.caFile && base.protocol !== 'https:')
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `collector.ca_file is set but collector.url "${options.url}" is not https: the CA would not be pinned`,
        { key: 'collector.url' },
      );
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.base = base;
    this.log = options.logger.child({ component: 'shipping.client' });
    this.agentVersion = options.agentVersion ?? AGENT_VERSION;
    if (base.protocol === 'https:') {
      let ca: Buffer | undefined;
      if (options.caFile) {
        try {
          ca = readFileSync(options.caFile);
        } catch (err) {
          throw new GuardError(
            'GUARD_CONFIG_INVALID_VALUE',
            `collector.ca_file ${options.caFile} cannot be read: ${(err as Error).message}`,
            { key: 'collector.ca_file' },
          );
        }
      }
      this.agent = new HttpsAgent({ keepAlive: true, maxSockets: 2, ...(ca ? { ca } : {}) });
    } else {
      this.agent = new HttpAgent({ keepAlive: true, maxSockets: 2 });
    }
  }

  /** The collector base URL (for status and explain). */
  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  /** True when a device token for this device id is stored. */
  enrolled(): boolean {
    return this.token() !== null;
  }

  /** The stored device token, unless it was issued for another device id. */
  private token(): string | null {
    const token = this.options.state.get<string | null>(STATE_DEVICE_TOKEN);
    if (typeof token !== 'string') return null;
    const issuedFor = this.options.state.get<string | null>(STATE_DEVICE_TOKEN_DEVICE);
    return typeof issuedFor === 'string' && issuedFor !== this.options.deviceId ? null : token;
  }

  /** Forgets the device token (after the collector refused it). */
  forgetToken(): void {
    this.options.state.set(STATE_DEVICE_TOKEN, null);
  }

  /**
   * Enrolls this device with the enroll secret and stores the device token it returns (replacing
   * any previous one). Safe to call again: the collector issues a new token for the device.
   */
  async enroll(): Promise<EnrollResult> {
    let secret: string;
    try {
      secret = this.enrollSecret();
    } catch (err) {
      return { kind: 'invalid', status: 0, message: `enroll secret unreadable: ${(err as Error).message}` };
    }
    if (!secret) return { kind: 'invalid', status: 0, message: 'no enroll secret configured' };
    const body = JSON.stringify(
      enrollBody({
        secret,
        deviceId: this.options.deviceId,
        hostname: this.options.hostname,
        os: this.options.os ?? `${platform()} ${release()}`,
        agentVersion: this.agentVersion,
      }),
    );
    const bodyBytes = Buffer.from(body);
    const r = await this.send('v1/enroll', bodyBytes, { 'content-type': 'application/json' });
    if ('kind' in r) return r;
    this.options.sent?.record('enroll', bodyBytes.length);
    if (r.status === 200 || r.status === 201) {
      const parsed = parseJson(r.body) as { device_token?: unknown } | null;
      const token = parsed?.device_token;
      if (typeof token !== 'string' || token.length === 0 || token.length > 512)
        return { kind: 'invalid', status: r.status, message: 'enroll answer carries no device_token' };
      this.options.state.set(STATE_DEVICE_TOKEN, token);
      this.options.state.set(STATE_DEVICE_TOKEN_DEVICE, this.options.deviceId);
      this.log.info({ url: this.url }, 'enrolled with the collector');
      return { kind: 'enrolled' };
    }
    const classified = classify(r);
    if (classified.kind === 'ok')
      return { kind: 'invalid', status: r.status, message: 'unexpected enroll answer' };
    return classified;
  }

  /**
   * Posts one batch as gzip NDJSON with the device token. Resolves (never rejects) with the typed
   * result; `unauthorized` without a request when there is no token yet.
   */
  async postEvents(events: readonly AgentEvent[]): Promise<PostResult> {
    const token = this.token();
    if (token === null)
      return { kind: 'unauthorized', status: 0, message: 'not enrolled (for this device id)' };
    let ndjson = '';
    const sizes: { type: string; bytes: number }[] = [];
    for (const e of events) {
      const line = `${JSON.stringify(e)}\n`;
      ndjson += line;
      sizes.push({ type: e.type, bytes: Buffer.byteLength(line) });
    }
    const body = await gzip(Buffer.from(ndjson));
    const r = await this.send('v1/events', body, {
      'content-type': 'application/x-ndjson',
      'content-encoding': 'gzip',
      authorization: `Bearer ${token}`,
    });
    if ('kind' in r) return r;
    this.options.sent?.record('events', body.length, sizes);
    return classify(r);
  }

  private enrollSecret(): string {
    if (this.options.enrollSecretFile)
      return readFileSync(this.options.enrollSecretFile, 'utf8').slice(0, MAX_SECRET_CHARS).trim();
    const s = this.options.enrollSecret;
    return (typeof s === 'function' ? s() : (s ?? '')).trim();
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  private send(
    path: string,
    body: Buffer,
    headers: Record<string, string>,
  ): Promise<RawResponse | Extract<PostResult, { kind: 'network' | 'timeout' }>> {
    const url = new URL(path, this.base);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (v: RawResponse | Extract<PostResult, { kind: 'network' | 'timeout' }>): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(v);
      };
      const req = request(url, {
        method: 'POST',
        agent: this.agent,
        headers: {
          ...headers,
          'content-length': String(body.length),
          'user-agent': agentUserAgent(this.agentVersion),
        },
      });
      const timer = setTimeout(() => {
        settle({ kind: 'timeout', message: `no complete answer within ${this.options.timeoutMs} ms` });
        req.destroy();
      }, this.options.timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) =>
        settle({ kind: 'network', message: `${err.code ?? 'error'}: ${err.message}`.slice(0, 500) }),
      );
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_RESPONSE_BYTES) chunks.push(c);
        });
        res.on('error', (err) => settle({ kind: 'network', message: `answer broke off: ${err.message}` }));
        res.on('aborted', () => settle({ kind: 'network', message: 'answer broke off' }));
        res.on('end', () =>
          settle({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      });
      req.end(body);
    });
  }
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0;
}

function errorText(json: Record<string, unknown> | null, r: RawResponse): string {
  const e = json?.error;
  if (typeof e === 'string') return e.slice(0, 500);
  if (typeof e === 'object' && e !== null) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    return `${typeof message === 'string' ? message : 'error'}${typeof code === 'string' ? ` [${code}]` : ''}`.slice(
      0,
      500,
    );
  }
  return `HTTP ${r.status}`;
}

function rejectedList(v: unknown): Rejected[] | null {
  if (!Array.isArray(v)) return null;
  const out: Rejected[] = [];
  for (const x of v.slice(0, 10_000)) {
    if (typeof x !== 'object' || x === null) continue;
    const { id, reason } = x as { id?: unknown; reason?: unknown };
    out.push({
      id: typeof id === 'string' ? id : null,
      reason: typeof reason === 'string' ? reason.slice(0, 1000) : 'rejected',
    });
  }
  return out;
}

/** Seconds from a Retry-After header (delta-seconds or HTTP date); null when absent or unreadable. */
export function parseRetryAfter(header: string | string[] | undefined, nowMs = Date.now()): number | null {
  const h = Array.isArray(header) ? header[0] : header;
  if (!h) return null;
  const t = h.trim();
  if (/^\d+$/.test(t)) return Math.min(Number(t), MAX_RETRY_AFTER_S);
  const at = Date.parse(t);
  if (Number.isNaN(at)) return null;
  return Math.min(Math.max(0, Math.ceil((at - nowMs) / 1000)), MAX_RETRY_AFTER_S);
}

function classify(r: RawResponse): PostResult {
  const json = parseJson(r.body);
  const message = errorText(json, r);
  const isAck = json !== null && typeof json.accepted === 'number' && typeof json.duplicates === 'number';
  if (r.status >= 200 && r.status < 300) {
    // A 200 that is not an acknowledgement (a captive portal, a proxy's page) must not make the
    // agent delete events that were never stored.
    if (!isAck)
      return {
        kind: 'server_error',
        status: r.status,
        message: `HTTP ${r.status} without an acknowledgement`,
      };
    const rejected = rejectedList(json?.rejected) ?? [];
    return {
      kind: 'ok',
      status: r.status,
      accepted: count(json?.accepted),
      duplicates: count(json?.duplicates),
      rejected,
      rejectedTotal: Math.max(count(json?.rejected_total), rejected.length),
    };
  }
  if (r.status === 400) {
    const rejected = rejectedList(json?.rejected);
    if (isAck && rejected && rejected.length > 0)
      return {
        kind: 'ok',
        status: 400,
        accepted: count(json?.accepted),
        duplicates: count(json?.duplicates),
        rejected,
        rejectedTotal: Math.max(count(json?.rejected_total), rejected.length),
      };
    return { kind: 'invalid', status: 400, message };
  }
  if (r.status === 401 || r.status === 403) return { kind: 'unauthorized', status: r.status, message };
  if (r.status === 413) return { kind: 'too_large', status: 413, message };
  if (r.status === 429 || r.status === 503 || r.status === 408)
    return {
      kind: 'retry_later',
      status: r.status,
      retryAfterS: parseRetryAfter(r.headers['retry-after']),
      message,
    };
  if (r.status >= 500) return { kind: 'server_error', status: r.status, message };
  return { kind: 'invalid', status: r.status, message };
}
