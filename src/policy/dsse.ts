/**
 * Owns the DSSE envelope (https://github.com/secure-systems-lab/dsse, protocol v1) as toolguard
 * uses it: the pre-authentication encoding (PAE) and signing. Verification lives in
 * policy-verifier.ts, which adds the trust, threshold and policy checks.
 *
 * PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, where LEN is the byte
 * length in ASCII decimal without leading zeros. Signing the PAE instead of the body binds the
 * payloadType, so a signature over one kind of document cannot be replayed as another.
 */
import { type KeyObject, sign } from 'node:crypto';
import { GuardError } from '../common/errors.js';
import { keyidOf } from './keys.js';
import type { DsseEnvelope, DsseSignature } from './policy-types.js';

export type { DsseEnvelope, DsseSignature } from './policy-types.js';

/** The pre-authentication encoding of DSSE v1. */
export function pae(payloadType: string, body: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'ascii'),
    type,
    Buffer.from(` ${body.length} `, 'ascii'),
    body,
  ]);
}

/**
 * Signs `body` with every key (Ed25519), returning the envelope: base64 payload, one signature per
 * key with `keyid` = hex SHA-256 of the raw public key. Passing the same key twice yields one
 * signature (a duplicate would add nothing: verifiers count distinct keys).
 */
export function signEnvelope(
  body: Buffer | string,
  payloadType: string,
  privateKeys: readonly KeyObject[],
): DsseEnvelope {
  if (privateKeys.length === 0) {
    throw new GuardError('GUARD_POLICY_KEY_INVALID', 'at least one private key is needed to sign');
  }
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const message = pae(payloadType, bytes);
  const signatures: DsseSignature[] = [];
  const seen = new Set<string>();
  for (const key of privateKeys) {
    if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') {
      throw new GuardError('GUARD_POLICY_KEY_INVALID', 'signing keys must be Ed25519 private keys');
    }
    const keyid = keyidOf(key);
    if (seen.has(keyid)) continue;
    seen.add(keyid);
    signatures.push({ keyid, sig: sign(null, message, key).toString('base64') });
  }
  return { payload: bytes.toString('base64'), payloadType, signatures };
}

/** Serialises an envelope the way toolguard writes it to disk and serves it (pretty, trailing newline). */
export function serializeEnvelope(envelope: DsseEnvelope): string {
  return `${JSON.stringify(envelope, null, 2)}\n`;
}
