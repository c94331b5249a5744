/**
 * Owns the contract between the process sensor and where process facts come from. A source only
 * answers "which processes are new since you were last asked" and a few per-pid lookups; the
 * sensor turns what it returns into observations (owner, hash, script package). A push source
 * (Linux exec events, exec-events-source.ts) also wakes the sensor when it has something to report,
 * so a new process is handed over at once rather than at the next scan.
 */

import type { FileIdentity } from '../content-markers.js';
import type { CodeSigning } from '../observation.js';
import type { ChainAnswer } from '../safe-read.js';

/** Why the sensor polls: its interval elapsed ('scan'), or a push source woke it ('wake'). */
export type PollReason = 'scan' | 'wake';

/** What a source knows about one new process, before the sensor enriches it. */
export interface RawProcess {
  readonly pid: number;
  readonly ppid: number;
  /** Identity with pid: clock ticks since boot (procfs) or ms since epoch (ps-list; 0 when unknown). */
  readonly startTime: number;
  /** `comm` (procfs, ≤ 15 chars) or the name ps-list reports. */
  readonly name: string;
  /** Real executable path (symlinks resolved), or null when unreadable. */
  readonly exe: string | null;
  /** Raw argv (size-capped by the source, not redacted). */
  readonly argv: readonly string[];
  /** Real uid, or null when the source cannot tell (Windows). */
  readonly uid: number | null;
  /** Controlling terminal path, or null. */
  readonly tty: string | null;
  /**
   * Set when the thread-group leader has exited but other threads run on: the live thread the
   * facts were read from (the pid stays the identity and the target of signals).
   */
  readonly tid?: number;
  /**
   * The program image the facts were read from, as an opaque token (procfs: code and stack
   * addresses, which every exec changes); lets `execedSince` tell whether a later read (a hash)
   * still describes the same program.
   */
  readonly image?: string;
  /** Code-signing facts the exec carried (macOS eslogger); absent when the source has none. */
  readonly signing?: CodeSigning;
  /**
   * The kernel's timestamp of the exec (ns, CLOCK_MONOTONIC, the clock of
   * `process.hrtime.bigint()`), when the source saw the exec happen (Linux exec events); absent
   * for a process found by a scan.
   */
  readonly execNs?: number;
}

/** What a source reads ahead of the sensor (ProcessSource.readAhead). */
export interface ReadAhead {
  readonly walks: boolean;
  readonly identities: boolean;
}

export interface ProcessSource {
  /**
   * Shown in `guardctl status`: 'exec-events' (Linux connector), 'eslogger' (macOS), 'windows-start'
   * (WMI process start trace), 'procfs' or 'ps-list' (may change once `listen` ran).
   */
  readonly kind: 'exec-events' | 'eslogger' | 'windows-start' | 'procfs' | 'ps-list';
  /** The scan interval used when the config says 0 (ms); read again after `listen`. */
  readonly defaultIntervalMs: number;
  /**
   * Optional. Called once by the sensor's `start`, before the first `poll`: a push source starts
   * listening and from then on calls `wake` (on the event loop) whenever `poll('wake')` has
   * processes to report. Never throws: a source that cannot listen keeps working by polling.
   */
  listen?(wake: () => void): void;
  /** Optional. Called by the sensor's `stop`: stop listening and release what `listen` opened; twice is safe. */
  close?(): void;
  /**
   * Optional. Called by the sensor whenever everything handed over so far has been handled (no
   * tick running, no observation of it still being read, decided or acted on): a push source may
   * lower what it raised for the hand-over (exec events: the JS thread's real-time boost).
   */
  settled?(): void;
  /**
   * Processes that appeared since the previous call — a pid not known before, a known pid whose
   * start time changed (pid reuse), or a known process that exec'd another program. The first call
   * (and the first after `reset`) reports every process present. Never called concurrently by the
   * sensor; never rejects (failures are counted in `skipped`). `reason` 'wake' lets a push source
   * report only what was pushed and leave the scan for the interval (pollers ignore it).
   */
  poll(reason?: PollReason): Promise<RawProcess[]>;
  /** Forgets every known process: the next `poll` reports all of them again (policy change). */
  reset(): void;
  /** Working directory of `pid` (read from its thread `tid` when given), or null. */
  cwd(pid: number, tid?: number): string | null;
  /**
   * Optional. Real gid and supplementary groups of `pid` (read from thread `tid` when given), or
   * null when unknown: the script resolver checks directory group bits against them.
   */
  groups?(pid: number, tid?: number): readonly number[] | null;
  /**
   * A path that opens exactly the executable of `raw` for hashing (procfs: /proc/<pid>/exe, which
   * still opens the original file after a rename or delete), or null.
   */
  hashPath(raw: RawProcess): string | null;
  /**
   * Optional (procfs). When `raw` is a dynamic loader run directly (`ld.so ./tool`), the program it
   * runs: its path and a path that opens exactly the mapped file (loaded-program.ts); else null.
   */
  loadedProgram?(raw: RawProcess): { readonly exe: string; readonly openPath: string } | null;
  /**
   * Optional. True when the process of `raw` has exec'd another program or exited since `raw` was
   * read, so facts read later (a hash of its executable) may describe another program. Sources
   * that cannot tell leave it out.
   */
  execedSince?(raw: RawProcess): boolean;
  /**
   * Optional (with `execedSince`). True when the process of `raw` is gone: exited, or its pid now
   * names another process. Unlike `execedSince`, nothing the process can do to itself makes it
   * true while it runs (its image fields it can rewrite: prctl PR_SET_MM_MAP needs no privilege).
   */
  exited?(raw: RawProcess): boolean;
  /**
   * Optional (Linux exec events). The steps of the walks to `raw`'s script candidates, read right
   * after its exec (native/procevents walker.c): the answers `lstatUserChain` would give, by path.
   * Taken once; null when there are none (not an interpreter, not read yet, already taken).
   */
  walked?(raw: RawProcess): ReadonlyMap<string, ChainAnswer> | null;
  /**
   * Optional (Linux exec events). The identity of `raw`'s executable read right after its exec
   * (walker.c: statx of /proc/<pid>/exe, checked against the exec's own stat), so the caches of
   * hashes and markers (file-facts.ts) answer without opening the file. Taken once; null when
   * there is none (not read, not yet, the process exec'd again first).
   */
  exeIdentity?(raw: RawProcess): FileIdentity | null;
  /**
   * Optional (with `walked` and `exeIdentity`): what to read ahead — the walks while a rule needs
   * script packages, the identities while one needs hashes or markers.
   */
  readAhead?(what: ReadAhead): void;
  /** Cumulative counts of processes skipped or read partially, by reason. The sensor reports them. */
  readonly skipped: Readonly<Record<string, number>>;
  /** Source facts for `guardctl status` (e.g. processes known). */
  details(): Record<string, unknown>;
}
