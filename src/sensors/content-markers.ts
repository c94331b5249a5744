/**
 * Owns scanning an executable for the policy's content markers (src/policy/content-markers.ts):
 * which markers occur in the file, bounded in bytes and time, cached by file identity, and never
 * blocking the event loop on a file the user controls. Used by the process sensor after exec (on
 * /proc/<pid>/exe) and meant for the pre-exec path (on the descriptor the kernel handed over, as
 * /proc/self/fd/N, with the identity it already fstat'ed): `ContentMarkerScanner.scan`.
 *
 * What is scanned (the bound, see also docs/policy.md "Content markers"):
 *  - the first HEAD_BYTES and the last TAIL_BYTES of the file;
 *  - in a 64-bit little-endian ELF, each section named `.bun` (where Bun ≥ 1.2 keeps a single-file
 *    executable's embedded modules, e.g. 235 MB of Claude Code's 402 MB): its first
 *    SECTION_HEAD_BYTES and last TAIL_BYTES (the module table and `/$bunfs/root/…` names). Section
 *    headers sit at the offset the ELF header names, so bytes appended to the file move nothing;
 *  - a Bun payload appended at the end of the file (older Bun, other platforms: the file ends with
 *    `\n---- Bun! ----\n` after a 32-byte offsets table whose first u64 is the payload length):
 *    its first SECTION_HEAD_BYTES;
 *  - all of that capped at MAX_SCAN_BYTES in total.
 * What evades it: a marker that occurs only in the middle of a file, outside those regions (e.g. a
 * non-Bun program padded in front with more than HEAD_BYTES, or a Bun bundle whose distinctive
 * strings sit deeper than SECTION_HEAD_BYTES into its section). Markers are therefore chosen from
 * the start of the bundle's entry module (docs/policy.md says how).
 *
 * The file is opened once (non-blocking, no controlling tty; a link is followed only because the
 * caller's path is /proc/<pid>/exe or /proc/self/fd/N, a kernel-made link to the very file that
 * runs) and everything — identity, bytes — comes from that descriptor. The whole scan runs through
 * a `ReadGate` with a deadline (safe-read.ts), so a FIFO, a stalled mount or a file that grows
 * costs a `timeout` or `unreadable`, never a stall.
 */
import { constants, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { MarkerAutomaton } from '../policy/content-markers.js';
import { ReadGate } from './safe-read.js';

/** What identifies one version of a file: what the verdict and scan caches are keyed by. */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
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

/** One byte range of a file to search. */
export interface ScanRegion {
  readonly start: number;
  readonly end: number;
}

/**
 * First bytes of every file searched: ELF/PE headers, `.rodata` of small programs, a script's
 * whole text. 8 MiB reads in ~2 ms from page cache.
 */
export const HEAD_BYTES = 8 * 1024 * 1024;
/** Last bytes of the file and of a `.bun` section: Bun's module table, names and offsets trailer. */
export const TAIL_BYTES = 8 * 1024 * 1024;
/**
 * First bytes of a Bun payload (section or appended): the entry module's code comes first (in
 * Claude Code 2.1.332 its distinctive strings lie 1.3 MB in).
 */
export const SECTION_HEAD_BYTES = 32 * 1024 * 1024;
/**
 * Bytes searched per file at most (sum of the regions): ~60 ms per scan from page cache with a
 * few dozen markers, and a cold 64 MiB read is well inside SCAN_TIMEOUT_MS on any local disk.
 */
export const MAX_SCAN_BYTES = 64 * 1024 * 1024;
/** A scan still running after this long is abandoned (ms): a stalled mount, a disk far too slow. */
export const SCAN_TIMEOUT_MS = 3000;
/** Distinct (file, marker generation) results remembered; a machine runs a few hundred programs. */
export const SCAN_CACHE_SIZE = 4096;
/** Read size: large enough for throughput, small enough to yield to the event loop often. */
const CHUNK_BYTES = 1024 * 1024;
/** Scans at once, and per uid (ReadGate): a user's stalled mount pins one pool thread, not the pool. */
const SCAN_MAX_IN_FLIGHT = 2;
const SCAN_MAX_PER_UID = 1;
/** Section headers read at most (count): real executables have < 100. */
const MAX_ELF_SECTIONS = 1024;
/** Section-name string table read at most (bytes). */
const MAX_SHSTRTAB_BYTES = 64 * 1024;

/** The trailer that ends a Bun standalone module graph. */
export const BUN_TRAILER = Buffer.from('\n---- Bun! ----\n', 'latin1');
/** Bun's offsets table before the trailer: byte_count u64, modules ptr, entry id, argv ptr, flags. */
const BUN_OFFSETS_BYTES = 32;

export interface ContentMarkerScannerOptions {
  readonly timeoutMs?: number;
  readonly cacheSize?: number;
  /** Admission (tests pass a tight one). Default: 2 in flight, 1 per uid. */
  readonly gate?: ReadGate;
}

export class ContentMarkerScanner {
  private readonly timeoutMs: number;
  private readonly cacheSize: number;
  private readonly gate: ReadGate;
  private readonly cache = new Map<string, readonly string[]>();
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
    this.gate = options.gate ?? new ReadGate('content_markers', SCAN_MAX_IN_FLIGHT, SCAN_MAX_PER_UID);
  }

  /** Entries cached now. */
  get cached(): number {
    return this.cache.size;
  }

  /**
   * Which of `automaton`'s markers occur in the file at `path` (within the regions of the module
   * doc). `path` is /proc/<pid>/exe or /proc/self/fd/N (followed on purpose: a kernel-made link to
   * the file itself). When `expected` is given (the pre-exec path knows the identity from its own
   * fstat), a descriptor that says otherwise answers `changed` without reading. Never rejects;
   * resolves within the timeout whatever the file system does. Safe to call concurrently; a file
   * already scanned under this marker generation costs one open and one fstat.
   */
  async scan(
    path: string,
    automaton: MarkerAutomaton,
    key: string | number = -1,
    expected?: FileIdentity,
  ): Promise<MarkerScanResult> {
    const job = { expired: false };
    const r = await this.gate.run(key, this.timeoutMs, () => this.scanWithin(path, automaton, expected, job));
    if (!r.admitted) {
      this.counts.busy++;
      return { found: null, outcome: 'busy', scannedBytes: 0 };
    }
    if (r.timedOut) {
      job.expired = true;
      this.counts.timeout++;
      return { found: null, outcome: 'timeout', scannedBytes: 0 };
    }
    this.counts[r.value.outcome]++;
    return r.value;
  }

  private async scanWithin(
    path: string,
    automaton: MarkerAutomaton,
    expected: FileIdentity | undefined,
    job: { expired: boolean },
  ): Promise<MarkerScanResult> {
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0));
    } catch {
      return { found: null, outcome: 'unreadable', scannedBytes: 0 };
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return { found: null, outcome: 'unreadable', scannedBytes: 0 };
      const identity = identityOf(st);
      if (expected && !sameIdentity(identity, expected)) {
        return { found: null, outcome: 'changed', identity, scannedBytes: 0 };
      }
      // An inode number is only unique within its file system, so the device is part of the key;
      // size, mtime and ctime change when the file is rewritten in place.
      const cacheKey = `${identityKey(identity)}|${automaton.generation}`;
      const hit = this.cache.get(cacheKey);
      if (hit !== undefined) return { found: hit, outcome: 'cached', identity, scannedBytes: 0 };
      const read = (pos: number, len: number): Promise<Buffer> => readAt(fh, pos, len);
      const regions = await planRegions(read, identity.size);
      const st2 = automaton.newState();
      const buf = Buffer.allocUnsafe(CHUNK_BYTES);
      let scanned = 0;
      for (const region of regions) {
        automaton.restart(st2);
        for (let pos = region.start; pos < region.end; ) {
          if (job.expired) return { found: null, outcome: 'timeout', identity, scannedBytes: scanned };
          const want = Math.min(buf.length, region.end - pos);
          const { bytesRead } = await fh.read(buf, 0, want, pos);
          // The file shrank under us: what is there was searched; the identity check below decides.
          if (bytesRead <= 0) break;
          scanned += bytesRead;
          pos += bytesRead;
          if (automaton.feed(st2, buf.subarray(0, bytesRead))) break;
        }
        if (st2.foundCount === automaton.keys.length) break;
      }
      // Rewritten while we read: what was found belongs to no single version; do not cache it.
      const after = identityOf(await fh.stat());
      if (!sameIdentity(identity, after))
        return { found: null, outcome: 'changed', identity: after, scannedBytes: scanned };
      const found = automaton.foundKeys(st2);
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

/** The identity facts of a stat result. */
export function identityOf(st: Stats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtimeMs === b.mtimeMs &&
    a.ctimeMs === b.ctimeMs
  );
}

/** `dev:ino:size:mtime:ctime`, the cache key of one version of a file. */
export function identityKey(id: FileIdentity): string {
  return `${id.dev}:${id.ino}:${id.size}:${id.mtimeMs}:${id.ctimeMs}`;
}

async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
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

/**
 * The regions of a file of `size` bytes to search (module doc), sorted, merged and capped at
 * MAX_SCAN_BYTES; `read` reads bytes at an offset (headers only: a few KiB).
 */
export async function planRegions(
  read: (pos: number, len: number) => Promise<Buffer>,
  size: number,
): Promise<ScanRegion[]> {
  const wanted: ScanRegion[] = [];
  const add = (start: number, end: number): void => {
    const s = Math.max(0, Math.min(size, start));
    const e = Math.max(0, Math.min(size, end));
    if (e > s) wanted.push({ start: s, end: e });
  };
  // Payload sections first after the head: they carry the tool's own bytes.
  add(0, HEAD_BYTES);
  const head = await read(0, 64);
  for (const sec of await bunSections(read, head, size)) {
    add(sec.start, sec.start + SECTION_HEAD_BYTES);
    add(sec.end - TAIL_BYTES, sec.end);
  }
  const appended = await appendedBunPayload(read, size);
  if (appended) add(appended.start, appended.start + SECTION_HEAD_BYTES);
  add(size - TAIL_BYTES, size);
  return capRegions(mergeRegions(wanted), MAX_SCAN_BYTES);
}

/** Overlapping or touching regions joined, in file order. */
function mergeRegions(regions: readonly ScanRegion[]): ScanRegion[] {
  const sorted = [...regions].sort((a, b) => a.start - b.start);
  const out: { start: number; end: number }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push({ ...r });
  }
  return out;
}

/** The first `cap` bytes of the regions, in order (a later region is cut or dropped). */
function capRegions(regions: readonly ScanRegion[], cap: number): ScanRegion[] {
  const out: ScanRegion[] = [];
  let left = cap;
  for (const r of regions) {
    if (left <= 0) break;
    const len = Math.min(r.end - r.start, left);
    out.push({ start: r.start, end: r.start + len });
    left -= len;
  }
  return out;
}

/** `.bun` sections of a 64-bit little-endian ELF (none for anything else or a malformed header). */
async function bunSections(
  read: (pos: number, len: number) => Promise<Buffer>,
  head: Buffer,
  size: number,
): Promise<ScanRegion[]> {
  // e_ident: magic, EI_CLASS 2 (64-bit), EI_DATA 1 (little-endian).
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return [];
  const shoff = Number(head.readBigUInt64LE(0x28));
  const shentsize = head.readUInt16LE(0x3a);
  const shnum = head.readUInt16LE(0x3c);
  const shstrndx = head.readUInt16LE(0x3e);
  if (shentsize < 64 || shnum === 0 || shnum > MAX_ELF_SECTIONS || shstrndx >= shnum) return [];
  if (!Number.isSafeInteger(shoff) || shoff + shnum * shentsize > size) return [];
  const table = await read(shoff, shnum * shentsize);
  if (table.length < shnum * shentsize) return [];
  const section = (i: number): { name: number; type: number; offset: number; size: number } => {
    const at = i * shentsize;
    return {
      name: table.readUInt32LE(at),
      type: table.readUInt32LE(at + 4),
      offset: Number(table.readBigUInt64LE(at + 0x18)),
      size: Number(table.readBigUInt64LE(at + 0x20)),
    };
  };
  const strtab = section(shstrndx);
  if (strtab.offset >= size) return [];
  const names = await read(strtab.offset, Math.min(strtab.size, MAX_SHSTRTAB_BYTES, size - strtab.offset));
  const out: ScanRegion[] = [];
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const SHT_NOBITS = 8;
    if (s.type === SHT_NOBITS || s.name >= names.length) continue;
    const end = names.indexOf(0, s.name);
    const name = names.toString('latin1', s.name, end < 0 ? names.length : end);
    if (name !== '.bun') continue;
    if (!Number.isSafeInteger(s.offset) || !Number.isSafeInteger(s.size) || s.offset >= size) continue;
    out.push({ start: s.offset, end: Math.min(size, s.offset + s.size) });
  }
  return out;
}

/** The payload of a Bun standalone graph appended at the end of the file, or null. */
async function appendedBunPayload(
  read: (pos: number, len: number) => Promise<Buffer>,
  size: number,
): Promise<ScanRegion | null> {
  const tailLen = BUN_TRAILER.length + BUN_OFFSETS_BYTES;
  if (size < tailLen) return null;
  const tail = await read(size - tailLen, tailLen);
  if (tail.length < tailLen || !tail.subarray(BUN_OFFSETS_BYTES).equals(BUN_TRAILER)) return null;
  const byteCount = Number(tail.readBigUInt64LE(0));
  const start = size - tailLen - byteCount;
  if (!Number.isSafeInteger(byteCount) || start < 0) return null;
  return { start, end: size - tailLen };
}
