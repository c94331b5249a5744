/**
 * Owns who may use the browser console: logging in with a credential (the admin token → role
 * admin, the viewer token → role viewer; anything else, a device token included, is refused),
 * the session cookie, the CSRF token of a session, the same-origin check of state-changing
 * requests, and the rate limits of logins (failed ones, and sessions opened).
 *
 * A session is 32 random bytes (base64url) held only by the browser, in an `HttpOnly`,
 * `SameSite=Strict` cookie scoped to `/console` (over TLS: `__Host-tg_console`, `Secure`,
 * `Path=/`, which no other host can set); the store
 * keeps HMAC-SHA256(credential of its role, secret) (`sessionKey`, ConsoleSessions), so a copy of
 * the database opens no session, and replacing the admin or viewer token (or removing the viewer
 * token) ends every session opened with the old one at once instead of at its expiry — a rotated
 * token is a revoked one. Sessions live in the store, so every collector on a shared database
 * (with the same tokens) accepts them. The CSRF token is
 * HMAC-SHA256(session secret, "csrf"): the page reads it from `GET /console/api/session` and sends
 * it as `x-csrf-token`; another site can neither read it nor compute it.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { secretEquals } from '../auth.js';
import { HttpError } from '../http-error.js';
import { sourceKey, TokenBucketLimiter } from '../rate-limit.js';
import type { ConsoleRole, ConsoleSession, ConsoleSessions } from '../store/port.js';

/** The session cookie's name over plain HTTP. */
export const SESSION_COOKIE = 'tg_console';
/**
 * The session cookie's name over TLS: the `__Host-` prefix makes browsers refuse it unless it is
 * `Secure`, `Path=/` and without `Domain` from this very host — so a sibling subdomain (or a
 * plain-HTTP man in the middle) cannot toss one in: neither a session of its own choosing (login
 * fixation) nor a second cookie that locks the user out. The unprefixed name is not read then.
 */
export const SECURE_SESSION_COOKIE = '__Host-tg_console';
/** Random bytes of a session secret: 256 bits, unguessable. */
const SESSION_BYTES = 32;
/** A session secret is 43 base64url characters; anything else in the cookie is ignored unread. */
const SESSION_RE = /^[A-Za-z0-9_-]{43}$/;
/** A credential longer than this is refused unread: tokens are tens of characters. */
const MAX_CREDENTIAL_CHARS = 512;
/**
 * Failed logins per source address: 10 at once, then one every 6 s (600 an hour). Guessing a
 * 16+ character random token is hopeless at any rate; the limit keeps a guesser from loading the
 * collector and keeps the log of failures short.
 */
const LOGIN_FAILURE_BURST = 10;
const LOGIN_FAILURES_PER_S = 1 / 6;
/**
 * Sessions opened per source address: 20 at once, then one every 30 s (120 an hour). Every login
 * writes a session row that lives `console_session_ttl_s`: unbounded, the holder of any console
 * token — the read-only viewer's included — wrote ~750 rows a second, for 8 hours each, into the
 * database ingest commits to (reviewer). A team behind one NAT address still logs in at once.
 */
const LOGIN_BURST = 20;
const LOGINS_PER_S = 1 / 30;

/** What a request's session resolved to. */
export interface ConsoleIdentity {
  readonly role: ConsoleRole;
  /** The session secret (from the cookie): the key of the CSRF token. */
  readonly secret: string;
  readonly session: ConsoleSession;
}

export interface ConsoleAuthOptions {
  readonly store: ConsoleSessions;
  readonly adminToken: string;
  /** The viewer token; empty = no viewer login. */
  readonly viewerToken: string;
  /** Session lifetime in seconds. */
  readonly sessionTtlS: number;
  /** Served over TLS: the cookie gets `Secure`. */
  readonly tls: boolean;
  readonly now: () => number;
}

export class ConsoleAuth {
  private readonly failures = new TokenBucketLimiter({
    buckets: [{ capacity: LOGIN_FAILURE_BURST, refillPerS: LOGIN_FAILURES_PER_S }],
  });
  private readonly logins = new TokenBucketLimiter({
    buckets: [{ capacity: LOGIN_BURST, refillPerS: LOGINS_PER_S }],
  });

  constructor(private readonly options: ConsoleAuthOptions) {}

  /**
   * Checks a login body (`{"credential": "…"}`) and creates a session. Resolves with the secret
   * (for the cookie) and the session. Throws 401 `GUARD_CONSOLE_LOGIN_FAILED` for a wrong
   * credential, 429 `GUARD_CONSOLE_LOGIN_RATE_LIMITED` once the source's failures ran out.
   */
  async login(
    body: unknown,
    source: string | undefined,
  ): Promise<{ secret: string; session: ConsoleSession }> {
    const key = sourceKey(source);
    const failed = this.failures.check(key);
    const allowance = failed.allowed ? this.logins.check(key) : failed;
    if (!allowance.allowed)
      throw new HttpError(
        429,
        'GUARD_CONSOLE_LOGIN_RATE_LIMITED',
        failed.allowed ? 'too many logins from this address' : 'too many failed logins from this address',
        allowance.retryAfterS,
      );
    const b = body as Record<string, unknown> | null;
    if (!b || typeof b !== 'object' || Array.isArray(b) || Object.keys(b).some((k) => k !== 'credential'))
      throw new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', 'the body must be {"credential": "<token>"}');
    const credential = b.credential;
    if (typeof credential !== 'string' || credential.length === 0 || credential.length > MAX_CREDENTIAL_CHARS)
      throw new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', '"credential" must be a token');
    const role = this.roleOf(credential);
    if (role === null) {
      this.failures.take(key);
      throw new HttpError(401, 'GUARD_CONSOLE_LOGIN_FAILED', 'wrong credential');
    }
    // taken before the write is awaited: concurrent logins cannot all pass the check
    this.logins.take(key);
    const secret = randomBytes(SESSION_BYTES).toString('base64url');
    const now = this.options.now();
    const session: ConsoleSession = {
      role,
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + this.options.sessionTtlS * 1000).toISOString(),
    };
    await this.options.store.createSession(sessionKey(secret, this.credentialOf(role)), session);
    return { secret, session };
  }

  /** The request's live session; throws 401 `GUARD_CONSOLE_UNAUTHENTICATED` when there is none. */
  async identify(req: FastifyRequest): Promise<ConsoleIdentity> {
    const secret = sessionSecretOf(req.headers.cookie, this.cookieName());
    if (secret !== null) {
      const at = new Date(this.options.now()).toISOString();
      // keyed by each role's current credential: a session of a replaced token is found under neither
      for (const role of this.roles()) {
        const session = await this.options.store.sessionByHash(
          sessionKey(secret, this.credentialOf(role)),
          at,
        );
        if (session?.role === role) return { role, secret, session };
      }
    }
    throw new HttpError(401, 'GUARD_CONSOLE_UNAUTHENTICATED', 'not logged in, or the session expired');
  }

  /** Ends the session of `id` (safe when it is already gone). */
  async logout(id: ConsoleIdentity): Promise<void> {
    await this.options.store.deleteSession(sessionKey(id.secret, this.credentialOf(id.role)));
  }

  /** The `Set-Cookie` value that stores `secret` (or, for null, clears the cookie). */
  cookie(secret: string | null): string {
    const name = this.cookieName();
    // __Host- requires Path=/ (the agent and admin routes ignore cookies)
    const attrs = [this.options.tls ? 'Path=/' : 'Path=/console', 'HttpOnly', 'SameSite=Strict'];
    if (this.options.tls) attrs.push('Secure');
    if (secret === null) return [`${name}=`, 'Max-Age=0', ...attrs].join('; ');
    return [`${name}=${secret}`, `Max-Age=${this.options.sessionTtlS}`, ...attrs].join('; ');
  }

  /** The session cookie's name on this listener (SECURE_SESSION_COOKIE over TLS). */
  cookieName(): string {
    return this.options.tls ? SECURE_SESSION_COOKIE : SESSION_COOKIE;
  }

  /** Forgets failure buckets that refilled (call periodically). */
  prune(): void {
    this.failures.prune();
    this.logins.prune();
  }

  /** The roles that can hold a session now: admin, and viewer when a viewer token is configured. */
  private roles(): ConsoleRole[] {
    return this.options.viewerToken === '' ? ['admin'] : ['admin', 'viewer'];
  }

  private credentialOf(role: ConsoleRole): string {
    return role === 'admin' ? this.options.adminToken : this.options.viewerToken;
  }

  private roleOf(credential: string): ConsoleRole | null {
    // both comparisons always run, so the time does not tell which token was close
    const admin = secretEquals(credential, this.options.adminToken);
    const viewer = this.options.viewerToken !== '' && secretEquals(credential, this.options.viewerToken);
    return admin ? 'admin' : viewer ? 'viewer' : null;
  }
}

/**
 * The store's key of a session: HMAC-SHA256(the credential that opened it, secret), hex. Neither
 * the secret nor the credential is in the database; a new credential makes old keys unreachable.
 */
export function sessionKey(secret: string, credential: string): string {
  return createHmac('sha256', credential).update(secret).digest('hex');
}

/** The CSRF token of a session: HMAC-SHA256(secret, "csrf"), base64url. */
export function csrfToken(secret: string): string {
  return createHmac('sha256', secret).update('csrf').digest('base64url');
}

/**
 * Refuses a state-changing request that a browser sent from another site: `Sec-Fetch-Site`, when
 * sent, must be `same-origin`, and `Origin`, when sent, must be this collector's own origin (the
 * scheme of the listener and the request's Host). Browsers send at least one of them on every
 * POST; a client without either is not a browser, and a cookie alone cannot come from one.
 * Throws 403 `GUARD_CONSOLE_CROSS_SITE`.
 */
export function assertSameOrigin(req: FastifyRequest, tls: boolean): void {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin')
    throw new HttpError(403, 'GUARD_CONSOLE_CROSS_SITE', `Sec-Fetch-Site is ${String(site).slice(0, 40)}`);
  const origin = req.headers.origin;
  if (origin !== undefined) {
    const own = `${tls ? 'https' : 'http'}://${req.headers.host ?? ''}`;
    if (origin !== own)
      throw new HttpError(
        403,
        'GUARD_CONSOLE_CROSS_SITE',
        `Origin ${origin.slice(0, 100)} is not this console`,
      );
  }
}

/** Refuses a state-changing request whose `x-csrf-token` is not its session's. Throws 403 `GUARD_CONSOLE_CSRF`. */
export function assertCsrf(req: FastifyRequest, identity: ConsoleIdentity): void {
  const sent = req.headers['x-csrf-token'];
  if (typeof sent !== 'string' || !secretEquals(sent, csrfToken(identity.secret)))
    throw new HttpError(403, 'GUARD_CONSOLE_CSRF', 'missing or wrong x-csrf-token header');
}

/** The session secret in a Cookie header's cookie `name`, or null (absent, malformed, or several). */
export function sessionSecretOf(header: string | undefined, name = SESSION_COOKIE): string | null {
  if (typeof header !== 'string' || header.length > 8192) return null;
  let found: string | null = null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim();
    // two session cookies (one planted by a sibling path or subdomain): trust neither
    if (found !== null || !SESSION_RE.test(value)) return null;
    found = value;
  }
  return found;
}
