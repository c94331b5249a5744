/**
 * `guardctl status`: what the daemon is doing, in sections — daemon, policy, enforcement coverage,
 * counts, outbox, collector — with relative times and human sizes, within 100 columns. The sensors'
 * internal counters appear only with --verbose; --json is the daemon's status answer unchanged
 * (src/control/status.ts, contract v1).
 */

import type { DaemonStatus } from '../../control/status.js';
import type { GuardctlCommand } from '../command.js';
import { humanBytes, humanDuration, printable, relativeTime, TEXT_COLUMNS, wrap } from '../format.js';
import { createStyle, type Style } from '../render.js';

export const statusCommand: GuardctlCommand = {
  name: 'status',
  summary: 'Show whether guardd runs, the policy in force, what it watches and what it did',
  options: [{ flags: '-v, --verbose', description: "add the sensors' internal counters" }],
  examples: ['guardctl status', 'guardctl status --verbose', 'guardctl --json status | jq .policy'],
  needsRoot: false,
  needsDaemon: true,
  async run(ctx) {
    const s = await ctx.call<DaemonStatus>('status');
    return {
      data: s,
      text: formatStatus(s, {
        now: Date.now(),
        verbose: ctx.options.verbose === true,
        style: ctx.style ?? createStyle(false),
      }),
    };
  },
};

export interface StatusFormatOptions {
  /** The clock relative times are computed against (ms since epoch). */
  readonly now: number;
  readonly verbose: boolean;
  readonly style: Style;
}

/** Label column width: section rows are `  label      value`. */
const LABEL = 13;

export function formatStatus(s: DaemonStatus, o: StatusFormatOptions): string {
  const st = o.style;
  const out: string[] = [];
  const row = (label: string, value: string): void => {
    const lines = wrap(value, 2 + LABEL, TEXT_COLUMNS);
    const first = (lines[0] ?? '').trimStart();
    out.push(`  ${label.padEnd(LABEL - 2)}  ${first}`, ...lines.slice(1));
  };
  const section = (title: string): void => {
    if (out.length > 0) out.push('');
    out.push(st.heading(title));
  };
  // Paint after wrapping would break column counts; values carry colour only in short words.
  const when = (iso: string | null): string => relativeTime(iso, o.now);

  section('Daemon');
  row(
    'guardd',
    `${st.ok('running')} · pid ${s.pid} · ${s.version} · up ${humanDuration(Math.max(0, o.now - Date.parse(s.started_at)))}${s.local_mode ? ` · ${st.warn('local mode')}` : ''}`,
  );
  row('device', `${s.hostname} · ${st.dim(s.device_id)}`);

  section('Policy');
  const p = s.policy;
  if (p.state === 'none') {
    row('state', `${st.bad('none')}: no signed policy yet — nothing is enforced (monitor-only)`);
  } else {
    const state =
      p.state === 'stale' ? st.bad('STALE (expired; the last good one is still enforced)') : st.ok('ok');
    const mode = p.mode === 'monitor' ? st.warn('monitor (blocks are reported as "would block")') : p.mode;
    row('version', `v${p.version} · ${p.rules} rule${p.rules === 1 ? '' : 's'} · ${mode} · ${state}`);
    row('valid', `issued ${when(p.issued_at)} · expires ${when(p.expires_at)}`);
    row('source', `${p.source ?? '?'}${p.last_fetch_at ? ` · fetched ${when(p.last_fetch_at)}` : ''}`);
    if (o.verbose && p.sha256) row('sha256', p.sha256);
  }
  if (p.last_error)
    row(
      'last error',
      `${st.bad(p.last_error.code)} ${printable(p.last_error.message)} (${when(p.last_error.at)})`,
    );
  const shadow = s.shadow;
  if (shadow?.version != null)
    row(
      'shadow',
      `v${shadow.version} · ${shadow.rules} rule${shadow.rules === 1 ? '' : 's'} · ${st.warn('evaluated, never acted on')} · ${shadow.reported} would-match reported${shadow.suppressed > 0 ? `, ${shadow.suppressed} over the rate bound` : ''}${shadow.state === 'stale' ? ` · ${st.bad('STALE')}` : ''}`,
    );

  section('Enforcement coverage');
  const x = s.exec_deny;
  if (x?.state === 'on') {
    const c = x.counters;
    row(
      'pre-exec',
      `${st.ok('on')} · ${x.marked.length} file system${x.marked.length === 1 ? '' : 's'} · answers within ${x.deadline_ms} ms · ${c.events ?? 0} execs checked, ${c.denied ?? 0} denied`,
    );
    if ((c.ignore_marks ?? 0) > 0) row('', `${c.ignore_marks} root-only programs left to the kernel`);
    if (x.open_marks && (x.open_marks.marked > 0 || (c.open_denied ?? 0) > 0))
      row(
        'open marks',
        `${x.open_marks.marked} banned package file${x.open_marks.marked === 1 ? '' : 's'} marked · ${c.open_denied ?? 0} opens refused`,
      );
    if (x.skipped.length > 0)
      row(
        'not covered',
        `${x.skipped.map((m) => `${m.mount} (${m.fstype})`).join(', ')}: killed after start`,
      );
    const late = (c.deadline_misses ?? 0) + unread(x.file_reads);
    if (late > 0) row('', st.warn(`${late} decisions taken late or without a file read (--verbose)`));
  } else if (x) {
    row('pre-exec', `${st.warn('off')} (${x.reason}): banned programs are killed after they start`);
  }
  for (const sensor of s.sensors) {
    const source = typeof sensor.details.source === 'string' ? ` · ${sensor.details.source}` : '';
    row(
      sensor.name === 'process' ? 'processes' : sensor.name === 'install' ? 'installs' : sensor.name,
      `${sensor.running ? st.ok('watching') : st.bad('stopped')}${source}${sensorSummary(sensor.name, sensor.details)}`,
    );
    // Why real-time launch events are not what runs (no CAP_NET_ADMIN, no Full Disk Access…).
    const evError = sensor.details.exec_events_error;
    if (typeof evError === 'string' && sensor.details.exec_events !== 'active')
      row('', st.warn(`real-time launch events off, polling: ${printable(evError)}`));
    if (o.verbose) {
      const details = Object.entries(sensor.details)
        .filter(([, v]) => typeof v !== 'object' || v === null)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      const skipped = Object.entries(sensor.skipped)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${k}=${n}`)
        .join(' ');
      if (details) out.push(...wrap(details, 2 + LABEL).map(st.dim));
      if (skipped) out.push(...wrap(`skipped: ${skipped}`, 2 + LABEL));
    }
  }
  if (o.verbose && x?.state === 'on') {
    const counters = Object.entries(x.counters)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    out.push(
      ...wrap(`pre-exec: ${counters} decided=${x.decided} decide_errors=${x.decide_errors}`, 2 + LABEL),
    );
  }

  section('Counts since start');
  const e = s.enforcement;
  const n = (v: number, label: string, paint: (s: string) => string): string =>
    v > 0 ? paint(`${v} ${label}`) : `${v} ${label}`;
  row(
    'actions',
    [
      n(e.blocked, 'blocked', st.bad),
      n(e.denied ?? 0, 'denied before exec', st.bad),
      n(e.quarantined, 'quarantined', st.bad),
      n(e.warned, 'warned', st.warn),
      `${e.audited} audited`,
      n(e.failed, 'failed', st.bad),
    ].join(' · '),
  );

  section('Outbox');
  row(
    'waiting',
    `${s.outbox.depth} event${s.outbox.depth === 1 ? '' : 's'} (${humanBytes(s.outbox.bytes)}) · ${n(s.outbox.dropped_total, 'dropped ever', st.bad)}`,
  );

  section('Collector');
  const sh = s.shipper;
  if (!sh.collector_url) {
    row('url', 'none configured: events stay on this machine');
  } else {
    row('url', `${sh.collector_url} · ${sh.enrolled ? st.ok('enrolled') : st.bad('not enrolled')}`);
    row('shipped', `${sh.shipped_total} · last success ${when(sh.last_success_at)}`);
    if (sh.last_error) row('last error', st.bad(printable(sh.last_error)));
  }
  return out.join('\n');
}

/** The one or two facts of a sensor a person wants without --verbose. */
function sensorSummary(name: string, d: Record<string, unknown>): string {
  if (name === 'process') {
    const ev = d.exec_events === 'active' ? ' (kernel exec events)' : '';
    return `${ev} · ${Number(d.observed ?? 0)} launches seen`;
  }
  if (name === 'install') {
    const dirs = Number(d.watched_dirs ?? 0);
    return ` · ${dirs} dir${dirs === 1 ? '' : 's'} watched · ${Number(d.reported ?? 0)} reported`;
  }
  return '';
}

/** File reads of the pre-exec path that were busy or timed out (decided without them). */
function unread(
  reads: { sha256: Record<string, number>; markers: Record<string, number> } | undefined,
): number {
  if (!reads) return 0;
  return [reads.sha256, reads.markers].reduce((t, r) => t + (r.busy ?? 0) + (r.timeout ?? 0), 0);
}
