/**
 * Owns Ed25519 key handling for the signed ban list: generating key pairs, parsing the trusted
 * public keys pinned in the config (PEM SPKI or the raw 32-byte key in base64) and private keys
 * (PEM PKCS#8), and deriving a key's `keyid` (hex SHA-256 of the raw 32-byte public key).
 *
 * A keyid is only a hint that lets a verifier try the likely key first; trust decisions are made
 * by verifying the signature against the trusted key objects themselves (see policy-verifier.ts).
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { GuardError } from '../common/errors.js';

/** Raw Ed25519 public keys are exactly this many bytes (RFC 8032). */
const ED25519_PUBLIC_KEY_BYTES = 32;

/**
 * DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 },
 * BIT STRING (33 bytes) }; the raw key follows. Lets us import a raw key with Node's own parser.
 */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Config values longer than this are refused before parsing: no real key is anywhere near it. */
const MAX_KEY_TEXT_CHARS = 16 * 1024;

/** A trusted public key, ready for verification. */
export interface TrustedKey {
  /** Hex SHA-256 of the raw 32-byte public key. */
  readonly keyid: string;
  readonly key: KeyObject;
}

export interface GeneratedKeyPair {
  /** PKCS#8 PEM; keep it secret (keygen writes it mode 0600). */
  readonly privateKeyPem: string;
  /** SPKI PEM, for the config's `policy.trusted_keys`. */
  readonly publicKeyPem: string;
  /** The raw 32-byte public key in base64, the compact alternative for the config. */
  readonly publicKeyBase64: string;
  readonly keyid: string;
}

/** Generates a fresh Ed25519 key pair. */
export function generateKeyPair(): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = rawPublicKey(publicKey);
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    publicKeyBase64: raw.toString('base64'),
    keyid: keyidOfRaw(raw),
  };
}

/** The raw 32 bytes of an Ed25519 public key object. */
export function rawPublicKey(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new GuardError(
      'GUARD_POLICY_KEY_INVALID',
      `not an Ed25519 key (${key.asymmetricKeyType ?? key.type})`,
    );
  }
  const der = key.export({ type: 'spki', format: 'der' });
  return der.subarray(der.length - ED25519_PUBLIC_KEY_BYTES);
}

/** keyid of a raw 32-byte public key: lower-case hex SHA-256. */
export function keyidOfRaw(raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex');
}

/** keyid of a public or private Ed25519 key object. */
export function keyidOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return keyidOfRaw(rawPublicKey(pub));
}

/**
 * Parses a public key from the config: SPKI PEM (`-----BEGIN PUBLIC KEY-----`) or the raw 32-byte
 * key in base64 (standard or URL-safe alphabet). Anything else, or a non-Ed25519 key →
 * GUARD_POLICY_KEY_INVALID.
 */
export function parsePublicKey(text: string): TrustedKey {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_KEY_TEXT_CHARS) {
    throw new GuardError('GUARD_POLICY_KEY_INVALID', 'public key must be a non-empty PEM or base64 string');
  }
  const trimmed = text.trim();
  let key: KeyObject;
  if (trimmed.startsWith('-----BEGIN')) {
    if (trimmed.includes('PRIVATE KEY')) {
      throw new GuardError(
        'GUARD_POLICY_KEY_INVALID',
        'a private key was given where a public key is expected',
      );
    }
    try {
      key = createPublicKey({ key: trimmed, format: 'pem' });
    } catch (err) {
      throw new GuardError(
        'GUARD_POLICY_KEY_INVALID',
        `cannot parse PEM public key: ${(err as Error).message}`,
      );
    }
  } else {
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
      throw new GuardError('GUARD_POLICY_KEY_INVALID', 'public key is neither PEM nor base64');
    }
    const raw = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (raw.length !== ED25519_PUBLIC_KEY_BYTES) {
      throw new GuardError(
        'GUARD_POLICY_KEY_INVALID',
        `raw Ed25519 public key must be ${ED25519_PUBLIC_KEY_BYTES} bytes, got ${raw.length}`,
      );
    }
    key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  }
  return { keyid: keyidOfRaw(rawPublicKey(key)), key };
}

/** Parses a PKCS#8 PEM Ed25519 private key; anything else → GUARD_POLICY_KEY_INVALID. */
export function parsePrivateKey(pem: string): KeyObject {
  if (typeof pem !== 'string' || pem.length === 0 || pem.length > MAX_KEY_TEXT_CHARS) {
    throw new GuardError('GUARD_POLICY_KEY_INVALID', 'private key must be a non-empty PEM string');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new GuardError(
      'GUARD_POLICY_KEY_INVALID',
      `cannot parse PEM private key: ${(err as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new GuardError('GUARD_POLICY_KEY_INVALID', `not an Ed25519 private key (${key.asymmetricKeyType})`);
  }
  return key;
}

/**
 * Parses every configured trusted key; duplicates (same key in PEM and base64) collapse to one so
 * a threshold can never be met twice by one key.
 */
export function parseTrustedKeys(texts: readonly string[]): TrustedKey[] {
  const byId = new Map<string, TrustedKey>();
  texts.forEach((t, i) => {
    try {
      const k = parsePublicKey(t);
      byId.set(k.keyid, k);
    } catch (err) {
      throw new GuardError(
        'GUARD_POLICY_KEY_INVALID',
        `policy.trusted_keys[${i}]: ${(err as Error).message}`,
        {
          index: i,
        },
      );
    }
  });
  return [...byId.values()];
}
