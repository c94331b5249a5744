/**
 * Owns the Linux process source: an incremental scan of /proc that reads only processes it has not
 * seen before (identity = pid + start time in clock ticks).
 *
 * Per tick, in order of cost:
 *  1. processes first seen less than YOUNG_RECHECK_MS ago get their `stat` re-read: a fork is
 *     usually followed by an exec within milliseconds (`sh -c tool`, `env tool`, `npx`), and a
 *     process seen between the two would otherwise be remembered as the shell;
 *  2. /proc/loadavg's last-allocated pid is compared with the previous tick: unchanged means no
 *     process or thread was created, so listing /proc is skipped;
 *  3. otherwise /proc is listed; unknown pids are read (stat, status, cmdline, exe), known ones
 *     are only marked alive, and pids that vanished are forgotten;
 *  4. every SWEEP_MS all known processes have their `stat` re-read, catching a pid reused between
 *     two ticks and a long-running process that exec'd a banned program late.
 */
import {
  CMDLINE_MAX_BYTES,
  lastFailure,
  listPids,
  PF_KTHREAD,
  type ProcStat,
  readCmdline,
  readLastPid,
  readLink,
  readStat,
  readUid,
  ttyPath,
} from './proc-files.js';
import type { ProcessSource, RawProcess } from './process-source.js';

export interface ProcfsSourceOptions {
  /** The proc filesystem root; tests point it at a fake tree. Default /proc. */
  readonly procRoot?: string;
  /** Clock for the young/sweep windows (ms, monotonic). Default performance.now. */
  readonly now?: () => number;
}

/** Default scan interval: at 100 ms the launch→kill p99 stays under 150 ms (bench/process.bench.js). */
export const PROCFS_DEFAULT_INTERVAL_MS = 100;
/** A process is re-checked for exec this long after it was first seen (fork→exec takes ms; npx chains a few). */
export const YOUNG_RECHECK_MS = 1000;
/** Every known process's stat is re-read this often: bounds how late pid reuse and late exec are seen. */
export const SWEEP_MS = 2000;

interface Known {
  startTime: number;
  comm: string;
  /** The tick in which the pid was last listed (dead pids keep an old value and are forgotten). */
  seenTick: number;
  /** Re-check until this time (ms); 0 = not young. */
  youngUntil: number;
}

export class ProcfsSource implements ProcessSource {
  readonly kind = 'procfs' as const;
  readonly defaultIntervalMs = PROCFS_DEFAULT_INTERVAL_MS;
  readonly skipped: Record<string, number> = {};
  private readonly root: string;
  private readonly now: () => number;
  private readonly known = new Map<number, Known>();
  private young: number[] = [];
  private tick = 0;
  private lastPid = -2;
  private lastSweep = 0;
  private listings = 0;
  private shortcuts = 0;

  constructor(options: ProcfsSourceOptions = {}) {
    this.root = options.procRoot ?? '/proc';
    this.now = options.now ?? (() => performance.now());
  }

  async poll(): Promise<RawProcess[]> {
    return this.pollSync();
  }

  /** The synchronous body of `poll` (reads are small and local; sync avoids a promise per file). */
  pollSync(): RawProcess[] {
    const out: RawProcess[] = [];
    const now = this.now();
    const first = this.tick === 0;
    this.tick++;
    if (this.young.length > 0) this.recheckYoung(now, out);

    const sweep = now - this.lastSweep >= SWEEP_MS;
    const lastPid = readLastPid(this.root);
    if (!first && !sweep && lastPid >= 0 && lastPid === this.lastPid) {
      this.shortcuts++;
      return out;
    }
    this.lastPid = lastPid;
    if (sweep) this.lastSweep = now;
    this.listings++;

    const tick = this.tick;
    const pids = listPids(this.root);
    for (let i = 0; i < pids.length; i++) {
      const pid = pids[i] as number;
      const k = this.known.get(pid);
      if (k === undefined) {
        this.observe(pid, now, first, out);
      } else {
        k.seenTick = tick;
        if (sweep && k.startTime >= 0) this.recheck(pid, k, now, out);
      }
    }
    if (this.known.size > pids.length || sweep) {
      for (const [pid, k] of this.known) if (k.seenTick !== tick) this.known.delete(pid);
    }
    return out;
  }

  reset(): void {
    this.known.clear();
    this.young = [];
    this.tick = 0;
    this.lastPid = -2;
  }

  cwd(pid: number): string | null {
    return readLink(this.root, pid, 'cwd');
  }

  hashPath(raw: RawProcess): string | null {
    return raw.exe === null ? null : `${this.root}/${raw.pid}/exe`;
  }

  details(): Record<string, unknown> {
    return {
      proc_root: this.root,
      known: this.known.size,
      listings: this.listings,
      shortcuts: this.shortcuts,
    };
  }

  private count(reason: string): void {
    this.skipped[reason] = (this.skipped[reason] ?? 0) + 1;
  }

  private recheckYoung(now: number, out: RawProcess[]): void {
    const keep: number[] = [];
    for (const pid of this.young) {
      const k = this.known.get(pid);
      if (k === undefined || k.youngUntil < now) continue;
      if (this.recheck(pid, k, now, out)) keep.push(pid);
    }
    this.young = keep;
  }

  /** Re-reads stat of a known pid; reports it again when its identity or program changed. False when gone. */
  private recheck(pid: number, k: Known, now: number, out: RawProcess[]): boolean {
    const stat = readStat(this.root, pid);
    if (stat === null) {
      if (lastFailure === 'exited') this.known.delete(pid);
      return false;
    }
    if (stat.startTime !== k.startTime) {
      // The pid was reused between two scans: a different process.
      this.known.delete(pid);
      this.observe(pid, now, false, out, stat);
      return this.known.has(pid);
    }
    if (stat.comm !== k.comm) {
      // Same process, new program (exec): read it again.
      k.comm = stat.comm;
      const raw = this.read(pid, stat);
      if (raw) out.push(raw);
    }
    return true;
  }

  /** Reads a process not known before; remembers it (unless it already exited) and reports it. */
  private observe(pid: number, now: number, first: boolean, out: RawProcess[], known?: ProcStat): void {
    const stat = known ?? readStat(this.root, pid);
    if (stat === null) {
      this.count(lastFailure);
      // Unreadable (hidepid, EACCES) or malformed: remember it so it is counted once, not every tick.
      if (lastFailure !== 'exited') {
        this.known.set(pid, { startTime: -1, comm: '', seenTick: this.tick, youngUntil: 0 });
      }
      return;
    }
    const youngUntil = first ? 0 : now + YOUNG_RECHECK_MS;
    this.known.set(pid, { startTime: stat.startTime, comm: stat.comm, seenTick: this.tick, youngUntil });
    if ((stat.flags & PF_KTHREAD) !== 0 || stat.pid === 2 || stat.ppid === 2) return;
    if (stat.state === 'Z' || stat.state === 'X') {
      this.count('exited');
      return;
    }
    if (youngUntil > 0) this.young.push(pid);
    const raw = this.read(pid, stat);
    if (raw) out.push(raw);
  }

  /** Reads the rest of a process's facts; null (counted) when it exited mid-read or is unreadable. */
  private read(pid: number, stat: ProcStat): RawProcess | null {
    const uid = readUid(this.root, pid);
    if (uid === null) {
      this.count(lastFailure);
      return null;
    }
    const cmdline = readCmdline(this.root, pid);
    if (cmdline === null) {
      this.count(lastFailure);
      return null;
    }
    // Enormous or binary argv is still matched (fail closed on what was read) but counted.
    if (cmdline.truncated) this.count('cmdline_truncated');
    if (cmdline.binary) this.count('cmdline_binary');
    let exe = readLink(this.root, pid, 'exe');
    if (exe === null) {
      if (lastFailure === 'exited') {
        this.count('exited');
        return null;
      }
      this.count('exe_unreadable');
      exe = null;
    }
    return {
      pid,
      ppid: stat.ppid,
      startTime: stat.startTime,
      name: stat.comm,
      exe,
      argv: cmdline.argv,
      uid,
      tty: ttyPath(stat.ttyNr),
    };
  }
}

/** Re-exported for docs and tests: the argv cap applied by this source. */
export const PROCFS_CMDLINE_MAX_BYTES = CMDLINE_MAX_BYTES;
