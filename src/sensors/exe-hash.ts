/**
 * Owns SHA-256 of executables, computed lazily (only when a rule names hashes) and cached by
 * device + inode + size + mtime, so the node binary that runs a hundred processes is hashed once.
 *
 * The file is opened once and everything (cache key, bytes) comes from that descriptor, so a file
 * swapped after the open cannot be hashed under the old key. Huge files and slow disks are
 * bounded: past HASH_MAX_BYTES or HASH_TIMEOUT_MS the result is null and counted, never a stall.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';

export interface ExeHasherOptions {
  /** Files larger than this are not hashed (bytes). */
  readonly maxBytes?: number;
  /** A hash that takes longer than this is abandoned (ms). */
  readonly timeoutMs?: number;
  /** Cache entries kept at most. */
  readonly cacheSize?: number;
}

/** 256 MiB: larger than any CLI binary or SEA bundle we have seen (node ≈ 100 MiB, bun ≈ 90 MiB). */
export const HASH_MAX_BYTES = 256 * 1024 * 1024;
/** The 99 MB node binary hashes in ~90 ms from page cache; 2 s leaves room for a cold disk. */
export const HASH_TIMEOUT_MS = 2000;
/** Distinct executables remembered; a machine rarely runs more than a few hundred. */
export const HASH_CACHE_SIZE = 4096;
/** Read size per chunk: large enough for throughput, small enough to yield to the event loop often. */
const CHUNK_BYTES = 1024 * 1024;

export type HashOutcome = 'hashed' | 'cached' | 'too_large' | 'timeout' | 'unreadable';

export class ExeHasher {
  private readonly maxBytes: number;
  private readonly timeoutMs: number;
  private readonly cacheSize: number;
  private readonly cache = new Map<string, string>();
  private readonly inflight = new Map<string, Promise<string | null>>();
  /** Outcome counts since start (for status). */
  readonly counts: Record<HashOutcome, number> = {
    hashed: 0,
    cached: 0,
    too_large: 0,
    timeout: 0,
    unreadable: 0,
  };

  constructor(options: ExeHasherOptions = {}) {
    this.maxBytes = options.maxBytes ?? HASH_MAX_BYTES;
    this.timeoutMs = options.timeoutMs ?? HASH_TIMEOUT_MS;
    this.cacheSize = options.cacheSize ?? HASH_CACHE_SIZE;
  }

  /**
   * The cached hash of the file at `path` without opening it (one stat), or undefined when it is
   * not cached (or cannot be stat'ed). The hot path: most new processes run an executable hashed
   * before. Sound for /proc/<pid>/exe, which always names the inode the process runs.
   */
  lookup(path: string): string | undefined {
    try {
      const st = statSync(path);
      if (!st.isFile()) return undefined;
      const hit = this.cache.get(`${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`);
      if (hit !== undefined) this.counts.cached++;
      return hit;
    } catch {
      return undefined;
    }
  }

  /**
   * Lower-case hex SHA-256 of the file at `path`, or null (too large, too slow, unreadable). Never
   * rejects, and resolves within `timeoutMs` even when the file system never answers (a FUSE or
   * network mount that stalls open or read): the process is then matched without its hash rather
   * than never. The stalled read finishes, or not, in the background.
   */
  async hash(path: string): Promise<string | null> {
    const job = { expired: false };
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<null>((resolve) => {
      timer = setTimeout(() => {
        job.expired = true;
        this.counts.timeout++;
        resolve(null);
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([this.hashWithin(path, job), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async hashWithin(path: string, job: { expired: boolean }): Promise<string | null> {
    let handle: Awaited<ReturnType<typeof open>> | null = null;
    try {
      handle = await open(path, 'r');
      const st = await handle.stat();
      if (!st.isFile()) {
        this.counts.unreadable++;
        return null;
      }
      // An inode number is only unique within its filesystem, so the device is part of the key;
      // size and mtime change when the file is rewritten in place.
      const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
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
      const digesting = this.digest(fh, st.size, job).finally(() => {
        this.inflight.delete(key);
        void fh.close().catch(() => undefined);
      });
      this.inflight.set(key, digesting);
      const digest = await digesting;
      if (digest !== null) this.remember(key, digest);
      return digest;
    } catch {
      this.counts.unreadable++;
      return null;
    } finally {
      if (handle) await handle.close().catch(() => undefined);
    }
  }

  /** Entries currently cached. */
  get cached(): number {
    return this.cache.size;
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
    this.counts.hashed++;
    if (this.cache.size >= this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, digest);
  }
}
