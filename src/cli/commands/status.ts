/** `guardctl status`: what the daemon is doing — mode, policy, sensors, counts, outbox, shipping. */

import type { DaemonStatus } from '../../control/status.js';
import type { GuardctlCommand } from '../command.js';

export const statusCommand: GuardctlCommand = {
  name: 'status',
  summary: 'Show whether guardd runs, the policy in force, what it watches and what it did',
  needsRoot: false,
  needsDaemon: true,
  async run(ctx) {
    const s = await ctx.call<DaemonStatus>('status');
    return { data: s, text: formatStatus(s) };
  },
};

export function formatStatus(s: DaemonStatus): string {
  const p = s.policy;
  const policyLine =
    p.state === 'none'
      ? 'NONE — no signed policy yet: nothing is enforced (monitor-only)'
      : `v${p.version} (${p.rules} rules), issued ${p.issued_at}, expires ${p.expires_at}${p.state === 'stale' ? ' — STALE: expired, last good policy still enforced' : ''}`;
  const lines = [
    `guardd        RUNNING (pid ${s.pid}, version ${s.version}, since ${s.started_at})${s.local_mode ? ' — local mode' : ''}`,
    `device        ${s.device_id} (${s.hostname})`,
    `mode          ${p.mode}${p.mode === 'monitor' ? ' (blocks are reported as "would block")' : ''}`,
    `policy        ${policyLine}`,
  ];
  if (p.last_error)
    lines.push(
      `              last policy error: ${p.last_error.message} [${p.last_error.code}] at ${p.last_error.at}`,
    );
  for (const sensor of s.sensors) {
    // People get the scalar facts (source, interval, counts); --json has everything.
    const details = Object.entries(sensor.details)
      .filter(([, v]) => typeof v !== 'object' || v === null)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const skipped = Object.entries(sensor.skipped)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
    lines.push(
      `sensor        ${sensor.name}: ${sensor.running ? 'running' : 'stopped'} ${details}${skipped ? ` (skipped: ${skipped})` : ''}`,
    );
  }
  const e = s.enforcement;
  lines.push(
    `enforcement   ${e.blocked} blocked, ${e.denied ?? 0} denied before exec, ${e.quarantined} quarantined, ${e.warned} warned, ${e.audited} audited, ${e.failed} failed`,
  );
  const x = s.exec_deny;
  if (x?.state === 'on') {
    const c = x.counters;
    const hitRate = c.events ? Math.round(((c.cache_hits ?? 0) / c.events) * 1000) / 10 : 0;
    lines.push(
      `pre-exec deny on: ${x.marked.length} file systems marked, deadline ${x.deadline_ms} ms; ${c.events ?? 0} execs checked, ${c.denied ?? 0} denied, cache hits ${hitRate}%, ${c.deadline_misses ?? 0} deadline misses, ${c.overflow ?? 0} overflows${unread(x.file_reads)}${x.skipped.length ? `; not marked (network/FUSE): ${x.skipped.map((m) => `${m.mount} (${m.fstype})`).join(', ')}` : ''}`,
    );
  } else if (x) {
    lines.push(`pre-exec deny off: ${x.reason}`);
  }
  lines.push(
    `outbox        ${s.outbox.depth} events waiting (${s.outbox.bytes} bytes), ${s.outbox.dropped_total} dropped ever`,
  );
  const sh = s.shipper;
  lines.push(
    `collector     ${sh.collector_url ?? 'none configured'}${sh.collector_url ? `, ${sh.enrolled ? 'enrolled' : 'not enrolled'}` : ''}, last successful ship: ${sh.last_success_at ?? 'never'}, ${sh.shipped_total} shipped${sh.last_error ? `, last error: ${sh.last_error}` : ''}`,
  );
  return lines.join('\n');
}

/** ", N file reads busy or timed out" when the pre-exec path decided without a hash or markers. */
function unread(
  reads: { sha256: Record<string, number>; markers: Record<string, number> } | undefined,
): string {
  if (!reads) return '';
  const n = [reads.sha256, reads.markers].reduce((t, r) => t + (r.busy ?? 0) + (r.timeout ?? 0), 0);
  return n > 0 ? `, ${n} file reads busy or timed out` : '';
}
