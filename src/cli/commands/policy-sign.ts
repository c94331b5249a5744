/**
 * `guardctl policy sign <body>`: body → DSSE envelope. Refuses a body with lint errors, signs the
 * file's bytes exactly as written (nothing is bumped or rewritten), and with `--previous` refuses a
 * version that is not above the published one (devices would reject it as a rollback/equivocation).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { GuardError } from '../../common/errors.js';
import { serializeEnvelope, signEnvelope } from '../../policy/dsse.js';
import { parsePrivateKey } from '../../policy/keys.js';
import { POLICY_PAYLOAD_TYPE, type PolicyBody } from '../../policy/policy-types.js';
import type { GuardctlCommand } from '../command.js';
import { lintedBody, optionList, readPolicyFile, readTextFile } from './policy-common.js';

export const policySignCommand: GuardctlCommand = {
  name: 'policy sign',
  summary: 'Sign a policy body into a DSSE envelope (refuses a body that fails lint)',
  args: [{ syntax: '<body>', description: 'the unsigned policy body (JSON)' }],
  options: [
    { flags: '--key <file...>', description: 'private key file(s) (PEM); repeat for several signers' },
    { flags: '--out <file>', description: 'write the envelope here (default: stdout)' },
    {
      flags: '--previous <envelope>',
      description: 'the currently published envelope: the new version must be higher',
    },
  ],
  examples: [
    'guardctl policy sign ban-list.json --key signer1.key --out policy.dsse.json',
    'guardctl policy sign ban-list.json --key a.key --key b.key --previous published.dsse.json',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const [bodyFile] = ctx.args;
    if (!bodyFile) throw new GuardError('GUARD_CLI_USAGE', 'policy sign needs the body file');
    const keyFiles = optionList(ctx.options.key);
    if (keyFiles.length === 0)
      throw new GuardError('GUARD_CLI_USAGE', 'policy sign needs --key <private key file>');
    const input = lintedBody(bodyFile, 'sign');
    const body = input.body as PolicyBody;
    const previousFile = typeof ctx.options.previous === 'string' ? ctx.options.previous : null;
    if (previousFile) {
      const prev = readPolicyFile(previousFile);
      const prevVersion = (prev.body as { version?: unknown }).version;
      if (typeof prevVersion === 'number' && body.version < prevVersion) {
        throw new GuardError(
          'GUARD_POLICY_ROLLBACK',
          `version ${body.version} is below the published ${prevVersion}: devices would refuse it; set "version" to ${prevVersion + 1}`,
        );
      }
      if (
        typeof prevVersion === 'number' &&
        body.version === prevVersion &&
        !prev.bodyBytes.equals(input.bodyBytes)
      ) {
        throw new GuardError(
          'GUARD_POLICY_EQUIVOCATION',
          `version ${body.version} is already published with other content: devices would refuse it; set "version" to ${prevVersion + 1}`,
        );
      }
    }
    const keys = keyFiles.map((f) => parsePrivateKey(readTextFile(f, 'private key')));
    const envelope = signEnvelope(input.bodyBytes, POLICY_PAYLOAD_TYPE, keys);
    const out = serializeEnvelope(envelope);
    const data = {
      version: body.version,
      sha256: createHash('sha256').update(input.bodyBytes).digest('hex'),
      keyids: envelope.signatures.map((s) => s.keyid),
      out: typeof ctx.options.out === 'string' ? ctx.options.out : null,
    };
    if (data.out) {
      writeFileSync(data.out, out, { mode: 0o644 });
      return {
        data,
        text: `signed policy v${body.version} (${envelope.signatures.length} signature(s)) → ${data.out}\nnext: copy it over the collector's policy file (guard-collector --policy-file); devices pick it up at their next refresh`,
      };
    }
    return { data: { ...data, envelope }, text: out };
  },
};
