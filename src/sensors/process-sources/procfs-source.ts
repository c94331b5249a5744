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
 *  4. a slice of the known processes has its `stat` re-read each tick, so that every one is
 *     re-checked once per SWEEP_MS, catching a pid reused between two ticks and a long-running
 *     process that exec'd a banned program late.
 * Steps 2 and 3 also stop early when the listing is identical to the previous one.
 */
import {
  CMDLINE_MAX_BYTES,
  lastFailure,
  listNames,
  PF_KTHREAD,
  type ProcImage,
  type ProcStat,
  pidsOf,
  readCmdline,
  readLastPid,
  readLink,
  readStat,
  readUid,
  sameImage,
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
/**
 * Every known process's stat is re-read once per this period, a slice per tick: bounds how late
 * pid reuse and a late exec are seen. Costs ≈ known × 50 µs per period (0.3 % of a core at 300
 * processes), which is why it is not shorter.
 */
export const SWEEP_MS = 5000;

interface Known {
  startTime: number;
  comm: string;
  /** The program image last seen: an exec changes it even when `comm` stays the same. */
  image: ProcImage;
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
  private lastTickAt = 0;
  private lastPid = -2;
  private lastNames: string[] = [];
  private sweepQueue: number[] = [];
  private sweepAt = 0;
  private sweeps = 0;
  /** Non-zero when the last listing may have left dead pids known (see pollSync). */
  private staleSince = 0;
  private listings = 0;
  private unchangedListings = 0;
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
    const sinceLast = first ? 0 : now - this.lastTickAt;
    this.lastTickAt = now;
    this.tick++;
    if (this.young.length > 0) this.recheckYoung(now, out);
    if (!first) this.sweepSlice(sinceLast, now, out);

    const lastPid = readLastPid(this.root);
    if (!first && lastPid >= 0 && lastPid === this.lastPid) {
      this.shortcuts++;
      return out;
    }
    this.lastPid = lastPid;
    const names = listNames(this.root);
    // Threads also move last_pid without changing the process list: an identical listing means
    // nothing was born or died, and parsing it again would only cost allocations.
    if (!first && sameList(names, this.lastNames)) {
      this.unchangedListings++;
      return out;
    }
    this.lastNames = names;
    this.listings++;

    const tick = this.tick;
    const pids = pidsOf(names);
    let vanished = false;
    for (let i = 0; i < pids.length; i++) {
      const pid = pids[i] as number;
      const k = this.known.get(pid);
      if (k === undefined) {
        this.observe(pid, now, first, out);
        if (!this.known.has(pid)) vanished = true;
      } else k.seenTick = tick;
    }
    if (this.known.size > pids.length || this.staleSince !== 0 || vanished) {
      // Forget pids no longer listed. A pid that exited mid-read is listed but not known, so the
      // size check alone cannot see a dead one behind it (a stale entry would hide a later process
      // given that pid until the sweep); `staleSince` retries once more next time.
      let dead = 0;
      for (const [pid, k] of this.known) {
        if (k.seenTick !== tick) {
          this.known.delete(pid);
          dead++;
        }
      }
      this.staleSince = dead > 0 ? tick : 0;
    } else if (pids.length > this.known.size) {
      this.staleSince = tick;
    }
    return out;
  }

  reset(): void {
    this.known.clear();
    this.young = [];
    this.tick = 0;
    this.lastPid = -2;
    this.lastNames = [];
    this.sweepQueue = [];
    this.sweepAt = 0;
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
      unchanged_listings: this.unchangedListings,
      shortcuts: this.shortcuts,
      sweeps: this.sweeps,
    };
  }

  private count(reason: string): void {
    this.skipped[reason] = (this.skipped[reason] ?? 0) + 1;
  }

  /**
   * Re-reads the stat of a slice of the known processes, sized so that every one is re-checked
   * once per SWEEP_MS: the cost is spread evenly over the ticks instead of a burst.
   */
  private sweepSlice(sinceLastMs: number, now: number, out: RawProcess[]): void {
    let budget = Math.ceil((this.known.size * Math.max(sinceLastMs, 0)) / SWEEP_MS);
    // Bounded by the budget and by one pass over the queue.
    while (budget > 0) {
      if (this.sweepAt >= this.sweepQueue.length) {
        this.sweepQueue = [...this.known.keys()];
        this.sweepAt = 0;
        this.sweeps++;
        if (this.sweepQueue.length === 0) return;
      }
      const end = Math.min(this.sweepQueue.length, this.sweepAt + budget);
      for (; this.sweepAt < end; this.sweepAt++) {
        const pid = this.sweepQueue[this.sweepAt] as number;
        const k = this.known.get(pid);
        if (k !== undefined && k.startTime >= 0) this.recheck(pid, k, now, out);
        budget--;
      }
    }
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
    if (stat.state === 'Z' || stat.state === 'X') return false; // exited; its image reads as 0
    if (stat.comm !== k.comm || !sameImage(stat.image, k.image)) {
      // Same process, new program (exec): read it again.
      k.comm = stat.comm;
      k.image = stat.image;
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
        this.known.set(pid, { startTime: -1, comm: '', image: NO_IMAGE, seenTick: this.tick, youngUntil: 0 });
      }
      return;
    }
    const youngUntil = first ? 0 : now + YOUNG_RECHECK_MS;
    this.known.set(pid, {
      startTime: stat.startTime,
      comm: stat.comm,
      image: stat.image,
      seenTick: this.tick,
      youngUntil,
    });
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

const NO_IMAGE: ProcImage = { startCode: 0, endCode: 0, startStack: 0, argStart: 0 };

/** Re-exported for docs and tests: the argv cap applied by this source. */
export const PROCFS_CMDLINE_MAX_BYTES = CMDLINE_MAX_BYTES;

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = a.length - 1; i >= 0; i--) if (a[i] !== b[i]) return false;
  return true;
}
