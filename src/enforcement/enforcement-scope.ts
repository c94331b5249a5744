/**
 * Owns which matched observations guardd may act on (kill, quarantine, tell the user). The enforcer
 * asks the scope once per matched observation, before any action; an observation outside the scope
 * is recorded only: a `block` becomes `would_block` (as in monitor mode), a `warn` is not shown
 * (`warn_suppressed`), and the event's `outcome.details.scope` says why.
 *
 * A real deployment acts on everything its policy matches (`FULL_SCOPE`). Local mode
 * (`guardd --local`, src/daemon/local-mode.ts) uses `LocalEnforcementScope`, so that a demo can be
 * run anywhere, by anyone, root included, without touching what it did not start:
 *   - processes: only those started after guardd, and (unprivileged) only guardd's own user's;
 *     as root, or on Windows (uid -1: no owners to compare), nothing at all unless `--enforce` was given;
 *   - packages and path artifacts: only under local mode's own directory (and its user's own files).
 */
import { resolve, sep } from 'node:path';
import type { Observation } from '../sensors/observation.js';
import { readStartTime } from '../sensors/process-sources/proc-files.js';

/** Why a match was recorded without acting on it; part of the event schema (`outcome.details.scope`). */
export type OutOfScope = 'monitor_only' | 'started_before' | 'other_user' | 'outside_local_dir';

export interface EnforcementScope {
  /**
   * Null when guardd may act on `obs`; otherwise why not. Called once per matched observation,
   * before any action, on the event loop: pure and cheap (no I/O).
   */
  exclude(obs: Observation): OutOfScope | null;
}

/** A real deployment: every match is acted on as the policy says. */
export const FULL_SCOPE: EnforcementScope = { exclude: () => null };

export interface LocalScopeOptions {
  /**
   * guardd's own (real) uid; 0 = root; -1 where the OS has no uids (Windows). -1 is treated as root:
   * owners cannot be compared there, and an elevated guardd would otherwise act on every user's
   * new processes without `--enforce`, so the conservative reading is monitor-only.
   */
  readonly uid: number;
  /**
   * Root (and uid -1) only: act on processes started after guardd (any user's) instead of only
   * recording. Ignored for other users, who always act on their own new processes.
   */
  readonly enforceAsRoot: boolean;
  /**
   * guardd's own process start time in the unit of `ProcessObservation.startTime` on this platform
   * (see `ownStartTime`). Only processes that started strictly later are acted on.
   */
  readonly startTime: number;
  /** The one directory whose packages and artifacts may be quarantined (local mode's directory). */
  readonly ownDir: string;
}

export class LocalEnforcementScope implements EnforcementScope {
  private readonly ownDir: string;

  constructor(private readonly options: LocalScopeOptions) {
    this.ownDir = resolve(options.ownDir);
  }

  /** True for root and for uid -1 (Windows: no owners to compare), which act on any user's processes. */
  private get actsForAnyUser(): boolean {
    return this.options.uid === 0 || this.options.uid === -1;
  }

  /** True when this scope only records (root or Windows without `--enforce`). */
  get monitorOnly(): boolean {
    return this.actsForAnyUser && !this.options.enforceAsRoot;
  }

  exclude(obs: Observation): OutOfScope | null {
    if (this.monitorOnly) return 'monitor_only';
    if (!this.actsForAnyUser && obs.owner.uid !== this.options.uid) return 'other_user';
    if (obs.kind === 'process') {
      // Equal start times are "before": a start-time clock ticks coarser than a process starts
      // (Linux: 10 ms), and a process in guardd's own tick may have been running already.
      return obs.startTime > this.options.startTime ? null : 'started_before';
    }
    return this.inOwnDir(obs.path) ? null : 'outside_local_dir';
  }

  private inOwnDir(path: string): boolean {
    const p = resolve(path);
    return p.startsWith(this.ownDir + sep);
  }
}

/**
 * guardd's own start time in the unit process sources report: Linux = clock ticks since boot from
 * /proc/self/stat (both procfs and ps-list read it there); elsewhere ms since the epoch (ps-list
 * has 1 s resolution and truncates, so a process started in guardd's own second counts as before).
 * When it cannot be read, the largest safe integer: then no process counts as started after.
 */
export function ownStartTime(platform: NodeJS.Platform = process.platform): number {
  if (platform === 'linux') return readStartTime('/proc', process.pid) ?? Number.MAX_SAFE_INTEGER;
  return Math.floor(Date.now() - process.uptime() * 1000);
}
