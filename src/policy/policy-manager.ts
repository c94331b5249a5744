/**
 * Owns which policy is in force on this device: loading it at start (cached last-good envelope,
 * else the MDM bootstrap file, else none), applying updates with anti-rollback and equivocation
 * detection, noticing expiry (stale), and handing the compiled matcher to the pipeline in one step.
 *
 * Invariants:
 *  - a good policy is never replaced by nothing, nor by anything that failed verification;
 *  - the highest accepted version and its payload SHA-256 are persisted in the state DB before
 *    the new matcher is handed out, so a crash cannot leave the device accepting a rollback;
 *  - every accept and reject is recorded in `policy_history` (pruned to the newest rows).
 *
 * One manager per channel: `enforced` (the ban list acted on) and `shadow` (a candidate evaluated
 * beside it and never acted on, docs/policy.md "Shadow policies"). Both verify with the same
 * verifier, trusted keys, threshold and freshness; each channel keeps its own anti-rollback
 * (highest version), last-good cache and history rows, and the shadow's events carry
 * `channel: "shadow"`. Only the shadow can be cleared (the collector withdrew or promoted it):
 * `clear()` drops it and keeps its highest version, so an older shadow is still a rollback.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { errorMessage, GuardError, isGuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Platform } from '../common/platform-paths.js';
import type { PolicyStatus } from '../control/status.js';
import type { EventSink } from '../events/event-types.js';
import type { Db, StateStore } from '../store/database.js';
import { parseTrustedKeys, type TrustedKey } from './keys.js';
import { compileMatcher, type Matcher } from './matcher.js';
import type { PolicyBody, VerifiedPolicy } from './policy-types.js';
import { POLICY_SCHEMA_ID } from './policy-types.js';
import { isExpired, verifyPolicyEnvelope } from './policy-verifier.js';

/** The policy channels guardd fetches: the enforced ban list and the shadow candidate. */
export type PolicyChannel = 'enforced' | 'shadow';

/** State keys (the `state` table) of a channel; the enforced channel keeps the keys of before channels. */
function stateKeys(channel: PolicyChannel): { highest: string; lastGood: string; staleNotified: string } {
  const p = channel === 'enforced' ? 'policy.' : 'policy.shadow.';
  return { highest: `${p}highest`, lastGood: `${p}last_good`, staleNotified: `${p}stale_notified` };
}

/** Event `message`/`source` fields are cut to this many characters (the event schema caps them at 4096). */
const MAX_EVENT_MESSAGE_CHARS = 4000;

/** policy_history keeps this many newest rows: enough for forensics, bounded against a flood of rejects. */
const HISTORY_KEEP_ROWS = 1000;

export interface PolicyManagerOptions {
  readonly state: StateStore;
  readonly db: Db;
  /** Trusted public keys from the config (PEM or raw 32-byte base64). Invalid → GUARD_POLICY_KEY_INVALID at construction. */
  readonly trustedKeys: readonly string[];
  readonly threshold: number;
  readonly clockSkewS: number;
  /** Size cap of an envelope, bytes (also applied to the bootstrap file). */
  readonly maxBytes: number;
  readonly platform: Platform;
  /** Every local user's home (for `~` in path globs); called at each (re)compile. */
  readonly homes: () => readonly string[];
  /** Directories guardd owns here (state, sockets): no rule may quarantine in them (rule-safety.ts). */
  readonly protectedDirs?: readonly string[];
  readonly events: EventSink;
  readonly logger: Logger;
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  readonly now?: () => number;
  /**
   * Called with the new matcher every time the policy in force changes (and once from
   * loadInitial, even with no policy). Must swap atomically; must not throw.
   */
  readonly onChange: (matcher: Matcher, policy: VerifiedPolicy | null) => void;
  /** Which channel this manager holds (default `enforced`). */
  readonly channel?: PolicyChannel;
}

export type ApplyResult =
  | { readonly ok: true; readonly version: number; readonly changed: boolean }
  | { readonly ok: false; readonly error: GuardError };

interface Highest {
  readonly version: number;
  readonly sha256: string;
}

interface LastGood {
  readonly envelope: string;
  readonly source: string;
  readonly applied_at: string;
}

/** The matcher of "no policy": nothing matches, monitor mode. */
function emptyBody(): PolicyBody {
  return {
    schema: POLICY_SCHEMA_ID,
    version: 0,
    issued_at: '1970-01-01T00:00:00Z',
    expires_at: '1970-01-01T00:00:00Z',
    mode: 'monitor',
    rules: [],
  };
}

export class PolicyManager {
  private readonly trusted: readonly TrustedKey[];
  private readonly now: () => number;
  private readonly log: Logger;
  private policy: VerifiedPolicy | null = null;
  private compiled: Matcher;
  private source: string | null = null;
  /** The envelope text of the policy in force (for the unchanged fast path). */
  private textInForce: string | null = null;
  private stale = false;
  private lastFetchAt: string | null = null;
  private lastError: PolicyStatus['last_error'] = null;
  /** `${code}:${sha}` of the last rejection event, so a server re-serving one bad file is one event. */
  private lastRejectKey: string | null = null;
  private readonly insertHistory;
  private readonly pruneHistory;
  private readonly channel: PolicyChannel;
  private readonly keys: ReturnType<typeof stateKeys>;

  constructor(private readonly options: PolicyManagerOptions) {
    this.channel = options.channel ?? 'enforced';
    this.keys = stateKeys(this.channel);
    this.trusted = parseTrustedKeys(options.trustedKeys);
    this.now = options.now ?? Date.now;
    this.log = options.logger;
    this.compiled = compileMatcher(emptyBody(), { platform: options.platform, homes: [] });
    this.insertHistory = options.db.prepare(
      'INSERT INTO policy_history(version, sha256, received_at, outcome, reason, envelope, channel) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.pruneHistory = options.db.prepare(
      'DELETE FROM policy_history WHERE rowid <= (SELECT max(rowid) FROM policy_history) - ?',
    );
    if (this.channel === 'shadow') {
      // the enforced manager already warned about the keys
    } else if (this.trusted.length === 0) {
      this.log.warn('no trusted policy keys configured (policy.trusted_keys): every policy will be refused');
    } else if (this.trusted.length < options.threshold) {
      this.log.warn(
        { trusted: this.trusted.length, threshold: options.threshold },
        'policy.threshold exceeds the number of distinct trusted keys: every policy will be refused',
      );
    }
  }

  /**
   * Loads the policy in force at start: the cached last-good envelope (re-verified; merely expired
   * = enforced as stale), else the bootstrap file (same rule), else none (empty monitor-only
   * matcher, status `none`). Always calls onChange once. Never throws for bad input: it is logged,
   * recorded and reported in status.
   */
  loadInitial(bootstrapFile: string | null): void {
    const cached = this.options.state.get<LastGood | null>(this.keys.lastGood);
    if (cached && this.tryInitial(cached.envelope, cached.source, 'cache')) return;
    if (bootstrapFile) {
      const text = this.readBootstrap(bootstrapFile);
      if (text !== null && this.tryInitial(text, `file:${bootstrapFile}`, 'bootstrap')) return;
    }
    if (this.channel === 'shadow') {
      this.options.onChange(this.compiled, null);
      return;
    }
    this.log.error(
      'NO POLICY: no valid cached or bootstrap policy; running monitor-only with nothing to match',
    );
    this.options.onChange(this.compiled, null);
  }

  private readBootstrap(file: string): string | null {
    try {
      const size = statSync(file).size;
      if (size > this.options.maxBytes) {
        this.reject(
          new GuardError(
            'GUARD_POLICY_TOO_LARGE',
            `bootstrap policy ${file} is ${size} bytes, cap ${this.options.maxBytes}`,
          ),
          `file:${file}`,
          null,
        );
        return null;
      }
      return readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log.warn({ file, err: errorMessage(err) }, 'bootstrap policy file unreadable');
      }
      return null;
    }
  }

  private tryInitial(text: string, source: string, kind: 'cache' | 'bootstrap'): boolean {
    let verified: VerifiedPolicy;
    try {
      verified = this.verify(text, true);
    } catch (err) {
      const error = isGuardError(err)
        ? err
        : new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', errorMessage(err));
      if (kind === 'cache') {
        // E.g. the config stopped trusting its signer (key rotation finished). Fall through to bootstrap.
        this.log.warn({ code: error.code, err: error.message }, 'cached policy no longer verifies');
        try {
          this.recordHistory(0, sha256Hex(text), 'rejected', error.code, null);
        } catch (e) {
          this.log.warn({ err: errorMessage(e) }, 'cannot record policy rejection');
        }
      } else this.reject(error, source, text);
      return false;
    }
    if (kind === 'bootstrap') {
      const r = this.accept(verified, text, source, true);
      return r.ok;
    }
    this.install(verified, source, text);
    this.checkFreshness();
    this.log.info({ version: verified.body.version, source }, 'policy loaded from the local cache');
    return true;
  }

  /**
   * Verifies and applies an envelope received from `source` (a URL or `file:…`). On success the
   * matcher is swapped via onChange and `policy.applied` emitted; on failure the policy in force
   * stays and `policy.rejected` is emitted (reason = the error code). Never throws.
   */
  applyEnvelope(text: string | Buffer, source: string): ApplyResult {
    // The exact envelope in force, still fresh: nothing to verify again (trust cannot change at
    // run time), which keeps a server without ETags from costing a full verification per fetch.
    const policy = this.policy;
    if (
      policy &&
      !isExpired(policy.body, this.now()) &&
      this.textInForce === (typeof text === 'string' ? text : text.toString('utf8'))
    ) {
      this.lastError = null;
      return { ok: true, version: policy.body.version, changed: false };
    }
    let verified: VerifiedPolicy;
    try {
      verified = this.verify(text, false);
    } catch (err) {
      const error = isGuardError(err)
        ? err
        : new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', errorMessage(err));
      this.reject(error, source, text);
      return { ok: false, error };
    }
    return this.accept(verified, typeof text === 'string' ? text : text.toString('utf8'), source, false);
  }

  private verify(text: string | Buffer, allowStale: boolean): VerifiedPolicy {
    return verifyPolicyEnvelope(text, {
      trustedKeys: this.trusted,
      threshold: this.options.threshold,
      now: this.now(),
      clockSkewS: this.options.clockSkewS,
      maxBytes: this.options.maxBytes,
      allowStale,
      safety: { protectedDirs: this.options.protectedDirs ?? [] },
    });
  }

  private accept(verified: VerifiedPolicy, text: string, source: string, initial: boolean): ApplyResult {
    const { version } = verified.body;
    const persisted = this.options.state.get<Highest>(this.keys.highest);
    // The policy in force counts too, in case persisting it failed (see below).
    const inForce = this.policy
      ? { version: this.policy.body.version, sha256: this.policy.sha256 }
      : undefined;
    const highest = inForce && (!persisted || inForce.version > persisted.version) ? inForce : persisted;
    if (highest && version < highest.version) {
      const error = new GuardError(
        'GUARD_POLICY_ROLLBACK',
        `policy v${version} is older than v${highest.version}, the highest accepted on this device`,
        { version, highest: highest.version },
      );
      this.reject(error, source, text, version, verified.sha256);
      return { ok: false, error };
    }
    if (highest && version === highest.version && verified.sha256 !== highest.sha256) {
      const error = new GuardError(
        'GUARD_POLICY_EQUIVOCATION',
        `policy v${version} has different content than the v${version} accepted before (possible signing-key compromise or a publishing mistake)`,
        { version, sha256: verified.sha256, accepted_sha256: highest.sha256 },
      );
      this.reject(error, source, text, version, verified.sha256);
      return { ok: false, error };
    }
    if (this.policy && this.policy.sha256 === verified.sha256) {
      this.lastError = null;
      return { ok: true, version, changed: false };
    }
    const previous = this.policy?.body.version ?? null;
    try {
      this.options.state.transaction(() => {
        this.options.state.set(this.keys.highest, { version, sha256: verified.sha256 } satisfies Highest);
        this.options.state.set(this.keys.lastGood, {
          envelope: text,
          source,
          applied_at: new Date(this.now()).toISOString(),
        } satisfies LastGood);
        this.recordHistory(version, verified.sha256, 'accepted', null, text);
      });
    } catch (err) {
      // Disk full or I/O error: a valid newer policy is still enforced (refusing it would be
      // worse); anti-rollback then holds in memory until the next restart. Loud, because it matters.
      this.log.error(
        { err: errorMessage(err), version },
        'cannot persist the accepted policy in the state DB',
      );
    }
    this.install(verified, source, text);
    this.lastError = null;
    this.lastRejectKey = null;
    this.options.events.emit('policy.applied', {
      policy_version: version,
      previous_version: previous,
      sha256: verified.sha256,
      source,
      ...this.channelField(),
    });
    this.log.info(
      {
        version,
        previous,
        source,
        initial,
        signed_by: verified.signedBy,
        rules: this.compiled.ruleCount,
        channel: this.channel,
      },
      this.channel === 'shadow' ? 'shadow policy applied (evaluated, never acted on)' : 'policy applied',
    );
    this.checkFreshness();
    return { ok: true, version, changed: true };
  }

  /** Makes `verified` the policy in force: compile, swap via onChange, freshness state. */
  private install(verified: VerifiedPolicy, source: string, text: string): void {
    this.textInForce = text;
    const matcher = compileMatcher(verified.body, {
      platform: this.options.platform,
      homes: this.options.homes(),
    });
    this.policy = verified;
    this.source = source;
    this.compiled = matcher;
    this.stale = false;
    this.options.onChange(matcher, verified);
  }

  private reject(
    error: GuardError,
    source: string,
    text: string | Buffer | null,
    version: number | null = null,
    sha256: string | null = null,
  ): void {
    const peek = version === null && sha256 === null && text !== null ? peekEnvelope(text) : null;
    const claimedVersion = version ?? peek?.version ?? null;
    const payloadSha = sha256 ?? peek?.sha256 ?? null;
    const alert = error.code === 'GUARD_POLICY_EQUIVOCATION';
    this.lastError = { code: error.code, message: error.message, at: new Date(this.now()).toISOString() };
    try {
      this.recordHistory(claimedVersion ?? 0, payloadSha ?? '', 'rejected', error.code, null);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot record policy rejection');
    }
    const logFields = {
      code: error.code,
      err: error.message,
      source,
      version: claimedVersion,
      in_force: this.policy?.body.version ?? null,
    };
    if (alert)
      this.log.error({ ...logFields, alert: true }, 'POLICY EQUIVOCATION: same version, different content');
    else this.log.warn(logFields, 'policy rejected; the policy in force is kept');
    const key = `${error.code}:${payloadSha ?? (text === null ? '' : sha256Hex(text))}`;
    if (key === this.lastRejectKey) return;
    this.lastRejectKey = key;
    this.options.events.emit('policy.rejected', {
      reason: error.code,
      message: error.message.slice(0, MAX_EVENT_MESSAGE_CHARS),
      source: source.slice(0, MAX_EVENT_MESSAGE_CHARS),
      policy_version: claimedVersion,
      sha256: payloadSha,
      ...this.channelField(),
    });
  }

  /** The `channel` field of this manager's events: absent for the enforced policy. */
  private channelField(): { channel?: 'shadow' } {
    return this.channel === 'shadow' ? { channel: 'shadow' } : {};
  }

  /**
   * Drops the policy in force (the shadow channel only: the collector serves none any more). Its
   * highest version stays, so anti-rollback still holds; the empty matcher goes out via onChange.
   */
  clear(source: string): void {
    if (this.channel !== 'shadow' || !this.policy) return;
    const version = this.policy.body.version;
    try {
      this.options.state.set(this.keys.lastGood, null);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot forget the cleared shadow policy in the state DB');
    }
    this.policy = null;
    this.textInForce = null;
    this.source = null;
    this.stale = false;
    this.compiled = compileMatcher(emptyBody(), { platform: this.options.platform, homes: [] });
    this.log.info({ version, source }, 'shadow policy cleared by the server');
    this.options.onChange(this.compiled, null);
  }

  private recordHistory(
    version: number,
    sha: string,
    outcome: 'accepted' | 'rejected',
    reason: string | null,
    envelope: string | null,
  ): void {
    this.insertHistory.run(
      version,
      sha,
      new Date(this.now()).toISOString(),
      outcome,
      reason,
      envelope,
      this.channel,
    );
    this.pruneHistory.run(HISTORY_KEEP_ROWS);
  }

  /**
   * Re-checks expiry (the daemon calls it every minute; cheap). On the transition to expired the
   * status becomes `stale` and one `policy.stale` event is emitted (persisted per policy hash, so a
   * restart does not repeat it); the policy stays in force.
   */
  checkFreshness(): void {
    const p = this.policy;
    if (!p) return;
    const expired = isExpired(p.body, this.now());
    if (expired === this.stale) return;
    this.stale = expired;
    if (!expired) return;
    this.log.warn(
      { version: p.body.version, expires_at: p.body.expires_at },
      'policy expired: STALE, still enforced',
    );
    try {
      if (this.options.state.get<string>(this.keys.staleNotified) === p.sha256) return;
      this.options.state.set(this.keys.staleNotified, p.sha256);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot persist the stale notice; sending it anyway');
    }
    this.options.events.emit('policy.stale', {
      policy_version: p.body.version,
      expires_at: p.body.expires_at,
      ...this.channelField(),
    });
  }

  /** Recompiles the policy in force (e.g. the set of local homes changed) and swaps it in. */
  rebuildMatcher(): void {
    if (!this.policy) return;
    this.compiled = compileMatcher(this.policy.body, {
      platform: this.options.platform,
      homes: this.options.homes(),
    });
    this.options.onChange(this.compiled, this.policy);
  }

  /** Notes a fetch attempt (the updater calls it): time, and the error when it failed before verification. */
  recordFetch(error: { code: string; message: string } | null): void {
    const at = new Date(this.now()).toISOString();
    this.lastFetchAt = at;
    // A fetch that reached the server clears an old fetch error; a rejection, if any, follows.
    this.lastError = error ? { ...error, at } : null;
  }

  /** The policy in force, or null when there is none. */
  current(): VerifiedPolicy | null {
    return this.policy;
  }

  /** The compiled matcher in force (the empty monitor-only one when there is no policy). */
  matcher(): Matcher {
    return this.compiled;
  }

  /** The `policy` part of `guardctl status`. */
  status(): PolicyStatus {
    const p = this.policy;
    return {
      state: p === null ? 'none' : this.stale ? 'stale' : 'ok',
      version: p?.body.version ?? null,
      issued_at: p?.body.issued_at ?? null,
      expires_at: p?.body.expires_at ?? null,
      sha256: p?.sha256 ?? null,
      mode: p?.body.mode ?? 'monitor',
      rules: p ? this.compiled.ruleCount : 0,
      source: this.source,
      last_fetch_at: this.lastFetchAt,
      last_error: this.lastError,
    };
  }
}

/**
 * Best-effort facts about a refused envelope for the event and history: the payload's SHA-256 and
 * the version it claims. Never throws (the envelope is hostile and already known to be bad).
 */
function peekEnvelope(text: string | Buffer): { version: number | null; sha256: string | null } {
  try {
    const env = JSON.parse(typeof text === 'string' ? text : text.toString('utf8')) as { payload?: unknown };
    if (typeof env?.payload !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(env.payload)) {
      return { version: null, sha256: null };
    }
    const payload = Buffer.from(env.payload, 'base64');
    let version: number | null = null;
    try {
      const v = (JSON.parse(payload.toString('utf8')) as { version?: unknown }).version;
      if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) version = v;
    } catch {
      // payload not JSON: no version to report
    }
    return { version, sha256: sha256Hex(payload) };
  } catch {
    return { version: null, sha256: null };
  }
}

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A copy of `body` with issued_at = now and expires_at = now + `days` (whole seconds, UTC), for
 * tools that re-sign a template (local mode, tests). Changes nothing else: the version is the caller's.
 */
export function withFreshDates(body: PolicyBody, now: number, days: number): PolicyBody {
  const iso = (ms: number): string =>
    new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.000Z$/, 'Z');
  return { ...body, issued_at: iso(now), expires_at: iso(now + days * 86_400_000) };
}
