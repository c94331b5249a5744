/**
 * Owns keeping one forwarded event within a line size that log shippers accept, by cutting its
 * command line, the only field that makes events long (the agent allows ~256 KiB of argv):
 *
 * - the raw event: `argv` is cut from the end and the rest summarised as `[+N more arguments]`,
 *   the same convention redaction and the agent's outbox use, so the line stays a valid event v1;
 * - its OCSF mapping: `process.cmd_line` (and the command-line observable, which repeats it) is cut
 *   from the end with a `[+N bytes cut]` note, and `metadata.is_truncated` /
 *   `metadata.untruncated_size` (OCSF's own attributes for this) say so;
 * - its ECS mapping: `process.args` is cut from the end like argv (the summary as its last
 *   element), `process.command_line` is rebuilt from what is left, `process.args_count` keeps the
 *   real count, and `toolguard.untruncated_size` gives the size of the whole line.
 *
 * Deterministic: the same event always gives the same line, so a re-sent copy is identical.
 * A line still longer than the limit once the command line is cut (other text fields can hold up
 * to 8 KiB of control characters that JSON writes 6 bytes each) has its longest strings anywhere
 * cut next, each with a `[…N bytes cut]` note (`cutLongestStrings`); a line that still does not
 * fit (thousands of array elements) becomes a stub naming the event's id, type, device and time,
 * its untruncated size, and `oversize: true`. The full event stays in the collector's store; no
 * line over the limit is ever written.
 */

/** Bytes kept free for the summary / note and their JSON quoting. */
const CUT_RESERVE_BYTES = 64;
const ARGV_SUMMARY_RE = /^\[\+(\d+) more arguments\]$/;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bytes(s: string): number {
  return Buffer.byteLength(s);
}

/** `value` as one JSON line (without the newline) of at most `maxBytes` where the command line allows. */
export function fitLine(value: unknown, maxBytes: number): string {
  const line = JSON.stringify(value);
  const size = bytes(line);
  if (size <= maxBytes || !isObj(value)) return line;
  let out = line;
  const proc = value.process;
  if (Array.isArray(value.argv)) out = JSON.stringify(cutArgv(value, size - maxBytes + CUT_RESERVE_BYTES));
  else if (isObj(proc) && typeof proc.cmd_line === 'string')
    out = cutCmdLine(value, proc.cmd_line, size, maxBytes);
  else if (isObj(proc) && Array.isArray(proc.args)) out = cutEcsArgs(value, proc, size, maxBytes);
  if (bytes(out) <= maxBytes) return out;
  return cutLongestStrings(JSON.parse(out) as Obj, size, maxBytes);
}

/** Strings shorter than this are never cut (ids, types, times, enums stay whole). */
const MIN_CUT_STRING_BYTES = 256;
/** Rounds of cutting the longest string at most (each at least halves one string). */
const MAX_CUT_ROUNDS = 64;

/**
 * `doc` with its longest strings (anywhere) cut from the end, one per round, until its line fits;
 * else the stub of the module doc. `size`: the untruncated line's size.
 */
function cutLongestStrings(doc: Obj, size: number, maxBytes: number): string {
  let cur: unknown = doc;
  for (let round = 0; round < MAX_CUT_ROUNDS; round++) {
    const line = JSON.stringify(cur);
    const over = bytes(line) - maxBytes;
    if (over <= 0) return line;
    let best: { path: (string | number)[]; len: number; s: string } | null = null;
    walkStrings(cur, [], (path, str) => {
      const len = bytes(JSON.stringify(str));
      if (len >= MIN_CUT_STRING_BYTES && (best === null || len > best.len)) best = { path, len, s: str };
    });
    const b = best as { path: (string | number)[]; len: number; s: string } | null;
    if (b === null) break;
    const target = Math.min(Math.floor(b.len / 2), b.len - over - CUT_RESERVE_BYTES);
    cur = setAt(cur, b.path, cutString(b.s, Math.max(0, target)));
  }
  const line = JSON.stringify(cur);
  if (bytes(line) <= maxBytes) return line;
  const ev = isObj(doc.event) ? doc.event : {};
  const meta = isObj(doc.metadata) ? doc.metadata : {};
  const pick = (...vs: unknown[]) => vs.find((v) => typeof v === 'string' && v.length < MIN_CUT_STRING_BYTES);
  return JSON.stringify({
    oversize: true,
    id: pick(doc.id, ev.id, meta.uid) ?? null,
    type: pick(doc.type, ev.action, doc.type_name) ?? null,
    device_id:
      pick(
        doc.device_id,
        isObj(doc.host) ? doc.host.id : undefined,
        isObj(doc.device) ? doc.device.uid : undefined,
      ) ?? null,
    time: pick(doc.time, doc['@timestamp']) ?? (typeof doc.time === 'number' ? doc.time : null),
    untruncated_size: size,
  });
}

/** Calls `f` with the path and value of every string in `v`. */
function walkStrings(
  v: unknown,
  path: (string | number)[],
  f: (path: (string | number)[], s: string) => void,
): void {
  if (typeof v === 'string') f(path, v);
  else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) walkStrings(v[i], [...path, i], f);
  else if (isObj(v)) for (const [k, x] of Object.entries(v)) walkStrings(x, [...path, k], f);
}

/** A copy of `v` with the value at `path` replaced (only the objects on the path are copied). */
function setAt(v: unknown, path: readonly (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  if (Array.isArray(v)) return v.map((x, i) => (i === head ? setAt(x, rest, value) : x));
  if (isObj(v)) return { ...v, [head]: setAt(v[head], rest, value) };
  return v;
}

/** The longest prefix of `s` whose JSON form is at most `targetBytes`, with a note of what was cut. */
function cutString(s: string, targetBytes: number): string {
  let lo = 0;
  let hi = s.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (bytes(JSON.stringify(s.slice(0, mid))) <= targetBytes) lo = mid;
    else hi = mid - 1;
  }
  // never split a surrogate pair: the line must stay valid UTF-8
  if (lo > 0 && lo < s.length && /[\uD800-\uDBFF]/.test(s.charAt(lo - 1))) lo--;
  return `${s.slice(0, lo)} […${bytes(s) - bytes(s.slice(0, lo))} bytes cut]`;
}

/** The ECS document with `process.args` cut (and `command_line` rebuilt from it) to fit. */
function cutEcsArgs(e: Obj, proc: Obj, size: number, maxBytes: number): string {
  let over = size - maxBytes + CUT_RESERVE_BYTES + 64;
  let out = JSON.stringify(e);
  // each removed argument leaves both args and command_line; a second round covers escapes
  for (let round = 0; round < 3 && bytes(out) > maxBytes; round++) {
    const cut = cutArgv({ argv: proc.args }, Math.ceil(over / 2)).argv as unknown[];
    const args = cut.map(String);
    const doc: Obj = {
      ...e,
      process: { ...proc, args, command_line: args.join(' ') },
      toolguard: { ...(isObj(e.toolguard) ? e.toolguard : {}), untruncated_size: size },
    };
    out = JSON.stringify(doc);
    over += bytes(out) - maxBytes + CUT_RESERVE_BYTES;
  }
  return out;
}

/** The raw event with `argv` shortened from the end by at least `over` bytes (argv[0] is kept). */
function cutArgv(e: Obj, over: number): Obj {
  const argv = e.argv as unknown[];
  let keep = argv.length;
  let removed = 0;
  let cut = 0;
  while (keep > 1 && removed < over) {
    keep--;
    const arg = argv[keep];
    removed += bytes(JSON.stringify(arg)) + 1;
    const summary = typeof arg === 'string' ? ARGV_SUMMARY_RE.exec(arg) : null;
    cut += summary ? Number(summary[1]) : 1;
  }
  if (cut === 0) return e;
  return { ...e, argv: [...argv.slice(0, keep), `[+${cut} more arguments]`] };
}

/** The OCSF event with `process.cmd_line` (and its observable) cut to fit, marked truncated. */
function cutCmdLine(e: Obj, cmdLine: string, size: number, maxBytes: number): string {
  const observables = Array.isArray(e.observables) ? e.observables : [];
  const copies = 1 + observables.filter((o) => isObj(o) && o.name === 'process.cmd_line').length;
  const metadata = isObj(e.metadata) ? e.metadata : {};
  // metadata grows by the two attributes below; the rest comes out of the command line
  const over = size - maxBytes + CUT_RESERVE_BYTES + 64;
  // the longest prefix whose JSON form (escapes included) is `over / copies` bytes shorter
  const target = bytes(JSON.stringify(cmdLine)) - Math.ceil(over / copies);
  let lo = 0;
  let hi = cmdLine.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (bytes(JSON.stringify(cmdLine.slice(0, mid))) <= target) lo = mid;
    else hi = mid - 1;
  }
  // never split a surrogate pair
  const end = lo > 0 && /[\uD800-\uDBFF]/.test(cmdLine[lo - 1] ?? '') ? lo - 1 : lo;
  const kept = cmdLine.slice(0, end);
  const cut = `${kept} [+${bytes(cmdLine) - bytes(kept)} bytes cut]`;
  const out: Obj = {
    ...e,
    metadata: { ...metadata, is_truncated: true, untruncated_size: size },
    process: { ...(e.process as Obj), cmd_line: cut },
    ...(Array.isArray(e.observables)
      ? {
          observables: observables.map((o) =>
            isObj(o) && o.name === 'process.cmd_line' ? { ...o, value: cut } : o,
          ),
        }
      : {}),
  };
  return JSON.stringify(out);
}
