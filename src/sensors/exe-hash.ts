/**
 * Owns SHA-256 of executables, computed lazily (only when a rule names hashes) and cached by
 * device + inode + size + mtime + ctime, so the node binary that runs a hundred processes is hashed
 * once. ctime is part of the key because the file's owner can put size and mtime back after
 * rewriting it in place (`touch -d`), but not ctime — and a hash is remembered only once that
 * ctime has settled (file-facts.ts `settled`: coarse timestamps repeat within one tick).
 *
 * The file is opened once and everything (cache key, bytes) comes from that descriptor, so a file
 * swapped after the open cannot be hashed under the old key. Huge files and slow disks are
 * bounded: past HASH_MAX_BYTES or HASH_TIMEOUT_MS the result is null and counted, never a stall.
 * An executable root is refused (EACCES: a user's own FUSE mount) is hashed as its owner when a
 * `fuse` reader is given (fuse-exe.ts), and not cached.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { type FileIdentity, identityKey } from './content-markers.js';
import { settled } from './file-facts.js';
import { readIdentity } from './file-id.js';
import type { FuseExeReader } from './fuse-exe.js';
import { cacheableMount } from './mount-trust.js';
import { ReadGate } from './safe-read.js';

export interface ExeHasherOptions {
  /** Files larger than this are not hashed (bytes). */
  readonly maxBytes?: number;
  /** A hash that takes longer than this is abandoned (ms). */
  readonly timeoutMs?: number;
  /** Cache entries kept at most. */
  readonly cacheSize?: number;
  /** The cache, shared with another hasher (file-facts.ts). Default: its own. */
  readonly cache?: Map<string, string>;
  /** Admission for hashing (tests pass a tight one). Default: 2 in flight, 1 per uid. */
  readonly gate?: ReadGate;
  /** Reads an executable root is refused as its owner (fuse-exe.ts). Default: none. */
  readonly fuse?: FuseExeReader | null;
}

/** A hash and whether asking again later may give one (a read as the owner got no answer in time). */
export interface HashResult {
  readonly sha256: string | null;
  readonly retry: boolean;
}

/** What hashWithin says when root may not open the file (EACCES) and a FUSE reader may. */
const DENIED = Symbol('denied');

/** 256 MiB: larger than any CLI binary or SEA bundle we have seen (node ≈ 100 MiB, bun ≈ 90 MiB). */
export const HASH_MAX_BYTES = 256 * 1024 * 1024;
/** The 99 MB node binary hashes in ~90 ms from page cache; 2 s leaves room for a cold disk. */
export const HASH_TIMEOUT_MS = 2000;
/** Distinct executables remembered; a machine rarely runs more than a few hundred. */
export const HASH_CACHE_SIZE = 4096;
/** Hashes running at once, and per uid: a user's stalled mount pins one pool thread, not the pool. */
const HASH_MAX_IN_FLIGHT = 2;
const HASH_MAX_PER_UID = 1;
/** Read size per chunk: large enough for throughput, small enough to yield to the event loop often. */
const CHUNK_BYTES = 1024 * 1024;

export type HashOutcome = 'hashed' | 'cached' | 'too_large' | 'timeout' | 'unreadable' | 'busy';

export class ExeHasher {
  private readonly maxBytes: number;
  private readonly timeoutMs: number;
  private readonly cacheSize: number;
  private readonly cache: Map<string, string>;
  private readonly inflight = new Map<string, Promise<string | null>>();
  /** Outcome counts since start (for status). */
  readonly counts: Record<HashOutcome, number> = {
    hashed: 0,
    cached: 0,
    too_large: 0,
    timeout: 0,
    unreadable: 0,
    busy: 0,
  };
  private readonly gate: ReadGate;
  private readonly fuse: FuseExeReader | null;

  constructor(options: ExeHasherOptions = {}) {
    this.maxBytes = options.maxBytes ?? HASH_MAX_BYTES;
    this.timeoutMs = options.timeoutMs ?? HASH_TIMEOUT_MS;
    this.cacheSize = options.cacheSize ?? HASH_CACHE_SIZE;
    this.cache = options.cache ?? new Map();
    this.gate = options.gate ?? new ReadGate('exe_hash', HASH_MAX_IN_FLIGHT, HASH_MAX_PER_UID);
    this.fuse = options.fuse ?? null;
  }

  /**
   * Lower-case hex SHA-256 of the file at `path`, or null (too large, too slow, unreadable, no
   * free slot). Never rejects, and resolves within `timeoutMs` even when the file system never
   * answers (a FUSE or network mount that stalls open or read): the process is then matched
   * without its hash rather than never. The work runs through a `ReadGate` keyed by `key` (the
   * process's uid), so files that never answer pin a bounded share of libuv's thread pool; the
   * stalled call finishes, or not, in the background. A file hashed before costs one open and one
   * fstat (the cache is keyed by what the descriptor says, never by a path stat).
   */
  async hash(path: string, key: string | number = -1): Promise<string | null> {
    return (await this.hashResult(path, key)).sha256;
  }

  /**
   * `hash`, and whether it is worth asking again while the process runs the same program: a read
   * as the owner (the `fuse` reader) that got no answer in time or found no free child.
   */
  async hashResult(path: string, key: string | number = -1): Promise<HashResult> {
    const job = { expired: false };
    const r = await this.gate.run(key, this.timeoutMs, () => this.hashWithin(path, job));
    if (!r.admitted) {
      this.counts.busy++;
      return { sha256: null, retry: false };
    }
    if (r.timedOut) {
      job.expired = true;
      this.counts.timeout++;
      return { sha256: null, retry: false };
    }
    if (r.value === DENIED) return this.hashAsOwner(path, key);
    return { sha256: r.value, retry: false };
  }

  /** Hashes, as the process's owner, the file root was refused (`path` is /proc/<pid>/exe; not cached). */
  private async hashAsOwner(path: string, key: string | number): Promise<HashResult> {
    const r = await (this.fuse as FuseExeReader).withFile(path, typeof key === 'number' ? key : -1, (f) =>
      f.hash(this.maxBytes),
    );
    if (!r.ok) {
      const retry = r.reason === 'busy' || r.reason === 'stalled' || r.reason === 'timeout';
      this.counts[r.reason === 'timeout' ? 'timeout' : retry ? 'busy' : 'unreadable']++;
      return { sha256: null, retry };
    }
    this.counts[r.value === null ? 'too_large' : 'hashed']++;
    return { sha256: r.value, retry: false };
  }

  private async hashWithin(path: string, job: { expired: boolean }): Promise<string | null | typeof DENIED> {
    let handle: Awaited<ReturnType<typeof open>> | null = null;
    try {
      // Non-blocking, never a tty; links are followed on purpose: the path is /proc/<pid>/exe.
      try {
        handle = await open(
          path,
          constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0),
        );
      } catch (err) {
        if (this.fuse && (err as NodeJS.ErrnoException).code === 'EACCES') return DENIED;
        throw err;
      }
      const read = await readIdentity(handle);
      const st = read.identity;
      if (!read.isFile) {
        this.counts.unreadable++;
        return null;
      }
      // An inode number is only unique within its filesystem, so the device is part of the key;
      // ctime changes whenever the file is rewritten in place; size and mtime can be put back by
      // its owner (same size, `touch -d`), so a key without ctime serves a benign file's hash to
      // the banned bytes written into it.
      const key = identityKey(st);
      const readStart = Date.now();
      const hit = this.cache.get(key);
      if (hit !== undefined) {
        this.counts.cached++;
        return hit;
      }
      if (st.size > this.maxBytes) {
        this.counts.too_large++;
        return null;
      }
      const pending = this.inflight.get(key);
      if (pending) return await pending;
      const fh = handle;
      handle = null; // the digest owns the handle now
      // Where a user can write the blocks under the file system, no key names these bytes for
      // good. Asked while the file is open: its mount id names this very mount until it closes.
      const trusted = cacheableMount(st, read.mountId);
      let cacheable = false;
      const digesting = this.digest(fh, st.size, job)
        // Rewritten while it was read: the digest is of no single version of the file.
        .then(async (d) =>
          d !== null && identityKey((await readIdentity(fh)).identity) !== key ? this.changed() : d,
        )
        .then(async (d) => {
          cacheable = await trusted;
          return d;
        })
        .finally(() => {
          this.inflight.delete(key);
          void fh.close().catch(() => undefined);
        });
      this.inflight.set(key, digesting);
      const digest = await digesting;
      if (digest !== null) this.counts.hashed++;
      // Coarse timestamps: a file changed in the last seconds may get other bytes under this key.
      if (digest !== null && cacheable && settled(st, readStart)) this.remember(key, digest);
      return digest;
    } catch {
      this.counts.unreadable++;
      return null;
    } finally {
      if (handle) await handle.close().catch(() => undefined);
    }
  }

  private changed(): null {
    this.counts.unreadable++;
    return null;
  }

  /** Entries currently cached. */
  get cached(): number {
    return this.cache.size;
  }

  /** The hash of that version of a file when it is cached (counted as `cached`), else undefined. */
  cachedHash(identity: FileIdentity): string | undefined {
    const hit = this.cache.get(identityKey(identity));
    if (hit !== undefined) this.counts.cached++;
    return hit;
  }

  private async digest(
    fh: Awaited<ReturnType<typeof open>>,
    size: number,
    job: { expired: boolean },
  ): Promise<string | null> {
    const deadline = performance.now() + this.timeoutMs;
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(size, 1)));
    let pos = 0;
    // Bounded by maxBytes / chunk reads (size was checked) and by the deadline.
    for (let i = 0; i <= Math.ceil(this.maxBytes / buf.length) + 1; i++) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) return h.digest('hex');
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      if (pos > this.maxBytes) {
        this.counts.too_large++;
        return null;
      }
      if (job.expired) return null; // counted by `hash`
      if (performance.now() > deadline) {
        this.counts.timeout++;
        return null;
      }
    }
    this.counts.too_large++;
    return null;
  }

  private remember(key: string, digest: string): void {
    if (this.cache.size >= this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, digest);
  }
}
