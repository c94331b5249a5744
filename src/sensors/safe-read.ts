/**
 * Owns touching a file a local user controls without letting that user freeze or steer guardd.
 * Every read of such a file (package.json beside a script or in a global npm tree, an executable
 * to hash, a path to resolve) goes through here:
 *
 *  - opened non-blocking and without following a link at the final component
 *    (`O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY` where the platform has them): a FIFO, a tty or a
 *    link to a root-only file is refused, never waited on;
 *  - typed from the descriptor (`fstat`): only regular files are read, so what was checked is what
 *    is read, and owner and mode come with the bytes for the caller's trust decision;
 *  - size-capped, and read through the async fs API with a deadline: a stalled FUSE or network
 *    mount costs the caller a `timeout`, never the event loop;
 *  - admitted by a `ReadGate`: async fs calls run on libuv's small thread pool (4 threads), and a
 *    call stuck in the kernel keeps its thread until the file system answers. A gate bounds how
 *    many calls one source, and one key (a uid) within it, may have unfinished, counting a call
 *    until it really finishes, not until its deadline: a user's stalled mount pins at most that
 *    user's share of threads, and guardd's own work and other users keep the rest.
 *
 * Nothing here throws for a bad file: results are values with a stable `reason`.
 */

import type { Dirent } from 'node:fs';
import { constants, type Stats } from 'node:fs';
import { type FileHandle, lstat, open, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { nativeAddonPath } from '../common/native-addon.js';

/**
 * Threads of libuv's pool all gates together may hold (UV_THREADPOOL_SIZE defaults to 4): one is
 * always left for guardd's own files, DNS and crypto.
 */
export const USER_IO_MAX_PINNED = 3;
/**
 * Of those, one key (a uid) may hold at most this many: a user whose own mount stalls keeps the
 * last pool thread free for every other user (and for guardd's own sources).
 */
export const USER_IO_MAX_PINNED_PER_KEY = 2;
/** Callers waiting for a slot per gate at most; beyond it they are refused at once (busy). */
const MAX_WAITING_PER_GATE = 10_000;
/** A read of a user's file that has not finished after this long is abandoned (ms). */
export const USER_READ_TIMEOUT_MS = 2000;

/**
 * Open flags for a user's file. O_NOFOLLOW: a symlink at the last component is refused (ELOOP),
 * so a link to /dev/zero or a root-only file is never read. O_NONBLOCK: opening a FIFO or a device
 * returns at once. O_NOCTTY: a terminal is never made guardd's controlling tty. Each is 0 where
 * the platform lacks it (Windows).
 */
export const USER_FILE_OPEN_FLAGS =
  constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0) | (constants.O_NOCTTY ?? 0);

/** Why a user's file was not read. */
export type SafeReadFailure =
  | 'missing'
  | 'not_file'
  | 'symlink'
  | 'too_large'
  | 'permission_denied'
  | 'timeout'
  | 'busy'
  | 'unreadable';

/** Facts of the descriptor that was read (from fstat, not from the path). */
export interface FileFacts {
  readonly dev: number;
  readonly ino: number;
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
  readonly size: number;
  readonly mtimeMs: number;
}

export type SafeReadResult =
  | { readonly ok: true; readonly data: Buffer; readonly facts: FileFacts }
  | { readonly ok: false; readonly reason: SafeReadFailure; readonly detail?: string };

/**
 * Admission for calls into the thread pool on behalf of one source. A slot is held from the call
 * until the kernel answers, even past the caller's deadline, because that is how long the pool
 * thread stays busy. A caller that finds no free slot waits in line, but never past its own
 * deadline: normal calls free their slot within microseconds, while slots pinned by a stalled
 * mount make the line time out (`busy`, counted) instead of growing without end.
 */
export class ReadGate {
  private static readonly gates = new Set<ReadGate>();
  private static pinnedAll = 0;
  private static readonly pinnedByKey = new Map<string | number, number>();
  private inFlight = 0;
  private readonly perKey = new Map<string | number, number>();
  private readonly waiting: Array<{ key: string | number; admit: () => void }> = [];
  /** Key → its calls through this gate that outlived their deadline and have not returned yet. */
  private readonly overdue = new Map<string | number, number>();
  /**
   * Calls refused (no slot before the deadline, or the line full), calls abandoned at their
   * deadline, and `failFast` calls refused at once because their key's slot was held by an overdue call.
   */
  readonly counts = { busy: 0, timeout: 0, stuck: 0 };

  /**
   * @param name shown in status.
   * @param maxInFlight calls this source may have unfinished at once.
   * @param maxPerKey calls one key (a uid) may have unfinished at once within this source.
   */
  constructor(
    readonly name: string,
    private readonly maxInFlight: number,
    private readonly maxPerKey: number,
  ) {
    ReadGate.gates.add(this);
  }

  /** Unfinished calls of this source now (a stuck call stays counted until it returns). */
  get pending(): number {
    return this.inFlight;
  }

  /** Callers waiting for a slot now. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Unfinished calls of every gate together (bounded by USER_IO_MAX_PINNED). */
  static get pendingAll(): number {
    return ReadGate.pinnedAll;
  }

  /**
   * Runs `call` once a slot is free, waiting at most `timeoutMs` in all (line and call). Resolves
   * `{ admitted: false }` when no slot came in time (`call` never ran), `{ timedOut: true }` when
   * the call outlived the deadline (its slot stays held until it settles), else its value.
   * `failFast`: when no slot is free and a call of the same key that outlived its deadline is still
   * out (a stalled mount of that user's), `{ admitted: false }` at once instead of a wait in line
   * that would most likely end the same way — for a caller that holds something others wait for
   * meanwhile (an owner-fs operation's place).
   */
  async run<T>(
    key: string | number,
    timeoutMs: number,
    call: () => Promise<T>,
    { failFast = false }: { readonly failFast?: boolean } = {},
  ): Promise<
    { admitted: false } | { admitted: true; timedOut: true } | { admitted: true; timedOut: false; value: T }
  > {
    let timer: NodeJS.Timeout | undefined;
    let expire: (() => void) | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      expire = () => resolve('expired');
      timer = setTimeout(expire, timeoutMs);
    });
    try {
      if (!this.canAdmit(key)) {
        if (failFast && this.overdue.has(key)) {
          this.counts.stuck++;
          return { admitted: false };
        }
        if (this.waiting.length >= MAX_WAITING_PER_GATE) {
          this.counts.busy++;
          return { admitted: false };
        }
        let entry: { key: string | number; admit: () => void } | undefined;
        const admitted = new Promise<'admitted'>((resolve) => {
          entry = { key, admit: () => resolve('admitted') };
          this.waiting.push(entry);
        });
        if ((await Promise.race([admitted, expired])) === 'expired') {
          const at = entry ? this.waiting.indexOf(entry) : -1;
          if (at >= 0) this.waiting.splice(at, 1);
          // Admitted in the same instant the deadline passed: hand the reserved slot back.
          else this.release(key);
          this.counts.busy++;
          return { admitted: false };
        }
        // The waker reserved the slot for this caller (see wake).
      } else {
        this.take(key);
      }
      let late = false;
      const work = call().finally(() => {
        if (late) decrement(this.overdue, key);
        this.release(key);
      });
      const winner = await Promise.race([work.then((value) => ({ value })), expired]);
      if (winner === 'expired') {
        this.counts.timeout++;
        late = true;
        this.overdue.set(key, (this.overdue.get(key) ?? 0) + 1);
        // The call settles later (or never); its outcome is of no interest then.
        work.catch(() => undefined);
        return { admitted: true, timedOut: true };
      }
      return { admitted: true, timedOut: false, value: winner.value };
    } finally {
      clearTimeout(timer);
    }
  }

  private canAdmit(key: string | number): boolean {
    return (
      this.inFlight < this.maxInFlight &&
      (this.perKey.get(key) ?? 0) < this.maxPerKey &&
      ReadGate.pinnedAll < USER_IO_MAX_PINNED &&
      (ReadGate.pinnedByKey.get(key) ?? 0) < USER_IO_MAX_PINNED_PER_KEY
    );
  }

  private take(key: string | number): void {
    this.inFlight++;
    this.perKey.set(key, (this.perKey.get(key) ?? 0) + 1);
    ReadGate.pinnedAll++;
    ReadGate.pinnedByKey.set(key, (ReadGate.pinnedByKey.get(key) ?? 0) + 1);
  }

  private release(key: string | number): void {
    this.inFlight--;
    decrement(this.perKey, key);
    ReadGate.pinnedAll--;
    decrement(ReadGate.pinnedByKey, key);
    // A slot freed here may admit a caller of any gate (the totals are shared).
    for (const gate of ReadGate.gates) gate.wake();
  }

  /** Admits waiting callers in order, skipping those whose key is still at its limit. */
  private wake(): void {
    for (let i = 0; i < this.waiting.length; ) {
      const w = this.waiting[i] as { key: string | number; admit: () => void };
      if (!this.canAdmit(w.key)) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      // Reserve now: the admitted caller runs in a later microtask, and a caller arriving in
      // between must not take the same slot.
      this.take(w.key);
      w.admit();
      return;
    }
  }
}

function decrement(map: Map<string | number, number>, key: string | number): void {
  const left = (map.get(key) ?? 1) - 1;
  if (left <= 0) map.delete(key);
  else map.set(key, left);
}

export interface SafeReadOptions {
  /** Files larger than this are refused (bytes). */
  readonly maxBytes: number;
  /** Admission for this source. */
  readonly gate: ReadGate;
  /** The gate key: the uid on whose behalf the file is read. */
  readonly key: string | number;
  /** Deadline for the whole read (ms). Default USER_READ_TIMEOUT_MS. */
  readonly timeoutMs?: number;
}

/**
 * Reads a whole small file a user controls (see the module doc). Never throws, and resolves
 * within `timeoutMs` whatever the file system does.
 */
export async function readUserFile(path: string, options: SafeReadOptions): Promise<SafeReadResult> {
  const timeoutMs = options.timeoutMs ?? USER_READ_TIMEOUT_MS;
  const r = await options.gate.run(options.key, timeoutMs, () => readWhole(path, options.maxBytes));
  if (!r.admitted) return { ok: false, reason: 'busy' };
  if (r.timedOut) return { ok: false, reason: 'timeout' };
  return r.value;
}

async function readWhole(path: string, maxBytes: number): Promise<SafeReadResult> {
  let fh: FileHandle;
  try {
    fh = await open(path, USER_FILE_OPEN_FLAGS);
  } catch (err) {
    return failure(err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { ok: false, reason: 'not_file' };
    if (st.size > maxBytes) return { ok: false, reason: 'too_large', detail: `${st.size} bytes` };
    // Read up to cap + 1 whatever the reported size: a file growing under us is still bounded.
    const buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(st.size, 0) + 1));
    let total = 0;
    // Bounded: each read returns ≥ 1 byte or ends the loop, and the buffer is at most cap + 1.
    while (total < buf.length) {
      const { bytesRead } = await fh.read(buf, total, buf.length - total, null);
      if (bytesRead <= 0) break;
      total += bytesRead;
    }
    if (total > maxBytes) return { ok: false, reason: 'too_large' };
    return { ok: true, data: buf.subarray(0, total), facts: factsOf(st) };
  } catch (err) {
    return failure(err);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** The stat facts toolguard keeps (number fields, from a descriptor or a path). */
export function factsOf(st: Stats): FileFacts {
  return {
    dev: st.dev,
    ino: st.ino,
    uid: st.uid,
    gid: st.gid,
    mode: st.mode,
    size: st.size,
    mtimeMs: st.mtimeMs,
  };
}

/** Result of a path-level call (stat, lstat, realpath) through a gate. */
export type SafePathResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: SafeReadFailure };

/** `stat` (following links) of a user's path, gated and with a deadline. Never throws. */
export function statUserPath(
  path: string,
  gate: ReadGate,
  key: string | number,
  timeoutMs = USER_READ_TIMEOUT_MS,
): Promise<SafePathResult<Stats>> {
  return gated(gate, key, timeoutMs, () => stat(path));
}

/** `lstat` of a user's path, gated and with a deadline. Never throws. */
export function lstatUserPath(
  path: string,
  gate: ReadGate,
  key: string | number,
  timeoutMs = USER_READ_TIMEOUT_MS,
): Promise<SafePathResult<Stats>> {
  return gated(gate, key, timeoutMs, () => lstat(path));
}

/** `realpath` of a user's path, gated and with a deadline. Never throws. */
export function realpathUserPath(
  path: string,
  gate: ReadGate,
  key: string | number,
  timeoutMs = USER_READ_TIMEOUT_MS,
): Promise<SafePathResult<string>> {
  return gated(gate, key, timeoutMs, () => realpath(path));
}

/** `readlink` of a user's symlink, gated and with a deadline. Never throws. */
export function readlinkUserPath(
  path: string,
  gate: ReadGate,
  key: string | number,
  timeoutMs = USER_READ_TIMEOUT_MS,
): Promise<SafePathResult<string>> {
  return gated(gate, key, timeoutMs, () => readlink(path));
}

/** `readdir` (with types) of a user's directory, gated and with a deadline. Never throws. */
export function readdirUserPath(
  path: string,
  gate: ReadGate,
  key: string | number,
  timeoutMs = USER_READ_TIMEOUT_MS,
): Promise<SafePathResult<Dirent[]>> {
  return gated(gate, key, timeoutMs, () => readdir(path, { withFileTypes: true }));
}

/** What lstat said of one step of a path walk: the mode bits, the owner, and a symlink's target. */
export interface ChainStep {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** The entry's device and inode (what an open mark of the file checks it still is). */
  readonly dev: number;
  readonly ino: number;
  /** The target of a symlink (read in the same job); null for anything else. */
  readonly link: string | null;
}

/** One answer of `lstatUserChain`: the step's facts, or why it has none (an errno name). */
export type ChainAnswer =
  | { readonly ok: true; readonly step: ChainStep }
  | { readonly ok: false; readonly code: string };

/** Paths per `lstatUserChain` call at most (native/pathwalk's MAX_PATHS). */
export const CHAIN_MAX_PATHS = 128;

interface PathwalkAddon {
  lstatChain(
    paths: readonly string[],
  ): Promise<
    Array<
      | { mode: number; uid: number; gid: number; dev: number; ino: number; link: string | null }
      | { code: string }
    >
  >;
}

/** native/pathwalk (where: src/common/native-addon.ts); null when not built. */
const pathwalk: PathwalkAddon | null = (() => {
  if (process.platform === 'win32') return null;
  const file = nativeAddonPath('pathwalk');
  try {
    const addon = createRequire(import.meta.url)(file) as Partial<PathwalkAddon>;
    return typeof addon.lstatChain === 'function' ? (addon as PathwalkAddon) : null;
  } catch {
    return null;
  }
})();

/** True when `lstatUserChain` runs as one pool job (native/pathwalk built), false when it falls back to one job per step. */
export const chainIsNative = pathwalk !== null;

/**
 * `lstat` of the steps of a path walk, in order, in ONE gated call (one pool job with
 * native/pathwalk; without it, the same steps one fs call after another inside the one gate slot):
 * a symlink's target is read with it, and the answers stop after the first symlink, the first
 * error or the first step that is not a directory — nothing below those can be walked as given.
 * The caller (the script package resolver) passes the lexical prefixes it will walk next and
 * consumes the answers in order, so a path without links costs one trip through the pool and the
 * event loop instead of one per component. Paths past CHAIN_MAX_PATHS are not answered (the walk
 * asks again); an empty list, or a path that is relative, holds NUL or is PATH_MAX long or longer,
 * is `unreadable` (EINVAL). Never throws.
 */
export function lstatUserChain(
  paths: readonly string[],
  gate: ReadGate,
  key: string | number,
  timeoutMs = USER_READ_TIMEOUT_MS,
): Promise<SafePathResult<ChainAnswer[]>> {
  const list = paths.slice(0, CHAIN_MAX_PATHS);
  // What no walk asks for (the resolver never passes it): refused the same way with or without the addon.
  if (
    list.length === 0 ||
    list.some((p) => !p.startsWith('/') || p.includes('\u0000') || Buffer.byteLength(p) >= 4096)
  ) {
    return Promise.resolve({ ok: false, reason: 'unreadable' });
  }
  return gated(gate, key, timeoutMs, () =>
    pathwalk !== null ? lstatChainNative(pathwalk, list) : lstatChainSequential(list),
  );
}

async function lstatChainNative(addon: PathwalkAddon, list: readonly string[]): Promise<ChainAnswer[]> {
  const raw = await addon.lstatChain(list);
  return raw.map((a): ChainAnswer => ('code' in a ? { ok: false, code: a.code } : { ok: true, step: a }));
}

/**
 * `lstatUserChain`'s answers one fs call after another: where native/pathwalk is not built (and,
 * in the tests, the reference the native answers are compared with). Ungated: callers go
 * through `lstatUserChain`.
 */
export async function lstatChainSequential(list: readonly string[]): Promise<ChainAnswer[]> {
  const out: ChainAnswer[] = [];
  const failed = (err: unknown): ChainAnswer => ({
    ok: false,
    code: (err as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN',
  });
  for (const p of list) {
    let st: Stats;
    try {
      st = await lstat(p);
    } catch (err) {
      out.push(failed(err));
      break;
    }
    if (st.isSymbolicLink()) {
      try {
        out.push({ ok: true, step: { ...stepOf(st), link: await readlink(p) } });
      } catch (err) {
        out.push(failed(err));
      }
      break;
    }
    out.push({ ok: true, step: { ...stepOf(st), link: null } });
    if (!st.isDirectory()) break;
  }
  return out;
}

function stepOf(st: Stats): Omit<ChainStep, 'link'> {
  return { mode: st.mode, uid: st.uid, gid: st.gid, dev: st.dev, ino: st.ino };
}

async function gated<T>(
  gate: ReadGate,
  key: string | number,
  timeoutMs: number,
  call: () => Promise<T>,
): Promise<SafePathResult<T>> {
  const r = await gate.run(key, timeoutMs, () =>
    call().then(
      (value) => ({ ok: true as const, value }),
      (err: unknown) => failure(err),
    ),
  );
  if (!r.admitted) return { ok: false, reason: 'busy' };
  if (r.timedOut) return { ok: false, reason: 'timeout' };
  return r.value;
}

function failure(err: unknown): { ok: false; reason: SafeReadFailure; detail: string } {
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  let reason: SafeReadFailure = 'unreadable';
  if (code === 'ENOENT' || code === 'ENOTDIR') reason = 'missing';
  else if (code === 'EACCES' || code === 'EPERM') reason = 'permission_denied';
  else if (code === 'ELOOP') reason = 'symlink';
  else if (code === 'EISDIR' || code === 'ENXIO' || code === 'EAGAIN' || code === 'EWOULDBLOCK')
    reason = 'not_file';
  return { ok: false, reason, detail: code };
}

/** True when `mode` lets every user write (o+w), whatever the sticky bit. */
export function worldWritable(mode: number): boolean {
  return (mode & 0o002) !== 0;
}
