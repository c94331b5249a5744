/**
 * Temporary directories that are removed after the test file.
 *
 * One afterAll of this module, registered when a test file imports it (vitest evaluates the
 * imports of each file anew, in its root suite), removes every directory made during the file —
 * also those made inside a hook or a test, where an afterAll of their own would never run (the
 * packaging tests' dirs of 250 MB each were left in /tmp by every run that way). It runs after
 * the file's own afterAll hooks (vitest runs them last registered first), so daemons are stopped
 * and mounts below a directory undone before it is removed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir, removed when the test file ends. Short names keep Unix socket paths < 108 bytes. */
export function tempDir(prefix = 'tg-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
