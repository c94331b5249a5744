/** The identity the hash and marker caches key a file by (src/sensors/file-id.ts), read by path. */
import { open } from 'node:fs/promises';
import type { FileIdentity } from '../../src/sensors/content-markers.js';
import { readIdentity } from '../../src/sensors/file-id.js';

export async function identityOfPath(path: string): Promise<FileIdentity> {
  const fh = await open(path, 'r');
  try {
    return (await readIdentity(fh)).identity;
  } finally {
    await fh.close();
  }
}
