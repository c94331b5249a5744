/**
 * Owns fetching the signed policy from `policy.url` (default: the collector's `GET /v1/policy`) on
 * a node-cron schedule with random jitter, and on demand (SIGHUP, `policy.reload`). A download is
 * hostile input: the body is capped by counting bytes as they stream (not by trusting
 * Content-Length), the whole request — connect, redirects and body — is time-limited, at most
 * MAX_REDIRECTS redirects are followed (never https → http), and anything but 200 with a JSON
 * content type, or 304, is a failure. What arrives is handed to the PolicyManager, which verifies it.
 *
 * With a shadow URL (the collector's `GET /v1/policy/shadow`), every refresh fetches the shadow
 * candidate right after the enforced policy, the same way (caps, redirects, ETag) into its own
 * manager; 204 or 404 there means "no shadow" and the manager drops the one it held. A failed or
 * refused shadow never touches the enforced policy.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import http from 'node:http';
import https from 'node:https';
import cron, { type ScheduledTask } from 'node-cron';
import { errorMessage, GuardError, isGuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { ControlMethods } from '../control/protocol.js';
import type { PolicyManager } from './policy-manager.js';

/** Redirects followed at most: a collector behind one or two hops works, a loop fails fast. */
const MAX_REDIRECTS = 3;

/**
 * Every header the policy fetch sets (Node adds host and connection); listed by `guardctl explain`
 * through src/shipping/agent-requests.ts. if-none-match only once a policy is in force.
 */
export const POLICY_FETCH_HEADERS: readonly { readonly name: string; readonly value: string }[] = [
  { name: 'accept', value: 'application/json' },
  { name: 'user-agent', value: 'toolguard-guardd' },
  { name: 'if-none-match', value: 'the ETag of the policy in force' },
];

/** Content types accepted for an envelope (parameters such as charset ignored). */
const JSON_CONTENT_TYPE = /^application\/(?:[a-z0-9.+-]+\+)?json$/i;

export interface PolicyUpdaterOptions {
  readonly manager: PolicyManager;
  /** http(s) URL of the signed envelope. */
  readonly url: string;
  /** node-cron schedule of fetches. */
  readonly cron: string;
  /** Up to this many seconds of random delay before each scheduled fetch (spreads a fleet's load). */
  readonly jitterS: number;
  /** Time limit of one whole fetch (redirects and body included), ms. */
  readonly timeoutMs: number;
  /** Size cap of the body, bytes. */
  readonly maxBytes: number;
  /** PEM CA bundle pinned for https (instead of the system CAs). */
  readonly caFile?: string;
  /** The shadow channel: its manager and URL (absent = no shadow fetched). */
  readonly shadow?: { readonly manager: PolicyManager; readonly url: string };
  /** Called once per request that got an answer (guardd's record of what it sent). */
  readonly onAnswered?: () => void;
  readonly logger: Logger;
}

export type RefreshStatus = 'applied' | 'unchanged' | 'not-modified' | 'rejected' | 'failed';

export interface RefreshResult {
  readonly status: RefreshStatus | 'none';
  readonly version?: number;
  readonly error?: { readonly code: string; readonly message: string };
  /** The shadow channel's refresh (`none`: the server has no shadow). Absent without a shadow URL. */
  readonly shadow?: RefreshResult;
}

type FetchOutcome =
  | { readonly kind: 'not-modified' }
  | { readonly kind: 'none' }
  | { readonly kind: 'body'; readonly body: Buffer; readonly etag: string | null };

/** One fetched channel: where from, into which manager, and the ETag of what it holds. */
interface Channel {
  readonly manager: PolicyManager;
  readonly url: URL;
  /** 204/404 mean "none" (the shadow); for the enforced policy they are failures. */
  readonly optional: boolean;
  /** ETag of the body last applied (or found unchanged); sent as If-None-Match. */
  etag: string | null;
}

export class PolicyUpdater {
  private readonly enforced: Channel;
  private readonly shadow: Channel | null;
  private readonly ca: string | undefined;
  private task: ScheduledTask | null = null;
  private jitterTimer: NodeJS.Timeout | null = null;
  private inFlight: Promise<RefreshResult> | null = null;
  private readonly log: Logger;

  constructor(private readonly options: PolicyUpdaterOptions) {
    this.log = options.logger;
    this.enforced = { manager: options.manager, url: httpUrl(options.url), optional: false, etag: null };
    this.shadow = options.shadow
      ? { manager: options.shadow.manager, url: httpUrl(options.shadow.url), optional: true, etag: null }
      : null;
    if (!cron.validate(options.cron)) {
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `policy.refresh_cron ${JSON.stringify(options.cron)} is not a valid cron expression`,
      );
    }
    try {
      this.ca = options.caFile ? readFileSync(options.caFile, 'utf8') : undefined;
    } catch (err) {
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `collector.ca_file cannot be read: ${errorMessage(err)}`,
      );
    }
  }

  /** Starts the schedule (each tick waits a random 0..jitterS s, then fetches). Idempotent. */
  start(): void {
    if (this.task) return;
    this.task = cron.schedule(this.options.cron, () => {
      if (this.jitterTimer) return; // the previous tick is still waiting its jitter
      const delay = Math.floor(Math.random() * this.options.jitterS * 1000);
      this.jitterTimer = setTimeout(() => {
        this.jitterTimer = null;
        void this.refreshNow();
      }, delay);
      this.jitterTimer.unref();
    });
  }

  /** Stops the schedule and any pending jittered fetch (an in-flight fetch finishes). Idempotent. */
  stop(): void {
    if (this.jitterTimer) clearTimeout(this.jitterTimer);
    this.jitterTimer = null;
    void this.task?.destroy();
    this.task = null;
  }

  /**
   * Fetches and applies now. Concurrent calls share one fetch. Never rejects: failures are a
   * `failed` / `rejected` result (and recorded in the manager's status and events).
   */
  refreshNow(): Promise<RefreshResult> {
    this.inFlight ??= this.refresh().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private async refresh(): Promise<RefreshResult> {
    const enforced = await this.refreshChannel(this.enforced);
    if (!this.shadow) return enforced;
    return { ...enforced, shadow: await this.refreshChannel(this.shadow) };
  }

  private async refreshChannel(ch: Channel): Promise<RefreshResult> {
    const { manager } = ch;
    let outcome: FetchOutcome;
    try {
      outcome = await this.fetch(ch);
    } catch (err) {
      const error = isGuardError(err) ? err : new GuardError('GUARD_POLICY_FETCH_FAILED', errorMessage(err));
      manager.recordFetch({ code: error.code, message: error.message });
      this.log.warn({ code: error.code, err: error.message, url: ch.url.href }, 'policy fetch failed');
      return { status: 'failed', error: { code: error.code, message: error.message } };
    }
    manager.recordFetch(null);
    if (outcome.kind === 'none') {
      manager.clear(ch.url.href);
      ch.etag = null;
      return { status: 'none' };
    }
    if (outcome.kind === 'not-modified') {
      const version = manager.current()?.body.version;
      return version === undefined ? { status: 'not-modified' } : { status: 'not-modified', version };
    }
    const result = manager.applyEnvelope(outcome.body, ch.url.href);
    if (!result.ok) {
      return { status: 'rejected', error: { code: result.error.code, message: result.error.message } };
    }
    ch.etag = outcome.etag;
    return { status: result.changed ? 'applied' : 'unchanged', version: result.version };
  }

  /** One GET of `ch` with redirects, the whole of it bounded by timeoutMs. */
  private fetch(ch: Channel): Promise<FetchOutcome> {
    return new Promise<FetchOutcome>((resolve, reject) => {
      let settled = false;
      let current: http.ClientRequest | null = null;
      const finish = (err: Error | null, value?: FetchOutcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          current?.destroy();
          reject(err);
        } else resolve(value as FetchOutcome);
      };
      const timer = setTimeout(
        () =>
          finish(
            new GuardError(
              'GUARD_POLICY_FETCH_FAILED',
              `policy fetch timed out after ${this.options.timeoutMs} ms`,
              {
                url: ch.url.href,
              },
            ),
          ),
        this.options.timeoutMs,
      );
      timer.unref();

      const get = (url: URL, hops: number): void => {
        const headers: Record<string, string> = {};
        for (const h of POLICY_FETCH_HEADERS) {
          if (h.name !== 'if-none-match') headers[h.name] = h.value;
          // Only ask for 304 when a policy is in force: otherwise we need the body.
          else if (ch.etag && ch.manager.current()) headers[h.name] = ch.etag;
        }
        const lib = url.protocol === 'https:' ? https : http;
        const req = lib.get(
          url,
          { headers, ...(url.protocol === 'https:' && this.ca ? { ca: this.ca } : {}) },
          (res) => {
            this.options.onAnswered?.();
            onResponse(res, url, hops);
          },
        );
        current = req;
        req.on('error', (err) =>
          finish(
            new GuardError(
              'GUARD_POLICY_FETCH_FAILED',
              `policy fetch from ${url.href} failed: ${err.message}`,
            ),
          ),
        );
      };

      const onResponse = (res: IncomingMessage, url: URL, hops: number): void => {
        const status = res.statusCode ?? 0;
        if ([301, 302, 303, 307, 308].includes(status)) {
          res.resume();
          const location = res.headers.location;
          if (hops >= MAX_REDIRECTS) {
            finish(new GuardError('GUARD_POLICY_FETCH_FAILED', `more than ${MAX_REDIRECTS} redirects`));
            return;
          }
          let next: URL;
          try {
            next = new URL(location ?? '', url);
          } catch {
            finish(new GuardError('GUARD_POLICY_FETCH_FAILED', 'redirect without a valid Location'));
            return;
          }
          if (!location || (next.protocol !== 'https:' && next.protocol !== 'http:')) {
            finish(new GuardError('GUARD_POLICY_FETCH_FAILED', 'redirect without a valid http(s) Location'));
            return;
          }
          if (url.protocol === 'https:' && next.protocol !== 'https:') {
            finish(new GuardError('GUARD_POLICY_FETCH_FAILED', 'refusing a redirect from https to http'));
            return;
          }
          get(next, hops + 1);
          return;
        }
        if (status === 304) {
          res.resume();
          finish(null, { kind: 'not-modified' });
          return;
        }
        if (ch.optional && (status === 204 || status === 404)) {
          res.resume();
          finish(null, { kind: 'none' });
          return;
        }
        if (status !== 200) {
          res.resume();
          finish(
            new GuardError('GUARD_POLICY_FETCH_FAILED', `policy server answered HTTP ${status}`, { status }),
          );
          return;
        }
        const type = (res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
        if (type !== '' && !JSON_CONTENT_TYPE.test(type)) {
          res.resume();
          finish(
            new GuardError(
              'GUARD_POLICY_FETCH_FAILED',
              `policy server answered ${type.slice(0, 100)}, not JSON`,
            ),
          );
          return;
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > this.options.maxBytes) {
          res.destroy();
          finish(tooLarge(this.options.maxBytes));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.options.maxBytes) {
            res.destroy();
            finish(tooLarge(this.options.maxBytes));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err) =>
          finish(new GuardError('GUARD_POLICY_FETCH_FAILED', `policy download failed: ${err.message}`)),
        );
        res.on('end', () => {
          const etag = res.headers.etag;
          finish(null, {
            kind: 'body',
            body: Buffer.concat(chunks),
            etag: typeof etag === 'string' ? etag : null,
          });
        });
      };

      get(ch.url, 0);
    });
  }
}

/** `url` parsed, or GUARD_CONFIG_INVALID_VALUE when it is not an http(s) URL. */
function httpUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new GuardError('GUARD_CONFIG_INVALID_VALUE', `policy.url ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new GuardError('GUARD_CONFIG_INVALID_VALUE', `policy.url must be http(s), got ${u.protocol}`);
  return u;
}

function tooLarge(max: number): GuardError {
  return new GuardError('GUARD_POLICY_TOO_LARGE', `policy download exceeds the ${max}-byte cap`, {
    max_bytes: max,
  });
}

/**
 * The control methods of the policy: `policy.reload` (admin: fetch and apply now) and `policy.show`
 * (public: the status and the body of the policy in force — a ban list is not a secret on the
 * machine it is enforced on).
 */
export function policyControlMethods(
  updater: PolicyUpdater | null,
  manager: PolicyManager,
  shadow?: PolicyManager,
): ControlMethods {
  return {
    'policy.reload': {
      admin: true,
      summary: 'Fetch the policy now and apply it if it verifies',
      handle: async () =>
        updater
          ? updater.refreshNow()
          : ({
              status: 'failed',
              error: { code: 'GUARD_POLICY_FETCH_FAILED', message: 'no policy URL configured' },
            } satisfies RefreshResult),
    },
    'policy.show': {
      admin: false,
      summary: 'The policy in force: status and body',
      handle: () => ({ status: manager.status(), body: manager.current()?.body ?? null }),
    },
    'policy.shadow': {
      admin: false,
      summary: 'The shadow policy (evaluated, never acted on): status and body',
      handle: () => ({
        status: shadow?.status() ?? null,
        body: shadow?.current()?.body ?? null,
      }),
    },
  };
}
