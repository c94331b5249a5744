/** Executable hashing: correct, cached by device+inode+size+mtime, bounded for huge or slow files. */

import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExeHasher } from '../../../src/sensors/exe-hash.js';
import { waitSettled } from '../../helpers/settled.js';
import { tempDir } from '../../helpers/tmp.js';

describe('ExeHasher', () => {
  const dir = tempDir('tg-hash-');
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  it('hashes, caches by identity, and re-hashes a file rewritten in place', async () => {
    const file = join(dir, 'bin');
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(file, bytes);
    const h = new ExeHasher();
    // A file changed in the last seconds is hashed each time: coarse timestamps let its owner put
    // other bytes under the same identity (file-facts.ts `settled`).
    expect(await h.hash(file)).toBe(sha(bytes));
    expect(await h.hash(file)).toBe(sha(bytes));
    expect(h.counts).toMatchObject({ hashed: 2, cached: 0 });
    await waitSettled(file);
    expect(await h.hash(file)).toBe(sha(bytes));
    expect(await h.hash(file)).toBe(sha(bytes));
    expect(h.counts).toMatchObject({ hashed: 3, cached: 1 });
    appendFileSync(file, 'x');
    expect(await h.hash(file)).toBe(sha(Buffer.concat([bytes, Buffer.from('x')])));
    expect(h.counts.hashed).toBe(4);
    // Concurrent requests for one file share one digest.
    const h2 = new ExeHasher();
    const all = await Promise.all([h2.hash(file), h2.hash(file), h2.hash(file)]);
    expect(new Set(all).size).toBe(1);
  });

  it('returns null and counts for too large, too slow, missing, and non-files', async () => {
    const file = join(dir, 'big');
    writeFileSync(file, randomBytes(2 * 1024 * 1024));
    const small = new ExeHasher({ maxBytes: 1024 });
    expect(await small.hash(file)).toBeNull();
    expect(small.counts.too_large).toBe(1);
    const slow = new ExeHasher({ timeoutMs: 0 });
    expect(await slow.hash(file)).toBeNull();
    expect(slow.counts.timeout).toBe(1);
    const h = new ExeHasher();
    mkdirSync(join(dir, 'adir'));
    expect(await h.hash(join(dir, 'missing'))).toBeNull();
    expect(await h.hash(join(dir, 'adir'))).toBeNull();
    expect(h.counts.unreadable).toBe(2);
  });

  it('never waits on a FIFO: it is opened non-blocking and refused as not a file', async () => {
    // A blocking open of a FIFO would wait for a writer that never comes.
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const h = new ExeHasher({ timeoutMs: 60_000 });
    expect(await h.hash(fifo)).toBeNull();
    expect(h.counts).toMatchObject({ unreadable: 1, timeout: 0 });
  });

  it('keeps at most cacheSize entries', async () => {
    const h = new ExeHasher({ cacheSize: 2 });
    const files = [0, 1, 2, 3, 4].map((i) => join(dir, `f${i}`));
    for (const [i, f] of files.entries()) writeFileSync(f, String(i));
    await waitSettled(...files);
    for (const f of files) await h.hash(f);
    expect(h.cached).toBe(2);
  });
});
