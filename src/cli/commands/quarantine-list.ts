/** `guardctl quarantine list`: what toolguard moved into quarantine, and why (public, read-only). */
import type { GuardctlCommand } from '../command.js';

interface ListItem {
  id: string;
  state: string;
  quarantined_at: string;
  kind: string;
  path: string;
  package: { name: string; version: string | null; manager: string } | null;
  owner: string | number;
  rule: string;
  links: string[];
  restored_at: string | null;
}

export const quarantineListCommand: GuardctlCommand = {
  name: 'quarantine list',
  summary: 'List packages and artifacts in quarantine (--all: restored and rolled-back ones too)',
  options: [{ flags: '--all', description: 'include restored and rolled-back entries' }],
  examples: ['guardctl quarantine list', 'guardctl quarantine list --all'],
  needsRoot: false,
  needsDaemon: true,
  async run(ctx) {
    const res = await ctx.call<{ entries: ListItem[] }>('quarantine.list', { all: ctx.options.all === true });
    return { data: res, text: formatQuarantineList(res.entries) };
  },
};

/** One block per entry; `guardctl quarantine restore <id>` takes the id shown first. */
export function formatQuarantineList(entries: readonly ListItem[]): string {
  if (entries.length === 0) return 'Quarantine is empty.';
  const lines: string[] = [];
  for (const e of entries) {
    const what = e.package
      ? `${e.package.name}${e.package.version ? `@${e.package.version}` : ''} (${e.package.manager})`
      : e.kind;
    lines.push(`${e.id}  ${e.state.toUpperCase()}  ${what}`);
    lines.push(`    path   ${e.path}`);
    lines.push(
      `    owner  ${e.owner}   rule ${e.rule}   since ${e.quarantined_at}${e.restored_at ? `   restored ${e.restored_at}` : ''}`,
    );
    if (e.links.length > 0) lines.push(`    links  ${e.links.join(', ')}`);
  }
  return lines.join('\n');
}
