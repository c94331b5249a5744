/**
 * The owner of an install found on a user's own FUSE mount is the mount's user (mountinfo
 * `user_id=`), not what its daemon answers to stat (issue 13). A user's daemon reports root, or a
 * user a policy exception lets off, as the owner of a banned package in the user's npm root.
 * Before, the event (and the notification) named root, and the package claimed by the excepted
 * user was let off: no event at all.
 *
 * Real parts: real users made here, the real install sensor, matcher and enforcer (harness.ts),
 * and a real FUSE mount of the user's — made with `allow_other`, as fusermount3 makes it where
 * /etc/fuse.conf allows, so root sees the files — whose daemon (test/sensors/process/
 * fuse-passthrough.c) runs as the user and claims the owner it is told to.
 */
import { chmodSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { compileMatcher } from '../../../src/policy/matcher.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../../helpers/machine-lock.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, type TestUser } from '../../helpers/unix-user.js';
import type { StalledMount } from '../hostile-fs.js';
import { buildPassthrough, mountClaiming } from '../process/fuse-user.js';
import { BANNED, BANNED_UNSCOPED, makeRig, policyBody, warnedAt } from './harness.js';
import { manifest, npmRoot, shAs } from './stall-attack.js';

const dir = tempDir('tgfo-');
chmodSync(dir, 0o755);
const mounts: StalledMount[] = [];
afterAll(async () => {
  for (const m of mounts) await m.release();
});

/**
 * `user`'s FUSE mount at `mnt` (made as theirs) serving a package.json naming `name`, whose daemon
 * says every file is owned by `claim`.
 */
async function claimingMount(user: TestUser, bin: string, mnt: string, name: string, claim: number) {
  const src = join(user.home, `fuse-src-${claim}`);
  shAs(user, `mkdir -p '${mnt}' '${src}' && printf '%s' '${manifest(name)}' > '${src}/package.json'`);
  mounts.push(await mountClaiming(user, bin, src, mnt, { uid: claim }));
  // The daemon's word is what root's stat sees.
  expect(lstatSync(mnt).uid).toBe(claim);
  expect(lstatSync(join(mnt, 'package.json')).uid).toBe(claim);
}

it(
  "a banned package on a user's FUSE mount whose daemon names root, or an excepted user, as its owner is the mount user's",
  async () => {
    const user = createTestUser('tgfo');
    const excepted = createTestUser('tgfo');
    const root = npmRoot(user);
    const bin = buildPassthrough(dir);
    const asRoot = join(root, BANNED_UNSCOPED);
    const asExcepted = join(root, BANNED);
    shAs(user, `mkdir -p '${join(root, BANNED.split('/')[0] as string)}'`);
    await claimingMount(user, bin, asRoot, BANNED_UNSCOPED, 0);
    await claimingMount(user, bin, asExcepted, BANNED, excepted.uid);
    const rig = await makeRig({ dir: join(dir, 'rig'), homes: [user.home], action: 'warn', start: false });
    try {
      rig.matcher = compileMatcher(
        {
          ...policyBody('warn'),
          exceptions: [{ rule: 'claude-code', users: [excepted.name], expires_at: '2099-01-01T00:00:00Z' }],
        },
        { platform: 'linux', homes: [user.home] },
      );
      rig.sensor.setMatcher(rig.matcher);
      await rig.sensor.start();
      for (const path of [asRoot, asExcepted]) {
        const ev = await warnedAt(rig, path, `the banned package at ${path} reported`);
        expect(ev).toMatchObject({ uid: user.uid, user: user.name });
      }
      // Told to the mount's user, not to root or the excepted user.
      const told = rig.notifier.calls.map((c) => c.target.uid);
      expect(told.length).toBeGreaterThanOrEqual(2);
      expect(new Set(told)).toEqual(new Set([user.uid]));
    } finally {
      for (const m of mounts) await m.release();
      await rig.close();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a banned package whose FUSE mount the user lazily unmounts while guardd reads it is still the mount user’s, not the owner its daemon named',
  async () => {
    const user = createTestUser('tgfo');
    const root = npmRoot(user);
    const bin = buildPassthrough(dir);
    const path = join(root, BANNED_UNSCOPED);
    const src = join(user.home, 'fuse-src-detach');
    // The mount point is the user's empty directory: what the path shows once the mount is gone.
    shAs(
      user,
      `mkdir -p '${path}' '${src}' && printf '%s' '${manifest(BANNED_UNSCOPED)}' > '${src}/package.json'`,
    );
    // The daemon names root as every file's owner, and at the second open of package.json (the
    // sensor's look once the package settled) runs `fusermount3 -u -z` before answering: the
    // sensor's stat was answered on the mount, its table read comes after the mount left it.
    const mount = await mountClaiming(user, bin, src, path, { uid: 0 }, { detachAtOpen: 2 });
    mounts.push(mount);
    expect(lstatSync(path).uid).toBe(0);
    const rig = await makeRig({ dir: join(dir, 'rig-detach'), homes: [user.home], action: 'warn' });
    try {
      const ev = await warnedAt(rig, path, `the banned package at ${path} reported`);
      // The trick was played: the mount is gone from the table.
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${path} `);
      expect(ev).toMatchObject({ uid: user.uid, user: user.name });
      expect(new Set(rig.notifier.calls.map((c) => c.target.uid))).toEqual(new Set([user.uid]));
    } finally {
      await mount.release();
      await rig.close();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);
