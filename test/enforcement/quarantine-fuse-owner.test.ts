/**
 * Who acts on a path on a user's own FUSE mount (owner-fs `actorFor`, issue 13): the mount's user
 * and group (mountinfo `user_id=`, `group_id=`), not the owner its daemon answers to stat. A daemon
 * that names root as the owner of everything made root act (a child with root's credentials) in a
 * tree the user serves; one that names the user with group 0 made the child the user's with
 * root's group — credentials the user does not hold.
 *
 * Real parts: a real user made here, real FUSE mounts of theirs made with `allow_other` (as
 * fusermount3 makes them where /etc/fuse.conf allows), whose daemon
 * (test/sensors/process/fuse-passthrough.c) runs as the user and claims what it is told to.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { actorFor } from '../../src/enforcement/owner-fs.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../helpers/machine-lock.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser } from '../helpers/unix-user.js';
import type { StalledMount } from '../sensors/hostile-fs.js';
import { buildPassthrough, mountClaiming } from '../sensors/process/fuse-user.js';

const base = tempDir('tgqf-');
chmodSync(base, 0o755);
const mounts: StalledMount[] = [];
afterAll(async () => {
  for (const m of mounts) await m.release();
});

it(
  "a path on a user's FUSE mount whose daemon claims root, or the user with group 0, is acted on as the mount's user and group",
  async () => {
    const user = createTestUser('tgqf');
    const bin = buildPassthrough(base);
    const src = join(base, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'package.json'), '{"name":"banned-tool"}');
    chownSync(src, user.uid, user.gid);
    chownSync(join(src, 'package.json'), user.uid, user.gid);
    // A root-owned tree (a system prefix, a glob base out of every home) with one directory the
    // admin gave the user: the only place on the path the user controls is their mount.
    const shared = join(base, 'opt');
    const theirs = join(shared, 'tools');
    mkdirSync(theirs, { recursive: true, mode: 0o755 });
    chownSync(theirs, user.uid, user.gid);
    mounts.push(await mountClaiming(user, bin, src, theirs, { uid: 0 }));
    expect(lstatSync(theirs).uid).toBe(0);
    expect(await actorFor(theirs, 'package.json')).toEqual({ uid: user.uid, gid: user.gid });
    // In their home: they own the dirs above, and their daemon gives their files group 0.
    const inHome = join(user.home, 'mnt');
    mkdirSync(inHome);
    chownSync(inHome, user.uid, user.gid);
    mounts.push(await mountClaiming(user, bin, src, inHome, { uid: user.uid, gid: 0 }));
    expect(lstatSync(join(inHome, 'package.json')).gid).toBe(0);
    expect(await actorFor(inHome, 'package.json')).toEqual({ uid: user.uid, gid: user.gid });
    for (const m of mounts.splice(0)) await m.release();
  },
  LOCKED_TEST_TIMEOUT_MS,
);
