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
 * A line still longer than the limit once the command line is gone (no event type of schema v1
 * gets there short of thousands of killed pids) is returned as it is: never dropped.
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
  if (Array.isArray(value.argv)) return JSON.stringify(cutArgv(value, size - maxBytes + CUT_RESERVE_BYTES));
  const proc = value.process;
  if (isObj(proc) && typeof proc.cmd_line === 'string')
    return cutCmdLine(value, proc.cmd_line, size, maxBytes);
  if (isObj(proc) && Array.isArray(proc.args)) return cutEcsArgs(value, proc, size, maxBytes);
  return line;
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
