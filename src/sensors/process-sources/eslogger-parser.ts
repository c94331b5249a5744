/**
 * Owns reading one line of `eslogger exec fork exit` (macOS 13+) into what the exec stream source
 * needs: pure, no I/O, never throws.
 *
 * eslogger(1) writes JSON Lines "modelled after es_message_t" and says the format is not API and
 * may change between releases, so every field is checked before it is used and a line that does
 * not look as expected is counted, never trusted:
 *  - `schema_version` gates the format: only ESLOGGER_SCHEMA_VERSIONS are read; any other makes the
 *    source stop using eslogger (ps-list polls) rather than guess;
 *  - the event is the single key of `event` (`exec`, `fork`, `exit`), cross-checked against
 *    `event_type` (ES_EVENT_TYPE_NOTIFY_EXEC = 9, _EXIT = 15, _FORK = 11) when present;
 *  - an exec needs `event.exec.target` (es_process_t) with `audit_token.pid` and
 *    `executable.path`; without them the line is an unknown shape (counted; the next tick sweeps).
 * Fields read from es_process_t: audit_token.pid / ruid, ppid, start_time, executable.path (and
 * path_truncated), tty.path, team_id, signing_id, cdhash, is_platform_binary; from es_event_exec_t
 * as eslogger renders it: `args` (the argv array). Unknown fields are ignored.
 */
import { basename } from 'node:path';
import type { StreamItem } from './exec-stream-source.js';
import type { RawProcess } from './process-source.js';
import { int, type Obj, obj, objectLine, str } from './stream-line.js';

/** eslogger `schema_version` values this parser reads (macOS 13-15 write 1). */
export const ESLOGGER_SCHEMA_VERSIONS: ReadonlySet<number> = new Set([1]);
/** The events guardd asks eslogger for (`eslogger --list-events` names). */
export const ESLOGGER_EVENTS = ['exec', 'fork', 'exit'] as const;
/** es_event_type_t values of those events (EndpointSecurity/ESTypes.h). */
const EVENT_TYPES: Readonly<Record<string, number>> = { exec: 9, exit: 15, fork: 11 };
/** argv longer than this many characters (joined) is cut: the bound the other sources apply. */
export const ARGV_MAX_CHARS = 32 * 1024;
/** Arguments kept at most (an argv of 100,000 empty strings is short in characters but not in work). */
export const ARGV_MAX_ITEMS = 4096;

/** Parses one eslogger line (without its newline). */
export function parseEsloggerLine(line: string): StreamItem {
  const parsed = objectLine(line);
  if ('skip' in parsed) return parsed.skip;
  const m = parsed.obj;
  const version = m.schema_version;
  if (typeof version !== 'number' || !ESLOGGER_SCHEMA_VERSIONS.has(version))
    return { kind: 'unsupported', version: JSON.stringify(version ?? null).slice(0, 32) };
  const event = obj(m.event);
  const keys = event ? Object.keys(event) : [];
  const name = keys.length === 1 ? keys[0] : undefined;
  if (event === null || name === undefined || !(name in EVENT_TYPES))
    return { kind: 'skip', reason: 'unknown_event', lost: false };
  if (m.event_type !== undefined && m.event_type !== EVENT_TYPES[name])
    return { kind: 'skip', reason: 'unknown_shape', lost: true };
  const body = obj(event[name]);
  if (body === null) return { kind: 'skip', reason: 'unknown_shape', lost: name === 'exec' };
  switch (name) {
    case 'fork': {
      const pid = int(obj(obj(body.child)?.audit_token)?.pid);
      return pid === null ? { kind: 'skip', reason: 'unknown_shape', lost: false } : { kind: 'fork', pid };
    }
    case 'exit': {
      const pid = int(obj(obj(m.process)?.audit_token)?.pid);
      return pid === null ? { kind: 'skip', reason: 'unknown_shape', lost: false } : { kind: 'exit', pid };
    }
    default:
      return parseExec(body);
  }
}

function parseExec(exec: Obj): StreamItem {
  const target = obj(exec.target);
  const token = obj(target?.audit_token);
  const pid = int(token?.pid);
  const executable = obj(target?.executable);
  const path = str(executable?.path);
  if (target === null || pid === null || pid === 0 || path === null)
    return { kind: 'skip', reason: 'unknown_shape', lost: true };
  const notes: string[] = [];
  if (executable?.path_truncated === true) notes.push('path_truncated');
  if (path.includes('\uFFFD')) notes.push('path_not_utf8');
  const argv = readArgv(exec.args, notes);
  if (argv.length === 0) {
    notes.push('args_missing');
    argv.push(path);
  }
  const ppid = int(target.ppid) ?? int(obj(target.parent_audit_token)?.pid) ?? 0;
  const raw: RawProcess = {
    pid,
    ppid,
    startTime: startTimeMs(target.start_time),
    name: basename(path),
    exe: path,
    argv,
    uid: int(token?.ruid),
    tty: str(obj(target.tty)?.path),
    signing: {
      teamId: str(target.team_id),
      signingId: str(target.signing_id),
      cdhash: cdhash(target.cdhash),
      platformBinary: target.is_platform_binary === true,
    },
  };
  return notes.length > 0 ? { kind: 'exec', raw, notes } : { kind: 'exec', raw };
}

/** argv as strings, capped at ARGV_MAX_ITEMS and ARGV_MAX_CHARS (counted in `notes`). */
function readArgv(v: unknown, notes: string[]): string[] {
  if (!Array.isArray(v)) return [];
  const out: string[] = [];
  let chars = 0;
  for (const a of v) {
    if (typeof a !== 'string') {
      notes.push('args_not_strings');
      continue;
    }
    if (out.length >= ARGV_MAX_ITEMS || chars + a.length > ARGV_MAX_CHARS) {
      // What fits of the argument that crosses the bound is kept, like the other sources' cut.
      const room = ARGV_MAX_CHARS - chars;
      if (out.length < ARGV_MAX_ITEMS && room > 0) out.push(a.slice(0, room));
      notes.push('cmdline_truncated');
      break;
    }
    out.push(a);
    chars += a.length + 1;
  }
  return out;
}

/**
 * es_process_t start_time (eslogger: an RFC 3339 string with sub-second digits) as ms since the
 * epoch, cut to the whole second: the identity enforcement re-checks on macOS is ps's `lstart`,
 * which has one-second resolution (process-control.ts). 0 when missing or unreadable.
 */
export function startTimeMs(v: unknown): number {
  if (typeof v !== 'string' || v.length > 64) return 0;
  const ms = Date.parse(v);
  return Number.isFinite(ms) && ms > 0 ? Math.floor(ms / 1000) * 1000 : 0;
}

/** cdhash as lower-case hex: eslogger writes a hex string; an array of bytes is read too. */
function cdhash(v: unknown): string | null {
  if (typeof v === 'string')
    return /^[0-9a-fA-F]{40,64}$/.test(v) && !/^0+$/.test(v) ? v.toLowerCase() : null;
  if (
    Array.isArray(v) &&
    v.length >= 20 &&
    v.length <= 32 &&
    v.every((b) => int(b) !== null && (b as number) < 256)
  ) {
    const hex = Buffer.from(v as number[]).toString('hex');
    return /^0+$/.test(hex) ? null : hex;
  }
  return null;
}
