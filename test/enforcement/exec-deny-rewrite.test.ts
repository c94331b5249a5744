/**
 * A program rewritten while its exec waits for guardd's decision, by a real unprivileged user
 * against a real root guardd with pre-exec deny and a sha256 rule. The kernel holds writers off an
 * exec'd file (ETXTBSY) only once the exec is allowed; until then the file's owner may write it.
 * Found in review: the user execs a copy of the banned program with its last byte flipped and, as
 * soon as guardd starts reading it (inotify IN_ACCESS), writes the banned byte back; guardd's hash
 * of a file that changed under it is no hash ("changed"), the sha256 rule could not match, the
 * exec was allowed — and ran the banned bytes (the post-exec kill came after). The native thread now
 * refuses an exec whose file's identity moved between the request and the answer.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Guardd, startDenyingGuardd } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { compileFlipexec, flipAsUser } from './flipexec.js';

const dir = tempDir('tgrw-');
const TAG = randomBytes(4).toString('hex');
/** A copy of `sleep` with 16 MiB appended (hashing it takes a while): the banned hash. */
const BANNED = join(dir, `banned-${TAG}`);

let user: TestUser;
let g: Guardd | undefined;
let flip: string;
let bytes: Buffer;

afterAll(async () => {
  await g?.stop();
});

describe('a program rewritten while its exec waits (real guardd, real user)', () => {
  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgrw');
    bytes = Buffer.concat([readFileSync(realpathSync('/bin/sleep')), randomBytes(16 * 1024 * 1024)]);
    writeFileSync(BANNED, bytes);
    chmodSync(dir, 0o755);
    chmodSync(BANNED, 0o644);
    flip = compileFlipexec(dir);
    const hash = createHash('sha256').update(bytes).digest('hex');
    g = await startDenyingGuardd(dir, {
      id: `tgrw-${TAG}`,
      name: 'tgrw banned tool',
      action: 'block',
      message: 'tgrw: not approved.',
      process: { sha256: [hash] },
    });
  });

  it('the banned byte written back once guardd reads the file: the exec is refused', async () => {
    const last = bytes.length - 1;
    const orig = bytes[last] as number;
    // the user's copy with its last byte flipped (another hash), then the exec and the write-back
    const copy = join(user.home, 't');
    const flipped = Buffer.from(bytes);
    flipped[last] = orig ^ 1;
    writeFileSync(copy, flipped);
    chownSync(copy, user.uid, user.gid);
    chmodSync(copy, 0o755);
    // the file now holds the banned bytes, and they never ran
    expect(flipAsUser(flip, user, copy, last, bytes)).toBe('126');
    // Refused by this guardd as changed while it waited — when it runs alone. Which guardd refuses
    // depends on the tests alongside: each guardd of another test marks the same file systems and
    // holds a lease of its own, and the kernel asks one after another and stops at the first
    // refusal (a full suite run saw this one not asked at all). No guardd refused on the code
    // before the identity check, so the exit status alone tells the two apart.
  });
});
