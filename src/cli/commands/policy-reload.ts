/**
 * `guardctl policy reload` (root): fetch and apply the signed policy now — and the shadow policy,
 * when the collector serves one — and say what happened. The exit code is the enforced policy's.
 */
import type { RefreshResult } from '../../policy/policy-updater.js';
import type { GuardctlCommand } from '../command.js';
import { EXIT } from '../error-message.js';

/** One line for a channel's refresh result. */
function describe(what: string, r: RefreshResult, kept: string): string {
  if (r.status === 'applied') return `${what} v${r.version} applied`;
  if (r.status === 'unchanged' || r.status === 'not-modified')
    return `${what} unchanged${r.version ? ` (v${r.version})` : ''}`;
  if (r.status === 'none') return `no ${what}`;
  return `${what} ${r.status}: ${r.error?.message ?? 'unknown reason'} [${r.error?.code ?? '?'}] — ${kept}`;
}

export const policyReloadCommand: GuardctlCommand = {
  name: 'policy reload',
  summary: 'Fetch the signed policy from the collector now and apply it if it verifies',
  examples: ['sudo guardctl policy reload'],
  needsRoot: true,
  needsDaemon: true,
  async run(ctx) {
    const r = await ctx.call<RefreshResult>('policy.reload');
    const text = [
      describe('policy', r, 'the last good policy stays in force'),
      ...(r.shadow ? [describe('shadow policy', r.shadow, 'the last good shadow stays evaluated')] : []),
    ].join('\n');
    return {
      data: r,
      text,
      exitCode: r.status === 'rejected' || r.status === 'failed' ? EXIT.POLICY : EXIT.OK,
    };
  },
};
