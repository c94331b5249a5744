/**
 * Owns exec sources fed by a long-running child program that writes one JSON object per line —
 * macOS `eslogger exec fork exit` (eslogger-source.ts) and Windows' PowerShell process start trace
 * (windows-start-source.ts). It runs the program, splits its stdout into bounded lines, hands each
 * to the source's pure parser (the same RawProcess the Linux exec source produces), wakes the
 * sensor at once, restarts the program with bounded backoff when it dies, and keeps ps-list
 * polling underneath: as the periodic safety sweep while events flow (processes older than guardd,
 * anything a dropped line hid) and as the whole source while the program is missing, refused or
 * restarting. `kind` and `details()` say which of the two is in force (status, heartbeat coverage).
 *
 * An exec reported by a line is remembered (pid → start time) so the sweep does not report the
 * same process again; any dropped or unreadable line forgets that memory and makes the next tick a
 * sweep, so whatever the line described is found by polling (if it still runs).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type ErrorCode, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { PollReason, ProcessSource, RawProcess } from './process-source.js';
import { PSLIST_DEFAULT_INTERVAL_MS, PsListSource, type PsListSourceOptions } from './pslist-source.js';

/** What a source's parser makes of one line. */
export type StreamItem =
  | { readonly kind: 'exec'; readonly raw: RawProcess; readonly notes?: readonly string[] }
  | { readonly kind: 'fork'; readonly pid: number }
  | { readonly kind: 'exit'; readonly pid: number }
  /** The program says it is listening (Windows script); eslogger has no such line. */
  | { readonly kind: 'ready' }
  /** The program reports it cannot listen (Windows script: registration refused). */
  | { readonly kind: 'fatal'; readonly code: ErrorCode; readonly message: string }
  /**
   * A line that is not a known event: counted under `reason`. `lost` when it may have described
   * an exec (unreadable, truncated, unknown shape): the next tick sweeps.
   */
  | { readonly kind: 'skip'; readonly reason: string; readonly lost: boolean }
  /** The line's format version is not one this parser knows: the program is not used. */
  | { readonly kind: 'unsupported'; readonly version: string };

/** Why a program stopped when waiting briefly will not cure it (ExecStreamSpec.classifyExit). */
export interface ExitRefusal {
  readonly code: ErrorCode;
  readonly message: string;
}

/** The pieces that make one program a source. */
export interface ExecStreamSpec {
  /** 'eslogger' or 'windows-start': `kind` while events flow. */
  readonly kind: 'eslogger' | 'windows-start';
  readonly program: string;
  readonly args: readonly string[];
  /** Pure: one line (without its newline) → what it says. Never throws. */
  parse(line: string): StreamItem;
  /**
   * What the program's stderr (its last STDERR_TAIL_BYTES) says about why it stopped: a refusal
   * that waiting briefly will not cure (`not_permitted`), or null for an ordinary exit.
   */
  classifyExit(stderr: string): ExitRefusal | null;
}

export interface ExecStreamSourceOptions {
  readonly spec: ExecStreamSpec;
  readonly logger: Logger;
  /** The polling source underneath (tests pass a fake list). Default ps-list. */
  readonly pslist?: PsListSourceOptions;
  /** Restart delays (ms), one per consecutive failure, the last repeated. Default RESTART_BACKOFF_MS. */
  readonly backoffMs?: readonly number[];
  /** Delay before trying again after a refusal or a missing program (ms). Default REFUSED_RETRY_MS. */
  readonly refusedRetryMs?: number;
  /** Longest line kept (bytes). Default MAX_LINE_BYTES. */
  readonly maxLineBytes?: number;
}

/**
 * Restart delays after the program died (ms): quick at first (a crash of the program), doubling
 * to a minute, so a program that dies at once costs one spawn a minute, not a spin.
 */
export const RESTART_BACKOFF_MS = [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000] as const;
/**
 * After a refusal (no Full Disk Access yet, not root) or a missing program: tried again every
 * 5 minutes, because an MDM often delivers the PPPC profile after the package is installed.
 */
export const REFUSED_RETRY_MS = 5 * 60_000;
/** A run this long (ms) counts as healthy: the next death restarts from the first delay. */
export const STABLE_RUN_MS = 30_000;
/**
 * Longest line kept (bytes). macOS limits argv + environment to 1 MiB (ARG_MAX) and eslogger
 * escapes each byte into at most 6, so 8 MiB holds any real exec event; a longer line is dropped,
 * counted (`line_too_long`) and the next tick sweeps.
 */
export const MAX_LINE_BYTES = 8 * 1024 * 1024;
/** stderr kept for classifying an exit (bytes): the program's last words, not its whole log. */
const STDERR_TAIL_BYTES = 4096;
/**
 * The ps-list sweep's interval while events flow (ms). Each sweep runs `ps` twice (ps-list);
 * events report every exec at once, so the sweep only finds what they cannot show (processes
 * older than guardd) and a dropped line makes the next tick a sweep anyway.
 */
export const EXEC_STREAM_SWEEP_MS = 5000;
/** Exec lines parsed but not yet taken by the sensor, at most (bounds memory while the loop stalls). */
const MAX_PENDING = 10_000;
/** Processes remembered as reported by a line (pid → start time), at most; the oldest go first. */
const MAX_REPORTED = 65_536;

type State = 'idle' | 'starting' | 'active' | 'restarting' | 'unavailable' | 'closed';

export class ExecStreamSource implements ProcessSource {
  private readonly spec: ExecStreamSpec;
  private readonly log: Logger;
  private readonly poller: PsListSource;
  private readonly backoff: readonly number[];
  private readonly refusedRetryMs: number;
  private readonly maxLine: number;
  private state: State = 'idle';
  private child: ChildProcess | null = null;
  private startedAt = 0;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private lastError: { code: ErrorCode; message: string } | null = null;
  private wake: (() => void) | null = null;
  private pending: RawProcess[] = [];
  private sweepDue = true;
  private sweeping: Promise<void> | null = null;
  private sweepAgain = false;
  private resets = 0;
  private readonly reported = new Map<number, number>();
  private readonly own: Record<string, number> = {};
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private discarding = false;
  private stderrTail = '';
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  private counters = {
    lines: 0,
    execs: 0,
    forks: 0,
    exits: 0,
    dropped: 0,
    sweeps: 0,
    restarts: 0,
    spawns: 0,
  };

  constructor(options: ExecStreamSourceOptions) {
    this.spec = options.spec;
    this.log = options.logger;
    this.poller = new PsListSource(options.pslist ?? {});
    this.backoff = options.backoffMs ?? RESTART_BACKOFF_MS;
    this.refusedRetryMs = options.refusedRetryMs ?? REFUSED_RETRY_MS;
    this.maxLine = options.maxLineBytes ?? MAX_LINE_BYTES;
  }

  /** The program's kind while its events flow; 'ps-list' before `listen` and while it does not run. */
  get kind(): 'eslogger' | 'windows-start' | 'ps-list' {
    return this.state === 'active' ? this.spec.kind : 'ps-list';
  }

  get defaultIntervalMs(): number {
    return this.state === 'active' ? EXEC_STREAM_SWEEP_MS : PSLIST_DEFAULT_INTERVAL_MS;
  }

  get skipped(): Readonly<Record<string, number>> {
    const out: Record<string, number> = { ...this.poller.skipped };
    for (const [k, v] of Object.entries(this.own)) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  listen(wake: () => void): void {
    if (this.state !== 'idle') return;
    this.wake = wake;
    this.start();
  }

  close(): void {
    this.state = 'closed';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    this.wake = null;
  }

  async poll(reason: PollReason = 'scan'): Promise<RawProcess[]> {
    if (reason === 'scan' || this.sweepDue) {
      // A tick woken by a line (or by a sweep's result) only hands over what it brought; the
      // sweep keeps its interval.
      this.sweepDue = false;
      this.startSweep();
    }
    const out = this.pending;
    this.pending = [];
    return out;
  }

  /**
   * Runs one ps-list sweep in the background: a snapshot takes two `ps` runs (tens to hundreds of
   * ms), and lines arriving meanwhile are handed over at once instead of waiting for it. Its
   * processes join the pending ones and wake the sensor. One sweep at a time; one asked for
   * while another runs follows it.
   */
  private startSweep(): void {
    if (this.sweeping) {
      this.sweepAgain = true;
      return;
    }
    this.counters.sweeps++;
    const resets = this.resets;
    this.sweeping = this.poller
      .poll()
      .then((found) => {
        if (this.resets !== resets) {
          // reset() ran during the snapshot, which then kept its own view of what is known.
          this.poller.reset();
          this.sweepAgain = true;
        }
        let any = false;
        for (const raw of found) {
          // Already reported by a line: the same process (pid and start time) seen again by ps.
          if (raw.startTime !== 0 && this.reported.get(raw.pid) === raw.startTime) continue;
          this.pending.push(raw);
          any = true;
        }
        return any;
      })
      .finally(() => {
        this.sweeping = null;
      })
      .then((any) => {
        if (this.sweepAgain && this.state !== 'closed') {
          this.sweepAgain = false;
          this.startSweep();
        }
        if (any) this.wake?.();
      });
  }

  /** Resolves when the sweep running now (if any) handed over its processes. For tests and `close`. */
  async settled(): Promise<void> {
    while (this.sweeping) await this.sweeping;
  }

  reset(): void {
    this.resets++;
    this.poller.reset();
    this.reported.clear();
    this.sweepDue = true;
  }

  cwd(pid: number): string | null {
    return this.poller.cwd(pid);
  }

  hashPath(raw: RawProcess): string | null {
    return raw.exe;
  }

  details(): Record<string, unknown> {
    const c = this.counters;
    return {
      ...this.poller.details(),
      exec_source: this.spec.kind,
      exec_events: this.state,
      ...(this.lastError ? { exec_events_error: `${this.lastError.code}: ${this.lastError.message}` } : {}),
      exec_events_received: c.execs,
      // Lines lost to this side (too long, truncated, unreadable, backlog): each made the next tick a sweep.
      exec_events_kernel_drops: 0,
      exec_events_queue_drops: c.dropped,
      exec_events_resyncs: c.sweeps,
      exec_events_lines: c.lines,
      exec_events_forks: c.forks,
      exec_events_exits: c.exits,
      exec_events_spawns: c.spawns,
      exec_events_restarts: c.restarts,
    };
  }

  private count(reason: string): void {
    this.own[reason] = (this.own[reason] ?? 0) + 1;
  }

  private start(): void {
    if (this.state === 'closed') return;
    this.state = 'starting';
    this.partial = [];
    this.partialBytes = 0;
    this.discarding = false;
    this.stderrTail = '';
    this.counters.spawns++;
    let child: ChildProcess;
    try {
      child = spawn(this.spec.program, [...this.spec.args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        windowsHide: true,
      });
    } catch (err) {
      this.failed({ code: 'GUARD_EXEC_STREAM_MISSING', message: errorMessage(err) }, true);
      return;
    }
    this.child = child;
    child.once('spawn', () => {
      if (this.child !== child || this.state !== 'starting') return;
      this.startedAt = performance.now();
      this.state = 'active';
      // Events start now; anything exec'd while the program was down is found by a sweep.
      this.sweepDue = true;
      this.log.info({ program: this.spec.program, source: this.spec.kind }, 'exec events active');
      this.wake?.();
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (this.child !== child) return;
      this.child = null;
      const missing = err.code === 'ENOENT' || err.code === 'EACCES';
      this.failed(
        {
          code: missing ? 'GUARD_EXEC_STREAM_MISSING' : 'GUARD_EXEC_STREAM_EXITED',
          message: `${this.spec.program}: ${errorMessage(err)}`,
        },
        missing,
      );
    });
    child.stdout?.on('data', (chunk: Buffer) => {
      if (this.child === child) this.onData(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      if (this.child !== child) return;
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    child.once('close', (code, signal) => {
      if (this.child !== child) return;
      this.child = null;
      this.flushLine();
      const refused = this.spec.classifyExit(this.stderrTail);
      if (refused) {
        this.failed(refused, true);
        return;
      }
      if (
        this.lastError?.code === 'GUARD_EXEC_STREAM_SCHEMA' ||
        this.lastError?.code === 'GUARD_EXEC_STREAM_NOT_PERMITTED'
      ) {
        this.failed(this.lastError, true);
        return;
      }
      const tail = this.stderrTail.trim().split('\n').pop() ?? '';
      this.failed(
        {
          code: 'GUARD_EXEC_STREAM_EXITED',
          message: `${this.spec.program} exited (${signal ?? `status ${code}`})${tail ? `: ${tail.slice(0, 200)}` : ''}`,
        },
        false,
      );
    });
  }

  /** The program stopped or could not start: poll with ps-list and try again later. */
  private failed(error: { code: ErrorCode; message: string }, refused: boolean): void {
    if (this.state === 'closed') return;
    const ranLong = this.startedAt > 0 && performance.now() - this.startedAt >= STABLE_RUN_MS;
    this.startedAt = 0;
    if (ranLong) this.failures = 0;
    const delay = refused
      ? this.refusedRetryMs
      : (this.backoff[Math.min(this.failures, this.backoff.length - 1)] ?? REFUSED_RETRY_MS);
    this.failures++;
    this.lastError = error;
    this.state = refused ? 'unavailable' : 'restarting';
    // Whatever ran while the program was down is found by polling from now on.
    this.sweepDue = true;
    this.reported.clear();
    this.log.warn(
      { code: error.code, err: error.message, retry_ms: delay, source: this.spec.kind },
      'exec events stopped: polling with ps-list',
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.counters.restarts++;
      this.start();
    }, delay);
    this.restartTimer.unref?.();
    this.wake?.();
  }

  private onData(chunk: Buffer): void {
    let from = 0;
    let woke = false;
    for (;;) {
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) break;
      const piece = chunk.subarray(from, nl);
      from = nl + 1;
      if (this.discarding) {
        this.discarding = false;
        this.partial = [];
        this.partialBytes = 0;
        continue;
      }
      let line: Buffer = piece;
      if (this.partialBytes > 0) {
        this.partial.push(piece);
        line = Buffer.concat(this.partial, this.partialBytes + piece.length);
        this.partial = [];
        this.partialBytes = 0;
      }
      if (line.length > this.maxLine) {
        this.lost('line_too_long');
        continue;
      }
      if (this.onLine(line)) woke = true;
    }
    if (from < chunk.length && !this.discarding) {
      const rest = chunk.subarray(from);
      this.partialBytes += rest.length;
      if (this.partialBytes > this.maxLine) {
        // Too long to keep: drop until the next newline.
        this.partial = [];
        this.partialBytes = 0;
        this.discarding = true;
        this.lost('line_too_long');
      } else this.partial.push(Buffer.from(rest));
    }
    if (woke) this.wake?.();
  }

  /** The program exited with a line unfinished: a line cut short (counted as truncated). */
  private flushLine(): void {
    if (this.partialBytes > 0 && !this.discarding) {
      const line = Buffer.concat(this.partial, this.partialBytes);
      if (this.onLine(line)) this.wake?.();
    }
    this.partial = [];
    this.partialBytes = 0;
    this.discarding = false;
  }

  /** One complete line; true when it brought a process to hand over. */
  private onLine(bytes: Buffer): boolean {
    this.counters.lines++;
    if (bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, -1);
    if (bytes.length === 0) return false;
    let item: StreamItem;
    try {
      item = this.spec.parse(this.decoder.decode(bytes));
    } catch (err) {
      // Parsers never throw by contract; a bug must not take the reader down.
      this.log.error({ err: errorMessage(err) }, 'exec line parser failed');
      this.lost('parser_error');
      return true;
    }
    switch (item.kind) {
      case 'exec':
        for (const note of item.notes ?? []) this.count(note);
        if (this.pending.length >= MAX_PENDING) {
          this.lost('exec_events_backlog');
          return false;
        }
        this.counters.execs++;
        this.remember(item.raw);
        this.pending.push(item.raw);
        return true;
      case 'fork':
        this.counters.forks++;
        return false;
      case 'exit':
        this.counters.exits++;
        this.reported.delete(item.pid);
        return false;
      case 'ready':
        return false;
      case 'fatal':
        this.lastError = { code: item.code, message: item.message };
        this.stop();
        return false;
      case 'skip':
        if (item.lost) this.lost(item.reason);
        else this.count(item.reason);
        return item.lost;
      case 'unsupported':
        this.count('schema_unsupported');
        this.lastError = {
          code: 'GUARD_EXEC_STREAM_SCHEMA',
          message: `${this.spec.kind} format version ${item.version} is not one guardd reads`,
        };
        this.stop();
        return true;
    }
  }

  /** Ends the program for good reason (a version gate, a refusal it reported): `close` handling retries later. */
  private stop(): void {
    this.child?.kill('SIGKILL');
  }

  private lost(reason: string): void {
    this.count(reason);
    this.counters.dropped++;
    this.reported.clear();
    this.sweepDue = true;
  }

  private remember(raw: RawProcess): void {
    if (raw.startTime === 0) return;
    this.reported.delete(raw.pid);
    if (this.reported.size >= MAX_REPORTED) {
      const oldest = this.reported.keys().next().value;
      if (oldest !== undefined) this.reported.delete(oldest);
    }
    this.reported.set(raw.pid, raw.startTime);
  }
}
