/** `guardctl policy diff <old> <new>`: what changes between two policies (bodies or envelopes), for review. */
import { GuardError } from '../../common/errors.js';
import { diffPolicies, formatDiff } from '../../policy/policy-diff.js';
import { assertValidPolicyBody } from '../../policy/policy-schema.js';
import type { GuardctlCommand } from '../command.js';
import { readPolicyFile } from './policy-common.js';

export const policyDiffCommand: GuardctlCommand = {
  name: 'policy diff',
  summary: 'Show the differences between two policies (bodies or envelopes)',
  args: [
    { syntax: '<old>', description: 'the policy in force' },
    { syntax: '<new>', description: 'the candidate' },
  ],
  examples: ['guardctl policy diff policy-v11.json policy-v12.json'],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const [a, b] = ctx.args;
    if (!a || !b) throw new GuardError('GUARD_CLI_USAGE', 'policy diff needs two files');
    const diff = diffPolicies(
      assertValidPolicyBody(readPolicyFile(a).body),
      assertValidPolicyBody(readPolicyFile(b).body),
    );
    return { data: diff, text: formatDiff(diff) };
  },
};
