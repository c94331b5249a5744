/**
 * Owns the Linux exec-events process source: every exec on the machine, pushed by the kernel's
 * process events connector (native/procevents, netlink CN_IDX_PROC; needs root with
 * CAP_NET_ADMIN), read from /proc the moment its event arrives and handed to the sensor at once,
 * with the /proc scan (ProcfsSource) kept as the periodic safety sweep.
 *
 * Both paths share one table of known processes (the procfs source's), so a process is reported
 * once, whichever sees it first, and again each time it execs another program:
 *  - an exec event: the addon's reader thread read the process's /proc files microseconds after
 *    the exec (`fromSnapshot`); when it was alive then, those facts are what the scan would have
 *    read, and they are taken as they are (`ProcfsSource.adopt`: no second read). When it had
 *    already exited (a zombie, or nothing left), the pid is read now (`ProcfsSource.observePid`),
 *    and if it is gone, the snapshot's name is reported: the program did run, and that is what
 *    /proc gave for it;
 *  - the sweep: the ordinary incremental scan every EXEC_EVENTS_SWEEP_MS (processes started
 *    before guardd, anything the events missed), its re-read of known processes' stat relaxed to
 *    once per EXEC_EVENTS_USER_SWEEP_MS;
 *  - a drop (the kernel's socket buffer overflowed: ENOBUFS, or the addon's own queue was full):
 *    the next tick is a resync (`ProcfsSource.resync`), listing /proc and re-reading every known
 *    process, which finds every exec that was lost.
 * When the addon does not load or the kernel refuses the socket (not root, no CAP_NET_ADMIN, no
 * connector), the source is the plain procfs scan at its usual interval, and `details()` says why.
 */

import { createRequire } from 'node:module';
import { errorMessage, GuardError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { nativeAddonPath } from '../../common/native-addon.js';
import type { FileIdentity } from '../content-markers.js';
import type { ChainAnswer, ChainStep } from '../safe-read.js';
import { type ProcStat, parseCmdline, parseStat, ttyPath } from './proc-files.js';
import type { PollReason, ProcessSource, RawProcess, ReadAhead } from './process-source.js';
import { PROCFS_DEFAULT_INTERVAL_MS, ProcfsSource, type ProcfsSourceOptions } from './procfs-source.js';

/**
 * The /proc sweep's interval while exec events arrive (ms). Every exec is pushed as it happens, so
 * the sweep only catches what events cannot show (processes older than guardd, a drop not yet
 * seen): a tenth of the polling rate saves most of its CPU (the listing and the stat re-reads)
 * and bounds how late such a process is seen at one second.
 */
export const EXEC_EVENTS_SWEEP_MS = 1000;
/**
 * How often the sweep re-reads every known user process's stat while exec events arrive (ms;
 * polling alone does it every EXEC_SWEEP_MS = 1 s). Every exec is pushed, and a lost one is
 * signalled (ENOBUFS, a full queue) and answered by a resync, so the re-read only backs up what
 * events cannot show: a process rewriting its own name without an exec. At 300 processes the
 * 1 s period cost ≈ 2.4 ms of CPU a second, a large share of guardd's idle CPU.
 */
export const EXEC_EVENTS_USER_SWEEP_MS = 10_000;
/**
 * Kernel socket buffer asked for (bytes; SO_RCVBUFFORCE as root passes net.core.rmem_max). One
 * exec event costs about 1 KiB of buffer (skb overhead included), so 8 MiB absorbs a burst of
 * ~8,000 execs while the reader thread reads /proc.
 */
export const EXEC_EVENTS_RCVBUF_BYTES = 8 * 1024 * 1024;
/**
 * Processes read from events but not yet taken by the sensor, at most: beyond it events are
 * counted and dropped and a resync is due (the sensor drains every tick; this only bounds memory
 * while the event loop is stalled).
 */
const MAX_PENDING = 10_000;

/** The addon (where: src/common/native-addon.ts). */
export const PROCEVENTS_ADDON_PATH = nativeAddonPath('procevents');

/** One exec as the addon reports it: the pid and what its reader thread read from /proc. */
export interface ExecEvent {
  readonly pid: number;
  /** Kernel timestamp (ns since boot, CLOCK_MONOTONIC). */
  readonly ts: number;
  /** /proc/<pid>/stat text, or null when the process was gone before it was read. */
  readonly stat: string | null;
  /** readlink of /proc/<pid>/exe (may end in " (deleted)"), or null. */
  readonly exe: string | null;
  /** /proc/<pid>/cmdline bytes (capped at CMDLINE_MAX_BYTES), or null. */
  readonly cmdline: Uint8Array | null;
  readonly truncated: boolean;
  /** Real uid from /proc/<pid>/status, or null. */
  readonly uid: number | null;
}

/** Cumulative counts since the socket was opened. */
export interface ExecEventCounters {
  /** Exec events read from the socket. */
  readonly received: number;
  /** recv() failed with ENOBUFS: the kernel dropped events (how many is unknown). */
  readonly kernelDrops: number;
  /** Events dropped because the addon's queue to the JS thread was full. */
  readonly queueDrops: number;
  /** The socket's receive buffer as the kernel set it (bytes). */
  readonly rcvbuf?: number;
  /** Script walks read ahead by the addon's walker thread, and requests it dropped (queue full, CPU budget spent). */
  readonly walks?: number;
  readonly walkDrops?: number;
  /** Executables' identities read ahead by the walker. */
  readonly identities?: number;
  /** Non-zero once the reader thread stopped on a socket error: no more events will come. */
  readonly readerErrno?: number;
  /**
   * Whether the JS thread is raised to real-time priority while it handles each batch (open's
   * `boost`; native/procevents/boost.c), and why not (`boostOff`); batches handed over raised,
   * boosts skipped because their CPU budget was spent, boosts the reader ended because JS had not
   * within 20 ms, and refusals of the kernel.
   */
  readonly boost?: boolean;
  readonly boostOff?: string;
  readonly boosts?: number;
  readonly boostOverBudget?: number;
  readonly boostOverruns?: number;
  readonly boostErrors?: number;
}

/** The native/procevents API (see the module header of native/procevents/procevents.c). */
export interface ProcEventsAddon {
  open(
    /** `counters` comes with the first batch and whenever drops or readerErrno changed; else undefined. */
    onBatch: (events: ExecEvent[], counters: ExecEventCounters | undefined) => void,
    options: { rcvbuf: number; boost?: boolean },
  ): unknown;
  /** With open's `boost`: the batches delivered so far are handled (the JS thread back to its priority). */
  endBoost?(handle: unknown): void;
  counters(handle: unknown): ExecEventCounters;
  /**
   * false: the reader thread (stuck in a /proc read) or the walker (on a stalled mount) did not
   * stop in time and was left behind.
   */
  close(handle: unknown): boolean;
  /** The walker's answers for the exec (pid, ts), taken once; null when there are none. */
  takeWalk?(handle: unknown, pid: number, ts: number): readonly WalkAnswer[] | null;
  /** Whether the reader asks the walker for interpreters' script walks (off at open). */
  setWalks?(handle: unknown, on: boolean): void;
  /** The identity of the exec (pid, ts)'s executable as [dev, ino, size, mtimeMs, ctimeMs, mount], taken once; null when none. */
  takeIdentity?(handle: unknown, pid: number, ts: number): readonly number[] | null;
  /** Whether the reader asks the walker for every exec's identity (off at open). */
  setIdentities?(handle: unknown, on: boolean): void;
}

/** One step of a script walk read ahead by the addon (the answer native/pathwalk gives, with its path). */
export type WalkAnswer =
  | { readonly path: string; readonly code: string }
  | ({ readonly path: string } & ChainStep);

/** Loads the addon; throws GuardError GUARD_PROCEVENTS_UNAVAILABLE when missing or not loadable. */
export function loadProcEvents(path: string = PROCEVENTS_ADDON_PATH): ProcEventsAddon {
  if (process.platform !== 'linux')
    throw new GuardError('GUARD_PROCEVENTS_UNAVAILABLE', 'the process events connector is Linux only');
  let addon: ProcEventsAddon;
  try {
    addon = createRequire(import.meta.url)(path) as ProcEventsAddon;
  } catch (err) {
    throw new GuardError(
      'GUARD_PROCEVENTS_UNAVAILABLE',
      `exec events addon did not load: ${errorMessage(err)}`,
      {
        path,
      },
    );
  }
  if (typeof addon?.open !== 'function' || typeof addon.close !== 'function')
    throw new GuardError('GUARD_PROCEVENTS_UNAVAILABLE', 'exec events addon has no open()/close()', { path });
  return addon;
}

export interface ExecEventsSourceOptions extends ProcfsSourceOptions {
  readonly logger: Logger;
  /** The addon, or how to load it (tests inject a path that fails). Default loadProcEvents(). */
  readonly addon?: () => ProcEventsAddon;
  /** Socket receive buffer asked for (bytes). Default EXEC_EVENTS_RCVBUF_BYTES. */
  readonly rcvbuf?: number;
}

type State = 'idle' | 'active' | 'unavailable' | 'closed';

export class ExecEventsSource implements ProcessSource {
  private readonly procfs: ProcfsSource;
  private readonly log: Logger;
  private readonly loadAddon: () => ProcEventsAddon;
  private readonly rcvbuf: number;
  private state: State = 'idle';
  private unavailable: { code: string; message: string } | null = null;
  private addon: ProcEventsAddon | null = null;
  private handle: unknown = null;
  private wake: (() => void) | null = null;
  private pending: RawProcess[] = [];
  private resyncDue = false;
  private scanDue = true;
  private readonly own: Record<string, number> = {};
  private counters: ExecEventCounters = { received: 0, kernelDrops: 0, queueDrops: 0 };
  private resyncs = 0;
  private snapshots = 0;
  private eventReads = 0;
  /** Script walks the sensor took from the addon's walker (the rest it walked through the pool). */
  private walksTaken = 0;
  /** Identities the sensor took from the walker. */
  private identitiesTaken = 0;
  /** What the addon reads ahead (`readAhead`; applied at open too). */
  private ahead: ReadAhead = { walks: false, identities: false };
  private batches = 0;

  constructor(options: ExecEventsSourceOptions) {
    this.procfs = new ProcfsSource(options);
    this.log = options.logger;
    this.loadAddon = options.addon ?? (() => loadProcEvents());
    this.rcvbuf = options.rcvbuf ?? EXEC_EVENTS_RCVBUF_BYTES;
  }

  /** 'exec-events' while the connector delivers; 'procfs' before `listen` and when it could not open. */
  get kind(): 'exec-events' | 'procfs' {
    return this.state === 'active' ? 'exec-events' : 'procfs';
  }

  get defaultIntervalMs(): number {
    return this.state === 'active' ? EXEC_EVENTS_SWEEP_MS : PROCFS_DEFAULT_INTERVAL_MS;
  }

  get skipped(): Readonly<Record<string, number>> {
    const out: Record<string, number> = { ...this.procfs.skipped };
    for (const [k, v] of Object.entries(this.own)) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  listen(wake: () => void): void {
    if (this.state === 'active') return;
    this.wake = wake;
    try {
      this.addon = this.loadAddon();
      this.handle = this.addon.open((events, counters) => this.onBatch(events, counters), {
        rcvbuf: this.rcvbuf,
        boost: true,
      });
    } catch (err) {
      const code =
        err instanceof GuardError
          ? err.code
          : ((err as { code?: string }).code ?? 'GUARD_PROCEVENTS_OPEN_FAILED');
      this.unavailable = { code, message: errorMessage(err) };
      this.state = 'unavailable';
      this.log.warn(
        { code, err: errorMessage(err) },
        'exec events unavailable (needs root with CAP_NET_ADMIN and native/procevents): polling /proc',
      );
      return;
    }
    this.state = 'active';
    this.applyReadAhead();
    this.procfs.setExecSweepPeriod(EXEC_EVENTS_USER_SWEEP_MS);
    this.counters = this.addon.counters(this.handle);
    this.log.info({ rcvbuf: this.counters.rcvbuf }, 'exec events active (process events connector)');
  }

  close(): void {
    // The final counts, for details() after close (batches carry counters only when drops change).
    if (this.state === 'active' && this.addon) this.counters = this.addon.counters(this.handle);
    if (this.state === 'active' && this.addon && this.addon.close(this.handle) === false)
      this.log.error(
        'exec events threads did not stop (the reader stuck reading /proc, or the script walker on a stalled mount); left behind',
      );
    if (this.state === 'active') this.state = 'closed';
    this.handle = null;
    this.wake = null;
  }

  async poll(reason: PollReason = 'scan'): Promise<RawProcess[]> {
    const out = this.pending;
    this.pending = [];
    if (this.resyncDue) {
      this.resyncDue = false;
      this.scanDue = false;
      this.resyncs++;
      for (const raw of this.procfs.resync()) out.push(raw);
    } else if (this.state !== 'active' || reason === 'scan' || this.scanDue) {
      // A tick woken by an event only hands over what events brought; the scan keeps its interval.
      this.scanDue = false;
      for (const raw of this.procfs.pollSync()) out.push(raw);
    }
    return out;
  }

  reset(): void {
    this.procfs.reset();
    // The next tick, even one woken by an event, reports every process again.
    this.scanDue = true;
  }

  cwd(pid: number, tid?: number): string | null {
    return this.procfs.cwd(pid, tid);
  }

  groups(pid: number, tid?: number): readonly number[] | null {
    return this.procfs.groups(pid, tid);
  }

  hashPath(raw: RawProcess): string | null {
    return this.procfs.hashPath(raw);
  }

  loadedProgram(raw: RawProcess): { readonly exe: string; readonly openPath: string } | null {
    return this.procfs.loadedProgram(raw);
  }

  execedSince(raw: RawProcess): boolean {
    return this.procfs.execedSince(raw);
  }

  exited(raw: RawProcess): boolean {
    return this.procfs.exited(raw);
  }

  /** Everything handed over is handled: the JS thread back to its own priority (boost.c). */
  settled(): void {
    if (this.state === 'active') this.addon?.endBoost?.(this.handle);
  }

  readAhead(what: ReadAhead): void {
    this.ahead = what;
    if (this.state === 'active') this.applyReadAhead();
  }

  private applyReadAhead(): void {
    this.addon?.setWalks?.(this.handle, this.ahead.walks);
    this.addon?.setIdentities?.(this.handle, this.ahead.identities);
  }

  exeIdentity(raw: RawProcess): FileIdentity | null {
    if (this.state !== 'active' || raw.execNs === undefined || !this.addon?.takeIdentity) return null;
    const v = this.addon.takeIdentity(this.handle, raw.pid, raw.execNs);
    if (v?.length !== 6) return null;
    this.identitiesTaken++;
    const [dev, ino, size, mtimeMs, ctimeMs, mount] = v as [number, number, number, number, number, number];
    return { dev, ino, size, mtimeMs, ctimeMs, mount };
  }

  walked(raw: RawProcess): ReadonlyMap<string, ChainAnswer> | null {
    if (this.state !== 'active' || raw.execNs === undefined || !this.addon?.takeWalk) return null;
    const list = this.addon.takeWalk(this.handle, raw.pid, raw.execNs);
    if (!list) return null;
    this.walksTaken++;
    return new Map(
      list.map((a): [string, ChainAnswer] => [
        a.path,
        'code' in a
          ? { ok: false, code: a.code }
          : {
              ok: true,
              step: { mode: a.mode, uid: a.uid, gid: a.gid, dev: a.dev, ino: a.ino, link: a.link },
            },
      ]),
    );
  }

  details(): Record<string, unknown> {
    const c = this.state === 'active' && this.addon ? this.addon.counters(this.handle) : this.counters;
    return {
      ...this.procfs.details(),
      exec_events: this.state === 'active' ? 'active' : this.state,
      ...(this.unavailable
        ? { exec_events_error: `${this.unavailable.code}: ${this.unavailable.message}` }
        : {}),
      exec_events_received: c.received,
      exec_events_kernel_drops: c.kernelDrops,
      exec_events_queue_drops: c.queueDrops,
      exec_events_resyncs: this.resyncs,
      exec_events_snapshots: this.snapshots,
      exec_events_batches: this.batches,
      exec_events_reads: this.eventReads,
      ...(c.rcvbuf !== undefined ? { exec_events_rcvbuf: c.rcvbuf } : {}),
      ...(c.walks !== undefined
        ? {
            exec_events_walks: c.walks,
            exec_events_walk_drops: c.walkDrops ?? 0,
            exec_events_walks_taken: this.walksTaken,
          }
        : {}),
      ...(c.identities !== undefined
        ? { exec_events_identities: c.identities, exec_events_identities_taken: this.identitiesTaken }
        : {}),
      ...(c.boost !== undefined
        ? {
            exec_events_boost: c.boost ? 'on' : `off: ${c.boostOff ?? 'unknown'}`,
            exec_events_boosts: c.boosts ?? 0,
            exec_events_boost_over_budget: c.boostOverBudget ?? 0,
            exec_events_boost_overruns: c.boostOverruns ?? 0,
            exec_events_boost_errors: c.boostErrors ?? 0,
          }
        : {}),
    };
  }

  private count(reason: string): void {
    this.own[reason] = (this.own[reason] ?? 0) + 1;
  }

  /**
   * The reader thread stopped on a socket error: no more events will come. Polling takes over at
   * its usual interval (the sensor reads `defaultIntervalMs` for each scan), after one resync for
   * whatever the failure hid.
   */
  private readerStopped(errno: number): void {
    if (this.state !== 'active') return;
    if (this.addon) this.counters = this.addon.counters(this.handle);
    this.addon?.close(this.handle);
    this.state = 'unavailable';
    this.unavailable = {
      code: 'GUARD_PROCEVENTS_OPEN_FAILED',
      message: `the exec events reader stopped (errno ${errno}); polling /proc`,
    };
    this.resyncDue = true;
    this.log.error({ errno }, 'exec events reader stopped: polling /proc');
  }

  /**
   * Runs on the JS thread for each batch the addon delivers: reads each pid now, then wakes the
   * sensor. The addon raised this thread to real-time priority for it, until `settled`.
   */
  private onBatch(events: ExecEvent[], counters: ExecEventCounters | undefined): void {
    if (this.state !== 'active') return;
    this.batches++;
    if (counters) this.onCounters(counters);
    try {
      for (const ev of events) this.onExec(ev);
    } catch (err) {
      // A bug here must not lose the batch silently: the resync finds what was skipped.
      this.count('exec_event_error');
      this.log.error({ err: errorMessage(err) }, 'exec event handling failed: resyncing');
      this.resyncDue = true;
    }
    this.wake?.();
  }

  /** Counters that came with a batch (drops or the reader's errno changed): resync, or fall back. */
  private onCounters(counters: ExecEventCounters): void {
    if (counters.kernelDrops > this.counters.kernelDrops || counters.queueDrops > this.counters.queueDrops) {
      this.log.warn(
        { kernel_drops: counters.kernelDrops, queue_drops: counters.queueDrops },
        'exec events were dropped: resyncing from /proc',
      );
      this.resyncDue = true;
    }
    this.counters = counters;
    if (counters.readerErrno) this.readerStopped(counters.readerErrno);
  }

  private onExec(ev: ExecEvent): void {
    if (this.pending.length >= MAX_PENDING) {
      this.count('exec_events_backlog');
      this.resyncDue = true;
      return;
    }
    const snap = fromSnapshot(ev);
    if (snap?.live) {
      // Read alive right after the exec: the facts the scan would read, already in hand.
      if (this.procfs.adopt(snap.stat)) {
        this.snapshots++;
        this.pending.push(snap.raw);
      }
      return;
    }
    // The reader thread found it exited (or read nothing): read it now, which also tells
    // whether the scan already reported it.
    this.eventReads++;
    const before = this.procfs.identityOf(ev.pid);
    const status = this.procfs.observePid(ev.pid, this.pending);
    if (status !== 'gone') return;
    if (snap === null) {
      this.count('exec_gone_unread');
      return;
    }
    // Exited before even the reader thread got to it: its name (comm, set by the exec) is all
    // /proc still gave, and it did run; reported unless that very program was reported already.
    if (identity(snap.raw.startTime, snap.raw.image ?? '') === before) return;
    this.snapshots++;
    this.pending.push(snap.raw);
  }
}

function identity(startTime: number, image: string): string {
  return `${startTime}/${image}`;
}

/**
 * The process as the addon's reader thread read it right after the exec, or null when it read
 * nothing usable: same files, same parsing and caps as the procfs source, read earlier. `live` is
 * false when it had already exited then (a zombie has no cmdline or exe: its name is all it gives).
 */
export function fromSnapshot(ev: ExecEvent): { raw: RawProcess; stat: ProcStat; live: boolean } | null {
  if (ev.stat === null) return null;
  const stat = parseStat(ev.stat);
  if (stat === null || stat.pid !== ev.pid) return null;
  const cmd = ev.cmdline ? parseCmdline(ev.cmdline, ev.cmdline.length, ev.truncated) : null;
  const exe = ev.exe === null ? null : ev.exe.endsWith(' (deleted)') ? ev.exe.slice(0, -10) : ev.exe;
  const raw: RawProcess = {
    pid: ev.pid,
    ppid: stat.ppid,
    startTime: stat.startTime,
    name: stat.comm,
    exe,
    argv: cmd?.argv ?? [],
    uid: ev.uid,
    tty: ttyPath(stat.ttyNr),
    image: stat.image,
    execNs: ev.ts,
  };
  const live = stat.state !== 'Z' && stat.state !== 'X' && cmd !== null && ev.uid !== null;
  return { raw, stat, live };
}
