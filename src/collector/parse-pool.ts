/**
 * Owns where event bodies are parsed and validated: on worker threads (`ParsePool`), so the main
 * thread keeps only HTTP and the SQLite commits, or on the main thread one body per event-loop turn
 * (`InlineParser`, for one-CPU machines and `ingest_workers = 0`). Both run the same `parseBatch`.
 *
 * Why threads: parsing, validating and re-serialising an event costs about as much CPU as storing
 * it, and node runs JavaScript on one core. A worker does that part on another core while the main
 * thread commits the previous group.
 *
 * Wire format: a body goes to a worker by transfer (no copy when it owns its memory); the parsed
 * batch comes back as columns, with the event bodies joined by `\n` (JSON.stringify never writes a
 * raw newline), which is cheaper to clone than one object per event.
 *
 * Failure: a worker that dies (out of memory, a bug) fails only the bodies it held — their requests
 * get 503 and the agents retry — and is replaced on the next body. Nothing is half-stored: storing
 * happens on the main thread after a body was parsed whole.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { GuardError } from '../common/errors.js';
import type { IncomingEvent } from './collector-store.js';
import { type ParsedBatch, parseBatch, type Rejection } from './ingest.js';

/** Parses a received body of `deviceId` (taking ownership of `body`). Never rejects for bad input. */
export interface BatchParser {
  parse(deviceId: string, body: Buffer): Promise<ParsedBatch>;
  /** Stops the workers; bodies not yet parsed are rejected. Safe twice. */
  close(): Promise<void>;
}

/** The default number of parse workers: one per CPU beyond the main thread's, at most 2. */
export function defaultIngestWorkers(): number {
  return Math.min(2, Math.max(0, availableParallelism() - 1));
}

/**
 * The compiled worker entry. Resolved through the package root so it names dist/ both from
 * dist/collector/ (production) and from src/collector/ (tests run the sources; `npm test` builds
 * dist/ first).
 */
export const PARSE_WORKER_FILE = new URL('../../dist/collector/parse-worker.js', import.meta.url);

/** What a worker is sent. */
export interface ParseJob {
  readonly job: number;
  readonly deviceId: string;
  readonly body: Uint8Array;
}

/** What a worker says: it listens (once, first), or a parsed batch as columns, or why it could not parse. */
export type ParseReply =
  | { readonly ready: true }
  | { readonly job: number; readonly batch: PackedBatch }
  | { readonly job: number; readonly error: string };

/** A `ParsedBatch` as columns (cheap to clone between threads). */
export interface PackedBatch {
  readonly ids: string[];
  readonly seqs: number[];
  readonly types: string[];
  readonly times: string[];
  readonly ruleIds: (string | null)[];
  readonly agentVersions: (string | null)[];
  readonly policyVersions: (number | null)[];
  readonly coverages: (string | null)[];
  /** The console fields (IncomingEvent's tags … user), one array per event: `[tags, outboxDepth, droppedTotal, policyState, policyError, user]`. */
  readonly consoles: ConsoleColumns[];
  /** The events' JSON joined by `\n`. */
  readonly bodies: string;
  readonly rejected: Rejection[];
  readonly rejectedTotal: number;
  readonly rejectedByReason: Record<string, number>;
}

type ConsoleColumns = readonly [
  IncomingEvent['tags'],
  IncomingEvent['outboxDepth'],
  IncomingEvent['droppedTotal'],
  IncomingEvent['policyState'],
  IncomingEvent['policyError'],
  IncomingEvent['user'],
];

export function packBatch(b: ParsedBatch): PackedBatch {
  const n = b.valid.length;
  const p = {
    ids: new Array<string>(n),
    seqs: new Array<number>(n),
    types: new Array<string>(n),
    times: new Array<string>(n),
    ruleIds: new Array<string | null>(n),
    agentVersions: new Array<string | null>(n),
    policyVersions: new Array<number | null>(n),
    coverages: new Array<string | null>(n),
    consoles: new Array<ConsoleColumns>(n),
    bodies: '',
    rejected: b.rejected,
    rejectedTotal: b.rejectedTotal,
    rejectedByReason: b.rejectedByReason,
  };
  const bodies = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const e = b.valid[i] as IncomingEvent;
    p.ids[i] = e.id;
    p.seqs[i] = e.seq;
    p.types[i] = e.type;
    p.times[i] = e.time;
    p.ruleIds[i] = e.ruleId;
    p.agentVersions[i] = e.agentVersion;
    p.policyVersions[i] = e.policyVersion;
    p.coverages[i] = e.coverage;
    p.consoles[i] = [e.tags, e.outboxDepth, e.droppedTotal, e.policyState, e.policyError, e.user];
    bodies[i] = e.body;
  }
  p.bodies = bodies.join('\n');
  return p;
}

export function unpackBatch(p: PackedBatch): ParsedBatch {
  const n = p.ids.length;
  const bodies = n === 0 ? [] : p.bodies.split('\n');
  if (bodies.length !== n) throw new Error(`parse worker answer: ${bodies.length} bodies for ${n} events`);
  const valid = new Array<IncomingEvent>(n);
  for (let i = 0; i < n; i++) {
    const c = p.consoles[i];
    // field by field, not a spread of a helper's object: one object shape, no copy per event
    valid[i] = {
      id: p.ids[i] as string,
      seq: p.seqs[i] as number,
      type: p.types[i] as string,
      time: p.times[i] as string,
      ruleId: p.ruleIds[i] ?? null,
      agentVersion: p.agentVersions[i] ?? null,
      policyVersion: p.policyVersions[i] ?? null,
      coverage: p.coverages[i] ?? null,
      tags: c?.[0] ?? null,
      outboxDepth: c?.[1] ?? null,
      droppedTotal: c?.[2] ?? null,
      policyState: c?.[3] ?? null,
      policyError: c?.[4] ?? null,
      user: c?.[5] ?? null,
      body: bodies[i] as string,
    };
  }
  return {
    valid,
    rejected: p.rejected,
    rejectedTotal: p.rejectedTotal,
    rejectedByReason: p.rejectedByReason,
  };
}

/** A view of `body` that owns its whole ArrayBuffer, so it can be transferred (copied only when pooled). */
function transferable(body: Buffer): Uint8Array {
  if (
    body.byteOffset === 0 &&
    body.byteLength === body.buffer.byteLength &&
    body.buffer instanceof ArrayBuffer
  )
    return body;
  return new Uint8Array(body);
}

interface Pending {
  resolve(b: ParsedBatch): void;
  reject(e: unknown): void;
}

interface Slot {
  readonly worker: Worker;
  readonly jobs: Map<number, Pending>;
  /** Settles when the worker listens (resolves) or stopped before that (rejects). */
  readonly ready: Promise<void>;
}

export interface ParsePoolOptions {
  readonly workers: number;
  /** The worker entry (default `PARSE_WORKER_FILE`). */
  readonly workerFile?: URL;
  /** Told when a worker died (its bodies were rejected); a new one starts with the next body. */
  readonly onWorkerExit?: (info: { code: number; error: Error | null }) => void;
  /**
   * Bodies of at most this many bytes are parsed at once on the calling thread (default 0: none).
   * For a heartbeat-sized body the hand-over costs more than the parse: waking a worker thread and
   * waking the main thread again for the answer (measured: 11 % of a collector's main thread at
   * 100,000 heart-beating devices, the parse itself under 1 %).
   */
  readonly inlineMaxBytes?: number;
}

/** Parses bodies on `workers` threads, each body on the worker with the fewest pending. */
export class ParsePool implements BatchParser {
  private readonly slots: (Slot | null)[];
  private nextJob = 1;
  private closed = false;

  private constructor(private readonly options: ParsePoolOptions) {
    this.slots = Array.from({ length: options.workers }, () => null);
  }

  /**
   * Starts the workers and resolves once each runs, so a missing or broken worker file fails the
   * collector's start instead of every request. Rejects with `GUARD_COLLECTOR_WORKER_FAILED`.
   */
  static async start(options: ParsePoolOptions): Promise<ParsePool> {
    if (!Number.isInteger(options.workers) || options.workers < 1)
      throw new RangeError(`ParsePool needs at least one worker, got ${options.workers}`);
    const pool = new ParsePool(options);
    try {
      await Promise.all(pool.slots.map((_, i) => pool.spawn(i).ready));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Bodies handed to the workers and not yet answered. */
  get pending(): number {
    let n = 0;
    for (const s of this.slots) n += s?.jobs.size ?? 0;
    return n;
  }

  parse(deviceId: string, body: Buffer): Promise<ParsedBatch> {
    if (this.closed)
      return Promise.reject(new GuardError('GUARD_COLLECTOR_WORKER_FAILED', 'the parse pool is closed'));
    if (body.length <= (this.options.inlineMaxBytes ?? 0))
      return new Promise((resolve) => resolve(parseBatch(body, deviceId)));
    const index = this.leastBusy();
    // A worker queues messages until it listens: a replacement is used at once.
    const slot = this.slots[index] ?? this.spawn(index);
    const data = transferable(body);
    return new Promise<ParsedBatch>((resolve, reject) => {
      const job = this.nextJob++;
      slot.jobs.set(job, { resolve, reject });
      const msg: ParseJob = { job, deviceId, body: data };
      slot.worker.postMessage(msg, [data.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0).filter((s): s is Slot => s !== null);
    for (const s of slots) this.fail(s, 'the parse pool was closed');
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private leastBusy(): number {
    let best = 0;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.slots.length; i++) {
      const load = this.slots[i]?.jobs.size ?? 0;
      if (load < bestLoad) {
        best = i;
        bestLoad = load;
      }
    }
    return best;
  }

  private spawn(index: number): Slot {
    const worker = new Worker(this.options.workerFile ?? PARSE_WORKER_FILE);
    const jobs = new Map<number, Pending>();
    let started = false;
    let exitError: Error | null = null;
    let readyNow: () => void = () => {};
    const ready = new Promise<void>((resolve, reject) => {
      readyNow = () => {
        started = true;
        resolve();
      };
      worker.once('exit', (code) => {
        if (this.slots[index] === slot) this.slots[index] = null;
        const why = exitError ? exitError.message : `exit code ${code}`;
        this.fail(slot, `parse worker stopped (${why})`);
        if (!started)
          reject(new GuardError('GUARD_COLLECTOR_WORKER_FAILED', `parse worker did not start: ${why}`));
        else if (!this.closed) this.options.onWorkerExit?.({ code, error: exitError });
      });
    });
    ready.catch(() => {}); // awaited by start(); a later replacement reports through onWorkerExit
    const slot: Slot = { worker, jobs, ready };
    worker.on('error', (err) => {
      exitError = err;
    });
    worker.on('message', (reply: ParseReply) => {
      if ('ready' in reply) {
        readyNow();
        return;
      }
      const p = jobs.get(reply.job);
      if (!p) return;
      jobs.delete(reply.job);
      if ('error' in reply) {
        p.reject(new GuardError('GUARD_COLLECTOR_WORKER_FAILED', `parse worker: ${reply.error}`));
        return;
      }
      try {
        p.resolve(unpackBatch(reply.batch));
      } catch (err) {
        p.reject(new GuardError('GUARD_COLLECTOR_WORKER_FAILED', (err as Error).message));
      }
    });
    this.slots[index] = slot;
    return slot;
  }

  private fail(slot: Slot, message: string): void {
    for (const p of slot.jobs.values()) p.reject(new GuardError('GUARD_COLLECTOR_WORKER_FAILED', message));
    slot.jobs.clear();
  }
}

/**
 * Parses on the main thread, ONE body per event-loop turn: a 500-event body takes milliseconds, and
 * parsing every body that completed in one I/O phase would make that turn as long as the whole
 * backlog, starving new connections and health checks.
 */
export class InlineParser implements BatchParser {
  private readonly queue: { deviceId: string; body: Buffer; done: Pending }[] = [];
  private scheduled = false;
  private closed = false;

  parse(deviceId: string, body: Buffer): Promise<ParsedBatch> {
    if (this.closed)
      return Promise.reject(new GuardError('GUARD_COLLECTOR_WORKER_FAILED', 'the parser is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ deviceId, body, done: { resolve, reject } });
      this.schedule();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queue.splice(0))
      q.done.reject(new GuardError('GUARD_COLLECTOR_WORKER_FAILED', 'the parser was closed'));
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const next = this.queue.shift();
      if (next) next.done.resolve(parseBatch(next.body, next.deviceId));
      if (this.queue.length > 0) this.schedule();
    });
  }
}
