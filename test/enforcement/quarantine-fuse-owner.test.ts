/**
 * Who acts on a path on a user's own FUSE mount (owner-fs `actorFor`, issue 13): the mount's user
 * and group (mountinfo `user_id=`, `group_id=`), not the owner its daemon answers to stat. A daemon
 * that names root as the owner of everything made root act (a child with root's credentials) in a
 * tree the user serves; one that names the user with group 0 made the child the user's with
 * root's group — credentials the user does not hold.
 *
 *
 * The mount is found by its id, from the mount table read after the walk saw the step: a mount made
 * while the walk runs (after the table was read, when it was read first) counts as the user's, and
 * one lazily unmounted after the step was seen — listed no more — is refused.
 *
 * Real parts: a real user made here, real FUSE mounts of theirs made with `allow_other` (as
 * fusermount3 makes them where /etc/fuse.conf allows), whose daemon
 * (test/sensors/process/fuse-passthrough.c) runs as the user and claims what it is told to.
 */
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { actorFor } from '../../src/enforcement/owner-fs.js';
import { mountsKnown } from '../../src/sensors/file-id.js';
import { installReadGate } from '../../src/sensors/package-reader.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../helpers/machine-lock.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';
import type { StalledMount } from '../sensors/hostile-fs.js';
import { buildPassthrough, mountClaiming } from '../sensors/process/fuse-user.js';

const base = tempDir('tgqf-');
chmodSync(base, 0o755);
const mounts: StalledMount[] = [];
afterAll(async () => {
  for (const m of mounts) await m.release();
});

/** Descriptors of this process opened O_PATH (actorFor's looks) and still open. */
function openPathFds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the listing's own descriptor, closed since
    }
    const flags = /^flags:\s+([0-7]+)/m.exec(info)?.[1];
    if (flags !== undefined && (Number.parseInt(flags, 8) & 0o10000000) !== 0) n++;
  }
  return n;
}

/** A package `src` of `user`'s, and a directory of theirs in a root-owned tree to mount it on. */
function userMountPoint(user: TestUser, name: string): { src: string; mnt: string } {
  const src = join(base, `${name}-src`);
  mkdirSync(src);
  writeFileSync(join(src, 'package.json'), '{"name":"banned-tool"}');
  chownSync(src, user.uid, user.gid);
  chownSync(join(src, 'package.json'), user.uid, user.gid);
  const mnt = join(base, name, 'tools');
  mkdirSync(mnt, { recursive: true, mode: 0o755 });
  chownSync(mnt, user.uid, user.gid);
  return { src, mnt };
}

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

it(
  "a user's FUSE mount claiming root, made while actorFor's walk waits for its first look, is the user's",
  async () => {
    const user = createTestUser('tgqf');
    const bin = buildPassthrough(base);
    const { src, mnt } = userMountPoint(user, 'late');
    const m = await mountClaiming(user, bin, src, mnt, { uid: 0 }, { onSignal: true });
    mounts.push(m);
    // The walk's looks wait in the gate's line while the key's one slot is held: the mount is made
    // then, after anything actorFor read before its first look.
    const key = `tgqf-late-${user.uid}`;
    let free = (): void => undefined;
    const held = installReadGate.run(key, 60_000, () => new Promise<void>((r) => (free = r)));
    const acting = actorFor(mnt, 'package.json', key);
    acting.catch(() => undefined); // awaited below; a failure before then is the test's
    try {
      await waitFor(() => installReadGate.queued === 1, 'the walk waiting for its first look');
      await m.mount();
    } finally {
      free();
    }
    await held;
    expect(await acting).toEqual({ uid: user.uid, gid: user.gid });
    expect(openPathFds()).toBe(0);
    expect(lstatSync(mnt).uid).toBe(0);
    for (const x of mounts.splice(0)) await x.release();
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  "a step on a user's FUSE mount lazily unmounted as the step's stat is answered is refused",
  async () => {
    const user = createTestUser('tgqf');
    const bin = buildPassthrough(base);
    const { src, mnt } = userMountPoint(user, 'gone');
    // Mount ids come from native/fileid (without it a step's mount is found by its device).
    expect(mountsKnown).toBe(true);
    // The first getattr asks for the mount's root: the walk's own look at `mnt`.
    const m = await mountClaiming(user, bin, src, mnt, { uid: 0 }, { detachAtGetattr: 1 });
    mounts.push(m);
    await expect(actorFor(mnt, 'package.json')).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_UNSAFE_PATH',
      message: expect.stringContaining('does not list'),
    });
    expect(m.output()).toContain('detached');
    expect(openPathFds()).toBe(0);
    for (const x of mounts.splice(0)) await x.release();
  },
  LOCKED_TEST_TIMEOUT_MS,
);
