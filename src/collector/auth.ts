/**
 * Owns the collector's credentials: constant-time comparison of the enroll secret and the admin
 * token, minting device tokens (32 random bytes, base64url) and the SHA-256 hash under which a
 * device token is stored (the token itself never touches the disk), and bearer-header parsing.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Random bytes in a device token: 256 bits, unguessable. */
const DEVICE_TOKEN_BYTES = 32;
/** A bearer header longer than this is refused unread: tokens are 43 characters. */
const MAX_BEARER_CHARS = 512;

/** A new device token (43 base64url characters). */
export function mintDeviceToken(): string {
  return randomBytes(DEVICE_TOKEN_BYTES).toString('base64url');
}

/** Hex SHA-256 of a token: what the devices table stores and looks up. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * Compares a presented secret with the expected one in constant time. Both are hashed first so
 * the comparison takes the same time whatever their lengths (timingSafeEqual needs equal lengths).
 */
export function secretEquals(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b) && expected.length > 0;
}

/** The token of an `Authorization: Bearer <token>` header, or null when absent or malformed. */
export function bearerToken(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string' || header.length > MAX_BEARER_CHARS) return null;
  const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/i.exec(header.trim());
  return m ? (m[1] as string) : null;
}
