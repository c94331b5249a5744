/**
 * `guardctl policy lint <file>`: schema and semantic checks of a policy body (or the payload of an
 * envelope). Exit 0 when there are no errors (warnings allowed), 8 (check failed) otherwise.
 */
import { GuardError } from '../../common/errors.js';
import { formatFindings, lintPolicy } from '../../policy/policy-lint.js';
import type { GuardctlCommand } from '../command.js';
import { EXIT } from '../error-message.js';
import { readPolicyFile } from './policy-common.js';

export const policyLintCommand: GuardctlCommand = {
  name: 'policy lint',
  summary: 'Check a policy body for schema errors, unsafe or unreachable rules, bad regexes/globs/semver',
  args: [{ syntax: '<file>', description: 'policy body or signed envelope (JSON)' }],
  examples: ['guardctl policy lint ban-list.json'],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const [file] = ctx.args;
    if (!file) throw new GuardError('GUARD_CLI_USAGE', 'policy lint needs a file');
    const findings = lintPolicy(readPolicyFile(file).body, { now: Date.now() });
    const ok = !findings.some((f) => f.severity === 'error');
    return {
      data: { ok, findings },
      text: formatFindings(findings),
      exitCode: ok ? EXIT.OK : EXIT.CHECK_FAILED,
    };
  },
};
