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
 * Children inherit it. One that runs as a user (a notification helper, the owner-fs child) must
 * give it up while still root — `asUserAtNormalPriority` — or the user would own a nice −10
 * process (theirs to ptrace or signal, and so to take over) for as long as it runs, or at least
 * until it lowered its own priority.
 *
 * Measured with bench/exec-events.bench.js (spawn → death of a banned script under load): the
 * tail is the main loop waiting for a core, and nice -10 shortens it (figures in docs/process-detection.md).
 */
import { existsSync, readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { Logger } from '../common/logger.js';

/** guardd's nice value (-20 highest … 19 lowest). */
export const DAEMON_NICE = -10;

/**
 * Raises this process's priority to DAEMON_NICE where it is lower, as root on Linux and macOS;
 * a no-op elsewhere and for an unprivileged run (local mode). Never throws: a refusal (no
 * CAP_SYS_NICE) is logged once at debug — the service definition has set it then.
 * Resolves with the main thread's nice afterwards (null where unknown).
 */
export function raisePriority(logger: Logger): number | null {
  if (process.platform === 'win32' || process.getuid?.() !== 0) return currentNice();
  // Linux: one task per thread, each with its own nice. macOS: the process's.
  const tids = process.platform === 'linux' ? threadIds() : [0];
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
  return nice;
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
 * (`nice`, coreutils), drops the real-time allowance the unit gives guardd (`LimitRTPRIO=1`:
 * `prlimit --rtprio=0:0`, util-linux; lowering a limit needs no privilege — a user who took the
 * process over could otherwise run SCHED_FIFO threads beside guardd's exec-events reader), and then
 * becomes `uid`/`gid` without supplementary groups (`setpriv`,
 * util-linux; what spawn's `uid`/`gid` options do) and execs `command` — so the process is the
 * user's only once it is at normal priority. Null when there is nothing to lower (not Linux,
 * nice ≥ 0) or the tools are missing: then spawn with `uid`/`gid` as before.
 */
export function asUserAtNormalPriority(
  uid: number,
  gid: number | undefined,
  command: string,
  args: readonly string[],
): { command: string; args: string[] } | null {
  if (process.platform !== 'linux') return null;
  const nice = currentNice();
  if (nice === null || nice >= 0 || !existsSync(NICE) || !existsSync(SETPRIV) || !existsSync(PRLIMIT))
    return null;
  return {
    command: NICE,
    args: [
      '-n',
      String(-nice),
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
    ],
  };
}
