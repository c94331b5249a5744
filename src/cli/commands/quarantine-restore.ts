/**
 * `guardctl quarantine restore <id> [--force]` (admin): put a quarantined package or artifact back
 * exactly — tree, modes, bin links. When the policy in force still bans it, `--force` is required
 * and the restore is recorded as an event.
 */
import { GuardError } from '../../common/errors.js';
import type { GuardctlCommand } from '../command.js';

interface RestoreAnswer {
  id: string;
  path: string;
  hash_verified: boolean;
  links_restored: number;
  forced: boolean;
}

export const quarantineRestoreCommand: GuardctlCommand = {
  name: 'quarantine restore',
  summary: 'Restore a quarantined package or artifact (admin; --force when the policy still bans it)',
  args: [{ syntax: '<id>', description: 'quarantine id from `guardctl quarantine list`' }],
  options: [{ flags: '--force', description: 'restore even though the policy in force still bans it' }],
  examples: [
    'sudo guardctl quarantine restore q-01a2b3c4',
    'sudo guardctl quarantine restore q-01a2b3c4 --force',
  ],
  needsRoot: true,
  needsDaemon: true,
  async run(ctx) {
    const id = ctx.args[0];
    if (!id) throw new GuardError('GUARD_CLI_USAGE', 'quarantine restore needs an <id>');
    const r = await ctx.call<RestoreAnswer>('quarantine.restore', { id, force: ctx.options.force === true });
    const text = [
      `Restored ${r.path}${r.forced ? ' (forced: the policy still bans it; this was recorded)' : ''}`,
      `  tree hash ${r.hash_verified ? 'verified identical to the quarantined tree' : 'DIFFERS from the quarantined tree'}`,
      `  ${r.links_restored} link(s) restored`,
    ].join('\n');
    return { data: r, text, exitCode: r.hash_verified ? 0 : 8 };
  },
};
