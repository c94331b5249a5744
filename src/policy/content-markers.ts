/**
 * Owns the content-marker language of process rules (`process.markers`) and the one automaton that
 * finds every marker of a policy in a byte stream. Pure: parsing, compiling and feeding bytes do no
 * I/O; reading a user's file is src/sensors/content-markers.ts's job.
 *
 * A marker is a byte string: UTF-8 text, or `hex:` followed by an even number of hex digits for
 * binary bytes (text that itself starts with `hex:` is written in hex). A marker set is a list of
 * markers that must ALL occur in the executable; a rule's sets are alternatives (AND within a set,
 * OR across sets).
 *
 * Search: with few distinct markers (≤ NATIVE_SEARCH_MAX_PATTERNS) each is looked for with
 * Buffer#indexOf, Node's native substring search (~10 GB/s on a 12+ byte needle, measured on the
 * 402 MB Claude Code binary: ~40 ms per marker), which for a realistic ban list beats any one-pass
 * search written in JavaScript. With more markers, a hand-written Aho–Corasick automaton over every
 * distinct marker finds all of them in one pass (~200 MB/s in V8 whatever the number of markers,
 * no backtracking). It is written here rather than taken from npm because the maintained packages
 * search JS strings (UTF-16), not Buffers, and it is ~150 lines. Both paths find a marker that
 * spans two fed chunks, and both give the same answer (a property test checks it).
 * Memory is bounded by the policy: the transition table is dense over byte classes (the distinct
 * bytes the markers use, plus one class for every other byte), one Uint16 per (state, class); the
 * schema caps the policy's total marker bytes (MAX_POLICY_MARKER_BYTES), so the table stays under
 * ~8 MiB for the worst policy and is ~100 KiB for a realistic one. It is built on the first scan,
 * not when the matcher is compiled (the verifier compiles matchers it never runs).
 */

/** A marker shorter than this (bytes) is refused: short strings occur by chance in any large binary. */
export const MIN_MARKER_BYTES = 12;
/** A marker longer than this (bytes) is refused: distinctive strings are short; the table grows with length. */
export const MAX_MARKER_BYTES = 256;
/**
 * Total bytes of all distinct markers of a policy: bounds the automaton (one state per byte, so
 * ≤ 16,385 states × ≤ 257 classes × 2 bytes ≈ 8.4 MiB at worst). 16 KiB holds ~500 markers of 32
 * bytes, far more than a ban list of a few dozen tools needs.
 */
export const MAX_POLICY_MARKER_BYTES = 16 * 1024;
/**
 * Up to this many distinct markers, each is searched natively (indexOf, ~40 ms per marker per
 * 400 MB); beyond it the one-pass automaton (~2 s per 400 MB whatever the count) is cheaper.
 */
export const NATIVE_SEARCH_MAX_PATTERNS = 32;
/** Prefix of a hex marker. */
export const HEX_MARKER_PREFIX = 'hex:';

/**
 * Strings every Bun single-file executable carries (the runtime itself and its standalone-module
 * trailer): a marker set made only of substrings of these matches every Bun-built program, so it
 * may drive an audit rule at most (policy lint and the schema's semantic check refuse it on block
 * and warn rules).
 */
export const BUN_GENERIC_STRINGS: readonly string[] = [
  '\n---- Bun! ----\n',
  '/$bunfs/root/',
  'B:/~BUN/root/',
];

/** The bytes of a marker as written in a policy, or an Error message saying why it is not one. */
export function parseMarker(src: string): Buffer | string {
  let bytes: Buffer;
  if (src.startsWith(HEX_MARKER_PREFIX)) {
    const hex = src.slice(HEX_MARKER_PREFIX.length);
    if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
      return `is not a hex marker: after "${HEX_MARKER_PREFIX}" an even number of hex digits (0-9, a-f) must follow`;
    }
    bytes = Buffer.from(hex, 'hex');
  } else {
    bytes = Buffer.from(src, 'utf8');
  }
  if (bytes.length < MIN_MARKER_BYTES) {
    return `is ${bytes.length} bytes; a marker must be at least ${MIN_MARKER_BYTES} bytes (short strings occur by chance in any large program)`;
  }
  if (bytes.length > MAX_MARKER_BYTES) {
    return `is ${bytes.length} bytes; a marker may be at most ${MAX_MARKER_BYTES} bytes`;
  }
  return bytes;
}

/** The canonical key of a marker (lower-case hex of its bytes): what observations report. */
export function markerKey(bytes: Buffer): string {
  return bytes.toString('hex');
}

/**
 * True when every marker of `set` (as written in the policy) is a substring of one of the strings
 * every Bun executable carries (BUN_GENERIC_STRINGS): such a set matches every Bun-built program.
 */
export function isBunGenericSet(set: readonly string[]): boolean {
  const generic = BUN_GENERIC_STRINGS.map((s) => Buffer.from(s, 'utf8'));
  return set.every((src) => {
    const b = parseMarker(src);
    if (typeof b === 'string') return false;
    return generic.some((g) => g.includes(b));
  });
}

/**
 * Every distinct marker of a policy, compiled into one Aho–Corasick automaton. Pattern ids are
 * indices into `keys`. Immutable once built; `newState`/`feed` carry the per-scan state.
 */
export class MarkerAutomaton {
  /** Canonical keys (markerKey) of the patterns, by pattern id. */
  readonly keys: readonly string[];
  /** Identity of this pattern list: scan results cached under another generation are not reused. */
  readonly generation: string;
  private readonly classOf: Uint16Array;
  private readonly classes: number;
  /**
   * Dense transitions over row offsets: a state is named by its row's offset (state × classes),
   * next = delta[row + class], so the inner loop does no multiplication.
   */
  private readonly delta: Uint32Array;
  /** 1 at a row offset whose state (or a state on its suffix chain) ends a pattern. */
  private readonly acceptingRow: Uint8Array;
  /** First pattern ending at each state (-1 none). */
  private readonly out: Int32Array;
  /** Next state on the suffix chain that has an output (-1 none). */
  private readonly outLink: Int32Array;

  private readonly patterns: readonly Buffer[];
  private readonly native: boolean;
  /** Longest pattern (bytes): the carry between chunks on the native path is one byte less. */
  private readonly maxLen: number;

  /**
   * @param patterns distinct marker byte strings (parseMarker results), each ≥ 1 byte.
   * @param engine 'auto' picks by count (NATIVE_SEARCH_MAX_PATTERNS); tests force one.
   */
  constructor(patterns: readonly Buffer[], engine: 'auto' | 'native' | 'automaton' = 'auto') {
    this.patterns = patterns.map((p) => Buffer.from(p));
    this.native = engine === 'native' || (engine === 'auto' && patterns.length <= NATIVE_SEARCH_MAX_PATTERNS);
    this.maxLen = patterns.reduce((m, p) => Math.max(m, p.length), 0);
    this.keys = patterns.map(markerKey);
    this.generation = this.keys.join(',');
    const classOf = new Uint16Array(256);
    let classes = 1; // class 0 = every byte no marker uses
    for (const p of patterns) {
      for (const b of p) if (classOf[b] === 0) classOf[b] = classes++;
    }
    this.classOf = classOf;
    this.classes = classes;
    // Trie with sparse children first; states ≤ total bytes + 1 (checked by the schema's cap).
    const children: Map<number, number>[] = [new Map()];
    const out: number[] = [-1];
    patterns.forEach((p, id) => {
      let s = 0;
      for (const b of p) {
        const c = classOf[b] as number;
        const node = children[s] as Map<number, number>;
        let next = node.get(c);
        if (next === undefined) {
          next = children.length;
          children.push(new Map());
          out.push(-1);
          node.set(c, next);
        }
        s = next;
      }
      if (out[s] === -1) out[s] = id;
    });
    if (this.native) {
      // The table is never used: keep the instance small.
      this.classOf = classOf;
      this.classes = classes;
      this.delta = new Uint32Array(0);
      this.acceptingRow = new Uint8Array(0);
      this.out = new Int32Array(0);
      this.outLink = new Int32Array(0);
      return;
    }
    const n = children.length;
    if (n > 0xffff) throw new RangeError(`marker automaton needs ${n} states, more than 65,535`);
    const delta = new Uint16Array(n * classes);
    const fail = new Int32Array(n);
    const outLink = new Int32Array(n).fill(-1);
    const accepting = new Uint8Array(n);
    // Breadth-first: a state's failure target is shallower, so its row is complete when needed.
    const queue: number[] = [];
    for (let c = 0; c < classes; c++) {
      const next = (children[0] as Map<number, number>).get(c);
      if (next !== undefined) {
        delta[c] = next;
        fail[next] = 0;
        queue.push(next);
      }
    }
    if (out[0] !== -1) accepting[0] = 1;
    for (let q = 0; q < queue.length; q++) {
      const s = queue[q] as number;
      const f = fail[s] as number;
      outLink[s] = out[f] !== -1 ? f : (outLink[f] as number);
      accepting[s] = out[s] !== -1 || outLink[s] !== -1 ? 1 : 0;
      const node = children[s] as Map<number, number>;
      for (let c = 0; c < classes; c++) {
        const next = node.get(c);
        if (next !== undefined) {
          delta[s * classes + c] = next;
          fail[next] = delta[f * classes + c] as number;
          queue.push(next);
        } else {
          delta[s * classes + c] = delta[f * classes + c] as number;
        }
      }
    }
    // Row-offset form for the scan loop (Uint32: states × classes may exceed 65,535).
    const rows = new Uint32Array(n * classes);
    const acceptingRow = new Uint8Array(n * classes);
    for (let i = 0; i < rows.length; i++) rows[i] = (delta[i] as number) * classes;
    for (let st = 0; st < n; st++) acceptingRow[st * classes] = accepting[st] as number;
    this.delta = rows;
    this.acceptingRow = acceptingRow;
    this.out = Int32Array.from(out);
    this.outLink = outLink;
  }

  /** Bytes of memory the automaton's tables hold (for status and tests). */
  get tableBytes(): number {
    return (
      this.delta.byteLength + this.acceptingRow.byteLength + this.out.byteLength + this.outLink.byteLength
    );
  }

  /** A fresh scan state: start state and no pattern found yet. */
  newState(): MarkerScanState {
    return { state: 0, found: new Uint8Array(this.keys.length), foundCount: 0, carry: null };
  }

  /**
   * Feeds `bytes` (the next bytes of the stream, or the first bytes of a new region after
   * `restart`) into `st`. Patterns spanning two calls are found: the state carries the prefix.
   * Returns true when every pattern has been found (the caller may stop reading).
   */
  feed(st: MarkerScanState, bytes: Uint8Array): boolean {
    if (this.native) return this.feedNative(st, bytes);
    const { delta, classOf, acceptingRow, classes } = this;
    let row = st.state * classes;
    const len = bytes.length;
    for (let i = 0; i < len; i++) {
      row = delta[row + (classOf[bytes[i] as number] as number)] as number;
      if (acceptingRow[row] === 1 && this.report(st, row / classes)) {
        st.state = row / classes;
        return true;
      }
    }
    st.state = row / classes;
    return st.foundCount === this.keys.length;
  }

  /** Forgets the current prefix: the next bytes are not contiguous with the last ones. */
  restart(st: MarkerScanState): void {
    st.state = 0;
    st.carry = null;
  }

  private feedNative(st: MarkerScanState, bytes: Uint8Array): boolean {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const keep = this.maxLen - 1;
    // A marker spanning the previous chunk and this one lies within carry + this chunk's head.
    const seam =
      st.carry !== null && st.carry.length > 0 && keep > 0
        ? Buffer.concat([st.carry, buf.subarray(0, keep)])
        : null;
    this.patterns.forEach((p, id) => {
      if (st.found[id] === 1) return;
      if (seam?.includes(p) || buf.includes(p)) {
        st.found[id] = 1;
        st.foundCount++;
      }
    });
    if (keep > 0) {
      const tail =
        buf.length >= keep
          ? buf.subarray(buf.length - keep)
          : Buffer.concat([st.carry ?? Buffer.alloc(0), buf]);
      st.carry = Buffer.from(tail.subarray(Math.max(0, tail.length - keep)));
    }
    return st.foundCount === this.keys.length;
  }

  /** Keys of the patterns found so far. */
  foundKeys(st: MarkerScanState): string[] {
    const keys: string[] = [];
    st.found.forEach((f, i) => {
      if (f === 1) keys.push(this.keys[i] as string);
    });
    return keys;
  }

  private report(st: MarkerScanState, at: number): boolean {
    for (
      let s = this.out[at] !== -1 ? at : (this.outLink[at] as number);
      s !== -1;
      s = this.outLink[s] as number
    ) {
      const id = this.out[s] as number;
      if (st.found[id] === 0) {
        st.found[id] = 1;
        st.foundCount++;
      }
    }
    return st.foundCount === this.keys.length;
  }
}

/** Per-scan state of a MarkerAutomaton (not shared between scans). */
export interface MarkerScanState {
  state: number;
  readonly found: Uint8Array;
  foundCount: number;
  /** Native path: the last (longest marker − 1) bytes fed, for markers spanning two chunks. */
  carry: Buffer | null;
}

/**
 * Compiled automata kept across matchers, keyed by their pattern list: the safety check's matcher
 * and the one put in force after it share one build; 4 covers two policy versions with room.
 */
const AUTOMATON_CACHE_MAX = 4;
const automatonCache = new Map<string, MarkerAutomaton>();

/** The automaton for these distinct patterns (shared cache; see AUTOMATON_CACHE_MAX). */
export function markerAutomaton(patterns: readonly Buffer[]): MarkerAutomaton {
  const key = patterns.map(markerKey).join(',');
  let a = automatonCache.get(key);
  if (a === undefined) {
    a = new MarkerAutomaton(patterns);
    if (automatonCache.size >= AUTOMATON_CACHE_MAX) {
      const oldest = automatonCache.keys().next().value;
      if (oldest !== undefined) automatonCache.delete(oldest);
    }
  } else automatonCache.delete(key);
  automatonCache.set(key, a);
  return a;
}
