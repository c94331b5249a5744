/** `guardctl policy show`: the policy in force on this machine — its state and every rule, from the daemon. */
import type { PolicyStatus } from '../../control/status.js';
import type { PolicyBody } from '../../policy/policy-types.js';
import type { GuardctlCommand } from '../command.js';

interface ShowResult {
  readonly status: PolicyStatus;
  readonly body: PolicyBody | null;
}

export const policyShowCommand: GuardctlCommand = {
  name: 'policy show',
  summary: 'Show the policy in force: version, state, and what each rule bans',
  examples: ['guardctl policy show', 'guardctl --json policy show | jq .body.rules'],
  needsRoot: false,
  needsDaemon: true,
  async run(ctx) {
    const r = await ctx.call<ShowResult>('policy.show');
    return { data: r, text: formatPolicy(r) };
  },
};

export function formatPolicy(r: ShowResult): string {
  const s = r.status;
  if (!r.body || s.state === 'none') {
    return 'policy        NONE — no signed policy yet: nothing is enforced (monitor-only)';
  }
  const b = r.body;
  const lines = [
    `policy        v${b.version} (${b.mode}), issued ${b.issued_at}, expires ${b.expires_at}${s.state === 'stale' ? ' — STALE: expired, still enforced' : ''}`,
    `source        ${s.source ?? '?'}`,
    `sha256        ${s.sha256 ?? '?'}`,
  ];
  for (const rule of b.rules) {
    const p = rule.process ?? {};
    const what = [
      ...(p.names ?? []).map((n) => `name ${n}`),
      ...(p.script_packages ?? []).map((n) => `script of ${n}`),
      ...(p.exe_globs ?? []).map((g) => `exe ${g}`),
      ...(p.argv_patterns ?? []).map((g) => `argv /${g}/`),
      ...(p.sha256 ?? []).map((h) => `sha256 ${h.slice(0, 12)}…`),
      ...(p.markers ?? []).map((set) => `content ${set.map((x) => JSON.stringify(x)).join(' & ')}`),
      ...(rule.packages ?? []).map((k) => `npm ${k.name}@${k.range}`),
      ...(rule.paths ?? []).map((g) => `path ${g}`),
    ];
    lines.push(
      `${rule.action.toUpperCase().padEnd(6)} ${rule.id} — ${rule.name}${rule.platforms ? ` [${rule.platforms.join(', ')}]` : ''}`,
    );
    for (const w of what) lines.push(`         ${w}`);
  }
  for (const e of b.exceptions ?? []) {
    const who = [
      e.users && `users ${e.users.join(',')}`,
      e.groups && `groups ${e.groups.join(',')}`,
      e.hosts && `hosts ${e.hosts.join(',')}`,
      e.device_tags && `tags ${e.device_tags.join(',')}`,
    ]
      .filter(Boolean)
      .join(' ');
    lines.push(`EXCEPT ${e.rule} for ${who} until ${e.expires_at}`);
  }
  return lines.join('\n');
}
