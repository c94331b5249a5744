/**
 * Owns publishing signed policies through the admin API (registered inside the admin scope of
 * admin-routes.ts, so the admin-token hook runs first), per channel (docs/policy.md):
 *
 *   - `POST /v1/admin/policy` (and the console's publish action, through the same `PolicyPublisher`)
 *     — `{envelope, by, message?, channel?}`: checks the envelope and
 *     stores it in the database as the channel's (`enforced`, the default, or `shadow`), with the
 *     publication record, in one transaction; every collector on the database serves it from its
 *     next request (policy-route.ts). The version must be greater than the channel's (across
 *     collectors: the store compares and sets atomically) and, for `enforced`, than the
 *     `policy_file` served beside it; a shadow's must be greater than the enforced version too (it
 *     is the candidate for the next one). 409 `GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER` otherwise.
 *   - `POST /v1/admin/policy/promote` — `{by, message?, version?}`: the shadow becomes the enforced
 *     policy (same envelope, re-checked now: a shadow may have expired since) and the shadow is
 *     cleared; `version`, when given, must be the shadow's (promote what was reviewed).
 *   - `POST /v1/admin/policy/shadow/clear` — `{by, message?}`: withdraws the shadow (agents drop it).
 *   - `GET /v1/admin/policy/shadow` — the shadow in force (or the last one) and its would-match
 *     counts per rule; `GET /v1/admin/policy/shadow/devices` — per (device, rule). Both paged.
 *   - `GET /v1/admin/policy/history` — the records, newest first.
 *
 * `policy_file` is not written: it stays the admin's "sign, copy" workflow, and the enforced
 * policy served is the higher version of the file and the database.
 *
 * Trust: with `policy_trusted_keys` configured the envelope must verify against them (the same
 * verifier as the agents: signatures, threshold, schema, freshness). Without trusted keys the
 * collector cannot tell a valid signature from a made-up one (the envelope carries key ids, not
 * keys), so it checks only the shape and the schema, and records the publication `verified: false`
 * — agents still verify against their pinned keys and refuse a bad envelope.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { GuardError } from '../common/errors.js';
import { serializeEnvelope } from '../policy/dsse.js';
import type { TrustedKey } from '../policy/keys.js';
import { diffPolicies } from '../policy/policy-diff.js';
import { assertValidPolicyBody } from '../policy/policy-schema.js';
import { type DsseEnvelope, POLICY_PAYLOAD_TYPE, type PolicyBody } from '../policy/policy-types.js';
import { verifyPolicyEnvelope } from '../policy/policy-verifier.js';
import { HttpError } from './http-error.js';
import type { ServedPolicies, ServedPolicy } from './policy-route.js';
import type {
  NewPolicyPublication,
  PolicyChannel,
  PolicyChannels,
  PolicyPublicationRow,
  PolicyPublications,
} from './store/port.js';

/**
 * Largest publish request body, in bytes: agents cap policy downloads at 1 MiB by default, and the
 * envelope's base64 payload is 4/3 of the body plus signatures; 4 MiB leaves room and still bounds
 * what one admin request can make the collector parse.
 */
export const MAX_PUBLISH_BODY_BYTES = 4 * 1024 * 1024;
/** `by` (who published) longer than this is refused: a name or an e-mail address. */
const MAX_BY_CHARS = 200;
/** `message` (why) longer than this is refused: a commit-message-sized reason. */
const MAX_MESSAGE_CHARS = 4000;
/** Allowed issued_at skew when verifying, in seconds (the agents' default clock skew). */
const CLOCK_SKEW_S = 300;
/** History page size when `limit` is not given, and the largest. */
const DEFAULT_HISTORY = 50;
const MAX_HISTORY = 500;
/** Would-match count pages: default and largest size. */
const DEFAULT_COUNTS = 100;
const MAX_COUNTS = 1000;

export interface PolicyPublishOptions {
  readonly store: PolicyPublications & PolicyChannels;
  /** What the agents are served now (file and database combined). */
  readonly served: ServedPolicies;
  /** Keys a published envelope must verify against; empty = not verified (recorded so). */
  readonly trustedKeys: readonly TrustedKey[];
  /** Distinct trusted keys that must have signed (≥ 1). */
  readonly threshold: number;
  readonly now: () => number;
}

/**
 * Publishes envelopes into a channel: the one implementation behind `POST /v1/admin/policy` and
 * the console's publish action (console/console-plugin.ts).
 */
export class PolicyPublisher {
  constructor(readonly options: PolicyPublishOptions) {}

  /**
   * Checks a publish request body (`{envelope, by, message?, channel?}`), refuses a version not
   * greater than the channel's (409), stores it and records the publication. Resolves with the
   * record as the API shows it; throws `HttpError` with a code for every refusal.
   */
  async publish(body: unknown): Promise<Record<string, unknown>> {
    const { store, served, trustedKeys, threshold, now } = this.options;
    const request = parseRequest(body);
    const text = serializeEnvelope(request.envelope);
    const checked = checkEnvelope(text, request.envelope, trustedKeys, threshold, now());
    const enforced = await served.currentOrNull();
    const enforcedVersion = enforced?.version ?? null;
    const version = checked.body.version;
    if (enforcedVersion !== null && version <= enforcedVersion)
      throw notNewer(
        request.channel === 'shadow'
          ? `a shadow's version ${version} must be greater than the enforced version ${enforcedVersion} (it is the candidate for the next one); set "version" to ${enforcedVersion + 1} or more`
          : `version ${version} is not greater than the served version ${enforcedVersion}; set "version" to ${enforcedVersion + 1}`,
      );
    const row: NewPolicyPublication = {
      version,
      published_at: new Date(now()).toISOString(),
      published_by: request.by,
      message: request.message,
      sha256: createHash('sha256').update(checked.bodyBytes).digest('hex'),
      keyids: JSON.stringify(request.envelope.signatures.map((s) => s.keyid)),
      verified: checked.verified,
      // a shadow's diff is from the enforced policy: what promoting it would change
      diff: enforced === null ? null : diffOrNull(bodyOf(enforced), checked.body),
      channel: request.channel,
      action: 'publish',
    };
    const id = await store.publishToPolicyChannel(request.channel, text, row);
    if (id === null) {
      const cur = await store.policyChannelStamp(request.channel);
      throw notNewer(
        `version ${version} is not greater than the ${request.channel} channel's version ${cur?.version ?? '?'} (published meanwhile or before); set "version" to ${(cur?.version ?? version) + 1}`,
      );
    }
    return toApi({ ...row, id, channel: request.channel, action: 'publish' });
  }
}

/** Registers the publish, promote, shadow and history routes on `admin` (a scope already behind the admin token). */
export function registerPolicyPublishRoutes(admin: FastifyInstance, publisher: PolicyPublisher): void {
  const { store, served, trustedKeys, threshold, now } = publisher.options;

  admin.post('/v1/admin/policy', { bodyLimit: MAX_PUBLISH_BODY_BYTES }, async (req, reply) => {
    const record = await publisher.publish(req.body);
    reply.code(201);
    return record;
  });

  admin.post('/v1/admin/policy/promote', async (req, reply) => {
    const request = parseAction(req.body, true);
    const shadow = await store.policyChannel('shadow');
    if (!shadow?.envelope)
      throw new HttpError(409, 'GUARD_COLLECTOR_NO_SHADOW', 'there is no shadow policy to promote');
    if (request.version !== undefined && request.version !== shadow.version)
      throw new HttpError(
        409,
        'GUARD_COLLECTOR_SHADOW_CHANGED',
        `the shadow is version ${shadow.version}, not ${request.version}; review it again before promoting`,
      );
    const envelope = parseRequest({ envelope: JSON.parse(shadow.envelope), by: request.by }).envelope;
    // re-checked now: the shadow may have expired since it was published
    const checked = checkEnvelope(shadow.envelope, envelope, trustedKeys, threshold, now());
    const enforced = await served.currentOrNull();
    if (enforced?.version != null && checked.body.version <= enforced.version)
      throw notNewer(
        `the shadow's version ${checked.body.version} is not greater than the enforced version ${enforced.version}; publish a new shadow`,
      );
    const at = new Date(now()).toISOString();
    const row: NewPolicyPublication = {
      version: checked.body.version,
      published_at: at,
      published_by: request.by,
      message: request.message,
      sha256: createHash('sha256').update(checked.bodyBytes).digest('hex'),
      keyids: JSON.stringify(envelope.signatures.map((s) => s.keyid)),
      verified: checked.verified,
      diff: enforced === null ? null : diffOrNull(bodyOf(enforced), checked.body),
      channel: 'enforced',
      action: 'promote',
    };
    const id = await store.publishToPolicyChannel('enforced', shadow.envelope, row);
    if (id === null)
      throw notNewer('the enforced version moved past the shadow meanwhile; publish a new shadow');
    // the shadow is now enforced: withdraw it (unless a newer shadow was published meanwhile)
    await store.clearPolicyChannel('shadow', shadow.publication_id, {
      ...clearRow(shadow.version, request.by, `promoted to enforced (publication ${id})`, at),
    });
    reply.code(201);
    return toApi({ ...row, id, channel: 'enforced', action: 'promote' });
  });

  admin.post('/v1/admin/policy/shadow/clear', async (req) => {
    const request = parseAction(req.body, false);
    const shadow = await store.policyChannelStamp('shadow');
    if (!shadow?.present)
      throw new HttpError(409, 'GUARD_COLLECTOR_NO_SHADOW', 'there is no shadow policy to clear');
    const row = clearRow(shadow.version, request.by, request.message, new Date(now()).toISOString());
    const id = await store.clearPolicyChannel('shadow', shadow.publication_id, row);
    if (id === null)
      throw new HttpError(409, 'GUARD_COLLECTOR_SHADOW_CHANGED', 'the shadow changed meanwhile; look again');
    return toApi({ ...row, id, channel: 'shadow', action: 'clear' });
  });

  admin.get('/v1/admin/policy/shadow', async (req) => {
    const q = queryOf(req.query, ['limit', 'after', 'version']);
    const limit = intParam(q.limit, 'limit', 1, MAX_COUNTS) ?? DEFAULT_COUNTS;
    const after = textParam(q.after, 'after');
    const state = await shadowState(q.version);
    const rules = state.version === null ? [] : await store.shadowMatchesByRule(state.version, after, limit);
    return {
      ...state,
      rules,
      next_after: rules.length === limit ? (rules[rules.length - 1]?.rule_id ?? null) : null,
    };
  });

  admin.get('/v1/admin/policy/shadow/devices', async (req) => {
    const q = queryOf(req.query, ['limit', 'after', 'version']);
    const limit = intParam(q.limit, 'limit', 1, MAX_COUNTS) ?? DEFAULT_COUNTS;
    const after = q.after === undefined ? undefined : decodeCursor(q.after);
    const state = await shadowState(q.version);
    const devices =
      state.version === null ? [] : await store.shadowMatchesByDevice(state.version, after, limit);
    const last = devices[devices.length - 1];
    return {
      ...state,
      devices,
      next_after: devices.length === limit && last ? encodeCursor(last.device_id, last.rule_id) : null,
    };
  });

  /** The shadow channel's state, and the version whose counts are asked for (default: the channel's). */
  async function shadowState(versionParam: unknown): Promise<{
    version: number | null;
    present: boolean;
    shadow_version: number | null;
    enforced_version: number | null;
  }> {
    const stamp = await store.policyChannelStamp('shadow');
    const enforced = await served.currentOrNull();
    const asked = intParam(versionParam, 'version', 0, Number.MAX_SAFE_INTEGER);
    return {
      version: asked ?? stamp?.version ?? null,
      present: stamp?.present ?? false,
      shadow_version: stamp?.version ?? null,
      enforced_version: enforced?.version ?? null,
    };
  }

  admin.get('/v1/admin/policy/history', async (req) => {
    const q = queryOf(req.query, ['limit', 'before']);
    const limit = intParam(q.limit, 'limit', 1, MAX_HISTORY) ?? DEFAULT_HISTORY;
    const before = intParam(q.before, 'before', 1, Number.MAX_SAFE_INTEGER);
    const rows = await store.listPolicyPublications(limit, before);
    return {
      publications: rows.map((r) => toApi(r)),
      next_before: rows.length === limit ? (rows[rows.length - 1]?.id ?? null) : null,
    };
  });
}

function clearRow(version: number, by: string, message: string, at: string): NewPolicyPublication {
  return {
    version,
    published_at: at,
    published_by: by,
    message,
    sha256: '',
    keyids: '[]',
    verified: false,
    diff: null,
    channel: 'shadow',
    action: 'clear',
  };
}

function notNewer(message: string): HttpError {
  return new HttpError(409, 'GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER', message);
}

/** The query as strings, refusing unknown parameters (a typo must not widen or change a query). */
function queryOf(query: unknown, allowed: readonly string[]): Record<string, unknown> {
  const q = (query ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(q))
    if (!allowed.includes(k))
      throw new HttpError(
        400,
        'GUARD_COLLECTOR_BAD_QUERY',
        `unknown query parameter "${k.slice(0, 40)}"; allowed: ${allowed.join(', ')}`,
      );
  return q;
}

function textParam(v: unknown, name: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 256)
    throw new HttpError(
      400,
      'GUARD_COLLECTOR_BAD_QUERY',
      `query parameter "${name}": expected a short string`,
    );
  return v;
}

/** The devices page cursor: base64url of JSON [device id, rule id]. */
function encodeCursor(deviceId: string, ruleId: string): string {
  return Buffer.from(JSON.stringify([deviceId, ruleId])).toString('base64url');
}

function decodeCursor(v: unknown): { device_id: string; rule_id: string } {
  const bad = new HttpError(
    400,
    'GUARD_COLLECTOR_BAD_QUERY',
    'query parameter "after": not a cursor of this API',
  );
  if (typeof v !== 'string' || v.length > 1024 || !/^[A-Za-z0-9_-]*$/.test(v)) throw bad;
  try {
    const a = JSON.parse(Buffer.from(v, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(a) && a.length === 2 && typeof a[0] === 'string' && typeof a[1] === 'string')
      return { device_id: a[0], rule_id: a[1] };
  } catch {
    // fall through
  }
  throw bad;
}

/** `{by, message?, version?}` of promote and clear. */
function parseAction(body: unknown, withVersion: boolean): { by: string; message: string; version?: number } {
  const b = body as Record<string, unknown> | null;
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw bad('the body must be a JSON object');
  for (const k of Object.keys(b))
    if (k !== 'by' && k !== 'message' && !(withVersion && k === 'version'))
      throw bad(`unknown field "${k.slice(0, 40)}"`);
  const { by, message } = byAndMessage(b);
  if (b.version === undefined) return { by, message };
  if (typeof b.version !== 'number' || !Number.isSafeInteger(b.version) || b.version < 0)
    throw bad('"version" must be a non-negative integer');
  return { by, message, version: b.version };
}

function byAndMessage(b: Record<string, unknown>): { by: string; message: string } {
  const by = b.by;
  if (typeof by !== 'string' || by.length === 0 || by.length > MAX_BY_CHARS || hasControl(by))
    throw bad(`"by" must be a name of 1 to ${MAX_BY_CHARS} printable characters`);
  const message = b.message ?? '';
  if (
    typeof message !== 'string' ||
    message.length > MAX_MESSAGE_CHARS ||
    hasControl(message.replace(/\n/g, ''))
  )
    throw bad(`"message" must be text of at most ${MAX_MESSAGE_CHARS} characters`);
  return { by, message };
}

interface PublishRequest {
  readonly envelope: DsseEnvelope;
  readonly by: string;
  readonly message: string;
  readonly channel: PolicyChannel;
}

function parseRequest(body: unknown): PublishRequest {
  const b = body as Record<string, unknown> | null;
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw bad('the body must be a JSON object');
  for (const k of Object.keys(b))
    if (k !== 'envelope' && k !== 'by' && k !== 'message' && k !== 'channel')
      throw bad(`unknown field "${k.slice(0, 40)}"`);
  const { by, message } = byAndMessage(b);
  const channel = b.channel ?? 'enforced';
  if (channel !== 'enforced' && channel !== 'shadow') throw bad('"channel" must be "enforced" or "shadow"');
  const e = b.envelope as Record<string, unknown> | null;
  if (
    !e ||
    typeof e !== 'object' ||
    typeof e.payload !== 'string' ||
    typeof e.payloadType !== 'string' ||
    !Array.isArray(e.signatures) ||
    !e.signatures.every(
      (s) => s && typeof s === 'object' && typeof s.keyid === 'string' && typeof s.sig === 'string',
    )
  )
    throw new HttpError(422, 'GUARD_POLICY_MALFORMED_ENVELOPE', '"envelope" is not a DSSE envelope');
  // Re-built from the known fields only, so nothing else of the request reaches the served file.
  const envelope: DsseEnvelope = {
    payload: e.payload,
    payloadType: e.payloadType,
    signatures: (e.signatures as { keyid: string; sig: string }[]).map((s) => ({
      keyid: s.keyid,
      sig: s.sig,
    })),
  };
  return { envelope, by, message, channel };
}

interface CheckedEnvelope {
  readonly body: PolicyBody;
  readonly bodyBytes: Buffer;
  readonly verified: boolean;
}

/** Verifies against the trusted keys when there are some, else checks shape and schema only. */
function checkEnvelope(
  text: string,
  envelope: DsseEnvelope,
  trustedKeys: readonly TrustedKey[],
  threshold: number,
  now: number,
): CheckedEnvelope {
  try {
    const bodyBytes = Buffer.from(envelope.payload, 'base64');
    if (trustedKeys.length > 0) {
      const v = verifyPolicyEnvelope(text, {
        trustedKeys,
        threshold,
        now,
        clockSkewS: CLOCK_SKEW_S,
        maxBytes: MAX_PUBLISH_BODY_BYTES,
      });
      return { body: v.body, bodyBytes, verified: true };
    }
    if (envelope.payloadType !== POLICY_PAYLOAD_TYPE)
      throw new GuardError('GUARD_POLICY_WRONG_PAYLOAD_TYPE', `payloadType is not ${POLICY_PAYLOAD_TYPE}`);
    if (envelope.signatures.length === 0) throw new GuardError('GUARD_POLICY_UNSIGNED', 'no signatures');
    let parsed: unknown;
    try {
      parsed = JSON.parse(bodyBytes.toString('utf8'));
    } catch {
      throw new GuardError('GUARD_POLICY_PAYLOAD_NOT_JSON', 'the payload is not JSON');
    }
    return { body: assertValidPolicyBody(parsed), bodyBytes, verified: false };
  } catch (err) {
    if (err instanceof GuardError) throw new HttpError(422, err.code, err.message.slice(0, 2000));
    throw err;
  }
}

/** The body of a served envelope (unverified: it may be the admin's file), or null when it is not a policy. */
function bodyOf(p: ServedPolicy): PolicyBody | null {
  try {
    const env = JSON.parse(p.bytes.toString('utf8')) as { payload?: unknown };
    if (typeof env.payload !== 'string') return null;
    const body = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as PolicyBody;
    return typeof body?.version === 'number' ? body : null;
  } catch {
    return null;
  }
}

/** The diff as JSON; null when the served body is too malformed to compare (it was never verified here). */
function diffOrNull(previous: PolicyBody | null, next: PolicyBody): string | null {
  if (previous === null) return null;
  try {
    return JSON.stringify(diffPolicies(previous, next));
  } catch {
    return null;
  }
}

function toApi(r: PolicyPublicationRow): Record<string, unknown> {
  return {
    id: r.id,
    channel: r.channel,
    action: r.action,
    version: r.version,
    published_at: r.published_at,
    published_by: r.published_by,
    message: r.message,
    sha256: r.sha256,
    keyids: JSON.parse(r.keyids) as string[],
    verified: r.verified,
    diff: r.diff === null ? null : (JSON.parse(r.diff) as unknown),
  };
}

function intParam(v: unknown, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d{1,16}$/.test(v) || Number(v) < min || Number(v) > max)
    throw new HttpError(
      400,
      'GUARD_COLLECTOR_BAD_QUERY',
      `query parameter "${name}": expected an integer from ${min} to ${max}`,
    );
  return Number(v);
}

function hasControl(s: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  return /[\u0000-\u001f\u007f]/.test(s);
}

function bad(message: string): HttpError {
  return new HttpError(400, 'GUARD_COLLECTOR_BAD_REQUEST', message);
}
