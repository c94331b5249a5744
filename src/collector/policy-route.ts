/**
 * Owns what the collector serves as the signed policy, per channel: `GET /v1/policy` (the enforced
 * ban list) and `GET /v1/policy/shadow` (the shadow candidate, docs/policy.md "Shadow policies").
 *
 * Two sources, combined by version (`ServedPolicies`):
 *   - `policy_file` — the admin's "sign, copy, done" workflow: the file is stat'ed on every request
 *     and re-read only when its identity (inode, size, mtime, ctime — nanoseconds) changed, so no
 *     restart and no watcher to lose events (`PolicyFileCache`);
 *   - the database — what `POST /v1/admin/policy` published, per channel, shared by every
 *     collector on the database (`PolicyChannelCache`). Each request reads the channel's stamp (one
 *     row, no envelope: publication id, version); the envelope is re-read only when the
 *     publication id changed. Concurrent requests share one stamp read, so a publication is served
 *     by every collector from the first request that starts after it committed (at most one read
 *     round trip late), with no cache expiry to tune.
 * The enforced channel serves the higher payload version of the file and the database (a tie: the
 * database's — the recorded publication); the shadow channel exists only in the database.
 *
 * The ETag is the hex SHA-256 of the served bytes; `If-None-Match` → 304. The collector does not
 * verify signatures here (agents do, against their pinned keys; publication verifies when
 * `policy_trusted_keys` is set); it only refuses to serve something that is not even JSON, so a
 * half-copied file is never served. Versions are read from the payload unverified, only to choose.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { HttpError } from './http-error.js';
import type { PolicyChannel, PolicyChannels } from './store/port.js';

/** A policy envelope larger than this is refused: agents cap downloads at 1 MiB by default. */
export const MAX_POLICY_FILE_BYTES = 16 * 1024 * 1024;

export interface ServedPolicy {
  readonly bytes: Buffer;
  /** Quoted strong ETag: `"<hex sha256>"`. */
  readonly etag: string;
  /** The payload's `version` (unverified), or null when the payload is not a policy body. */
  readonly version: number | null;
}

/** The current policy file, cached by file identity. */
export class PolicyFileCache {
  private cached: { readonly identity: string; readonly policy: ServedPolicy } | null = null;

  /** `file` is the envelope path; empty = no policy configured (every request gets 503). */
  constructor(private readonly file: string) {}

  /**
   * The envelope to serve. Throws `HttpError` 503 `GUARD_COLLECTOR_NO_POLICY` when none is
   * configured, the file is missing/unreadable/too large, or it is not JSON (e.g. mid-copy).
   */
  async current(): Promise<ServedPolicy> {
    if (this.file === '') throw noPolicy('no policy file is configured (--policy-file)');
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(this.file, { bigint: true });
    } catch (err) {
      throw noPolicy(`policy file unavailable: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (st.size > BigInt(MAX_POLICY_FILE_BYTES))
      throw noPolicy(`policy file is larger than ${MAX_POLICY_FILE_BYTES} bytes`);
    const identity = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    if (this.cached?.identity === identity) return this.cached.policy;
    let bytes: Buffer;
    try {
      bytes = await readFile(this.file);
    } catch (err) {
      throw noPolicy(`policy file unreadable: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    try {
      JSON.parse(bytes.toString('utf8'));
    } catch {
      throw noPolicy('policy file is not JSON (being copied?); not served');
    }
    const policy = servedOf(bytes);
    this.cached = { identity, policy };
    return policy;
  }
}

/** The policy each channel of the database serves, cached by publication id (see the header). */
export class PolicyChannelCache {
  private readonly cached = new Map<PolicyChannel, { id: number; policy: ServedPolicy | null }>();
  private readonly inFlight = new Map<PolicyChannel, Promise<ServedPolicy | null>>();

  constructor(private readonly store: PolicyChannels) {}

  /**
   * The channel's newest published envelope, or null when none was published or it was cleared.
   * The store failing is a 503 `GUARD_COLLECTOR_NO_POLICY` (agents keep their policy and retry),
   * never an older policy from elsewhere.
   */
  newest(channel: PolicyChannel): Promise<ServedPolicy | null> {
    let p = this.inFlight.get(channel);
    if (!p) {
      p = this.load(channel)
        .catch(() => {
          // no store detail in the answer: the policy routes need no token
          throw noPolicy('the policy store is unavailable; retry later');
        })
        .finally(() => this.inFlight.delete(channel));
      this.inFlight.set(channel, p);
    }
    return p;
  }

  private async load(channel: PolicyChannel): Promise<ServedPolicy | null> {
    const stamp = await this.store.policyChannelStamp(channel);
    if (!stamp?.present) return null;
    const c = this.cached.get(channel);
    if (c?.id === stamp.publication_id) return c.policy;
    const state = await this.store.policyChannel(channel);
    const policy = state?.envelope ? servedOf(Buffer.from(state.envelope, 'utf8')) : null;
    if (state) this.cached.set(channel, { id: state.publication_id, policy });
    return policy;
  }
}

/** The enforced and shadow policies served to agents: file and database combined (see the header). */
export class ServedPolicies {
  /** The version and rules of the enforced policy, parsed once per served envelope. */
  private summary: { readonly etag: string; readonly summary: PolicySummary } | null = null;

  constructor(
    private readonly file: PolicyFileCache,
    private readonly channels: PolicyChannelCache,
  ) {}

  /**
   * The enforced envelope: the higher version of `policy_file` and the database's enforced
   * channel. Throws `HttpError` 503 `GUARD_COLLECTOR_NO_POLICY` when neither has one.
   */
  async current(): Promise<ServedPolicy> {
    const fromDb = await this.channels.newest('enforced');
    let fromFile: ServedPolicy | null = null;
    let fileError: HttpError | null = null;
    try {
      fromFile = await this.file.current();
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      fileError = err;
    }
    if (fromDb && (!fromFile || (fromDb.version ?? -1) >= (fromFile.version ?? -1))) return fromDb;
    if (fromFile) return fromFile;
    throw fileError ?? noPolicy('no policy is published');
  }

  /** The enforced envelope, or null when none is served. */
  async currentOrNull(): Promise<ServedPolicy | null> {
    try {
      return await this.current();
    } catch (err) {
      if (err instanceof HttpError) return null;
      throw err;
    }
  }

  /** The shadow envelope, or null when there is none (never published, cleared or promoted). */
  shadow(): Promise<ServedPolicy | null> {
    return this.channels.newest('shadow');
  }

  /**
   * The rule ids of the enforced policy served now, at most `MAX_METRIC_RULE_IDS`; empty when no
   * policy is served or its payload is not a policy body. Used only to bound the `rule` label of
   * the metrics.
   */
  async ruleIds(): Promise<ReadonlySet<string>> {
    return (await this.published()).ids;
  }

  /**
   * The version and rules (at most `MAX_METRIC_RULE_IDS`) of the enforced policy served now, read
   * from the envelope's payload unverified (agents verify it). Version null and no rules when none
   * is served or its payload is not a policy body. The console shows these.
   */
  async published(): Promise<PolicySummary> {
    const policy = await this.currentOrNull().catch(() => null);
    if (!policy) return NO_POLICY;
    if (this.summary?.etag !== policy.etag)
      this.summary = { etag: policy.etag, summary: summaryOf(policy.bytes) };
    return this.summary.summary;
  }
}

/** What the collector tells of the served policy without verifying it. */
export interface PolicySummary {
  readonly version: number | null;
  readonly rules: readonly { readonly id: string; readonly name: string; readonly action: string }[];
  readonly ids: ReadonlySet<string>;
}

/** The served form of envelope bytes: ETag and the payload's version (unverified). */
function servedOf(bytes: Buffer): ServedPolicy {
  return {
    bytes,
    etag: `"${createHash('sha256').update(bytes).digest('hex')}"`,
    version: payloadVersion(bytes),
  };
}

/** The `version` of an envelope's payload, unverified; null when there is no such number. */
export function payloadVersion(bytes: Buffer): number | null {
  try {
    const envelope = JSON.parse(bytes.toString('utf8')) as { payload?: unknown };
    if (typeof envelope.payload !== 'string') return null;
    const v = (JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as { version?: unknown })
      .version;
    return typeof v === 'number' && Number.isSafeInteger(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * At most this many rule ids become `rule` label values (one series each): far above a real ban
 * list (tens of rules), and a bound on the scrape size whatever the published file holds.
 */
export const MAX_METRIC_RULE_IDS = 1000;
const NO_POLICY: PolicySummary = Object.freeze({ version: null, rules: [], ids: new Set<string>() });

function summaryOf(bytes: Buffer): PolicySummary {
  try {
    const envelope = JSON.parse(bytes.toString('utf8')) as { payload?: unknown };
    if (typeof envelope.payload !== 'string') return NO_POLICY;
    const body = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as {
      version?: unknown;
      rules?: unknown;
    };
    const version = Number.isSafeInteger(body.version) ? (body.version as number) : null;
    const ids = new Set<string>();
    const rules: { id: string; name: string; action: string }[] = [];
    for (const r of Array.isArray(body.rules) ? (body.rules as Record<string, unknown>[]) : []) {
      if (ids.size >= MAX_METRIC_RULE_IDS) break;
      if (typeof r?.id !== 'string' || ids.has(r.id)) continue;
      ids.add(r.id);
      rules.push({
        id: r.id,
        name: typeof r.name === 'string' ? r.name : r.id,
        action: typeof r.action === 'string' ? r.action : '',
      });
    }
    return { version, rules, ids };
  } catch {
    return NO_POLICY;
  }
}

function noPolicy(message: string): HttpError {
  return new HttpError(503, 'GUARD_COLLECTOR_NO_POLICY', message, 60);
}

/** True when an `If-None-Match` header names `etag` (or is `*`). */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}
