/**
 * `guardctl policy promote` and `guardctl policy clear-shadow`: the two ends of a shadow policy
 * (docs/policy.md "Shadow policies"). Promote makes the collector's shadow the enforced policy —
 * the same signed envelope, re-checked by the collector, recorded — and withdraws the shadow;
 * `--shadow-version` refuses to promote anything but the version that was reviewed. Clear withdraws the
 * shadow without enforcing it. Both through the admin API (`adminRequest` of policy-publish.ts).
 */
import { GuardError } from '../../common/errors.js';
import type { GuardctlCommand } from '../command.js';
import { adminRequest, adminTarget } from './policy-publish.js';

const ADMIN_OPTIONS = [
  { flags: '--collector <url>', description: 'collector base URL, e.g. https://guard.example:8443' },
  { flags: '--admin-token-file <file>', description: "file holding the collector's admin token" },
  { flags: '--message <text>', description: 'why (recorded in the history)' },
  { flags: '--by <name>', description: 'who (recorded; default: user@host)' },
] as const;

export const policyPromoteCommand: GuardctlCommand = {
  name: 'policy promote',
  summary: "Make the collector's shadow policy the enforced one (recorded)",
  args: [],
  options: [
    ...ADMIN_OPTIONS,
    {
      flags: '--shadow-version <n>',
      description: 'promote only if the shadow is this version (the one reviewed)',
    },
  ],
  examples: [
    'guardctl policy promote --shadow-version 14 --collector https://guard.example:8443 --admin-token-file admin.token --message "no false positives in a week"',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const target = adminTarget(ctx.options, 'policy promote');
    const raw = ctx.options.shadowVersion;
    let version: number | undefined;
    if (raw !== undefined) {
      if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw))
        throw new GuardError('GUARD_CLI_USAGE', '--shadow-version takes the shadow version number');
      version = Number(raw);
    }
    const answer = await adminRequest(target, '/v1/admin/policy/promote', {
      by: target.by,
      message: target.message,
      ...(version === undefined ? {} : { version }),
    });
    return {
      data: answer,
      text: `promoted shadow policy v${String(answer.version)} to enforced on ${target.base.origin} as ${target.by}; devices enforce it from their next policy fetch`,
    };
  },
};

export const policyClearShadowCommand: GuardctlCommand = {
  name: 'policy clear-shadow',
  summary: "Withdraw the collector's shadow policy without enforcing it (recorded)",
  args: [],
  options: [...ADMIN_OPTIONS],
  examples: [
    'guardctl policy clear-shadow --collector https://guard.example:8443 --admin-token-file admin.token --message "too broad"',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const target = adminTarget(ctx.options, 'policy clear-shadow');
    const answer = await adminRequest(target, '/v1/admin/policy/shadow/clear', {
      by: target.by,
      message: target.message,
    });
    return {
      data: answer,
      text: `cleared shadow policy v${String(answer.version)} on ${target.base.origin}; devices drop it from their next policy fetch`,
    };
  },
};
