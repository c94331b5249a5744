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
  /**
   * The shadow policy (evaluated beside the enforced one, never acted on) and its would-match
   * counters; null when none is in force. Optional: a daemon before shadow policies does not report it.
   */
  readonly shadow?:
    | (PolicyStatus & {
        readonly matches: number;
        readonly reported: number;
        readonly repeats: number;
        readonly suppressed: number;
      })
    | null;
  readonly sensors: readonly {
    name: string;
    running: boolean;
    details: Record<string, unknown>;
    skipped: Record<string, number>;
  }[];
  readonly enforcement: {
    blocked: number;
    quarantined: number;
    /** Execs refused before the program ran (pre-exec deny). */
    denied: number;
    warned: number;
    audited: number;
    failed: number;
  };
  /**
   * Pre-exec deny (Linux fanotify): on with its marks and the native listener's counters, or off
   * and why. Optional: a daemon before v0.2 does not report it.
   */
  readonly exec_deny?:
    | {
        readonly state: 'on';
        readonly deadline_ms: number;
        /** Mount points marked (one per file system). */
        readonly marked: readonly string[];
        /** Network and FUSE mounts left unmarked (their execs are only killed after they start). */
        readonly skipped: readonly { mount: string; fstype: string }[];
        readonly mark_failures: number;
        /** The native listener's counters (exec-deny.ts ExecPermCounters). */
        readonly counters: Readonly<Record<string, number>>;
        readonly decided: number;
        readonly decide_errors: number;
        /** Times the watchdog found the native listener thread stalled. */
        readonly watchdog_stalls: number;
        /** Hash and marker reads of exec'd files by outcome (busy/timeout: decided without them). */
        readonly file_reads: {
          readonly sha256: Readonly<Record<string, number>>;
          readonly markers: Readonly<Record<string, number>>;
        };
        /**
         * Open marks on banned packages' files (open-marks.ts OpenMarksStatus). Optional: a daemon
         * before open marks does not report it.
         */
        readonly open_marks?: {
          readonly state: 'on' | 'off';
          readonly marked: number;
          readonly added: number;
          readonly refused: Readonly<Record<string, number>>;
          readonly evicted: number;
          readonly orphaned: number;
          readonly flushes: number;
          readonly reported: number;
        };
      }
    | { readonly state: 'off'; readonly reason: string };
  readonly outbox: { depth: number; bytes: number; dropped_total: number };
  readonly shipper: {
    readonly collector_url: string | null;
    readonly enrolled: boolean;
    readonly last_success_at: string | null;
    readonly last_error: string | null;
    readonly shipped_total: number;
  };
}
