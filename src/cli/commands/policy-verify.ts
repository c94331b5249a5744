/**
 * `guardctl policy verify <envelope>`: runs exactly the device's verification (signatures,
 * threshold, schema, safety, freshness) and prints OK or why not. Keys come from `--key` (files or
 * inline PEM/base64) or, without it, from the config's policy.trusted_keys and policy.threshold.
 */
import { GuardError } from '../../common/errors.js';
import { readConfigFile } from '../../config/load-config.js';
import { parseTrustedKeys } from '../../policy/keys.js';
import { verifyPolicyEnvelope } from '../../policy/policy-verifier.js';
import type { GuardctlCommand } from '../command.js';
import { optionList, readKeyArg, readTextFile } from './policy-common.js';

/** The same defaults as the settings table: 5 minutes of skew, the 1 MiB download cap is not applied offline. */
const DEFAULT_CLOCK_SKEW_S = 300;
const OFFLINE_MAX_BYTES = 64 * 1024 * 1024;

export const policyVerifyCommand: GuardctlCommand = {
  name: 'policy verify',
  summary: 'Verify a signed policy as a device would (OK, or why not)',
  args: [{ syntax: '<envelope>', description: 'the signed envelope file' }],
  options: [
    {
      flags: '--key <key...>',
      description: 'trusted public key(s): file or inline PEM/base64 (default: the config)',
    },
    { flags: '--threshold <n>', description: 'distinct trusted keys required (default: the config, else 1)' },
  ],
  examples: [
    'guardctl policy verify policy.dsse.json',
    'guardctl policy verify policy.dsse.json --key signer1.pub --threshold 1',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const [file] = ctx.args;
    if (!file) throw new GuardError('GUARD_CLI_USAGE', 'policy verify needs the envelope file');
    let keyTexts = optionList(ctx.options.key).map(readKeyArg);
    let threshold = 1;
    let keySource = '--key';
    if (keyTexts.length === 0) {
      const cfg = readConfigFile(ctx.configFile, false);
      const keys = cfg['policy.trusted_keys'];
      if (!Array.isArray(keys) || keys.length === 0) {
        throw new GuardError(
          'GUARD_CLI_USAGE',
          `no --key given and ${ctx.configFile} has no policy.trusted_keys`,
        );
      }
      keyTexts = keys.map(String);
      if (typeof cfg['policy.threshold'] === 'number') threshold = cfg['policy.threshold'];
      keySource = ctx.configFile;
    }
    if (ctx.options.threshold !== undefined) {
      threshold = Number(ctx.options.threshold);
      if (!Number.isInteger(threshold) || threshold < 1) {
        throw new GuardError(
          'GUARD_CLI_USAGE',
          `--threshold must be a positive integer, got ${String(ctx.options.threshold)}`,
        );
      }
    }
    const v = verifyPolicyEnvelope(readTextFile(file, 'envelope'), {
      trustedKeys: parseTrustedKeys(keyTexts),
      threshold,
      now: Date.now(),
      clockSkewS: DEFAULT_CLOCK_SKEW_S,
      maxBytes: OFFLINE_MAX_BYTES,
    });
    const data = {
      ok: true,
      version: v.body.version,
      mode: v.body.mode,
      rules: v.body.rules.length,
      issued_at: v.body.issued_at,
      expires_at: v.body.expires_at,
      sha256: v.sha256,
      signed_by: v.signedBy,
      threshold,
    };
    const text = `OK: policy v${data.version} (${data.rules} rules, mode ${data.mode}), issued ${data.issued_at}, expires ${data.expires_at}\n    signed by ${v.signedBy.length} trusted key(s) (threshold ${threshold}, keys from ${keySource}): ${v.signedBy.join(', ')}`;
    return { data, text };
  },
};
