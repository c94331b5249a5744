/**
 * Attaches a file to a free loop device from a descriptor opened on `path`, with LOOP_SET_FD, as
 * udisks does for a user (losetup would open the path it then shows): `path` is typically
 * `/proc/<pid>/fd/N` of a user's process holding their file open, so the kernel names the backing
 * file by the path it had where that process opened it. Root only (the test runs as root).
 * Returns `/dev/loopN`; the caller detaches it (`losetup -d`).
 */
import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';

export function attachLoopFromFd(path: string, mode: 'rw' | 'ro'): string {
  const flag = mode === 'rw' ? 'os.O_RDWR' : 'os.O_RDONLY';
  const r = spawnSync(
    'python3',
    [
      '-c',
      `import fcntl, os, sys
n = fcntl.ioctl(os.open('/dev/loop-control', os.O_RDWR), 0x4C82)  # LOOP_CTL_GET_FREE
back = os.open(sys.argv[1], ${flag})
fcntl.ioctl(os.open('/dev/loop%d' % n, ${flag}), 0x4C00, back)  # LOOP_SET_FD
print('/dev/loop%d' % n)`,
      path,
    ],
    { encoding: 'utf8' },
  );
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim();
}
