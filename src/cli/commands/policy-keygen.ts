/** `guardctl policy keygen`: a new Ed25519 signing key pair (private key 0600, public key 0644). */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { GuardError } from '../../common/errors.js';
import { generateKeyPair } from '../../policy/keys.js';
import type { GuardctlCommand } from '../command.js';

export const policyKeygenCommand: GuardctlCommand = {
  name: 'policy keygen',
  summary: 'Create an Ed25519 key pair for signing policies (<prefix>.key mode 0600, <prefix>.pub)',
  options: [{ flags: '--out <prefix>', description: 'file prefix (default: ./toolguard-policy)' }],
  examples: ['guardctl policy keygen --out ./keys/signer1'],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const prefix = resolve(typeof ctx.options.out === 'string' ? ctx.options.out : 'toolguard-policy');
    const keyFile = `${prefix}.key`;
    const pubFile = `${prefix}.pub`;
    const k = generateKeyPair();
    try {
      // 'wx': never overwrite a signing key — losing one means re-keying the whole fleet.
      writeFileSync(keyFile, k.privateKeyPem, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw new GuardError('GUARD_CLI_USAGE', `cannot create ${keyFile}: ${(err as Error).message}`);
    }
    try {
      writeFileSync(pubFile, k.publicKeyPem, { mode: 0o644, flag: 'wx' });
    } catch (err) {
      throw new GuardError('GUARD_CLI_USAGE', `cannot create ${pubFile}: ${(err as Error).message}`);
    }
    const data = {
      keyid: k.keyid,
      private_key_file: keyFile,
      public_key_file: pubFile,
      public_key_base64: k.publicKeyBase64,
    };
    const text = [
      `private key  ${keyFile} (mode 0600 — keep it offline; it can sign ban lists for the whole fleet)`,
      `public key   ${pubFile}`,
      `keyid        ${k.keyid}`,
      `trust it on devices: add to policy.trusted_keys in the config either the PEM file's text or "${k.publicKeyBase64}"`,
    ].join('\n');
    return { data, text };
  },
};
