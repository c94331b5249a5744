/** `guardctl policy reload` (root): fetch and apply the signed policy now, and say what happened. */
import type { GuardctlCommand } from '../command.js';
import { EXIT } from '../error-message.js';

interface RefreshResult {
  status: 'applied' | 'unchanged' | 'not-modified' | 'rejected' | 'failed';
  version?: number;
  error?: { code: string; message: string };
}

export const policyReloadCommand: GuardctlCommand = {
  name: 'policy reload',
  summary: 'Fetch the signed policy from the collector now and apply it if it verifies',
  examples: ['sudo guardctl policy reload'],
  needsRoot: true,
  needsDaemon: true,
  async run(ctx) {
    const r = await ctx.call<RefreshResult>('policy.reload');
    const text =
      r.status === 'applied'
        ? `policy v${r.version} applied`
        : r.status === 'unchanged' || r.status === 'not-modified'
          ? `policy unchanged${r.version ? ` (v${r.version})` : ''}`
          : `policy ${r.status}: ${r.error?.message ?? 'unknown reason'} [${r.error?.code ?? '?'}] — the last good policy stays in force`;
    return {
      data: r,
      text,
      exitCode: r.status === 'rejected' || r.status === 'failed' ? EXIT.POLICY : EXIT.OK,
    };
  },
};
