/**
 * Owns what guardd has reported per running process: the decision (rule, action, mode) last
 * recorded for each process identity (pid + start time), in the state DB so it holds across
 * restarts. A process that keeps running is seen again at every policy change and every start
 * (the process sensor reports everything then); only a changed decision makes a new event, a
 * repeat is counted instead (heartbeat `counts.repeats`).
 *
 * Bounded: the newest MAX_PROCESS_REPORTS identities are kept; a process forgotten beyond that is
 * at worst reported once more.
 *
 * Only within one boot: Linux's start time counts clock ticks since boot, so after a reboot a new
 * process can have an old (pid, start time) pair and would inherit the old decision, unreported.
 * `beginBoot` forgets every identity recorded under another boot id.
 */
import { readFileSync } from 'node:fs';
import type { Db } from './database.js';

/** State key of the boot the recorded identities belong to. */
const STATE_BOOT_ID = 'process_reports.boot_id';
/** Linux's id of the running boot (a fresh UUID at every boot). */
const LINUX_BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/**
 * This boot's id: Linux's boot_id, elsewhere null (start times there are wall-clock ms, unique
 * across boots).
 */
export function currentBootId(file = LINUX_BOOT_ID_FILE): string | null {
  try {
    return readFileSync(file, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/**
 * Identities kept at most: ~100 bytes a row, so ≤ 1 MiB; far more matched processes than one
 * machine runs at once.
 */
export const MAX_PROCESS_REPORTS = 10_000;
/** Pruning runs every this many new rows (one DELETE, not one per insert). */
const PRUNE_EVERY = 100;

export class ProcessReports {
  private readonly getStmt;
  private readonly putStmt;
  private readonly pruneStmt;
  private inserted = 0;

  constructor(private readonly db: Db) {
    this.getStmt = db.prepare<[number, number], { decision: string }>(
      'SELECT decision FROM process_reports WHERE pid = ? AND start_time = ?',
    );
    this.putStmt = db.prepare(
      'INSERT OR REPLACE INTO process_reports(pid, start_time, decision, reported_at) VALUES (?, ?, ?, ?)',
    );
    this.pruneStmt = db.prepare(
      'DELETE FROM process_reports WHERE rowid <= (SELECT max(rowid) FROM process_reports) - ?',
    );
  }

  /**
   * Forgets every identity recorded under a boot other than `bootId` (null: identities do not
   * depend on the boot, nothing is forgotten). Call once at start, before the first `isRepeat`.
   */
  beginBoot(
    bootId: string | null,
    state: { get<T>(key: string): T | undefined; set(key: string, value: unknown): void },
  ): void {
    if (bootId === null || state.get<string>(STATE_BOOT_ID) === bootId) return;
    this.db.prepare('DELETE FROM process_reports').run();
    state.set(STATE_BOOT_ID, bootId);
  }

  /**
   * True when the process `pid` started at `startTime` was already reported with `decision`;
   * otherwise records `decision` for it (durably) and returns false. Never throws: a storage
   * failure reads as "not reported" (one event too many, never one too few).
   */
  isRepeat(pid: number, startTime: number, decision: string, now = new Date()): boolean {
    try {
      if (this.getStmt.get(pid, startTime)?.decision === decision) return true;
      this.putStmt.run(pid, startTime, decision, now.toISOString());
      if (++this.inserted % PRUNE_EVERY === 0) this.pruneStmt.run(MAX_PROCESS_REPORTS);
    } catch {
      return false;
    }
    return false;
  }
}
