/**
 * Owns publishing a signed policy (`PolicyPublisher`, used by the admin API — registered inside
 * the admin scope of admin-routes.ts, so the admin-token hook runs first — and by the console's
 * admin role): `POST /v1/admin/policy` checks the envelope,
 * refuses a version not greater than the one served now, replaces `policy_file` atomically
 * (temp file in the same directory, fsync, rename, fsync of the directory: agents and
 * PolicyFileCache see the old envelope or the new one, never half of one) and records the
 * publication in the store; `GET /v1/admin/policy/history` lists the records, newest first.
 *
 * Trust: with `policy_trusted_keys` configured the envelope must verify against them (the same
 * verifier as the agents: signatures, threshold, schema, freshness). Without trusted keys the
 * collector cannot tell a valid signature from a made-up one (the envelope carries key ids, not
 * keys), so it checks only the shape and the schema, and records the publication `verified: false`
 * — agents still verify against their pinned keys and refuse a bad envelope.
 *
 * The request body never names a path: the only file written is `policy_file` (and its temp file
 * beside it), whatever the body holds.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { GuardError } from '../common/errors.js';
import { serializeEnvelope } from '../policy/dsse.js';
import type { TrustedKey } from '../policy/keys.js';
import { diffPolicies } from '../policy/policy-diff.js';
import { assertValidPolicyBody } from '../policy/policy-schema.js';
import { type DsseEnvelope, POLICY_PAYLOAD_TYPE, type PolicyBody } from '../policy/policy-types.js';
import { verifyPolicyEnvelope } from '../policy/policy-verifier.js';
import { HttpError } from './http-error.js';
import type { PolicyPublicationRow, PolicyPublications } from './store/port.js';

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

export interface PolicyPublishOptions {
  readonly store: PolicyPublications;
  /** The served envelope file (`policy_file`); empty = publishing is refused (503). */
  readonly policyFile: string;
  /** Keys a published envelope must verify against; empty = not verified (recorded so). */
  readonly trustedKeys: readonly TrustedKey[];
  /** Distinct trusted keys that must have signed (≥ 1). */
  readonly threshold: number;
  readonly now: () => number;
}

/**
 * Publishes envelopes: the one implementation behind `POST /v1/admin/policy` and the console's
 * publish action (console/console-plugin.ts). One instance per collector, so publications from
 * both are serialized by the same queue.
 */
export class PolicyPublisher {
  // One publication at a time in this process: read current version → write → record is one step.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: PolicyPublishOptions) {}

  /**
   * Checks a publish request body (`{envelope, by, message?}`), refuses a version not greater
   * than the served one (409), replaces the policy file and records the publication. Resolves
   * with the record as the API shows it; throws `HttpError` with a code for every refusal.
   */
  async publish(body: unknown): Promise<Record<string, unknown>> {
    const { store, policyFile, trustedKeys, threshold, now } = this.options;
    if (policyFile === '')
      throw new HttpError(
        503,
        'GUARD_COLLECTOR_NO_POLICY_FILE',
        'no policy_file is configured on this collector',
      );
    const request = parseRequest(body);
    const text = serializeEnvelope(request.envelope);
    const checked = checkEnvelope(text, request.envelope, trustedKeys, threshold, now());
    const record = await this.serialized(async () => {
      const previous = await currentBody(policyFile);
      if (previous !== null && checked.body.version <= previous.version)
        throw new HttpError(
          409,
          'GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER',
          `version ${checked.body.version} is not greater than the served version ${previous.version}; set "version" to ${previous.version + 1}`,
        );
      const diff = previous === null ? null : diffOrNull(previous, checked.body);
      await writeAtomically(policyFile, text);
      const row = {
        version: checked.body.version,
        published_at: new Date(now()).toISOString(),
        published_by: request.by,
        message: request.message,
        sha256: createHash('sha256').update(checked.bodyBytes).digest('hex'),
        keyids: JSON.stringify(request.envelope.signatures.map((s) => s.keyid)),
        verified: checked.verified,
        diff,
      };
      await store.recordPolicyPublication(row);
      return row;
    });
    return toApi({ ...record, id: 0 }, false);
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Registers the publish and history routes on `admin` (a scope already behind the admin token). */
export function registerPolicyPublishRoutes(
  admin: FastifyInstance,
  options: { readonly store: PolicyPublications; readonly publisher: PolicyPublisher },
): void {
  const { store, publisher } = options;

  admin.post('/v1/admin/policy', { bodyLimit: MAX_PUBLISH_BODY_BYTES }, async (req, reply) => {
    const record = await publisher.publish(req.body);
    reply.code(201);
    return record;
  });

  admin.get('/v1/admin/policy/history', async (req) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    for (const k of Object.keys(q))
      if (k !== 'limit' && k !== 'before')
        throw new HttpError(
          400,
          'GUARD_COLLECTOR_BAD_QUERY',
          `unknown query parameter "${k.slice(0, 40)}"; allowed: limit, before`,
        );
    const limit = intParam(q.limit, 'limit', 1, MAX_HISTORY) ?? DEFAULT_HISTORY;
    const before = intParam(q.before, 'before', 1, Number.MAX_SAFE_INTEGER);
    const rows = await store.listPolicyPublications(limit, before);
    return {
      publications: rows.map((r) => toApi(r, true)),
      next_before: rows.length === limit ? (rows[rows.length - 1]?.id ?? null) : null,
    };
  });
}

interface PublishRequest {
  readonly envelope: DsseEnvelope;
  readonly by: string;
  readonly message: string;
}

function parseRequest(body: unknown): PublishRequest {
  const b = body as Record<string, unknown> | null;
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw bad('the body must be a JSON object');
  for (const k of Object.keys(b))
    if (k !== 'envelope' && k !== 'by' && k !== 'message') throw bad(`unknown field "${k.slice(0, 40)}"`);
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
  return { envelope, by, message };
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

/** The body served now (unverified: the file is the admin's), or null when there is none or it is unreadable. */
async function currentBody(file: string): Promise<PolicyBody | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const env = JSON.parse(text) as { payload?: unknown };
    if (typeof env.payload !== 'string') return null;
    const body = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as PolicyBody;
    // a served file that is not a policy cannot block a publication that replaces it
    return typeof body?.version === 'number' ? body : null;
  } catch {
    return null;
  }
}

/** The diff as JSON; null when the served body is too malformed to compare (it was never verified here). */
function diffOrNull(previous: PolicyBody, next: PolicyBody): string | null {
  try {
    return JSON.stringify(diffPolicies(previous, next));
  } catch {
    return null;
  }
}

/** Replaces `file` with `text`: temp file beside it, fsync, rename over, fsync the directory. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

function toApi(r: PolicyPublicationRow, withId: boolean): Record<string, unknown> {
  return {
    ...(withId ? { id: r.id } : {}),
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
