/**
 * Owns reading one line of the Windows process start script (windows-start-source.ts
 * WINDOWS_START_SCRIPT) into what the exec stream source needs: pure, no I/O, never throws.
 *
 * The script is ours and writes version-1 lines (`"v": 1`):
 *  - `{"v":1,"type":"ready","pid":…}` once the WMI subscription is registered;
 *  - `{"v":1,"type":"start","pid","ppid","name","created","exe","cmd"}` per Win32_ProcessStartTrace
 *    event: ProcessID, ParentProcessID, ProcessName (the image name, `claude.exe`), TIME_CREATED (a
 *    FILETIME: 100 ns ticks since 1601, written as a decimal string because it exceeds 2^53), and
 *    ExecutablePath / CommandLine read from Win32_Process for that pid right after the event (null
 *    when the process had already exited or could not be opened);
 *  - `{"v":1,"type":"error","code","message"}` when the subscription is refused.
 * A line of another version makes the source stop using the script; anything else is counted.
 */

import { ARGV_MAX_CHARS, ARGV_MAX_ITEMS } from './eslogger-parser.js';
import type { StreamItem } from './exec-stream-source.js';
import type { RawProcess } from './process-source.js';
import { int, type Obj, objectLine, str } from './stream-line.js';

/** Versions of the script's lines this parser reads. */
export const WINDOWS_START_VERSIONS: ReadonlySet<number> = new Set([1]);
/** The characters the command-line splitter treats specially (whitespace, backslash, quote). */
const SPECIAL = /[ \t\\"]/g;
/** Those of the program name (argv[0]), which takes backslashes literally. */
const PROGRAM_SPECIAL = /[ \t"]/g;
/** FILETIME ticks (100 ns) between 1601-01-01 and the Unix epoch. */
const FILETIME_EPOCH_OFFSET = 116_444_736_000_000_000n;

/** Parses one line of the script (without its newline). */
export function parseWindowsStartLine(line: string): StreamItem {
  const parsed = objectLine(line);
  if ('skip' in parsed) return parsed.skip;
  const m = parsed.obj;
  if (typeof m.v !== 'number' || !WINDOWS_START_VERSIONS.has(m.v))
    return { kind: 'unsupported', version: JSON.stringify(m.v ?? null).slice(0, 32) };
  switch (m.type) {
    case 'ready':
      return { kind: 'ready' };
    case 'error': {
      const denied = m.code === 'access_denied';
      return {
        kind: 'fatal',
        code: denied ? 'GUARD_EXEC_STREAM_NOT_PERMITTED' : 'GUARD_EXEC_STREAM_EXITED',
        message: `WMI process start trace: ${String(m.message ?? m.code ?? 'refused').slice(0, 300)}`,
      };
    }
    case 'start':
      return parseStart(m);
    default:
      return { kind: 'skip', reason: 'unknown_event', lost: false };
  }
}

function parseStart(m: Obj): StreamItem {
  const pid = int(m.pid);
  const name = str(m.name);
  if (pid === null || pid === 0 || name === null)
    return { kind: 'skip', reason: 'unknown_shape', lost: true };
  const notes: string[] = [];
  const exe = str(m.exe);
  const cmd = str(m.cmd);
  if (exe === null) notes.push('exe_unread');
  if (cmd === null) notes.push('cmdline_unread');
  if ((exe ?? '').includes('\uFFFD') || name.includes('\uFFFD')) notes.push('path_not_utf8');
  let argv: string[] = [];
  if (cmd !== null) {
    const cut = cmd.length > ARGV_MAX_CHARS;
    if (cut) notes.push('cmdline_truncated');
    argv = splitWindowsCommandLine(cut ? cmd.slice(0, ARGV_MAX_CHARS) : cmd).slice(0, ARGV_MAX_ITEMS);
  }
  const raw: RawProcess = {
    pid,
    ppid: int(m.ppid) ?? 0,
    startTime: filetimeMs(m.created),
    name,
    exe,
    argv,
    uid: null,
    tty: null,
  };
  return notes.length > 0 ? { kind: 'exec', raw, notes } : { kind: 'exec', raw };
}

/** A FILETIME (decimal string or number of 100 ns ticks since 1601) as ms since the epoch; 0 when unreadable. */
export function filetimeMs(v: unknown): number {
  let ticks: bigint;
  try {
    if (typeof v === 'string' && /^\d{1,20}$/.test(v)) ticks = BigInt(v);
    else if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) ticks = BigInt(v);
    else return 0;
  } catch {
    return 0;
  }
  if (ticks <= FILETIME_EPOCH_OFFSET) return 0;
  const ms = (ticks - FILETIME_EPOCH_OFFSET) / 10_000n;
  return ms > BigInt(Number.MAX_SAFE_INTEGER) ? 0 : Number(ms);
}

/**
 * A Windows command line split into argv the way the Microsoft C runtime (and
 * CommandLineToArgvW) does: whitespace separates arguments outside double quotes; 2n backslashes
 * before a quote are n backslashes and the quote toggles quoting; 2n+1 backslashes before a quote
 * are n backslashes and a literal quote; `""` inside quotes is a literal quote; other backslashes
 * are literal. The first argument (the program) ends at the first whitespace outside quotes and
 * takes backslashes literally.
 */
export function splitWindowsCommandLine(cmd: string): string[] {
  const out: string[] = [];
  let i = 0;
  const n = cmd.length;
  // argv[0]: quotes toggle, no escapes.
  const first: string[] = [];
  let quoted = false;
  while (i < n) {
    PROGRAM_SPECIAL.lastIndex = i;
    const m = PROGRAM_SPECIAL.exec(cmd);
    const stop = m ? m.index : n;
    if (stop > i) first.push(cmd.slice(i, stop));
    i = stop;
    if (i >= n || (!quoted && cmd[i] !== '"')) break;
    if (cmd[i] === '"') quoted = !quoted;
    else first.push(cmd[i] as string);
    i++;
  }
  out.push(first.join(''));
  for (;;) {
    while (i < n && (cmd[i] === ' ' || cmd[i] === '\t')) i++;
    if (i >= n) break;
    const parts: string[] = [];
    quoted = false;
    while (i < n) {
      // A run of ordinary characters is taken in one slice: a 32 KiB argument is one step, not 32,768.
      SPECIAL.lastIndex = i;
      const m = SPECIAL.exec(cmd);
      const stop = m ? m.index : n;
      if (stop > i) parts.push(cmd.slice(i, stop));
      i = stop;
      if (i >= n) break;
      const c = cmd[i];
      if (!quoted && (c === ' ' || c === '\t')) break;
      if (c === ' ' || c === '\t') {
        parts.push(c);
        i++;
        continue;
      }
      if (c === '\\') {
        let k = 0;
        while (i < n && cmd[i] === '\\') {
          k++;
          i++;
        }
        if (cmd[i] === '"') {
          parts.push('\\'.repeat(k >> 1));
          if (k % 2 === 1) {
            parts.push('"');
            i++;
          }
        } else parts.push('\\'.repeat(k));
        continue;
      }
      // A double quote: `""` inside quotes is a literal quote, else quoting toggles.
      if (quoted && cmd[i + 1] === '"') {
        parts.push('"');
        i += 2;
        continue;
      }
      quoted = !quoted;
      i++;
    }
    out.push(parts.join(''));
  }
  return out;
}
