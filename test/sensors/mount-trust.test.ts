/**
 * Whether what is read of a file may be cached, by the mount it was read through
 * (src/sensors/mount-trust.ts), on real mounts as root: ext4 images on real loop devices whose
 * backing file is root's alone, the user's, or root's in a directory the user may write; and on a
 * mount table and /sys tree of the test's own for what a test cannot make here (a user's FUSE
 * mount, a device-mapper device over a user's image). The identities come from native/fileid
 * (src/sensors/file-id.ts), compared with fstat.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountsKnown, readIdentity } from '../../src/sensors/file-id.js';
import { cacheableMount } from '../../src/sensors/mount-trust.js';
import { attachLoopFromFd } from '../helpers/loop-fd.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, holdInUserNamespace, spawnAs, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgmt-');
const mounted: string[] = [];
let user: TestUser;

/** Loop devices attached by losetup (not autoclear), and the user's processes holding an image. */
const attached: string[] = [];
const running: ChildProcess[] = [];

afterAll(() => {
  // `mount -o loop` sets autoclear: the loop device goes with the mount
  for (const m of mounted.reverse()) {
    // lazily if still busy (an image inside one: its loop device is let go after its umount)
    if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
  }
  for (const d of attached) spawnSync('losetup', ['-d', d]);
  for (const c of running) c.kill('SIGKILL');
  // deeper than a path may name: rm walks it by descriptors (rmSync fails with ENAMETOOLONG)
  spawnSync('rm', ['-rf', join(dir, 'deep')]);
});

/** An ext4 image at `image` (owned by `owner`, mode 0600), mounted on a loop device at `at`. */
function mountImage(image: string, at: string, owner: TestUser | null): void {
  writeFileSync(image, '');
  expect(spawnSync('mkfs.ext4', ['-q', '-F', image, '8M']).status).toBe(0);
  chmodSync(image, 0o600);
  if (owner) chownSync(image, owner.uid, owner.gid);
  mkdirSync(at, { recursive: true });
  const m = spawnSync('mount', ['-o', 'loop', image, at], { encoding: 'utf8' });
  expect(m.status, m.stderr).toBe(0);
  mounted.push(at);
  writeFileSync(join(at, 'f'), 'x');
}

/** The source of the mount at `at` (its loop device), from mountinfo. */
function mountSource(at: string): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === at);
  const f = line?.split(' ') ?? [];
  return f[f.indexOf('-') + 2] ?? '';
}

/** A file on no device (-1) known through no unique mount id (0): judged by the mount id alone. */
const NO_FILE = { dev: -1, mount: 0 };

/** cacheableMount for the file at `path`, asked while it is open (as the caches ask). */
async function cacheable(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const r = await readIdentity(fh);
    return await cacheableMount(r.identity, r.mountId);
  } finally {
    await fh.close();
  }
}

describe('the identity of an open file (native/fileid)', () => {
  it('is what fstat says, with the unique id of its mount', async () => {
    expect(mountsKnown).toBe(true);
    const path = join(dir, 'id');
    writeFileSync(path, 'abc');
    const fd = openSync(path, 'r');
    const st = fstatSync(fd);
    closeSync(fd);
    const fh = await open(path, 'r');
    const r = await readIdentity(fh);
    await fh.close();
    expect(r.identity).toMatchObject({
      dev: st.dev,
      ino: st.ino,
      size: 3,
      mtimeMs: st.mtimeMs,
      ctimeMs: st.ctimeMs,
    });
    expect(r).toMatchObject({ isFile: true, mode: st.mode, uid: st.uid, gid: st.gid });
    expect(r.mountId).toBeGreaterThan(0);
    // Linux 6.8+ (STATX_MNT_ID_UNIQUE): never the reusable id, which is small
    expect(r.identity.mount).toBeGreaterThan(2 ** 31 - 1);
  });

  it('rejects a closed descriptor with its code', async () => {
    const fh = await open(join(dir, 'id'), 'r');
    await fh.close();
    // fh.fd is -1 once closed: the addon refuses it as an argument
    await expect(readIdentity(fh)).rejects.toMatchObject({ code: 'GUARD_FILEID_ARGS' });
  });
});

describe('which mounts may be cached (real loop devices, as root)', () => {
  beforeAll(() => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgmt');
    chmodSync(dir, 0o755);
  });

  it("caches the machine's own file systems", async () => {
    expect(await cacheable('/bin/sh')).toBe(true);
    expect(await cacheable(join(dir, 'id'))).toBe(true);
  });

  it("caches an image root's alone, in a directory only root may change", async () => {
    const images = join(dir, 'root-images');
    mkdirSync(images, { mode: 0o755 });
    mountImage(join(images, 'root.img'), join(dir, 'm-root'), null);
    expect(await cacheable(join(dir, 'm-root', 'f'))).toBe(true);
  });

  it("never caches a user's image: they can write its blocks under the file system", async () => {
    const theirs = join(dir, 'user-images');
    mkdirSync(theirs, { mode: 0o755 });
    chownSync(theirs, user.uid, user.gid);
    mountImage(join(theirs, 'user.img'), join(dir, 'm-user'), user);
    expect(await cacheable(join(dir, 'm-user', 'f'))).toBe(false);
  });

  it("never caches root's image in a directory the user may write (they may put their own at its name)", async () => {
    const shared = join(dir, 'shared-images');
    mkdirSync(shared, { mode: 0o777 });
    chmodSync(shared, 0o777);
    mountImage(join(shared, 'root.img'), join(dir, 'm-shared'), null);
    expect(await cacheable(join(dir, 'm-shared', 'f'))).toBe(false);
  });

  it("never caches root's-looking image inside a user's image: its owner and mode are what the user wrote", async () => {
    const theirs = join(dir, 'outer-images');
    mkdirSync(theirs, { mode: 0o755 });
    chownSync(theirs, user.uid, user.gid);
    const outer = join(dir, 'm-outer');
    mountImage(join(theirs, 'outer.img'), outer, user);
    // a root-owned directory and image, as the user can write them into their own image offline
    mkdirSync(join(outer, 'd'), { mode: 0o755 });
    mountImage(join(outer, 'd', 'inner.img'), join(dir, 'm-inner'), null);
    expect(await cacheable(join(dir, 'm-inner', 'f'))).toBe(false);
  });

  it("never caches a user's image the kernel names by a root file's path (in their own mount namespace)", async () => {
    // The user's image, copied into a tmpfs they mounted over /etc in a namespace of theirs and
    // held open there; root attaches the open file (as udisks attaches the descriptor a user
    // hands it) and mounts it for them. The kernel names a backing file by its path in its own
    // namespace: /etc/passwd, which here is root's alone.
    const named = '/etc/passwd';
    const real = lstatSync(named);
    expect(real.uid === 0 && real.isFile() && real.nlink === 1 && (real.mode & 0o022) === 0).toBe(true);
    const img = join(dir, 'ns-user.img');
    writeFileSync(img, '');
    expect(spawnSync('mkfs.ext4', ['-q', '-F', img, '8M']).status).toBe(0);
    chmodSync(img, 0o600);
    chownSync(img, user.uid, user.gid);
    const holder = await holdInUserNamespace(
      user,
      `mount -t tmpfs t /etc && cat "$IMG" > ${named} && exec 3<${named} && echo ready && exec sleep 120`,
      "the user's image held open in their namespace",
      { IMG: img },
    );
    running.push(holder);
    // LOOP_SET_FD with the descriptor itself, as udisks does (losetup would open the path it reads)
    const loop = attachLoopFromFd(`/proc/${holder.pid}/fd/3`, 'rw');
    attached.push(loop);
    expect(readFileSync(`/sys/block/${basename(loop)}/loop/backing_file`, 'utf8').trim()).toBe(named);
    const at = join(dir, 'm-ns');
    mkdirSync(at);
    const m = spawnSync('mount', ['-o', 'nosuid,nodev', loop, at], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    mounted.push(at);
    writeFileSync(join(at, 'f'), 'x');
    expect(await cacheable(join(at, 'f'))).toBe(false);
  });

  it("never opens a backing file by a path through a directory of the user's (they may turn it elsewhere between root's checks and its open)", async () => {
    // Root's image, root's alone, in root's directories: <R>/a/sub/root.img. In a namespace of
    // theirs the user binds <R> over a directory of their own (<U>/link) and holds the image
    // open there; root attaches it (as udisks does) and the kernel names it <U>/link/a/sub/root.img.
    // In guardd's namespace <U>/link is the user's directory, and <U>/link/a their link to
    // <R>/a: every check of the file and of its directory passes through it, and a moment
    // later the same path can name whatever the user points it at (a device node, a FIFO, a
    // file on their FUSE mount), which root would open.
    const R = join(dir, 'linked-root');
    mkdirSync(join(R, 'a', 'sub'), { recursive: true, mode: 0o755 });
    const img = join(R, 'a', 'sub', 'root.img');
    writeFileSync(img, '');
    expect(spawnSync('mkfs.ext4', ['-q', '-F', img, '8M']).status).toBe(0);
    chmodSync(img, 0o644);
    const U = join(dir, 'linked-user');
    mkdirSync(join(U, 'link'), { recursive: true });
    chownSync(U, user.uid, user.gid);
    chownSync(join(U, 'link'), user.uid, user.gid);
    const holder = await holdInUserNamespace(
      user,
      'mount --bind "$R" "$U/link" && exec 3<"$U/link/a/sub/root.img" && echo ready && exec sleep 120',
      "root's image held open through the user's bind",
      { R, U, PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
    );
    running.push(holder);
    const loop = attachLoopFromFd(`/proc/${holder.pid}/fd/3`, 'ro');
    attached.push(loop);
    const named = join(U, 'link', 'a', 'sub', 'root.img');
    expect(readFileSync(`/sys/block/${basename(loop)}/loop/backing_file`, 'utf8').trim()).toBe(named);
    // the user's link, in guardd's namespace, to where the file really is
    expect(spawnAs(user, 'ln', ['-s', join(R, 'a'), join(U, 'link', 'a')]).pid).toBeGreaterThan(0);
    await waitFor(() => lstatSync(join(U, 'link', 'a'), { throwIfNoEntry: false }) !== undefined, 'the link');
    const at = join(dir, 'm-linked');
    mkdirSync(at);
    const m = spawnSync('mount', ['-o', 'ro,nosuid,nodev', loop, at], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    mounted.push(at);
    expect(await cacheable(join(at, 'lost+found'))).toBe(false);
  });

  it("caches a file through a user namespace's copy of a mount guardd has; never one on a file system mounted only there", async () => {
    const holder = await holdInUserNamespace(
      user,
      'mount -t tmpfs t /mnt && echo x > /mnt/f && exec 3</mnt/f 4</usr/bin/env && echo ready && exec sleep 120',
      'files held open in the user namespace',
    );
    running.push(holder);
    // the namespace's own copy of /usr's mount (not in guardd's table): judged by its file system
    expect(await cacheable(`/proc/${holder.pid}/fd/4`)).toBe(true);
    // their tmpfs, mounted only there
    expect(await cacheable(`/proc/${holder.pid}/fd/3`)).toBe(false);
  });

  it("caches a file on btrfs through a user namespace's copy of guardd's mount of its subvolume", async () => {
    // btrfs gives every subvolume's files a device of their own, not the one mountinfo shows
    // (the file system's): a mount of another namespace, found by the file's device, was never
    // found — on a btrfs root (Fedora's, openSUSE's) every exec in a private mount namespace (a
    // service's, a container's, a user's unshare -Urm) was decided and hashed afresh
    const images = join(dir, 'btrfs-images');
    mkdirSync(images, { mode: 0o755 });
    const img = join(images, 'root.img');
    writeFileSync(img, '');
    spawnSync('truncate', ['-s', '128M', img]);
    chmodSync(img, 0o600);
    const mk = spawnSync('mkfs.btrfs', ['-q', img], { encoding: 'utf8' });
    expect(mk.status, mk.stderr).toBe(0);
    const top = join(dir, 'm-btrfs-top');
    mkdirSync(top);
    expect(spawnSync('mount', ['-o', 'loop', img, top]).status).toBe(0);
    mounted.push(top);
    expect(spawnSync('btrfs', ['subvolume', 'create', join(top, '@')]).status).toBe(0);
    writeFileSync(join(top, '@', 'f'), 'x');
    chmodSync(join(top, '@', 'f'), 0o644);
    const at = join(dir, 'm-btrfs');
    mkdirSync(at);
    // the subvolume on its own, as a distribution mounts @ on /
    const m = spawnSync('mount', ['-o', 'subvol=@,nosuid,nodev', mountSource(top), at], {
      encoding: 'utf8',
    });
    expect(m.status, m.stderr).toBe(0);
    mounted.push(at);
    expect(await cacheable(join(at, 'f'))).toBe(true);
    const holder = await holdInUserNamespace(
      user,
      'exec 3<"$F" && echo ready && exec sleep 120',
      'the file held open in the user namespace',
      { F: join(at, 'f') },
    );
    running.push(holder);
    expect(await cacheable(`/proc/${holder.pid}/fd/3`)).toBe(true);
  });

  it("never caches root's image on a loop device whose node the user owns (with or without /dev/block)", async () => {
    const images = join(dir, 'node-images');
    mkdirSync(images, { mode: 0o755 });
    const at = join(dir, 'm-node');
    mountImage(join(images, 'root.img'), at, null);
    const loop = mountSource(at);
    const was = lstatSync(loop);
    // the user may write the blocks under the file system through the node (judged at the first
    // look at this mount: nothing was asked of it before)
    chownSync(loop, user.uid, was.gid);
    try {
      expect(await cacheable(join(at, 'f'))).toBe(false);
    } finally {
      chownSync(loop, was.uid, was.gid);
    }
  });

  it("never caches a user's image whose path is too long for /sys to name (backing_file: ENAMETOOLONG)", async () => {
    // The user's image at a path longer than a page (directories made one at a time, relative to
    // the last); they hand its descriptor to udisks (here: LOOP_SET_FD on it, as root). The
    // kernel cannot write the path into backing_file: reading it fails, as for a device that is
    // no loop device at all.
    const deep = join(dir, 'deep');
    mkdirSync(deep, { mode: 0o755 });
    chownSync(deep, user.uid, user.gid);
    const made = spawnSync(
      'python3',
      [
        '-c',
        `import fcntl, os, sys
d = os.open(sys.argv[1], os.O_RDONLY)
for i in range(20):
    os.mkdir('d' * 250, dir_fd=d)
    n = os.open('d' * 250, os.O_RDONLY, dir_fd=d); os.close(d); d = n
f = os.open('user.img', os.O_RDWR | os.O_CREAT, 0o600, dir_fd=d)
os.ftruncate(f, 8 << 20)
os.fchown(f, int(sys.argv[2]), int(sys.argv[3]))
n = fcntl.ioctl(os.open('/dev/loop-control', os.O_RDWR), 0x4C82)  # LOOP_CTL_GET_FREE
fcntl.ioctl(os.open('/dev/loop%d' % n, os.O_RDWR), 0x4C00, f)  # LOOP_SET_FD
print('/dev/loop%d' % n)`,
        deep,
        String(user.uid),
        String(user.gid),
      ],
      { encoding: 'utf8' },
    );
    expect(made.status, made.stderr).toBe(0);
    const loop = made.stdout.trim();
    attached.push(loop);
    let unreadable = '';
    try {
      readFileSync(`/sys/block/${basename(loop)}/loop/backing_file`);
    } catch (err) {
      unreadable = (err as NodeJS.ErrnoException).code ?? '';
    }
    expect(unreadable).toBe('ENAMETOOLONG');
    expect(spawnSync('mkfs.ext4', ['-q', '-F', loop]).status).toBe(0);
    const at = join(dir, 'm-deep');
    mkdirSync(at);
    const m = spawnSync('mount', ['-o', 'nosuid,nodev', loop, at], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    mounted.push(at);
    writeFileSync(join(at, 'f'), 'x');
    expect(await cacheable(join(at, 'f'))).toBe(false);
  });

  it('never caches a mount it cannot find in its mount table', async () => {
    expect(await cacheableMount(NO_FILE, 2 ** 30)).toBe(false);
    expect(await cacheableMount(NO_FILE, -1)).toBe(false);
  });
});

describe('which mounts may be cached (a mount table and /sys of the test)', () => {
  const root = join(dir, 'fake');
  const paths = {
    mountinfo: join(root, 'mountinfo'),
    sysDevBlock: join(root, 'sys-dev-block'),
    sysClassBlock: join(root, 'sys-class-block'),
    devBlock: join(root, 'dev-block'),
  };
  beforeAll(() => {
    mkdirSync(paths.sysDevBlock, { recursive: true });
    mkdirSync(paths.sysClassBlock, { recursive: true });
    mkdirSync(paths.devBlock, { recursive: true });
    writeFileSync(
      paths.mountinfo,
      [
        '40 22 0:50 / /home/u/sshfs rw - fuse.sshfs u@h:/ rw,user_id=1000,group_id=1000',
        '41 22 0:51 / /mnt/rootfuse rw - fuse.sshfs r@h:/ rw,user_id=0,group_id=0',
        '42 22 253:0 / /media/u/crypt rw - ext4 /dev/mapper/c rw',
        '43 22 0:52 / /tmp/t rw - tmpfs tmpfs rw',
        '44 22 253:1 / /data rw - ext4 /dev/mapper/d rw',
        '45 22 7:9 / /media/u/img rw - ext4 /dev/loop9 rw',
        '46 22 259:1 / / rw - ext4 /dev/nvme0n1p2 rw',
        '47 22 259:9 / /media/u/part rw - ext4 /dev/loop0p1 rw',
        '48 22 253:2 / /home rw - ext4 /dev/mapper/home rw',
        '49 22 0:60 / /media/u/b rw - btrfs /dev/loop-gone rw,subvolid=5,subvol=/',
      ].join('\n'),
    );
    // dm-0 over loop0 (the user's image), dm-1 over a disk
    const loop0 = join(paths.sysDevBlock, '7:0');
    mkdirSync(join(loop0, 'loop'), { recursive: true });
    writeFileSync(join(loop0, 'loop', 'backing_file'), '/home/u/disk.img\n');
    const dm0 = join(paths.sysDevBlock, '253:0');
    mkdirSync(join(dm0, 'slaves', 'loop0'), { recursive: true });
    mkdirSync(join(paths.sysClassBlock, 'loop0'), { recursive: true });
    writeFileSync(join(paths.sysClassBlock, 'loop0', 'dev'), '7:0\n');
    const dm1 = join(paths.sysDevBlock, '253:1');
    mkdirSync(join(dm1, 'slaves', 'vdb'), { recursive: true });
    mkdirSync(join(paths.sysClassBlock, 'vdb'), { recursive: true });
    writeFileSync(join(paths.sysClassBlock, 'vdb', 'dev'), '254:16\n');
    mkdirSync(join(paths.sysDevBlock, '254:16'));
    // partitions, linked into the devices tree as /sys does: nvme0n1p2 of a disk, loop0p1 of the
    // user's image; and dm-2 (dm-crypt, LVM) over the disk's partition, as on most laptops
    const devices = join(root, 'devices');
    mkdirSync(join(devices, 'nvme0n1', 'nvme0n1p2'), { recursive: true });
    writeFileSync(join(devices, 'nvme0n1', 'dev'), '259:0\n');
    writeFileSync(join(devices, 'nvme0n1', 'nvme0n1p2', 'partition'), '2\n');
    mkdirSync(join(paths.sysDevBlock, '259:0'));
    symlinkSync(join(devices, 'nvme0n1', 'nvme0n1p2'), join(paths.sysDevBlock, '259:1'));
    mkdirSync(join(paths.sysClassBlock, 'nvme0n1p2'), { recursive: true });
    writeFileSync(join(paths.sysClassBlock, 'nvme0n1p2', 'dev'), '259:1\n');
    mkdirSync(join(paths.sysDevBlock, '253:2', 'slaves', 'nvme0n1p2'), { recursive: true });
    mkdirSync(join(devices, 'loop0', 'loop0p1'), { recursive: true });
    writeFileSync(join(devices, 'loop0', 'dev'), '7:0\n');
    writeFileSync(join(devices, 'loop0', 'loop0p1', 'partition'), '1\n');
    symlinkSync(join(devices, 'loop0', 'loop0p1'), join(paths.sysDevBlock, '259:9'));
  });

  it("never caches a user's FUSE mount; caches root's", async () => {
    expect(await cacheableMount(NO_FILE, 40, paths)).toBe(false);
    expect(await cacheableMount(NO_FILE, 41, paths)).toBe(true);
  });

  it("never caches a device-mapper device over a user's image; caches one over a disk", async () => {
    expect(await cacheableMount(NO_FILE, 42, paths)).toBe(false);
    expect(await cacheableMount(NO_FILE, 44, paths)).toBe(true);
  });

  it("never caches a block device /sys does not show: a loop device over a user's image looks so without sysfs", async () => {
    expect(await cacheableMount(NO_FILE, 45, paths)).toBe(false);
  });

  it("caches a disk's partition and a device-mapper device over it (NVMe, dm-crypt, LVM); never a partition of a user's image", async () => {
    expect(await cacheableMount(NO_FILE, 46, paths)).toBe(true);
    expect(await cacheableMount(NO_FILE, 48, paths)).toBe(true);
    expect(await cacheableMount(NO_FILE, 47, paths)).toBe(false);
  });

  it('never caches btrfs whose source names no device (the path it was given at mount)', async () => {
    expect(await cacheableMount(NO_FILE, 49, paths)).toBe(false);
  });

  it('caches tmpfs', async () => {
    expect(await cacheableMount(NO_FILE, 43, paths)).toBe(true);
  });

  it('never caches a block device whose node a user may write', async () => {
    writeFileSync(join(paths.devBlock, '254:16'), '');
    chmodSync(join(paths.devBlock, '254:16'), 0o666);
    expect(await cacheableMount(NO_FILE, 44, paths)).toBe(false);
  });
});
