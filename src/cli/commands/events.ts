/**
 * `guardctl events`: the events guardd recorded on this machine — queued, shipped (local history)
 * and set aside — exactly as stored and sent, so a developer can see what was recorded about them.
 * `--since` takes a seq number, an RFC 3339 time or a relative age (`30m`, `2h`, `7d`); `--follow`
 * keeps printing new events as they are recorded (until Ctrl-C). Read-only, public socket
 * (`events.list`, see eventsControlMethods in src/store/outbox-store.ts).
 */
import { GuardError } from '../../common/errors.js';
import { EVENT_TYPES, type EventType } from '../../events/event-types.js';
import type { EventsListResult, ListedEvent } from '../../store/outbox-store.js';
import type { CommandContext, GuardctlCommand } from '../command.js';
import { printable, wrap } from '../format.js';
import { createRenderer, createStyle, type Style } from '../render.js';

/** How often --follow asks the daemon for new events (ms): fast enough to feel live, one tiny query. */
export const FOLLOW_POLL_MS = 500;
/** Events per follow poll at most; more are fetched by the next poll immediately. */
const FOLLOW_PAGE = 1000;
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 5000;

const RELATIVE: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses --since: a seq (digits), a relative age (`90s`, `30m`, `2h`, `7d`) or an RFC 3339 time. */
export function parseSince(s: string, nowMs = Date.now()): { since_seq: number } | { since_time: string } {
  const t = s.trim();
  if (/^\d{1,15}$/.test(t)) return { since_seq: Number(t) };
  const rel = /^(\d{1,9})([smhd])$/.exec(t);
  // an age reaching before the earliest Date (e.g. 999999999d) falls through to the usage error
  const at = rel ? new Date(nowMs - Number(rel[1]) * (RELATIVE[rel[2] as string] as number)) : null;
  if (at && !Number.isNaN(at.getTime())) return { since_time: at.toISOString() };
  if (/^\d{4}-\d{2}-\d{2}/.test(t) && !Number.isNaN(Date.parse(t)))
    return { since_time: new Date(t).toISOString() };
  throw new GuardError(
    'GUARD_CLI_USAGE',
    `--since "${t.slice(0, 60)}" is not a seq number, a relative age (30m, 2h, 7d) or an RFC 3339 time`,
  );
}

function parseLimit(v: unknown): number {
  if (v === undefined) return DEFAULT_LIMIT;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_LIMIT)
    throw new GuardError('GUARD_CLI_USAGE', `--limit must be an integer 1..${MAX_LIMIT}`);
  return n;
}

function parseType(v: unknown): EventType | undefined {
  if (v === undefined) return undefined;
  if (!(EVENT_TYPES as readonly unknown[]).includes(v))
    throw new GuardError('GUARD_CLI_USAGE', `--type must be one of: ${EVENT_TYPES.join(', ')}`);
  return v as EventType;
}

/** The colour of an event type: what was stopped is red, what was only told is yellow. */
function paintType(type: string, style: Style): string {
  const padded = type.padEnd(19);
  if (
    /\.(blocked|denied|quarantined)$|^policy\.(rejected|stale)$|^agent\.tamper$|^events\.dropped$/.test(type)
  )
    return style.bad(padded);
  if (/\.warned$/.test(type)) return style.warn(padded);
  return padded;
}

/** `12-04 23:49:35` (UTC; the year and milliseconds are in --json): fits a 100-column line. */
function shortTime(iso: string): string {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/.test(iso) ? `${iso.slice(5, 10)} ${iso.slice(11, 19)}` : iso;
}

/** Width of the prefix (time 14, seq 6, state 7, type 19, spaces) that continuation lines align under. */
const EVENT_PREFIX = 14 + 1 + 7 + 1 + 7 + 1 + 19 + 1;

/**
 * One event for people: time (UTC), seq, state, type, then what and the decision; with `wrapped`
 * (a terminal) the description wraps to 100 columns under itself, else the event is one line.
 */
export function formatEventLine(l: ListedEvent, style: Style = createStyle(false), wrapped = false): string {
  const e = l.event as Record<string, unknown>;
  const rule = e.rule as { id?: string } | undefined;
  const outcome = e.outcome as
    | { action_taken?: string; error?: string | null; details?: { scope?: unknown } }
    | undefined;
  const who = e.user ? ` user ${String(e.user)}` : e.uid !== undefined ? ` uid ${String(e.uid)}` : '';
  let what = '';
  const [family] = String(e.type).split('.');
  if (family === 'process') what = `${String(e.name)} (pid ${String(e.pid)},${who}) ${String(e.exe ?? '')}`;
  else if (family === 'package') {
    const p = e.package as { name?: string; version?: string | null; path?: string };
    what = `${p.name}@${p.version ?? '?'} (${p.path},${who})`;
  } else if (family === 'path') what = `${String(e.path)} (${who.trim()})`;
  else if (e.type === 'policy.applied') what = `v${String(e.policy_version)} from ${String(e.source)}`;
  else if (e.type === 'policy.rejected') what = `${String(e.reason)}: ${String(e.message)}`;
  else if (e.type === 'policy.stale') what = `v${String(e.policy_version)} expired ${String(e.expires_at)}`;
  else if (e.type === 'events.dropped')
    what = `${String(e.count)} events dropped (seq ${String(e.first_seq)}–${String(e.last_seq)}): ${String(e.reason)}`;
  else if (e.type === 'agent.heartbeat')
    what = `uptime ${String(e.uptime_s)} s, policy ${String(e.policy_version)} (${String(e.policy_state)}), outbox ${String(e.outbox_depth)}`;
  else if (e.type === 'agent.tamper') what = `${String(e.reason)}: ${String(e.detail)}`;
  else if (e.type === 'agent.stopped') what = String(e.reason);
  else if (e.type === 'agent.started')
    what = `pid ${String(e.pid)} ${String(e.platform)}${e.local_mode ? ' (local mode)' : ''}`;
  const decision = rule
    ? `rule ${rule.id} → ${actionWords(outcome?.action_taken, outcome?.details?.scope !== undefined)}${outcome?.error ? ` (${outcome.error})` : ''}`
    : '';
  const aside = l.reason ? `[set aside: ${l.reason}]` : '';
  const state = l.state === 'queued' ? 'queued ' : l.state === 'shipped' ? 'shipped' : style.bad('ASIDE  ');
  // On a terminal the decision starts a line of its own under the description (read at a glance);
  // on a pipe the event stays one line for grep and awk.
  const rest = wrapped
    ? [what, decision, aside].filter(Boolean).flatMap((part) => wrap(printable(part), EVENT_PREFIX))
    : [printable(`${what}${decision ? ` — ${decision}` : ''}${aside ? ` ${aside}` : ''}`)];
  const head = `${shortTime(String(e.time))} #${String(e.seq).padEnd(6)} ${state} ${paintType(String(e.type), style)} `;
  return [head + (rest[0] ?? '').trimStart(), ...rest.slice(1)].join('\n');
}

/**
 * `outcome.action_taken` for people: the schema's words, except the two that mean "not acted on",
 * which say why (outside the enforcement scope, monitor mode, or a warning shown recently).
 */
function actionWords(taken: string | undefined, outOfScope: boolean): string {
  if (taken === 'warn_suppressed')
    return outOfScope
      ? 'recorded only (outside the enforcement scope)'
      : 'not warned again (warned recently)';
  if (taken === 'would_block')
    return outOfScope ? 'would block (outside the enforcement scope)' : 'would block (monitor mode)';
  return taken ?? '?';
}

export const eventsCommand: GuardctlCommand = {
  name: 'events',
  summary:
    'Show the events recorded on this machine, exactly as stored and sent (queued, shipped, set aside)',
  options: [
    {
      flags: '--since <seq|time|age>',
      description: 'only after this seq, or since an RFC 3339 time / age (30m, 2h, 7d)',
    },
    { flags: '--type <type>', description: `only this event type (${EVENT_TYPES.join(', ')})` },
    {
      flags: '--limit <n>',
      description: `at most this many, the newest (default ${DEFAULT_LIMIT}, max ${MAX_LIMIT})`,
    },
    { flags: '--follow', description: 'keep printing new events as they are recorded (Ctrl-C stops)' },
  ],
  examples: [
    'guardctl events',
    'guardctl events --since 2h --type process.blocked',
    'guardctl events --follow',
    'guardctl --json events --limit 500 | jq -c .events[].event',
  ],
  needsRoot: false,
  needsDaemon: true,
  async run(ctx) {
    const since = ctx.options.since !== undefined ? parseSince(String(ctx.options.since)) : {};
    const type = parseType(ctx.options.type);
    const limit = parseLimit(ctx.options.limit);
    const first = await ctx.call<EventsListResult>('events.list', {
      ...since,
      ...(type ? { type } : {}),
      limit,
    });
    if (ctx.options.follow !== true) {
      const text =
        first.events.length === 0
          ? 'no events recorded (that match)'
          : first.events.map((l) => formatEventLine(l, ctx.style, ctx.tty === true)).join('\n');
      return { data: first, text };
    }
    await follow(ctx, first, type);
    return { data: null, text: '' };
  },
};

/** Prints the first page, then polls for newer events until the process is interrupted. */
async function follow(
  ctx: CommandContext,
  first: EventsListResult,
  type: EventType | undefined,
): Promise<never> {
  const out = createRenderer(ctx.json);
  let lastSeq = first.last_seq;
  for (const l of first.events) {
    out.line(formatEventLine(l, ctx.style, ctx.tty === true), l);
    lastSeq = Math.max(lastSeq, l.event.seq);
  }
  for (;;) {
    const page = await ctx.call<EventsListResult>('events.list', {
      since_seq: lastSeq,
      ...(type ? { type } : {}),
      limit: FOLLOW_PAGE,
      oldest_first: true,
    });
    for (const l of page.events) {
      out.line(formatEventLine(l, ctx.style, ctx.tty === true), l);
      lastSeq = Math.max(lastSeq, l.event.seq);
    }
    if (page.events.length < FOLLOW_PAGE && !page.truncated) {
      // nothing newer matched up to last_seq (list and last_seq are read in one daemon tick)
      lastSeq = Math.max(lastSeq, page.last_seq);
      await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
    }
  }
}
