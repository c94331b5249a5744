import { verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GuardError } from '../../src/common/errors.js';
import { pae, signEnvelope } from '../../src/policy/dsse.js';
import { generateKeyPair, parsePrivateKey, parsePublicKey, parseTrustedKeys } from '../../src/policy/keys.js';

describe('pae', () => {
  it('matches the DSSE v1 test vector', () => {
    // From the DSSE protocol spec: PAE("http://example.com/HelloWorld", "hello world").
    expect(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString()).toBe(
      'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
    );
  });
  it('uses byte lengths, not character counts', () => {
    expect(pae('t', Buffer.from('é', 'utf8')).toString('utf8')).toBe('DSSEv1 1 t 2 é');
  });
});

describe('keys', () => {
  it('parses PEM and raw base64 to the same keyid', () => {
    const k = generateKeyPair();
    const a = parsePublicKey(k.publicKeyPem);
    const b = parsePublicKey(k.publicKeyBase64);
    expect(a.keyid).toBe(k.keyid);
    expect(b.keyid).toBe(k.keyid);
    expect(k.keyid).toMatch(/^[0-9a-f]{64}$/);
    expect(parseTrustedKeys([k.publicKeyPem, k.publicKeyBase64])).toHaveLength(1);
  });

  it.each([
    ['empty', ''],
    ['not base64', 'not a key!'],
    ['wrong length', Buffer.alloc(31).toString('base64')],
    ['garbage PEM', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----'],
    ['a private key', generateKeyPair().privateKeyPem],
  ])('refuses %s with GUARD_POLICY_KEY_INVALID', (_what, text) => {
    expect(() => parsePublicKey(text)).toThrow(GuardError);
    try {
      parsePublicKey(text);
    } catch (err) {
      expect((err as GuardError).code).toBe('GUARD_POLICY_KEY_INVALID');
    }
  });

  it('refuses a bad private key with GUARD_POLICY_KEY_INVALID', () => {
    try {
      parsePrivateKey('nope');
      expect.unreachable();
    } catch (err) {
      expect((err as GuardError).code).toBe('GUARD_POLICY_KEY_INVALID');
    }
  });
});

describe('signEnvelope', () => {
  it('signs the PAE once per distinct key, with keyids', () => {
    const k1 = generateKeyPair();
    const k2 = generateKeyPair();
    const priv1 = parsePrivateKey(k1.privateKeyPem);
    const env = signEnvelope('{"a":1}', 'application/x-test', [
      priv1,
      parsePrivateKey(k2.privateKeyPem),
      priv1,
    ]);
    expect(env.payloadType).toBe('application/x-test');
    expect(Buffer.from(env.payload, 'base64').toString()).toBe('{"a":1}');
    expect(env.signatures.map((s) => s.keyid)).toEqual([k1.keyid, k2.keyid]);
    const message = pae('application/x-test', Buffer.from('{"a":1}'));
    const [s1, s2] = env.signatures;
    expect(
      verify(null, message, parsePublicKey(k1.publicKeyBase64).key, Buffer.from(s1?.sig ?? '', 'base64')),
    ).toBe(true);
    expect(
      verify(null, message, parsePublicKey(k2.publicKeyPem).key, Buffer.from(s2?.sig ?? '', 'base64')),
    ).toBe(true);
  });
});
