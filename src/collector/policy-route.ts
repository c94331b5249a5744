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
  /** The rule ids of the cached policy, parsed once per policy version. */
  private rules: { readonly etag: string; readonly ids: ReadonlySet<string> } | null = null;

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
    let policy: ServedPolicy;
    try {
      policy = await this.current();
    } catch {
      return EMPTY;
    }
    if (this.rules?.etag !== policy.etag) this.rules = { etag: policy.etag, ids: ruleIdsOf(policy.bytes) };
    return this.rules.ids;
  }
}

/**
 * At most this many rule ids become `rule` label values (one series each): far above a real ban
 * list (tens of rules), and a bound on the scrape size whatever the published file holds.
 */
export const MAX_METRIC_RULE_IDS = 1000;
const EMPTY: ReadonlySet<string> = new Set();

function ruleIdsOf(bytes: Buffer): ReadonlySet<string> {
  try {
    const envelope = JSON.parse(bytes.toString('utf8')) as { payload?: unknown };
    if (typeof envelope.payload !== 'string') return EMPTY;
    const body = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as {
      rules?: unknown;
    };
    if (!Array.isArray(body.rules)) return EMPTY;
    const ids = new Set<string>();
    for (const r of body.rules as { id?: unknown }[]) {
      if (ids.size >= MAX_METRIC_RULE_IDS) break;
      if (typeof r?.id === 'string') ids.add(r.id);
    }
    return ids;
  } catch {
    return EMPTY;
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
