/**
 * Owns reading Linux /proc files cheaply and defensively: `stat` (with a `comm` that may contain
 * spaces and parentheses), `status` (real uid), `cmdline` (size-capped, binary-safe), `exe` and
 * `cwd` links, the controlling terminal from `tty_nr`, and a process's children.
 *
 * Used by the procfs source (src/sensors/process-sources/procfs-source.ts) and by the block action
 * (identity re-checks, descendant walks). Every reader takes the /proc root as a parameter so tests
 * can point it at a fake tree with malformed files. Readers never throw for a process that exited
 * or is unreadable: they return null / a negative errno-like code, and the caller counts it.
 */
import { closeSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';

/** What a /proc read failure means for the caller, so it can count the right skip reason. */
export type ProcReadFailure = 'exited' | 'unreadable' | 'malformed';

/** The fields of /proc/<pid>/stat toolguard uses. */
export interface ProcStat {
  readonly pid: number;
  /** `comm`: up to 15 bytes of the executable's basename (or what the process set with prctl). */
  readonly comm: string;
  /** One-letter state (R, S, D, Z, T, …). */
  readonly state: string;
  readonly ppid: number;
  /** Encoded controlling terminal device (0 = none). */
  readonly ttyNr: number;
  /** Kernel task flags (field 9); PF_KTHREAD marks kernel threads. */
  readonly flags: number;
  /** Start time in clock ticks since boot (field 22): with pid, the process identity. */
  readonly startTime: number;
  /**
   * Where the running program's code, stack and argv were placed (fields 26 start_code, 27
   * end_code, 28 start_stack, 48 arg_start; 0 when the kernel withholds them). They are set by
   * each exec (a new image, randomised addresses) and not otherwise, so they tell an exec apart
   * even when `comm` stays the same (`node` exec'ing `node`, a wrapper named like the program).
   */
  readonly image: ProcImage;
}

/**
 * The program-image fields of a stat line (see `ProcStat.image`) as one opaque token,
 * `start_code:end_code:start_stack:arg_start` in the kernel's own digits (a missing field reads
 * as 0). Only ever compared: kept as text, it costs no number conversion either way (the
 * addresses exceed small integers, and formatting them back was a visible share of each exec).
 */
export type ProcImage = string;

/** The image of a process whose stat was not read. */
export const NO_IMAGE: ProcImage = '0:0:0:0';

/** PF_KTHREAD from include/linux/sched.h: kernel threads have no exe, argv or user to match. */
export const PF_KTHREAD = 0x00200000;

/**
 * One shared read buffer: reads happen synchronously on the event loop, so one buffer serves every
 * reader without allocating per file. 64 KiB holds any stat/status file and the argv cap below.
 */
const READ_BUFFER_BYTES = 64 * 1024;
const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
/** One byte to probe whether a capped file had more data. */
const probeBuffer = Buffer.allocUnsafe(1);

/** argv beyond this many bytes is cut (and counted): bounds memory and matching cost for hostile argv. */
export const CMDLINE_MAX_BYTES = 32 * 1024;

/** Last failure of a reader, set when it returns null (avoids allocating result objects in the hot path). */
export let lastFailure: ProcReadFailure = 'exited';
/** Whether the last successful `readInto` hit its cap with more data left. */
export let readTruncated = false;

function failureOf(err: unknown): ProcReadFailure {
  const code = (err as NodeJS.ErrnoException).code;
  // ESRCH: the process died between open and read; ENOENT: its directory is gone.
  if (code === 'ENOENT' || code === 'ESRCH') return 'exited';
  return 'unreadable';
}

/**
 * Reads up to `max` bytes of `path` into the shared buffer; returns the byte count, or -1 (reason
 * in `lastFailure`). `truncated` is set when the file had more.
 */
export function readInto(path: string, max: number = READ_BUFFER_BYTES, oneShot = false): number {
  let fd = -1;
  try {
    fd = openSync(path, 'r');
    let total = 0;
    const limit = Math.min(max, READ_BUFFER_BYTES);
    // /proc files may return short reads; loop until EOF or the cap, bounded by the cap itself.
    for (let i = 0; i < 64 && total < limit; i++) {
      const n = readSync(fd, buffer, total, limit - total, null);
      if (n <= 0) break;
      total += n;
      // Single-record files (stat, status, loadavg) come whole in one read when the buffer is
      // larger than them; skipping the read that would return 0 saves a syscall per file.
      if (oneShot && total < limit) break;
    }
    readTruncated = false;
    if (total >= limit) {
      const probe = readSync(fd, probeBuffer, 0, 1, null);
      readTruncated = probe > 0;
    }
    return total;
  } catch (err) {
    lastFailure = failureOf(err);
    return -1;
  } finally {
    if (fd >= 0) {
      try {
        closeSync(fd);
      } catch {
        // closing a /proc fd cannot meaningfully fail; nothing to do.
      }
    }
  }
}
/** Parses the text of /proc/<pid>/stat; null when malformed. `comm` may hold spaces and ')' . */
export function parseStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open <= 0 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const comm = text.slice(open + 1, close);
  // Fields after comm start at field 3 (state); starttime is field 22 → index 19. Found by
  // walking the spaces rather than split(' '): this runs for every exec, and only 9 of ~50
  // fields are used.
  const rest = statFields(text, close + 2);
  if (rest < 20) return null;
  const state = field(text, 0);
  const ppid = Number(field(text, 1));
  const ttyNr = Number(field(text, 4));
  const flags = Number(field(text, 6));
  const startTime = Number(field(text, 19));
  if (
    state.length !== 1 ||
    !Number.isInteger(ppid) ||
    ppid < 0 ||
    !Number.isInteger(ttyNr) ||
    !Number.isFinite(flags) ||
    !Number.isInteger(startTime) ||
    startTime < 0
  ) {
    return null;
  }
  // Older kernels end before field 48; a missing or odd field reads as 0 (compared, never trusted).
  const image = `${imageField(text, 23, rest)}:${imageField(text, 24, rest)}:${imageField(text, 25, rest)}:${imageField(text, 45, rest)}`;
  return { pid, comm, state, ppid, ttyNr, flags, startTime, image };
}

/** Start and end offsets of the stat fields after comm that parseStat reads (index 45 the last). */
const STAT_FIELDS_USED = 46;
const fieldStart = new Int32Array(STAT_FIELDS_USED);
const fieldEnd = new Int32Array(STAT_FIELDS_USED);

/**
 * Records where each space-separated field of `text` from `from` starts and ends (the first
 * STAT_FIELDS_USED; the line's newline is not part of the last); returns how many fields there
 * are, counting up to STAT_FIELDS_USED + 1 (more than parseStat reads).
 */
function statFields(text: string, from: number): number {
  let end = text.length;
  if (end > from && text.charCodeAt(end - 1) === 0x0a) end--;
  let start = from;
  for (let k = 0; k <= STAT_FIELDS_USED; k++) {
    if (start > end) return k;
    const sp = text.indexOf(' ', start);
    const stop = sp < 0 || sp > end ? end : sp;
    if (k < STAT_FIELDS_USED) {
      fieldStart[k] = start;
      fieldEnd[k] = stop;
    }
    start = stop + 1;
  }
  return STAT_FIELDS_USED + 1;
}

/** Field `k` (0: state) of the line statFields last walked. */
function field(text: string, k: number): string {
  return text.slice(fieldStart[k], fieldEnd[k]);
}

/** An image field as the kernel printed it (digits), or 0 when missing or not a number. */
function imageField(text: string, k: number, count: number): string {
  if (k >= count) return '0';
  const f = field(text, k);
  return f.length > 0 && f.length <= 20 && DIGITS.test(f) ? f : '0';
}

const DIGITS = /^[0-9]+$/;

/** Reads and parses /proc/<pid>/stat; null with `lastFailure` set when gone, unreadable or malformed. */
export function readStat(procRoot: string, pid: number): ProcStat | null {
  const n = readInto(`${procRoot}/${pid}/stat`, 4096, true);
  if (n < 0) return null;
  const stat = parseStat(buffer.toString('utf8', 0, n));
  if (!stat || stat.pid !== pid) {
    lastFailure = 'malformed';
    return null;
  }
  return stat;
}

/**
 * The directory of process `pid`, or of its thread `tid` (/proc/<pid>/task/<tid>). A thread's
 * cmdline, exe and status describe the whole process (threads share memory and credentials),
 * which is what is needed when the thread-group leader has already exited.
 */
export function taskDir(procRoot: string, pid: number, tid?: number): string {
  return tid === undefined || tid === pid ? `${procRoot}/${pid}` : `${procRoot}/${pid}/task/${tid}`;
}

/** Reads and parses /proc/<pid>/task/<tid>/stat (a thread's own state and image). */
export function readTaskStat(procRoot: string, pid: number, tid: number): ProcStat | null {
  const n = readInto(`${procRoot}/${pid}/task/${tid}/stat`, 4096, true);
  if (n < 0) return null;
  const stat = parseStat(buffer.toString('utf8', 0, n));
  if (!stat || stat.pid !== tid) {
    lastFailure = 'malformed';
    return null;
  }
  return stat;
}

/** Threads of one process looked at, at most, to find a live one (bounds a hostile thread count). */
const MAX_TASKS_SCANNED = 1024;

/**
 * A live thread of a process whose thread-group leader is a zombie, with its stat, or null when
 * every thread has exited (a real zombie). A leader that calls pthread_exit (or is made to, by a
 * preload shim) shows state Z and an empty cmdline while its other threads run the program: the
 * process is alive, and kill(pid) still reaches all of it.
 */
export function liveThread(procRoot: string, pid: number): { tid: number; stat: ProcStat } | null {
  const tids = listPids(`${procRoot}/${pid}/task`);
  for (let i = 0; i < tids.length && i < MAX_TASKS_SCANNED; i++) {
    const tid = tids[i] as number;
    if (tid === pid) continue;
    const st = readTaskStat(procRoot, pid, tid);
    if (st !== null && st.state !== 'Z' && st.state !== 'X') return { tid, stat: st };
  }
  return null;
}

/**
 * Opens /proc/<pid>/stat to be re-read later with `readStatFd`; -1 when it cannot be opened. A
 * held descriptor stays bound to that process, not to the number: once it has exited, reads fail
 * with ESRCH even when the pid was given to another process since.
 */
export function openStat(procRoot: string, pid: number): number {
  try {
    return openSync(`${procRoot}/${pid}/stat`, 'r');
  } catch {
    return -1;
  }
}

/**
 * Re-reads a stat descriptor from `openStat` (one pread: the kernel formats the file anew), null
 * with `lastFailure` set when the process is gone or the text is malformed. About half the cost of
 * `readStat`, which opens and closes the file each time.
 */
export function readStatFd(fd: number, pid: number): ProcStat | null {
  let n: number;
  try {
    n = readSync(fd, buffer, 0, 4096, 0);
  } catch (err) {
    lastFailure = failureOf(err);
    return null;
  }
  const stat = parseStat(buffer.toString('utf8', 0, n));
  if (!stat || stat.pid !== pid) {
    lastFailure = 'malformed';
    return null;
  }
  return stat;
}

/** Closes a descriptor from `openStat` (−1 is ignored). */
export function closeStat(fd: number): void {
  if (fd < 0) return;
  try {
    closeSync(fd);
  } catch {
    // closing a /proc fd cannot meaningfully fail; nothing to do.
  }
}

/** The start time (identity) of `pid` now, or null when it is gone or unreadable. */
export function readStartTime(procRoot: string, pid: number): number | null {
  return readStat(procRoot, pid)?.startTime ?? null;
}

/** Real uid from /proc/<pid>/status ("Uid:\treal\teffective\tsaved\tfs"); null when unreadable. */
export function readUid(procRoot: string, pid: number, tid?: number): number | null {
  const n = readInto(`${taskDir(procRoot, pid, tid)}/status`, 8192, true);
  if (n < 0) return null;
  const text = buffer.toString('latin1', 0, n);
  const at = text.indexOf('\nUid:');
  if (at < 0) {
    lastFailure = 'malformed';
    return null;
  }
  const m = /^\s*(\d+)/.exec(text.slice(at + 5, at + 64));
  const uid = m ? Number(m[1]) : Number.NaN;
  if (!Number.isSafeInteger(uid)) {
    lastFailure = 'malformed';
    return null;
  }
  return uid;
}

/**
 * Real gid and supplementary groups from /proc/<pid>/status ("Gid:\treal…", "Groups:\t…"): what
 * the kernel checks a directory's group bits against. Null when unreadable or malformed.
 */
export function readGroups(procRoot: string, pid: number, tid?: number): number[] | null {
  const n = readInto(`${taskDir(procRoot, pid, tid)}/status`, 8192, true);
  if (n < 0) return null;
  const text = buffer.toString('latin1', 0, n);
  const gidAt = text.indexOf('\nGid:');
  const groupsAt = text.indexOf('\nGroups:');
  if (gidAt < 0 || groupsAt < 0) {
    lastFailure = 'malformed';
    return null;
  }
  const gid = /^\s*(\d+)/.exec(text.slice(gidAt + 5, gidAt + 64));
  const end = text.indexOf('\n', groupsAt + 1);
  const list = text.slice(groupsAt + 8, end < 0 ? n : end).trim();
  const out = [gid ? Number(gid[1]) : Number.NaN];
  // Bounded by the 8 KiB read (NGROUPS_MAX is 65536, a status line this long is cut: fewer groups
  // means fewer directories count as reachable, never more).
  for (const g of list.length > 0 ? list.split(/\s+/) : []) out.push(Number(g));
  return out.every(Number.isSafeInteger) ? out : null;
}

/** The result of reading a command line. */
export interface Cmdline {
  readonly argv: string[];
  /** More than CMDLINE_MAX_BYTES: the tail was cut. */
  readonly truncated: boolean;
  /** Held bytes that are not valid UTF-8 text or are control characters (replaced in argv). */
  readonly binary: boolean;
}

const EMPTY_CMDLINE: Cmdline = { argv: [], truncated: false, binary: false };

/** Reads /proc/<pid>/cmdline (NUL-separated), capped at CMDLINE_MAX_BYTES; null when gone/unreadable. */
export function readCmdline(procRoot: string, pid: number, tid?: number): Cmdline | null {
  const n = readInto(`${taskDir(procRoot, pid, tid)}/cmdline`, CMDLINE_MAX_BYTES);
  if (n < 0) return null;
  return parseCmdline(buffer, n, readTruncated);
}

/**
 * Splits the first `n` bytes of a cmdline (NUL-separated) into argv; `truncated` says the reader
 * cut it at CMDLINE_MAX_BYTES. Shared with the exec events source, whose addon reads the bytes.
 */
export function parseCmdline(bytes: Uint8Array, n: number, truncated: boolean): Cmdline {
  if (n === 0) return truncated ? { ...EMPTY_CMDLINE, truncated } : EMPTY_CMDLINE;
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let binary = false;
  let end = n;
  if (buf[end - 1] === 0) end--;
  const argv: string[] = [];
  let start = 0;
  for (let i = 0; i <= end; i++) {
    if (i === end || buf[i] === 0) {
      argv.push(buf.toString('utf8', start, i));
      start = i + 1;
    } else {
      const b = buf[i] as number;
      // Tabs and newlines are normal in arguments (sh -c scripts); other control bytes are not.
      if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) binary = true;
    }
  }
  // A process can rewrite its argv area with anything; invalid UTF-8 decodes to U+FFFD.
  for (let i = 0; i < argv.length; i++) if ((argv[i] as string).includes('\uFFFD')) binary = true;
  return { argv, truncated, binary };
}

/**
 * readlink of /proc/<pid>/<name>; null with `lastFailure` set. For `exe` a " (deleted)" the kernel
 * appends to a deleted executable is stripped (its name and path are what rules match). For `cwd`
 * it is kept: a deleted directory was empty and takes no new entries, so nothing relative to it
 * can be loaded, while a directory really named `w (deleted)` is where a relative script is (the
 * stripped name would send the script resolver to `w`, a way around a script-package rule).
 */
export function readLink(procRoot: string, pid: number, name: 'exe' | 'cwd', tid?: number): string | null {
  try {
    const target = readlinkSync(`${taskDir(procRoot, pid, tid)}/${name}`);
    return name === 'exe' && target.endsWith(' (deleted)') ? target.slice(0, -10) : target;
  } catch (err) {
    lastFailure = failureOf(err);
    return null;
  }
}

/**
 * The terminal device path of an encoded `tty_nr` (see proc(5)): Unix98 ptys (majors 136–143) →
 * /dev/pts/N, virtual consoles (major 4, minor < 64) → /dev/ttyN, serial (major 4, minor ≥ 64) →
 * /dev/ttySN; anything else (no terminal, unknown driver) → null.
 */
export function ttyPath(ttyNr: number): string | null {
  if (ttyNr <= 0) return null;
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  if (major >= 136 && major <= 143) return `/dev/pts/${minor + (major - 136) * 256}`;
  if (major === 4) return minor < 64 ? `/dev/tty${minor}` : `/dev/ttyS${minor - 64}`;
  return null;
}

/** The entry names of a directory (as readdir returns them); empty when unreadable. */
export function listNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Numeric entries of a directory (the pids of /proc); empty when unreadable. */
export function listPids(dir: string): number[] {
  return pidsOf(listNames(dir));
}

/** The numeric names among `names`, as numbers. */
export function pidsOf(names: readonly string[]): number[] {
  const out: number[] = [];
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 0) out.push(pid);
  }
  return out;
}

/**
 * Direct children of `pid` from /proc/<pid>/task/<tid>/children (every thread: a child belongs to
 * the thread that forked it). null when the kernel lacks CONFIG_PROC_CHILDREN or the process is gone.
 */
export function readChildren(procRoot: string, pid: number): number[] | null {
  const tids = listPids(`${procRoot}/${pid}/task`);
  if (tids.length === 0) return null;
  const out: number[] = [];
  let any = false;
  for (const tid of tids) {
    const n = readInto(`${procRoot}/${pid}/task/${tid}/children`);
    if (n < 0) continue;
    any = true;
    for (const tok of buffer.toString('latin1', 0, n).split(' ')) {
      const child = Number(tok);
      if (tok !== '' && Number.isInteger(child) && child > 0) out.push(child);
    }
  }
  return any ? out : null;
}

/**
 * The last pid the kernel allocated (5th field of /proc/loadavg), or -1 when unavailable. When it
 * has not moved since the previous tick, no process (or thread) was created, so the scan can skip
 * listing /proc entirely.
 */
export function readLastPid(procRoot: string): number {
  const n = readInto(`${procRoot}/loadavg`, 256, true);
  if (n < 0) return -1;
  const text = buffer.toString('latin1', 0, n);
  const sp = text.lastIndexOf(' ');
  const v = Number(text.slice(sp + 1).trim());
  return Number.isInteger(v) ? v : -1;
}

/** guardd's soft limit on open descriptors (RLIMIT_NOFILE, /proc/self/limits); 1024 when unknown. */
export function readFdSoftLimit(): number {
  const n = readInto('/proc/self/limits', 4096);
  if (n < 0) return 1024;
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(buffer.toString('latin1', 0, n));
  if (!m) return 1024;
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}
