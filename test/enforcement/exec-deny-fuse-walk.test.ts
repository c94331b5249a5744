/**
 * The pre-exec listener's native thread walked into a user's FUSE mount (found in review). Before handing a file to
 * the kernel (a kernel-cached allow), the thread checks every directory of its path from / with
 * lstat. A root-owned program left below a user's own directory (root's build output after `sudo
 * make` or `sudo npm install` in their checkout, here a copy of `true` in their home) passes the
 * file's own checks; the user covers their home with a FUSE mount whose daemon never answers
 * (fusermount3, as any user may on a directory they own; with `allow_other`, which
 * `user_allow_other` in /etc/fuse.conf grants them — without it root is refused at once) and runs
 * the program through a
 * descriptor of the covered directory: the kernel names it by its path, which now leads into the
 * mount, and the thread's lstat of the user's home waited on the user's daemon — with it every exec
 * on the machine's marked file systems. A real root guardd, a real user, real fusermount3.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecPermCounters } from '../../src/enforcement/exec-deny.js';
import { execDenyCounters, type Guardd, startDenyingGuardd } from '../helpers/daemon.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../helpers/machine-lock.js';
import { waitSettled } from '../helpers/settled.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { compileC } from '../sensors/hostile-fs.js';
import { userFuse } from '../sensors/process/fuse-user.js';

const FUSERMOUNT = '/usr/bin/fusermount3';
const FUSE_CONF = '/etc/fuse.conf';
/** /etc/fuse.conf as it was (null: absent), put back after the test. */
let fuseConf: string | null | undefined;
const dir = tempDir('tgfw-');
const TAG = randomBytes(4).toString('hex');

let user: TestUser;
let g: Guardd | undefined;
/** Puts /dev/fuse's mode and the machine lock back (userFuse). */
let releaseFuse: (() => void) | undefined;

afterAll(async () => {
  // the test unmounts; a failed run leaves nothing mounted either
  if (user) spawnSync('umount', ['-l', user.home]);
  await g?.stop();
  if (fuseConf === null) rmSync(FUSE_CONF, { force: true });
  else if (fuseConf !== undefined) writeFileSync(FUSE_CONF, fuseConf);
  releaseFuse?.();
});

const counters = (): Promise<ExecPermCounters> => execDenyCounters(g as Guardd);

describe("the pre-exec thread never walks into a user's FUSE mount (real guardd, real user)", () => {
  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    expect(existsSync(FUSERMOUNT), 'fusermount3 (Debian package fuse3)').toBe(true);
    user = createTestUser('tgfw');
    // users may open /dev/fuse (as udev makes it); /etc/fuse.conf is changed under the same lock
    releaseFuse = await userFuse();
    fuseConf = existsSync(FUSE_CONF) ? readFileSync(FUSE_CONF, 'utf8') : null;
    writeFileSync(FUSE_CONF, `${fuseConf ?? ''}\nuser_allow_other\n`);
    chmodSync(dir, 0o755);
    g = await startDenyingGuardd(dir, {
      id: `tgfw-${TAG}`,
      name: 'tgfw banned tool',
      action: 'block',
      message: 'tgfw: not approved.',
      process: { names: [`tgfw-banned-${TAG}`] },
    });
  }, LOCKED_TEST_TIMEOUT_MS);

  it("a root-owned program run through a descriptor of the user's covered home: the thread goes on answering", async () => {
    const cover = compileC(
      dir,
      'fusecover',
      readFileSync(join(import.meta.dirname, '..', 'fixtures', 'native', 'fusecover.c'), 'utf8'),
    );
    chmodSync(cover, 0o755);
    // root's program in the user's home (root-owned, 0755, one link)
    const prog = join(user.home, 'tool');
    copyFileSync(realpathSync('/bin/true'), prog);
    chmodSync(prog, 0o755);
    await waitSettled(prog); // its allow is cached, so its next exec is checked for the kernel
    const first = spawnSync(prog, [], { uid: user.uid, gid: user.gid, timeout: 10_000 });
    expect(first.status).toBe(0);
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(cover, [user.home, 'tool'], { uid: user.uid, gid: user.gid, cwd: '/' });
      let text = '';
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      child.on('error', reject);
      child.on('close', () => resolve(text));
    });
    expect(out).toContain('mounted');
    // the program ran at once: the thread did not wait on the user's daemon
    expect(out).toContain('ran=0');
    expect(out).toContain('done');
    expect((await counters()).loop_age_ms).toBeLessThan(2000);
  });
});
