/**
 * Owns the portable process source: `ps-list` snapshots diffed against the previous one (macOS,
 * Windows, and Linux when configured). Each snapshot costs two `ps` runs (macOS/Linux) or one
 * fastlist.exe run (Windows), so the default interval is 1 s.
 *
 * Limits, stated in docs/process-detection.md: a process that starts and exits between two
 * snapshots is never seen; argv is ps's joined command line split on spaces (a path with spaces
 * becomes several arguments); names come from the executable path when ps-list can resolve it,
 * else from `comm` (truncated to 15/16 characters on Linux/macOS); start time has one-second
 * resolution (on Linux the source takes /proc's start time instead, so identities agree with
 * enforcement); on Windows there is no argv, uid, start time or executable path, only pid, ppid and
 * image name.
 */
import psList, { type ProcessDescriptor } from 'ps-list';
import { readLink, readStartTime } from './proc-files.js';
import type { ProcessSource, RawProcess } from './process-source.js';

export interface PsListSourceOptions {
  /** The snapshot function; tests and other platforms' fakes pass their own. Default ps-list. */
  readonly list?: () => Promise<readonly ProcessDescriptor[]>;
  /** Our own pid: the `ps` processes ps-list spawns are not reported. */
  readonly selfPid?: number;
  /** Take start times from /proc (Linux). Default: on Linux. */
  readonly procStartTimes?: boolean;
}

/** Default interval: one snapshot spawns `ps` twice; once a second keeps that under ~1 % of a core. */
export const PSLIST_DEFAULT_INTERVAL_MS = 1000;
/** argv longer than this many characters is cut: the same bound the procfs source applies. */
const CMD_MAX_CHARS = 32 * 1024;

export class PsListSource implements ProcessSource {
  readonly kind = 'ps-list' as const;
  readonly defaultIntervalMs = PSLIST_DEFAULT_INTERVAL_MS;
  readonly skipped: Record<string, number> = {};
  private readonly list: () => Promise<readonly ProcessDescriptor[]>;
  private readonly selfPid: number;
  private readonly procStartTimes: boolean;
  /** pid → identity and program (start time, name, path, command line) of the previous snapshot. */
  private known = new Map<number, string>();
  private snapshots = 0;

  constructor(options: PsListSourceOptions = {}) {
    this.list = options.list ?? (() => psList());
    this.selfPid = options.selfPid ?? process.pid;
    this.procStartTimes = options.procStartTimes ?? process.platform === 'linux';
  }

  async poll(): Promise<RawProcess[]> {
    let snapshot: readonly ProcessDescriptor[];
    try {
      snapshot = await this.list();
    } catch {
      this.skipped.snapshot_failed = (this.skipped.snapshot_failed ?? 0) + 1;
      return [];
    }
    this.snapshots++;
    const next = new Map<number, string>();
    const out: RawProcess[] = [];
    for (const p of snapshot) {
      if (!Number.isInteger(p.pid) || p.pid <= 0 || typeof p.name !== 'string') {
        this.skipped.malformed = (this.skipped.malformed ?? 0) + 1;
        continue;
      }
      if (p.ppid === this.selfPid && (p.name === 'ps' || p.name.startsWith('fastlist'))) continue;
      // On Linux the identity enforcement re-checks is /proc's start time in clock ticks; ps's
      // lstart (1 s resolution) is only the identity where nothing better exists.
      const startMs = this.procStartTimes
        ? (readStartTime('/proc', p.pid) ?? 0)
        : p.startTime instanceof Date
          ? p.startTime.getTime()
          : 0;
      let cmd = typeof p.cmd === 'string' ? p.cmd : '';
      // The program is part of what is remembered, not only the identity: an exec keeps pid and
      // start time and often the name too (`node` exec'ing `node <banned cli>`); the command line
      // and the executable path are what change.
      const identity = `${Number.isFinite(startMs) ? startMs : 0}\u0000${p.name}\u0000${p.path ?? ''}\u0000${cmd.slice(0, CMD_MAX_CHARS)}`;
      next.set(p.pid, identity);
      if (this.known.get(p.pid) === identity) continue;
      if (cmd.length > CMD_MAX_CHARS) {
        cmd = cmd.slice(0, CMD_MAX_CHARS);
        this.skipped.cmdline_truncated = (this.skipped.cmdline_truncated ?? 0) + 1;
      }
      out.push({
        pid: p.pid,
        ppid: Number.isInteger(p.ppid) ? p.ppid : 0,
        startTime: Number.isFinite(startMs) ? startMs : 0,
        name: p.name,
        exe: p.path ? p.path : null,
        argv: cmd === '' ? [] : cmd.split(' ').filter((a) => a !== ''),
        uid: typeof p.uid === 'number' && Number.isInteger(p.uid) ? p.uid : null,
        tty: null,
      });
    }
    this.known = next;
    return out;
  }

  reset(): void {
    this.known = new Map();
  }

  cwd(pid: number): string | null {
    // ps has no working directory; on Linux (ps-list configured there) /proc still knows it.
    return process.platform === 'linux' ? readLink('/proc', pid, 'cwd') : null;
  }

  hashPath(raw: RawProcess): string | null {
    return raw.exe;
  }

  details(): Record<string, unknown> {
    return { known: this.known.size, snapshots: this.snapshots };
  }
}
