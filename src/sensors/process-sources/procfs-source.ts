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
 *  4. a slice of the known user processes has its `stat` re-read each tick, so that every one is
 *     re-checked once per EXEC_SWEEP_MS, catching an exec at any age (a process that waits, then
 *     execs a banned program) and a pid reused between two ticks; kernel threads, which never
 *     exec, are re-checked once per SWEEP_MS only for pid reuse. The re-read goes through a
 *     descriptor of /proc/<pid>/stat held since the process was first seen (one pread instead of
 *     open + read + close), which is what makes the short period affordable.
 * A thread-group leader that exited while its other threads run (state Z with live tasks) is a
 * running process: its facts are read from a live thread (see `running`).
 * Steps 2 and 3 also stop early when the listing is identical to the previous one.
 */

import { existsSync } from 'node:fs';
import { isDynamicLoader } from '../dynamic-loader.js';
import { executableMappings, pickProgram, readMaps } from './loaded-program.js';
import {
  CMDLINE_MAX_BYTES,
  closeStat,
  lastFailure,
  listNames,
  liveThread,
  NO_IMAGE,
  openStat,
  PF_KTHREAD,
  type ProcImage,
  type ProcStat,
  pidsOf,
  readCmdline,
  readFdSoftLimit,
  readGroups,
  readLastPid,
  readLink,
  readStat,
  readStatFd,
  readUid,
  taskDir,
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
 * Every known kernel thread's stat is re-read once per this period, a slice per tick: kernel
 * threads never exec, so this only bounds how late a pid reused between two ticks is seen there.
 */
export const SWEEP_MS = 5000;
/**
 * Every known user process's stat is re-read once per this period: the longest a process that
 * execs a banned program late (after YOUNG_RECHECK_MS) stays unseen, plus one tick. Through a held
 * descriptor a re-read costs ≈ 8 µs, so 300 user processes cost ≈ 2.4 ms per second (0.24 % of a
 * core; bench/process.bench.js prints the CPU).
 */
export const EXEC_SWEEP_MS = 1000;
/**
 * Descriptors of /proc/<pid>/stat held at most (processes beyond it are re-read by path, at about
 * twice the cost). Also never more than half the soft RLIMIT_NOFILE, so sockets and the database
 * always find a descriptor.
 */
export const MAX_HELD_STAT_FDS = 4096;

interface Known {
  startTime: number;
  comm: string;
  /** The program image last seen: an exec changes it even when `comm` stays the same. */
  image: ProcImage;
  /** The tick in which the pid was last listed (dead pids keep an old value and are forgotten). */
  seenTick: number;
  /** Re-check until this time (ms); 0 = not young. */
  youngUntil: number;
  /** A kernel thread: never execs, so only the slow sweep looks at it (pid reuse). */
  kthread: boolean;
  /** Held descriptor of /proc/<pid>/stat, or -1 (see MAX_HELD_STAT_FDS). */
  fd: number;
}

/** One round-robin re-check over a class of known processes, a slice per tick. */
interface Sweep {
  queue: number[];
  at: number;
  periodMs: number;
  /** Which known processes this sweep covers. */
  readonly kthreads: boolean;
  passes: number;
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
  private readonly userSweep: Sweep = {
    queue: [],
    at: 0,
    periodMs: EXEC_SWEEP_MS,
    kthreads: false,
    passes: 0,
  };
  private readonly kernelSweep: Sweep = { queue: [], at: 0, periodMs: SWEEP_MS, kthreads: true, passes: 0 };
  private heldFds = 0;
  private readonly maxHeldFds: number;
  /** Non-zero when the last listing may have left dead pids known (see pollSync). */
  private staleSince = 0;
  private listings = 0;
  private unchangedListings = 0;
  private shortcuts = 0;
  private zombieLeaders = 0;
  private resyncs = 0;

  constructor(options: ProcfsSourceOptions = {}) {
    this.root = options.procRoot ?? '/proc';
    this.now = options.now ?? (() => performance.now());
    this.maxHeldFds = Math.min(MAX_HELD_STAT_FDS, Math.floor(readFdSoftLimit() / 2));
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
    if (!first) {
      this.sweepSlice(this.userSweep, sinceLast, now, out);
      this.sweepSlice(this.kernelSweep, sinceLast, now, out);
    }

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
          this.forget(pid, k);
          dead++;
        }
      }
      this.staleSince = dead > 0 ? tick : 0;
    } else if (pids.length > this.known.size) {
      this.staleSince = tick;
    }
    return out;
  }

  /**
   * Reads one pid now (an exec event named it) through the same known-process table as the scan,
   * so a process is reported once whichever path sees it first: 'reported' when it was new or ran
   * another program than last seen (pushed to `out`), 'known' when it runs what was reported
   * already, 'gone' when it exited (or is unreadable) before it could be read.
   */
  observePid(pid: number, out: RawProcess[]): 'reported' | 'known' | 'gone' {
    const now = this.now();
    const before = out.length;
    let k = this.known.get(pid);
    if (k !== undefined && k.startTime < 0) {
      // Remembered as unreadable: an exec may have made it readable (a setuid program dropped).
      this.forget(pid, k);
      k = undefined;
    }
    if (k === undefined) {
      this.observe(pid, now, false, out);
      if (out.length > before) return 'reported';
      const seen = this.known.get(pid);
      // Not reported: exited, unreadable, or a kernel thread (which never execs).
      return seen?.kthread ? 'known' : 'gone';
    }
    const alive = this.recheck(pid, k, now, out);
    if (out.length > before) return 'reported';
    return alive ? 'known' : 'gone';
  }

  /**
   * Takes a process read elsewhere (an exec event's snapshot, read from this /proc right after the
   * exec) into the known-process table, so the scan does not report it again. True when it is
   * news (a pid not known, a reused pid, or another program than last reported); false when this
   * very program was reported already.
   */
  adopt(stat: ProcStat): boolean {
    const k = this.known.get(stat.pid);
    if (k !== undefined && k.startTime === stat.startTime) {
      if (k.comm === stat.comm && k.image === stat.image) return false;
      k.comm = stat.comm;
      k.image = stat.image;
      return true;
    }
    if (k !== undefined) this.forget(stat.pid, k);
    // No held descriptor and no young re-check: exec events report its next exec, and most
    // exec'd programs are short-lived; the sweep re-reads it by path.
    this.known.set(stat.pid, {
      startTime: stat.startTime,
      comm: stat.comm,
      image: stat.image,
      seenTick: this.tick,
      youngUntil: 0,
      kthread: false,
      fd: -1,
    });
    return true;
  }

  /** `startTime/image` of the program last reported for `pid`, or null when the pid is not known. */
  identityOf(pid: number): string | null {
    const k = this.known.get(pid);
    return k === undefined || k.startTime < 0 ? null : `${k.startTime}/${k.image}`;
  }

  /**
   * A scan that misses nothing: the listing (new pids) and a re-read of every known user
   * process's stat (execs of old processes), now rather than spread over EXEC_SWEEP_MS. For when
   * exec events were lost (the kernel dropped some): only what changed is reported again.
   */
  resync(): RawProcess[] {
    const out = this.pollSync();
    const now = this.now();
    for (const [pid, k] of [...this.known]) {
      if (k.kthread || k.startTime < 0 || this.known.get(pid) !== k) continue;
      this.recheck(pid, k, now, out);
    }
    this.resyncs++;
    return out;
  }

  reset(): void {
    for (const [pid, k] of this.known) this.forget(pid, k);
    this.young = [];
    this.tick = 0;
    this.lastPid = -2;
    this.lastNames = [];
    for (const sweep of [this.userSweep, this.kernelSweep]) {
      sweep.queue = [];
      sweep.at = 0;
    }
  }

  /** Forgets a known pid and closes its held descriptor. */
  private forget(pid: number, k: Known): void {
    if (k.fd >= 0) {
      closeStat(k.fd);
      k.fd = -1;
      this.heldFds--;
    }
    this.known.delete(pid);
  }

  /**
   * Sets how often every known user process's stat is re-read (ms; default EXEC_SWEEP_MS). An
   * exec-events source relaxes it: every exec is pushed to it, so the sweep is only a backstop.
   */
  setExecSweepPeriod(ms: number): void {
    this.userSweep.periodMs = ms;
  }

  cwd(pid: number, tid?: number): string | null {
    return readLink(this.root, pid, 'cwd', tid);
  }

  groups(pid: number, tid?: number): readonly number[] | null {
    return readGroups(this.root, pid, tid);
  }

  execedSince(raw: RawProcess): boolean {
    const live = this.stillRunning(raw);
    return live === null || live.stat.image !== raw.image;
  }

  exited(raw: RawProcess): boolean {
    return this.stillRunning(raw) === null;
  }

  /** What runs under `raw`'s pid now (`running`) when it is still raw's process; else null. */
  private stillRunning(raw: RawProcess): { stat: ProcStat; tid?: number } | null {
    // Most programs are gone (reaped) by the time they are asked about: said without the
    // exception a failed open costs (an Error with its stack, for every short-lived exec).
    if (!existsSync(`${this.root}/${raw.pid}`)) return null;
    const stat = readStat(this.root, raw.pid);
    if (stat === null || stat.startTime !== raw.startTime) return null;
    return this.running(raw.pid, stat);
  }

  loadedProgram(raw: RawProcess): { exe: string; openPath: string } | null {
    if (raw.exe === null || !isDynamicLoader(raw.exe)) return null;
    const dir = taskDir(this.root, raw.pid, raw.tid);
    const maps = readMaps(dir);
    if (maps === null) return null;
    const m = pickProgram(executableMappings(maps), raw.exe, raw.argv, this.cwd(raw.pid, raw.tid));
    return m ? { exe: m.path, openPath: `${dir}/map_files/${m.range}` } : null;
  }

  hashPath(raw: RawProcess): string | null {
    return raw.exe === null ? null : `${taskDir(this.root, raw.pid, raw.tid)}/exe`;
  }

  details(): Record<string, unknown> {
    return {
      proc_root: this.root,
      known: this.known.size,
      listings: this.listings,
      unchanged_listings: this.unchangedListings,
      shortcuts: this.shortcuts,
      sweeps: this.userSweep.passes,
      kernel_sweeps: this.kernelSweep.passes,
      held_stat_fds: this.heldFds,
      zombie_leaders: this.zombieLeaders,
      resyncs: this.resyncs,
    };
  }

  private count(reason: string): void {
    this.skipped[reason] = (this.skipped[reason] ?? 0) + 1;
  }

  /**
   * Re-reads the stat of a slice of one class of known processes, sized so that every one is
   * re-checked once per the sweep's period: the cost is spread evenly over the ticks.
   */
  private sweepSlice(sweep: Sweep, sinceLastMs: number, now: number, out: RawProcess[]): void {
    const size = sweep.queue.length > 0 ? sweep.queue.length : this.known.size;
    let budget = Math.ceil((size * Math.max(sinceLastMs, 0)) / sweep.periodMs);
    let rebuilt = false;
    // Bounded by the budget and by one rebuild of the queue per tick.
    while (budget > 0) {
      if (sweep.at >= sweep.queue.length) {
        if (rebuilt) return;
        rebuilt = true;
        sweep.queue = [];
        for (const [pid, k] of this.known)
          if (k.kthread === sweep.kthreads && k.startTime >= 0) sweep.queue.push(pid);
        sweep.at = 0;
        sweep.passes++;
        if (sweep.queue.length === 0) return;
      }
      const end = Math.min(sweep.queue.length, sweep.at + budget);
      for (; sweep.at < end; sweep.at++) {
        const pid = sweep.queue[sweep.at] as number;
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
    let stat = k.fd >= 0 ? readStatFd(k.fd, pid) : null;
    if (stat === null) {
      if (k.fd >= 0) {
        // The process behind the held descriptor is gone: the number may belong to a new one.
        closeStat(k.fd);
        k.fd = -1;
        this.heldFds--;
      }
      stat = readStat(this.root, pid);
    }
    if (stat === null) {
      if (lastFailure === 'exited') this.forget(pid, k);
      return false;
    }
    if (stat.startTime !== k.startTime) {
      // The pid was reused between two scans: a different process.
      this.forget(pid, k);
      this.observe(pid, now, false, out, stat);
      return this.known.has(pid);
    }
    const live = this.running(pid, stat);
    if (live === null) return false; // exited; its image reads as 0
    if (live.stat.comm !== k.comm || live.stat.image !== k.image) {
      // Same process, new program (exec): read it again.
      k.comm = live.stat.comm;
      k.image = live.stat.image;
      const raw = this.read(pid, live.stat, live.tid);
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
        this.known.set(pid, {
          startTime: -1,
          comm: '',
          image: NO_IMAGE,
          seenTick: this.tick,
          youngUntil: 0,
          kthread: false,
          fd: -1,
        });
      }
      return;
    }
    const youngUntil = first ? 0 : now + YOUNG_RECHECK_MS;
    const kthread = (stat.flags & PF_KTHREAD) !== 0 || stat.pid === 2 || stat.ppid === 2;
    let fd = -1;
    if (!kthread && this.heldFds < this.maxHeldFds) {
      fd = openStat(this.root, pid);
      if (fd >= 0) this.heldFds++;
    }
    this.known.set(pid, {
      startTime: stat.startTime,
      comm: stat.comm,
      image: stat.image,
      seenTick: this.tick,
      youngUntil,
      kthread,
      fd,
    });
    if (kthread) return;
    const live = this.running(pid, stat);
    if (live === null) {
      this.count('exited');
      return;
    }
    const k = this.known.get(pid);
    if (k !== undefined && live.tid !== undefined) k.image = live.stat.image;
    if (youngUntil > 0) this.young.push(pid);
    const raw = this.read(pid, live.stat, live.tid);
    if (raw) out.push(raw);
  }

  /**
   * What runs under `pid` now: its own stat, or — when the thread-group leader is a zombie while
   * other threads still run (pthread_exit in main, a preload shim) — the leader's identity and
   * name with a live thread's state and program image, and that thread's id to read the rest from.
   * null when the process has exited.
   */
  private running(pid: number, stat: ProcStat): { stat: ProcStat; tid?: number } | null {
    if (stat.state !== 'Z' && stat.state !== 'X') return { stat };
    if (stat.state === 'X') return null;
    const t = liveThread(this.root, pid);
    if (t === null) return null;
    this.zombieLeaders++;
    return { stat: { ...stat, state: t.stat.state, image: t.stat.image }, tid: t.tid };
  }

  /** Reads the rest of a process's facts; null (counted) when it exited mid-read or is unreadable. */
  private read(pid: number, stat: ProcStat, tid?: number): RawProcess | null {
    const uid = readUid(this.root, pid, tid);
    if (uid === null) {
      this.count(lastFailure);
      return null;
    }
    const cmdline = readCmdline(this.root, pid, tid);
    if (cmdline === null) {
      this.count(lastFailure);
      return null;
    }
    // Enormous or binary argv is still matched (fail closed on what was read) but counted.
    if (cmdline.truncated) this.count('cmdline_truncated');
    if (cmdline.binary) this.count('cmdline_binary');
    let exe = readLink(this.root, pid, 'exe', tid);
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
      ...(tid !== undefined ? { tid } : {}),
      image: stat.image,
    };
  }
}

/** Re-exported for docs and tests: the argv cap applied by this source. */
export const PROCFS_CMDLINE_MAX_BYTES = CMDLINE_MAX_BYTES;

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = a.length - 1; i >= 0; i--) if (a[i] !== b[i]) return false;
  return true;
}
