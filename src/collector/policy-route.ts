/**
 * Owns serving the signed policy envelope at `GET /v1/policy`: the file is stat'ed on every request
 * and re-read only when its identity (inode, size, mtime, ctime — nanoseconds) changed, so
 * publishing a new policy is "sign, copy (or rename over), done" with no restart and no watcher
 * to lose events. The ETag is the hex SHA-256 of the served bytes; `If-None-Match` → 304.
 *
 * The collector does not verify the signature (agents do, against their pinned keys); it only
 * refuses to serve something that is not even JSON, so a half-copied file is never published.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { HttpError } from './http-error.js';

/** A policy envelope larger than this is refused: agents cap downloads at 1 MiB by default. */
export const MAX_POLICY_FILE_BYTES = 16 * 1024 * 1024;

export interface ServedPolicy {
  readonly bytes: Buffer;
  /** Quoted strong ETag: `"<hex sha256>"`. */
  readonly etag: string;
}

/** The current policy file, cached by file identity. */
export class PolicyFileCache {
  private cached: { readonly identity: string; readonly policy: ServedPolicy } | null = null;
  /** The version and rules of the cached policy, parsed once per served file. */
  private summary: { readonly etag: string; readonly summary: PolicySummary } | null = null;

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
    const policy = { bytes, etag: `"${createHash('sha256').update(bytes).digest('hex')}"` };
    this.cached = { identity, policy };
    return policy;
  }

  /**
   * The rule ids of the policy served now (read from the envelope's payload, unverified: the
   * file is the admin's), at most `MAX_METRIC_RULE_IDS`; empty when no policy is served or its
   * payload is not a policy body. Used only to bound the `rule` label of the metrics.
   */
  async ruleIds(): Promise<ReadonlySet<string>> {
    return (await this.published()).ids;
  }

  /**
   * The version and rules (at most `MAX_METRIC_RULE_IDS`) of the policy served now, read from the
   * envelope's payload unverified (the file is the admin's; agents verify it). Version null and no
   * rules when none is served or its payload is not a policy body. The console shows these.
   */
  async published(): Promise<PolicySummary> {
    let policy: ServedPolicy;
    try {
      policy = await this.current();
    } catch {
      return NO_POLICY;
    }
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
