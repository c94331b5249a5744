/**
 * A loop-mounted ext4 whose timestamps are whole seconds (128-byte inodes leave no room for
 * nanoseconds), for the pre-exec tests of what a file's owner can do within one timestamp tick.
 * Mounted by root at `<dir>/coarse`, 0755, with a `home` directory owned by the test user; the
 * image is `<dir>/coarse.img`. `unmount()` (from the test file's top-level afterAll: one
 * registered in a hook would never run) unmounts it — its loop device goes too, `mount -o loop`
 * sets autoclear — and removes the image; safe before the mount and twice. Needs mkfs.ext4
 * (Debian e2fsprogs).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { TestUser } from './unix-user.js';

export interface CoarseExt4 {
  /** The mount point (what guardd marks). */
  readonly mount: string;
  /** `<mount>/home`, the user's directory on it. */
  readonly home: string;
}

/** The image and mount point under `dir`: `mount` makes and mounts it, `unmount` removes both. */
export function coarseExt4(dir: string): {
  mount(user: TestUser, sizeMiB: number): CoarseExt4;
  unmount(): void;
} {
  const image = join(dir, 'coarse.img');
  const mount = join(dir, 'coarse');
  let mounted = false;
  return {
    mount(user, sizeMiB) {
      writeFileSync(image, '');
      const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-I', '128', image, `${sizeMiB}M`], {
        encoding: 'utf8',
      });
      expect(mk.status, mk.stderr).toBe(0);
      mkdirSync(mount);
      const m = spawnSync('mount', ['-o', 'loop', image, mount], { encoding: 'utf8' });
      expect(m.status, m.stderr).toBe(0);
      mounted = true;
      chmodSync(mount, 0o755);
      const home = join(mount, 'home');
      mkdirSync(home, { mode: 0o755 });
      chownSync(home, user.uid, user.gid);
      return { mount, home };
    },
    unmount() {
      if (mounted) spawnSync('umount', [mount]);
      mounted = false;
      rmSync(image, { force: true });
    },
  };
}
