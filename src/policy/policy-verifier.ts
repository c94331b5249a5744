/**
 * Owns deciding whether a received policy envelope may be enforced. The checks run in a fixed
 * order, cheapest and least trusting first, and the first failure is the error:
 *
 *  1. size cap (GUARD_POLICY_TOO_LARGE) — before parsing anything;
 *  2. envelope shape (MALFORMED_ENVELOPE; plain JSON or no signatures → UNSIGNED);
 *  3. payloadType (WRONG_PAYLOAD_TYPE);
 *  4. signatures: each is tried against every trusted key (the keyid only orders the attempts),
 *     distinct verifying keys are counted against the threshold (SIGNATURE_INVALID /
 *     UNTRUSTED_KEY / THRESHOLD_NOT_MET);
 *  5. payload is UTF-8 JSON (PAYLOAD_NOT_JSON);
 *  6. schema + semantics, then the body compiles with the real matcher (SCHEMA, naming paths;
 *     REGEX_UNSUPPORTED for an argv pattern beyond what the RE2 engine runs);
 *  7. safety (UNSAFE_RULE, rule-safety.ts);
 *  8. freshness: issued in the future beyond the skew (NOT_YET_VALID), expired (EXPIRED).
 *
 * Anti-rollback is not here: it needs the device's history (policy-manager.ts).
 */
import { createHash, verify } from 'node:crypto';
import { GuardError } from '../common/errors.js';
import { pae } from './dsse.js';
import type { TrustedKey } from './keys.js';
import { compileMatcher } from './matcher.js';
import { assertValidPolicyBody } from './policy-schema.js';
import {
  type DsseEnvelope,
  type DsseSignature,
  POLICY_PAYLOAD_TYPE,
  type PolicyBody,
  type VerifiedPolicy,
} from './policy-types.js';
import { assertSafePolicy, type SafetyOptions } from './rule-safety.js';

/** More signatures than this is not a real policy: refused before doing signatures × keys verifications. */
const MAX_SIGNATURES = 16;

/** An Ed25519 signature is 64 bytes; base64 of anything much longer is refused unparsed. */
const MAX_SIG_BASE64_CHARS = 256;

export interface VerifyOptions {
  readonly trustedKeys: readonly TrustedKey[];
  /** Distinct trusted keys that must have signed (≥ 1). */
  readonly threshold: number;
  /** Milliseconds since the epoch. */
  readonly now: number;
  /** Allowed clock skew for issued_at, in seconds. */
  readonly clockSkewS: number;
  /** Size cap of the whole envelope, in bytes. */
  readonly maxBytes: number;
  /**
   * True: freshness does not gate (expired passes — the caller marks it stale — and so does an
   * issued_at in the future, e.g. after the device clock jumped back). Used only at start, for the
   * policy already accepted on this device (the cache) and the MDM bootstrap file, so that a
   * validly signed policy is never replaced by nothing — never for updates.
   */
  readonly allowStale?: boolean;
  /** This device's facts for the safety check (its state dir …): rule-safety.ts. */
  readonly safety?: SafetyOptions;
}

const BASE64 = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/;

function decodeBase64(s: string): Buffer | null {
  if (!BASE64.test(s)) return null;
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/** Verifies an envelope completely (see the module comment for the order); returns the verified policy. */
export function verifyPolicyEnvelope(text: string | Buffer, opts: VerifyOptions): VerifiedPolicy {
  const bytes = typeof text === 'string' ? Buffer.byteLength(text, 'utf8') : text.length;
  if (bytes > opts.maxBytes) {
    throw new GuardError(
      'GUARD_POLICY_TOO_LARGE',
      `policy envelope is ${bytes} bytes, the cap is ${opts.maxBytes}`,
      {
        bytes,
        max_bytes: opts.maxBytes,
      },
    );
  }
  const envelope = parseEnvelope(typeof text === 'string' ? text : text.toString('utf8'));
  if (envelope.payloadType !== POLICY_PAYLOAD_TYPE) {
    throw new GuardError(
      'GUARD_POLICY_WRONG_PAYLOAD_TYPE',
      `payloadType is ${JSON.stringify(envelope.payloadType.slice(0, 200))}, expected ${POLICY_PAYLOAD_TYPE}`,
    );
  }
  const payload = decodeBase64(envelope.payload);
  if (payload === null) {
    throw new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', 'payload is not base64');
  }
  const signedBy = verifySignatures(envelope, payload, opts);
  const body = parseBody(payload);
  checkCompiles(body);
  assertSafePolicy(body, opts.safety);
  checkFreshness(body, opts);
  return {
    body,
    sha256: createHash('sha256').update(payload).digest('hex'),
    signedBy,
    envelope,
  };
}

function parseEnvelope(text: string): DsseEnvelope {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new GuardError(
      'GUARD_POLICY_MALFORMED_ENVELOPE',
      `envelope is not JSON: ${(err as Error).message}`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', 'envelope is not a JSON object');
  }
  const v = value as Record<string, unknown>;
  if (!('payload' in v) && !('signatures' in v)) {
    // A bare policy body (or any other JSON) handed over without a signature.
    throw new GuardError(
      'GUARD_POLICY_UNSIGNED',
      'not a signed envelope: expected {payload, payloadType, signatures} (sign it with `guardctl policy sign`)',
    );
  }
  if (typeof v.payload !== 'string' || typeof v.payloadType !== 'string') {
    throw new GuardError(
      'GUARD_POLICY_MALFORMED_ENVELOPE',
      'envelope needs string fields payload and payloadType',
    );
  }
  if (v.signatures === undefined || (Array.isArray(v.signatures) && v.signatures.length === 0)) {
    throw new GuardError('GUARD_POLICY_UNSIGNED', 'envelope has no signatures');
  }
  if (!Array.isArray(v.signatures)) {
    throw new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', 'signatures must be an array');
  }
  if (v.signatures.length > MAX_SIGNATURES) {
    throw new GuardError(
      'GUARD_POLICY_MALFORMED_ENVELOPE',
      `envelope has ${v.signatures.length} signatures; at most ${MAX_SIGNATURES} are accepted`,
    );
  }
  const signatures: DsseSignature[] = v.signatures.map((s, i) => {
    if (typeof s !== 'object' || s === null) {
      throw new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', `signatures[${i}] is not an object`);
    }
    const { sig, keyid } = s as Record<string, unknown>;
    if (typeof sig !== 'string' || sig.length === 0 || sig.length > MAX_SIG_BASE64_CHARS) {
      throw new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', `signatures[${i}].sig must be a base64 string`);
    }
    if (keyid !== undefined && typeof keyid !== 'string') {
      throw new GuardError('GUARD_POLICY_MALFORMED_ENVELOPE', `signatures[${i}].keyid must be a string`);
    }
    return keyid === undefined ? { sig } : { keyid, sig };
  });
  return { payload: v.payload, payloadType: v.payloadType, signatures };
}

/** Returns the keyids of the distinct trusted keys that signed; throws when below the threshold. */
function verifySignatures(envelope: DsseEnvelope, payload: Buffer, opts: VerifyOptions): string[] {
  const message = pae(envelope.payloadType, payload);
  const verified = new Set<string>();
  for (const s of envelope.signatures) {
    const sig = decodeBase64(s.sig);
    if (sig === null) continue;
    // keyid is a hint: try the named key first, then every other trusted key.
    const ordered = [...opts.trustedKeys].sort(
      (a, b) => Number(b.keyid === s.keyid) - Number(a.keyid === s.keyid),
    );
    for (const k of ordered) {
      if (verified.has(k.keyid)) continue;
      let ok = false;
      try {
        ok = verify(null, message, k.key, sig);
      } catch {
        ok = false; // wrong signature length and the like: simply not valid
      }
      if (ok) {
        verified.add(k.keyid);
        break;
      }
    }
  }
  const threshold = Math.max(1, opts.threshold);
  if (verified.size >= threshold) return [...verified];
  if (verified.size > 0) {
    throw new GuardError(
      'GUARD_POLICY_THRESHOLD_NOT_MET',
      `${verified.size} distinct trusted key(s) signed; the threshold is ${threshold}`,
      { signed_by: [...verified], threshold },
    );
  }
  const trustedIds = new Set(opts.trustedKeys.map((k) => k.keyid));
  const claimsTrusted = envelope.signatures.some((s) => s.keyid === undefined || trustedIds.has(s.keyid));
  if (claimsTrusted || opts.trustedKeys.length === 0) {
    throw new GuardError(
      'GUARD_POLICY_SIGNATURE_INVALID',
      opts.trustedKeys.length === 0
        ? 'no trusted keys are configured (policy.trusted_keys), so no signature can verify'
        : 'no signature verifies against a trusted key (tampered payload or bad signature)',
    );
  }
  throw new GuardError(
    'GUARD_POLICY_UNTRUSTED_KEY',
    `signed only by keys this device does not trust (keyids ${envelope.signatures
      .map((s) => (s.keyid ?? '?').slice(0, 16))
      .join(', ')})`,
  );
}

function parseBody(payload: Buffer): PolicyBody {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(payload);
  } catch {
    throw new GuardError('GUARD_POLICY_PAYLOAD_NOT_JSON', 'payload is not UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new GuardError('GUARD_POLICY_PAYLOAD_NOT_JSON', `payload is not JSON: ${(err as Error).message}`);
  }
  return assertValidPolicyBody(value);
}

/**
 * The body compiles with the real matcher. One compile covers every platform: `platforms` only
 * filters rules and case-folding does not change what compiles, so the rules are compiled once
 * with the filter removed (a third of the cost of compiling per platform, for large policies).
 */
function checkCompiles(body: PolicyBody): void {
  const allPlatforms: PolicyBody = { ...body, rules: body.rules.map(({ platforms: _p, ...rule }) => rule) };
  try {
    compileMatcher(allPlatforms, { platform: 'linux', homes: ['/home/probe-user'] });
  } catch (err) {
    throw new GuardError('GUARD_POLICY_SCHEMA', `policy does not compile: ${(err as Error).message}`);
  }
}

/** Freshness against `opts.now`: NOT_YET_VALID beyond the skew, then EXPIRED (neither when allowStale). */
export function checkFreshness(
  body: PolicyBody,
  opts: Pick<VerifyOptions, 'now' | 'clockSkewS' | 'allowStale'>,
): void {
  if (opts.allowStale) return;
  const issued = Date.parse(body.issued_at);
  if (issued > opts.now + opts.clockSkewS * 1000) {
    throw new GuardError(
      'GUARD_POLICY_NOT_YET_VALID',
      `policy v${body.version} is issued at ${body.issued_at}, in the future beyond the ${opts.clockSkewS} s clock-skew allowance`,
      { version: body.version, issued_at: body.issued_at },
    );
  }
  if (isExpired(body, opts.now)) {
    throw new GuardError('GUARD_POLICY_EXPIRED', `policy v${body.version} expired at ${body.expires_at}`, {
      version: body.version,
      expires_at: body.expires_at,
    });
  }
}

/** True once `now` reached expires_at (no skew: an expiry is a promise the signer made). */
export function isExpired(body: PolicyBody, now: number): boolean {
  return now >= Date.parse(body.expires_at);
}
