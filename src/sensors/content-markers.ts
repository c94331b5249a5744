/**
 * Owns scanning an executable for the policy's content markers (src/policy/content-markers.ts):
 * which markers occur in the file, bounded in bytes and time, cached by file identity, and never
 * blocking the event loop on a file the user controls. Used by the process sensor after exec (on
 * /proc/<pid>/exe) and meant for the pre-exec path (on the descriptor the kernel handed over, as
 * /proc/self/fd/N, with the identity it already fstat'ed): `ContentMarkerScanner.scan`.
 *
 * What is scanned is planned by src/policy/marker-regions.ts: the head and tail of the file, the
 * start and end of a Bun single-file executable's payload (ELF `.bun` section, or appended with
 * Bun's trailer), at most MAX_SCAN_BYTES in all; that module says what evades the bound.
 *
 * The file is opened once (non-blocking, no controlling tty; a link is followed only because the
 * caller's path is /proc/<pid>/exe or /proc/self/fd/N, a kernel-made link to the very file that
 * runs) and everything — identity, bytes — comes from that descriptor. The whole scan runs through
 * a `ReadGate` with a deadline (safe-read.ts), so a FIFO, a stalled mount or a file that grows
 * costs a `timeout` or `unreadable`, never a stall. What a scan found is cached by identity only
 * when the file's ctime has settled (file-facts.ts `settled`: coarse timestamps repeat within one
 * tick, so a younger identity may yet name other bytes). An executable root is refused (EACCES: a
 * user's own FUSE mount) is scanned as its owner when a `fuse` reader is given (fuse-exe.ts): the
 * same regions, read by a child acting as that user; not cached.
 */
import { constants } from 'node:fs';
import { type FileHandle, open, readlink } from 'node:fs/promises';
import type { MarkerAutomaton } from '../policy/content-markers.js';
import { planRegionsAsync } from '../policy/marker-regions.js';
import { settled } from './file-facts.js';
import { readIdentity } from './file-id.js';
import type { FuseExeReader } from './fuse-exe.js';
import { cacheableMount } from './mount-trust.js';
import { ReadGate, USER_FILE_OPEN_FLAGS } from './safe-read.js';
import { type Credentials, permits } from './script-package.js';

/** What identifies one version of a file: what the verdict and scan caches are keyed by. */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  /**
   * The unique id of the mount it was read through (Linux 6.8+; 0 unknown): what was learnt of a
   * file system is not looked up for another one mounted later (mount-trust.ts).
   */
  readonly mount: number;
}

export type MarkerScanOutcome =
  /** Read and searched now. */
  | 'scanned'
  /** Answered from the cache (same identity, same marker generation). */
  | 'cached'
  /** The descriptor's identity differs from the one the caller passed (the file changed). */
  | 'changed'
  | 'timeout'
  | 'unreadable'
  | 'busy';

export interface MarkerScanResult {
  /** Canonical keys of the markers found (markerKey); null when the file was not scanned. */
  readonly found: readonly string[] | null;
  readonly outcome: MarkerScanOutcome;
  /** Identity read from the descriptor (absent when it could not be opened). */
  readonly identity?: FileIdentity;
  /** Bytes read and searched (0 when cached). */
  readonly scannedBytes: number;
}

/** A scan still running after this long is abandoned (ms): a stalled mount, a disk far too slow. */
export const SCAN_TIMEOUT_MS = 3000;
/** Distinct (file, marker generation) results remembered; a machine runs a few hundred programs. */
export const SCAN_CACHE_SIZE = 4096;
/** Read size: large enough for throughput, small enough to yield to the event loop often. */
const CHUNK_BYTES = 1024 * 1024;
/** Scans at once, and per uid (ReadGate): a user's stalled mount pins one pool thread, not the pool. */
const SCAN_MAX_IN_FLIGHT = 2;
const SCAN_MAX_PER_UID = 1;
export interface ContentMarkerScannerOptions {
  readonly timeoutMs?: number;
  readonly cacheSize?: number;
  /** The cache, shared with another scanner (file-facts.ts). Default: its own. */
  readonly cache?: Map<string, readonly string[]>;
  /** Admission (tests pass a tight one). Default: 2 in flight, 1 per uid. */
  readonly gate?: ReadGate;
  /** Scans an executable root is refused as its owner (fuse-exe.ts). Default: none. */
  readonly fuse?: FuseExeReader | null;
}

/** What scanWithin says when root may not open the executable (EACCES) and a FUSE reader may. */
const DENIED = Symbol('denied');

/** What regions are read from: an open file, or one a child holds as its owner (fuse-exe.ts). */
type RegionSource = Pick<FileHandle, 'read'> | { read: FuseFileRead };
type FuseFileRead = (
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
) => Promise<{ bytesRead: number }>;

export class ContentMarkerScanner {
  private readonly timeoutMs: number;
  private readonly cacheSize: number;
  private readonly gate: ReadGate;
  private readonly cache: Map<string, readonly string[]>;
  private readonly fuse: FuseExeReader | null;
  /** Outcome counts since start (for status). */
  readonly counts: Record<MarkerScanOutcome, number> = {
    scanned: 0,
    cached: 0,
    changed: 0,
    timeout: 0,
    unreadable: 0,
    busy: 0,
  };

  constructor(options: ContentMarkerScannerOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? SCAN_TIMEOUT_MS;
    this.cacheSize = options.cacheSize ?? SCAN_CACHE_SIZE;
    this.cache = options.cache ?? new Map();
    this.gate = options.gate ?? new ReadGate('content_markers', SCAN_MAX_IN_FLIGHT, SCAN_MAX_PER_UID);
    this.fuse = options.fuse ?? null;
  }

  /** Entries cached now. */
  get cached(): number {
    return this.cache.size;
  }

  /**
   * The markers of `automaton` in that version of a file when they are cached (counted as
   * `cached`), else undefined: no file is opened.
   */
  cachedScan(identity: FileIdentity, automaton: MarkerAutomaton): readonly string[] | undefined {
    const hit = this.cache.get(`${identityKey(identity)}|${automaton.generation}`);
    if (hit !== undefined) this.counts.cached++;
    return hit;
  }

  /**
   * Which of `automaton`'s markers occur in the file at `path` (within the regions of the module
   * doc). `path` is /proc/<pid>/exe or /proc/self/fd/N (followed on purpose: a kernel-made link to
   * the file itself). When `expected` is given (the pre-exec path knows the identity from its own
   * fstat), a descriptor that says otherwise answers `changed` without reading. Never rejects;
   * resolves within the timeout whatever the file system does. Safe to call concurrently; a file
   * already scanned under this marker generation costs one open and one fstat.
   * `asUser`: `path` is a user's path (a script an interpreter loads), not a /proc link: opened
   * without following a link at its last component, and scanned only when those credentials may
   * read it by its mode bits (else `unreadable`).
   */
  async scan(
    path: string,
    automaton: MarkerAutomaton,
    key: string | number = -1,
    expected?: FileIdentity,
    asUser?: Credentials,
  ): Promise<MarkerScanResult> {
    const job = { expired: false };
    const r = await this.gate.run(key, this.timeoutMs, () =>
      this.scanWithin(path, automaton, expected, job, asUser),
    );
    if (!r.admitted) {
      this.counts.busy++;
      return { found: null, outcome: 'busy', scannedBytes: 0 };
    }
    if (r.timedOut) {
      job.expired = true;
      this.counts.timeout++;
      return { found: null, outcome: 'timeout', scannedBytes: 0 };
    }
    const value = r.value === DENIED ? await this.scanAsOwner(path, automaton, key) : r.value;
    this.counts[value.outcome]++;
    return value;
  }

  /**
   * Scans, as the process's owner, the executable root was refused (`path` is /proc/<pid>/exe;
   * fuse-exe.ts): the same regions; `busy` when no child may read now (the sensor asks again).
   */
  private async scanAsOwner(
    path: string,
    automaton: MarkerAutomaton,
    key: string | number,
  ): Promise<MarkerScanResult> {
    const r = await (this.fuse as FuseExeReader).withFile(
      path,
      typeof key === 'number' ? key : -1,
      async (f) => {
        const identity = { ...f.identity, mount: 0 };
        const searched = await searchRegions(f, identity.size, automaton, { expired: false });
        const after = { ...(await f.stat()), mount: 0 };
        return sameIdentity(identity, after)
          ? { found: searched.found, outcome: 'scanned' as const, identity, scannedBytes: searched.scanned }
          : { found: null, outcome: 'changed' as const, identity: after, scannedBytes: searched.scanned };
      },
    );
    if (r.ok) return r.value;
    const outcome =
      r.reason === 'timeout'
        ? 'timeout'
        : r.reason === 'busy' || r.reason === 'stalled'
          ? 'busy'
          : 'unreadable';
    return { found: null, outcome, scannedBytes: 0 };
  }

  private async scanWithin(
    path: string,
    automaton: MarkerAutomaton,
    expected: FileIdentity | undefined,
    job: { expired: boolean },
    asUser: Credentials | undefined,
  ): Promise<MarkerScanResult | typeof DENIED> {
    let fh: FileHandle;
    try {
      // A user's path (not a kernel-made /proc link): a link at its last component is refused.
      const flags = asUser
        ? USER_FILE_OPEN_FLAGS
        : constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);
      fh = await open(path, flags);
    } catch (err) {
      // Root refused the executable itself (a user's own FUSE mount): read as its owner, if allowed.
      if (this.fuse && !asUser && !expected && (err as NodeJS.ErrnoException).code === 'EACCES')
        return DENIED;
      return { found: null, outcome: 'unreadable', scannedBytes: 0 };
    }
    try {
      const st = await readIdentity(fh);
      if (!st.isFile) return { found: null, outcome: 'unreadable', scannedBytes: 0 };
      // O_NOFOLLOW guards the last component only: a directory on the way swapped for a link
      // after the caller located the file (as the user) would be followed by root, into what the
      // user cannot search. `path` is fully resolved, so the kernel's name for what was opened
      // must be that very path.
      if (asUser && !(await opensAt(fh, path)))
        return { found: null, outcome: 'unreadable', scannedBytes: 0 };
      // What the user may not read, their interpreter did not load: root must not tell its markers.
      if (asUser && !permits(st, asUser, 4)) return { found: null, outcome: 'unreadable', scannedBytes: 0 };
      const identity = st.identity;
      if (expected && !sameIdentity(identity, expected)) {
        return { found: null, outcome: 'changed', identity, scannedBytes: 0 };
      }
      // An inode number is only unique within its file system, so the device is part of the key;
      // size, mtime and ctime change when the file is rewritten in place.
      const cacheKey = `${identityKey(identity)}|${automaton.generation}`;
      const readStart = Date.now();
      const hit = this.cache.get(cacheKey);
      if (hit !== undefined) return { found: hit, outcome: 'cached', identity, scannedBytes: 0 };
      const { found, scanned } = await searchRegions(fh, identity.size, automaton, job);
      if (found === null) return { found: null, outcome: 'timeout', identity, scannedBytes: scanned };
      // Rewritten while we read: what was found belongs to no single version; do not cache it.
      const after = (await readIdentity(fh)).identity;
      if (!sameIdentity(identity, after))
        return { found: null, outcome: 'changed', identity: after, scannedBytes: scanned };
      // Coarse timestamps: a file changed in the last seconds may get other bytes under this key;
      // and where a user can write the blocks under the file system, any key may.
      if (settled(identity, readStart) && (await cacheableMount(identity, st.mountId)))
        this.remember(cacheKey, found);
      return { found, outcome: 'scanned', identity, scannedBytes: scanned };
    } catch {
      return { found: null, outcome: 'unreadable', scannedBytes: 0 };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  private remember(key: string, found: readonly string[]): void {
    if (this.cache.size >= this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, found);
  }
}

/**
 * Which of `automaton`'s markers occur in the regions (marker-regions.ts) of a file of `size`
 * bytes read from `src`; `found` null when `job` expired meanwhile. Bounded: MAX_SCAN_BYTES.
 */
async function searchRegions(
  src: RegionSource,
  size: number,
  automaton: MarkerAutomaton,
  job: { expired: boolean },
): Promise<{ found: readonly string[] | null; scanned: number }> {
  const regions = await planRegionsAsync((pos, len) => readAt(src, pos, len), size);
  const st = automaton.newState();
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  let scanned = 0;
  for (const region of regions) {
    automaton.restart(st);
    for (let pos = region.start; pos < region.end; ) {
      if (job.expired) return { found: null, scanned };
      const want = Math.min(buf.length, region.end - pos);
      const { bytesRead } = await src.read(buf, 0, want, pos);
      // The file shrank under us: what is there was searched; the caller's identity check decides.
      if (bytesRead <= 0) break;
      scanned += bytesRead;
      pos += bytesRead;
      if (automaton.feed(st, buf.subarray(0, bytesRead))) break;
    }
    if (st.foundCount === automaton.keys.length) break;
  }
  return { found: automaton.foundKeys(st), scanned };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtimeMs === b.mtimeMs &&
    a.ctimeMs === b.ctimeMs &&
    a.mount === b.mount
  );
}

/** `dev:ino:size:mtime:ctime:mount`, the cache key of one version of a file. */
export function identityKey(id: FileIdentity): string {
  return `${id.dev}:${id.ino}:${id.size}:${id.mtimeMs}:${id.ctimeMs}:${id.mount}`;
}

/**
 * Whether the descriptor is of the file at `path` as the kernel names it (/proc/self/fd/N on
 * Linux). Where there is no such name (other systems) the caller's path walk is all there is.
 */
async function opensAt(fh: FileHandle, path: string): Promise<boolean> {
  if (process.platform !== 'linux') return true;
  try {
    return (await readlink(`/proc/self/fd/${fh.fd}`)) === path;
  } catch {
    return false;
  }
}

async function readAt(fh: RegionSource, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  let total = 0;
  // Bounded: each read returns ≥ 1 byte or ends the loop.
  while (total < len) {
    const { bytesRead } = await fh.read(buf, total, len - total, pos + total);
    if (bytesRead <= 0) break;
    total += bytesRead;
  }
  return buf.subarray(0, total);
}

export {
  BUN_TRAILER,
  HEAD_BYTES,
  MAX_SCAN_BYTES,
  type ScanRegion,
  SECTION_HEAD_BYTES,
  TAIL_BYTES,
} from '../policy/marker-regions.js';
