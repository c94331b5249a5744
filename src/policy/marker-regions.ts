/**
 * Owns WHERE an executable is searched for content markers: the byte regions of a file, the bound
 * every scan keeps (docs/policy.md "Content markers"). Pure: it asks for the few header bytes it
 * needs through a generator, so the process sensor drives it with async reads of a user's file
 * (src/sensors/content-markers.ts) and the safety check with sync reads of system programs.
 *
 *  - the first HEAD_BYTES and the last TAIL_BYTES of the file;
 *  - in a 64-bit little-endian ELF, each section named `.bun` (where Bun keeps a single-file
 *    executable's embedded modules, e.g. 235 MB of Claude Code's 402 MB): its first
 *    SECTION_HEAD_BYTES and last TAIL_BYTES (the module table and `/$bunfs/root/…` names). Section
 *    headers sit at the offset the ELF header names, so bytes appended to the file move nothing;
 *  - a Bun payload appended at the end of the file (the file ends with `\n---- Bun! ----\n` after
 *    a 32-byte offsets table whose first u64 is the payload length): its first SECTION_HEAD_BYTES;
 *  - all of that capped at MAX_SCAN_BYTES in total.
 * What evades it: a marker that occurs only outside those regions (a non-Bun program padded in
 * front with more than HEAD_BYTES, a Bun bundle whose distinctive strings sit deeper than
 * SECTION_HEAD_BYTES into its section, a 32-bit or big-endian ELF's sections).
 */

/** One byte range of a file to search. */
export interface ScanRegion {
  readonly start: number;
  readonly end: number;
}

/** A read the planner needs: `len` bytes at `pos` (it is resumed with what was read). */
export interface ReadRequest {
  readonly pos: number;
  readonly len: number;
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
/** Section headers read at most (count): real executables have < 100. */
const MAX_ELF_SECTIONS = 1024;
/** Section-name string table read at most (bytes). */
const MAX_SHSTRTAB_BYTES = 64 * 1024;

/** The trailer that ends a Bun standalone module graph. */
export const BUN_TRAILER = Buffer.from('\n---- Bun! ----\n', 'latin1');
/** Bun's offsets table before the trailer: byte_count u64, modules ptr, entry id, argv ptr, flags. */
const BUN_OFFSETS_BYTES = 32;

/**
 * The regions of a file of `size` bytes to search (module doc), sorted, merged and capped at
 * MAX_SCAN_BYTES. A generator: it yields the header reads it needs (a few KiB in all) and is
 * resumed with the bytes read (fewer at end of file); planRegionsAsync/planRegionsSync drive it.
 */
export function* planRegions(size: number): Generator<ReadRequest, ScanRegion[], Buffer> {
  const wanted: ScanRegion[] = [];
  const add = (start: number, end: number): void => {
    const s = Math.max(0, Math.min(size, start));
    const e = Math.max(0, Math.min(size, end));
    if (e > s) wanted.push({ start: s, end: e });
  };
  // In order of value, which is the order the cap keeps: the head, the payloads' starts (the
  // tool's own code), then the tails.
  add(0, HEAD_BYTES);
  const head: Buffer = yield { pos: 0, len: Math.min(64, size) };
  const sections = yield* bunSections(head, size);
  for (const sec of sections) add(sec.start, sec.start + SECTION_HEAD_BYTES);
  const appended = yield* appendedBunPayload(size);
  if (appended) add(appended.start, appended.start + SECTION_HEAD_BYTES);
  for (const sec of sections) add(sec.end - TAIL_BYTES, sec.end);
  add(size - TAIL_BYTES, size);
  return mergeRegions(capRegions(wanted, MAX_SCAN_BYTES));
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

/**
 * The regions in the order given, cut once `cap` bytes are reached: of each region, the parts no
 * earlier region covers are taken from its start until the budget is spent (a later region is cut
 * or dropped). Exact: the merged result never exceeds `cap` bytes.
 */
function capRegions(regions: readonly ScanRegion[], cap: number): ScanRegion[] {
  let taken: ScanRegion[] = [];
  let left = cap;
  for (const r of regions) {
    for (const piece of subtract(r, taken)) {
      if (left <= 0) return taken;
      const len = Math.min(piece.end - piece.start, left);
      taken = mergeRegions([...taken, { start: piece.start, end: piece.start + len }]);
      left -= len;
    }
  }
  return taken;
}

/** The parts of `r` outside the (merged, sorted) `regions`, in order. */
function subtract(r: ScanRegion, regions: readonly ScanRegion[]): ScanRegion[] {
  const out: ScanRegion[] = [];
  let at = r.start;
  for (const o of regions) {
    if (o.end <= at || o.start >= r.end) continue;
    if (o.start > at) out.push({ start: at, end: o.start });
    at = Math.max(at, o.end);
  }
  if (at < r.end) out.push({ start: at, end: r.end });
  return out;
}

/** `.bun` sections of a 64-bit little-endian ELF (none for anything else or a malformed header). */
function* bunSections(head: Buffer, size: number): Generator<ReadRequest, ScanRegion[], Buffer> {
  // e_ident: magic, EI_CLASS 2 (64-bit), EI_DATA 1 (little-endian).
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return [];
  const shoff = Number(head.readBigUInt64LE(0x28));
  const shentsize = head.readUInt16LE(0x3a);
  const shnum = head.readUInt16LE(0x3c);
  const shstrndx = head.readUInt16LE(0x3e);
  if (shentsize < 64 || shnum === 0 || shnum > MAX_ELF_SECTIONS || shstrndx >= shnum) return [];
  if (!Number.isSafeInteger(shoff) || shoff + shnum * shentsize > size) return [];
  const table: Buffer = yield { pos: shoff, len: shnum * shentsize };
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
  const names: Buffer = yield {
    pos: strtab.offset,
    len: Math.min(strtab.size, MAX_SHSTRTAB_BYTES, size - strtab.offset),
  };
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
function* appendedBunPayload(size: number): Generator<ReadRequest, ScanRegion | null, Buffer> {
  const tailLen = BUN_TRAILER.length + BUN_OFFSETS_BYTES;
  if (size < tailLen) return null;
  const tail: Buffer = yield { pos: size - tailLen, len: tailLen };
  if (tail.length < tailLen || !tail.subarray(BUN_OFFSETS_BYTES).equals(BUN_TRAILER)) return null;
  const byteCount = Number(tail.readBigUInt64LE(0));
  const start = size - tailLen - byteCount;
  if (!Number.isSafeInteger(byteCount) || start < 0) return null;
  return { start, end: size - tailLen };
}

/** Runs planRegions with async reads. */
export async function planRegionsAsync(
  read: (pos: number, len: number) => Promise<Buffer>,
  size: number,
): Promise<ScanRegion[]> {
  const plan = planRegions(size);
  let step = plan.next();
  while (!step.done) step = plan.next(await read(step.value.pos, step.value.len));
  return step.value;
}

/** Runs planRegions with sync reads (system programs, the safety check). */
export function planRegionsSync(read: (pos: number, len: number) => Buffer, size: number): ScanRegion[] {
  const plan = planRegions(size);
  let step = plan.next();
  while (!step.done) step = plan.next(read(step.value.pos, step.value.len));
  return step.value;
}
