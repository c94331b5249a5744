/**
 * Waiting until files have settled (src/sensors/file-facts.ts `settled`): guardd caches what it
 * learnt of a file (an allow, a hash, markers) only once the file's ctime is IDENTITY_SETTLE_MS old,
 * since coarse timestamps let its owner put other bytes under a younger identity. A test that
 * proves something about a cached file waits here after the file's last change (chmod and chown
 * change ctime too).
 */
import { statSync } from 'node:fs';
import { IDENTITY_SETTLE_MS } from '../../src/sensors/file-facts.js';
import { waitFor } from './wait.js';

export async function waitSettled(...paths: string[]): Promise<void> {
  await waitFor(
    () => paths.every((p) => Date.now() - statSync(p).ctimeMs >= IDENTITY_SETTLE_MS),
    `${paths.join(', ')} to settle`,
    { intervalMs: 100, timeoutMs: IDENTITY_SETTLE_MS + 15_000 },
  );
}
