/**
 * Owns guardd's CPU scheduling priority. guardd decides whether a process may go on running; on a
 * busy laptop (a build on every core) a decision that waits its turn behind the developer's
 * compiler is a banned tool running longer. So guardd runs at DAEMON_NICE: as root it sets it on
 * itself at start (every thread on Linux, where nice is per thread; threads created later — libuv's
 * pool, the exec-events reader — inherit it), and the service definitions set the same value
 * (systemd `Nice=`, launchd `Nice`, WinSW `priority`), because the systemd unit drops
 * CAP_SYS_NICE and guardd could not raise it there itself. Nice only orders who runs first when
 * cores are contended; what guardd may take stays bounded by the unit's CPUQuota.
 *
 * On Linux it also asks for a short EEVDF time slice, DAEMON_SLICE_NS, on every thread (through
 * the addon native/sched: Node has no sched_setattr), as root or not: a thread may set its own
 * slice without privilege. Threads created later inherit it from the thread that creates them —
 * except, like children, those the JS thread creates after its first exec-events boost (below):
 * reset-on-fork applies to every clone, so a worker thread started then (the collector's parse
 * pool, lazily) runs at nice 0 and the default slice.
 *
 * Children inherit both — until the JS thread's first exec-events boost (native/procevents/boost.c
 * raises it to real time while it handles a batch), which sets its reset-on-fork flag for good:
 * from then on its children start at SCHED_OTHER and nice 0. One that runs as a user (a
 * notification helper, the owner-fs child) must give a raised nice up while still root —
 * `asUserAtNormalPriority` — or the user would own a nice −10 process (theirs to ptrace or signal,
 * and so to take over) for as long as it runs, or at least until it lowered its own priority. The
 * slice needs no such care: it takes no privilege, so a child that keeps it has nothing it could
 * not have set itself.
 *
 * Measured with bench/exec-events.bench.js (spawn → death of a banned script under load): the
 * tail is the main loop waiting for a core, and nice -10 shortens it (figures in docs/process-detection.md).
 */

import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants, getPriority, setPriority } from 'node:os';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { nativeAddonPath } from '../common/native-addon.js';

/** guardd's nice value (-20 highest … 19 lowest). */
export const DAEMON_NICE = -10;

/**
 * The EEVDF time slice guardd's threads ask for, in ns (Linux ≥ 6.12 honours it, an older kernel
 * ignores it; the default grows with the CPU count, 1.4 ms on 2 CPUs; each thread's shows as
 * `se.slice` in /proc/<pid>/task/<tid>/sched). A woken task whose slice is shorter than the
 * running one's may preempt it at once (PREEMPT_SHORT) instead of waiting for that slice to end.
 * Measured on a 2-vCPU VM (Linux 6.18) with a freshly exec'd `node` starting on both CPUs: guardd's
 * main thread, woken by an exec event or a libuv pool completion, waited 1–4 ms on the runqueue
 * even at nice −10 (schedstat: the runqueue wait was the delay); asking for 0.7 ms cut guardd's
 * exec → SIGKILL p90 from ~4 ms to ~1 ms. Not shorter: at 0.1 ms guardd's own ~0.5 ms of work per
 * event was itself preempted and the figure got worse.
 */
export const DAEMON_SLICE_NS = 700_000;

/** The addon (where: src/common/native-addon.ts; Linux only, the Windows payload has none). */
export const SCHED_ADDON_PATH = nativeAddonPath('sched');

/** native/sched (Linux only). */
export interface SchedAddon {
  /**
   * Asks for an `ns` slice on thread `tid` (0: the default) and returns the slice the kernel then
   * reports, in ns: 0 for a thread that is not SCHED_OTHER/SCHED_BATCH (left alone) and on a kernel
   * without custom slices. Throws GUARD_SCHED_FAILED (with `errno`) when the kernel refuses,
   * GUARD_SCHED_BAD_ARGUMENT (a TypeError) for a tid that is not a positive int32 or an ns outside
   * 0..100_000_000.
   */
  setSlice(tid: number, ns: number): number;
  /** Whether thread `tid` (0: the calling thread) has reset-on-fork set: its children start at nice 0. */
  resetOnFork?(tid: number): boolean;
}

/**
 * Raises this process's priority to DAEMON_NICE where it is lower, as root on Linux and macOS
 * (a no-op elsewhere and for an unprivileged run: local mode), then on Linux asks for a
 * DAEMON_SLICE_NS slice on every thread, root or not. Never throws: a refusal (no CAP_SYS_NICE —
 * the service definition has set the nice then —, a missing addon, a kernel that refuses the slice)
 * is logged once at debug. Resolves with the main thread's nice afterwards (null where unknown).
 */
export function raisePriority(logger: Logger): number | null {
  if (process.platform === 'win32') return currentNice();
  // Linux: one task per thread, each with its own nice and slice. macOS: the process's nice.
  const tids = process.platform === 'linux' ? threadIds() : [0];
  if (process.getuid?.() === 0) {
    let refused: string | null = null;
    for (const tid of tids) {
      try {
        if (getPriority(tid) > DAEMON_NICE) setPriority(tid, DAEMON_NICE);
      } catch (err) {
        // A thread gone since the listing, or no privilege: nothing to do about either.
        refused ??= (err as NodeJS.ErrnoException).code ?? 'error';
      }
    }
    const nice = currentNice();
    if (refused !== null && nice !== DAEMON_NICE) {
      logger.debug({ nice, error: refused }, 'could not raise scheduling priority');
    }
  }
  if (process.platform === 'linux') requestSlice(tids, logger);
  return currentNice();
}

let schedAddon: SchedAddon | null | undefined;

/** The addon, loaded once; null (and `onError` told why) when it does not load. */
function loadSched(onError?: (message: string) => void): SchedAddon | null {
  if (schedAddon === undefined) {
    try {
      schedAddon = createRequire(import.meta.url)(SCHED_ADDON_PATH) as SchedAddon;
    } catch (err) {
      onError?.(errorMessage(err));
      schedAddon = null;
    }
  }
  return schedAddon;
}

/** Asks for DAEMON_SLICE_NS on each of `tids`; the first refusal is logged at debug. */
function requestSlice(tids: readonly number[], logger: Logger): void {
  const addon = loadSched((error) =>
    logger.debug({ path: SCHED_ADDON_PATH, error }, 'could not request a time slice'),
  );
  if (addon === null) return;
  let refused: string | null = null;
  for (const tid of tids) {
    try {
      // 0 from threadIds: it could not list the threads; the main thread is the process's pid.
      addon.setSlice(tid === 0 ? process.pid : tid, DAEMON_SLICE_NS);
    } catch (err) {
      // ESRCH: a thread gone since the listing. Anything else is worth a line, once.
      if ((err as { errno?: number }).errno !== constants.errno.ESRCH) refused ??= errorMessage(err);
    }
  }
  if (refused !== null) logger.debug({ error: refused }, 'could not request a time slice');
}

/**
 * The nice a child forked by the calling thread starts at: its own, or 0 when its reset-on-fork
 * flag is set and its nice is raised (null: unknown).
 */
function childNice(): number | null {
  const nice = currentNice();
  if (nice === null || nice >= 0 || process.platform !== 'linux') return nice;
  try {
    return loadSched()?.resetOnFork?.(0) === true ? 0 : nice;
  } catch {
    return nice;
  }
}

function currentNice(): number | null {
  try {
    return getPriority(0);
  } catch {
    return null;
  }
}

function threadIds(): number[] {
  try {
    return readdirSync('/proc/self/task')
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [0];
  }
}

const NICE = '/usr/bin/nice';
const SETPRIV = '/usr/bin/setpriv';
const PRLIMIT = '/usr/bin/prlimit';

/**
 * The command line, run as root, that lowers the calling thread's raised priority back to nice 0
 * (`nice`, coreutils; not needed when the thread's nice is not raised, or when its reset-on-fork
 * flag already starts its children there), drops the real-time allowance the unit gives guardd
 * (`LimitRTPRIO=2`: `prlimit --rtprio=0:0`, util-linux; lowering a limit needs no privilege — a
 * user who took the process over could otherwise run SCHED_FIFO threads at guardd's exec-events
 * reader's own priority, beside it or in its place), and then becomes `uid`/`gid` without
 * supplementary groups (`setpriv`, util-linux; what spawn's `uid`/`gid` options do) and execs
 * `command` — so the process is the user's only once it is at normal priority and without the
 * allowance. The allowance is dropped whatever the nice: it comes from the unit, not from
 * raisePriority, so a guardd left at nice 0 (a drop-in's `Nice=0`, a refused raise) has it too.
 * Null when not on Linux or the tools are missing: then spawn with `uid`/`gid` as before.
 */
export function asUserAtNormalPriority(
  uid: number,
  gid: number | undefined,
  command: string,
  args: readonly string[],
): { command: string; args: string[] } | null {
  if (process.platform !== 'linux' || !existsSync(SETPRIV) || !existsSync(PRLIMIT)) return null;
  const nice = currentNice();
  const start = nice === null || nice >= 0 ? 0 : (childNice() ?? nice);
  if (start < 0 && !existsSync(NICE)) return null;
  const [first, ...rest] = [
    ...(start < 0 ? [NICE, '-n', String(-start)] : []),
    PRLIMIT,
    '--rtprio=0:0',
    '--',
    SETPRIV,
    `--reuid=${uid}`,
    ...(gid !== undefined ? [`--regid=${gid}`] : []),
    '--clear-groups',
    '--',
    command,
    ...args,
  ];
  return { command: first as string, args: rest };
}
