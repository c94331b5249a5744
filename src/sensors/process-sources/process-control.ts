/**
 * Owns the per-OS primitives enforcement needs to act on a process safely: its current identity
 * (start time), its direct children, the ancestors of a pid, and sending a signal with the
 * outcome as a value. Linux reads /proc (a `procRoot` lets tests fake it); macOS and Windows use
 * ps-list snapshots (start time from `ps -o lstart`, one-second resolution; Windows has none, so
 * identity falls back to the image name).
 */
import psList, { type ProcessDescriptor } from 'ps-list';
import { listPids, liveThread, readChildren, readStat } from './proc-files.js';

/** The outcome of sending one signal. */
export type SignalOutcome = 'ok' | 'gone' | 'denied';

export interface ProcessControl {
  /** Whether the OS can suspend a process (SIGSTOP). False on Windows: the tree is killed directly. */
  readonly canStop: boolean;
  /**
   * True when `pid` is still the process observed with `startTime` (and `name` where the OS has no
   * start time). False when it exited or the pid now belongs to another process.
   */
  sameProcess(pid: number, startTime: number, name: string): Promise<boolean> | boolean;
  /** Whether `pid` exists at all (any identity). */
  exists(pid: number): Promise<boolean> | boolean;
  /** Direct children of `pid` (empty when none or gone). */
  children(pid: number): Promise<number[]> | number[];
  /** Parent chain of `pid` up to (excluding) 0, nearest first; bounded. */
  ancestors(pid: number): Promise<number[]> | number[];
  /** Sends `signal` to exactly `pid` (never a group: pid ≤ 1 is refused as 'denied'). */
  signal(pid: number, signal: NodeJS.Signals): SignalOutcome;
}

/** Ancestor walks stop after this many steps (a real chain is < 20 deep; a loop in fake data must end). */
const MAX_ANCESTORS = 64;

/** Sends a signal to one pid, never to a process group or to everything (pid 0 / -1). */
export function sendSignal(pid: number, signal: NodeJS.Signals): SignalOutcome {
  if (!Number.isInteger(pid) || pid <= 1) return 'denied';
  try {
    process.kill(pid, signal);
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH' ? 'gone' : 'denied';
  }
}

export class ProcfsProcessControl implements ProcessControl {
  readonly canStop = true;

  constructor(private readonly procRoot = '/proc') {}

  sameProcess(pid: number, startTime: number): boolean {
    const st = readStat(this.procRoot, pid);
    return st !== null && st.startTime === startTime && this.alive(pid, st.state);
  }

  exists(pid: number): boolean {
    const st = readStat(this.procRoot, pid);
    return st !== null && this.alive(pid, st.state);
  }

  /**
   * A zombie has exited (only its parent's wait() keeps the pid) — unless it is a thread-group
   * leader whose other threads still run the program: that process is alive and a signal to its
   * pid reaches every thread.
   */
  private alive(pid: number, state: string): boolean {
    if (state !== 'Z' && state !== 'X') return true;
    return state === 'Z' && liveThread(this.procRoot, pid) !== null;
  }

  children(pid: number): number[] {
    const direct = readChildren(this.procRoot, pid);
    if (direct !== null) return direct;
    // Kernels without CONFIG_PROC_CHILDREN: one pass over every process's ppid.
    const out: number[] = [];
    for (const p of listPids(this.procRoot)) if (readStat(this.procRoot, p)?.ppid === pid) out.push(p);
    return out;
  }

  ancestors(pid: number): number[] {
    return walkAncestors(pid, (p) => readStat(this.procRoot, p)?.ppid ?? 0);
  }

  signal(pid: number, signal: NodeJS.Signals): SignalOutcome {
    return sendSignal(pid, signal);
  }
}

/** How long one ps-list snapshot is reused by consecutive lookups of one action (ms). */
const SNAPSHOT_REUSE_MS = 50;

export class PsListProcessControl implements ProcessControl {
  readonly canStop: boolean;
  private cached: { at: number; list: readonly ProcessDescriptor[] } | null = null;

  constructor(
    private readonly list: () => Promise<readonly ProcessDescriptor[]> = () => psList(),
    platform: NodeJS.Platform = process.platform,
  ) {
    this.canStop = platform !== 'win32';
  }

  async sameProcess(pid: number, startTime: number, name: string): Promise<boolean> {
    const p = (await this.snapshot(true)).find((d) => d.pid === pid);
    if (!p) return false;
    const st = p.startTime instanceof Date ? p.startTime.getTime() : 0;
    if (startTime > 0 && st > 0) return st === startTime && p.name === name;
    return p.name === name;
  }

  async exists(pid: number): Promise<boolean> {
    return (await this.snapshot(true)).some((d) => d.pid === pid);
  }

  async children(pid: number): Promise<number[]> {
    return (await this.snapshot(false)).filter((d) => d.ppid === pid && d.pid !== pid).map((d) => d.pid);
  }

  async ancestors(pid: number): Promise<number[]> {
    const byPid = new Map((await this.snapshot(false)).map((d) => [d.pid, d.ppid]));
    return walkAncestors(pid, (p) => byPid.get(p) ?? 0);
  }

  signal(pid: number, signal: NodeJS.Signals): SignalOutcome {
    return sendSignal(pid, signal);
  }

  private async snapshot(fresh: boolean): Promise<readonly ProcessDescriptor[]> {
    const now = performance.now();
    if (!fresh && this.cached && now - this.cached.at < SNAPSHOT_REUSE_MS) return this.cached.list;
    try {
      this.cached = { at: now, list: await this.list() };
    } catch {
      this.cached = { at: now, list: [] };
    }
    return this.cached.list;
  }
}

/** The process control for this OS. */
export function processControlFor(platform: NodeJS.Platform = process.platform): ProcessControl {
  return platform === 'linux' ? new ProcfsProcessControl() : new PsListProcessControl();
}

/** pid's parent, grandparent, … up to MAX_ANCESTORS; stops at pid 0/1's parent or a cycle. */
function walkAncestors(pid: number, parentOf: (pid: number) => number): number[] {
  const out: number[] = [];
  let current = pid;
  for (let i = 0; i < MAX_ANCESTORS; i++) {
    const ppid = parentOf(current);
    if (ppid <= 0 || out.includes(ppid)) break;
    out.push(ppid);
    current = ppid;
  }
  return out;
}
