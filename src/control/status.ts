/**
 * Owns the shape of the daemon's `status` answer, shared by guardd (which builds it from each
 * component's `status()`) and guardctl (which renders it). Contract v1: fields may be added.
 */

export interface PolicyStatus {
  /** ok = a valid policy is in force; stale = expired, the last good one still enforced; none = no policy yet (monitor-only). */
  readonly state: 'ok' | 'stale' | 'none';
  readonly version: number | null;
  readonly issued_at: string | null;
  readonly expires_at: string | null;
  readonly sha256: string | null;
  readonly mode: 'enforce' | 'monitor';
  readonly rules: number;
  readonly source: string | null;
  readonly last_fetch_at: string | null;
  readonly last_error: { readonly code: string; readonly message: string; readonly at: string } | null;
}

export interface DaemonStatus {
  readonly running: true;
  readonly pid: number;
  readonly version: string;
  readonly started_at: string;
  readonly local_mode: boolean;
  readonly device_id: string;
  readonly hostname: string;
  readonly policy: PolicyStatus;
  readonly sensors: readonly {
    name: string;
    running: boolean;
    details: Record<string, unknown>;
    skipped: Record<string, number>;
  }[];
  readonly enforcement: {
    blocked: number;
    quarantined: number;
    warned: number;
    audited: number;
    failed: number;
  };
  readonly outbox: { depth: number; bytes: number; dropped_total: number };
  readonly shipper: {
    readonly collector_url: string | null;
    readonly enrolled: boolean;
    readonly last_success_at: string | null;
    readonly last_error: string | null;
    readonly shipped_total: number;
  };
}
