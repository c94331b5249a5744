/**
 * Owns whether what was read of a file may be cached under its identity (file-facts.ts), judged by
 * the mount the file was read through: only where no user can change the file's bytes without the
 * kernel's file system seeing a write, which moves its ctime. Not so, and never cached:
 *   - a FUSE mount made by a user (`user_id=` not 0): its daemon answers every read and stat;
 *   - a file system on a loop device whose backing file is not root's alone (a regular file, owner
 *     root, no write bit for group or others, one link, not deleted, in a directory only root may
 *     change, on a file system itself trusted here, and the very file the loop device reads): an
 *     image of the user's, mounted for them through udisks, or one inside an image of theirs
 *     (whose every owner and mode they wrote), or one the kernel names by a path in a mount
 *     namespace of theirs. Found in review: the user wrote a cached program's blocks
 *     into the image (while mounted, then dropped the file's pages with posix_fadvise; or unmounted
 *     and mounted again) and the banned bytes ran under the same device, inode, size, mtime and
 *     ctime;
 *   - a block device whose node a user may write (owner not root, or writable by others), and a
 *     partition, device-mapper or md device with any such device under it (its disk, its slaves);
 *   - a block device /sys does not show (without sysfs, a user's loop device looks like a disk);
 *   - a file system guardd cannot find in its own mount table, by the mount's id or, for a mount of
 *     another namespace, by the file's device (one mounted only in a user's namespace, or gone).
 * Everything else is cached: local disks, tmpfs, overlay, network file systems (their server's
 * word, as for every NFS client), root's FUSE mounts, root's images (snaps).
 *
 * Each identity also carries its mount's unique id (file-id.ts; Linux 6.8+), so what was cached of
 * a file system is never looked up for another one that got the same device number, nor for the
 * same one mounted again after a user rewrote it offline. The unique id is never reused while the
 * machine runs, so the verdict is remembered by it and the file's device (at most MEMO_MAX). Before Linux 6.8
 * (mount 0) the table is read at every verdict, and a file system mounted again, or another one
 * given the same device number, may still be answered from what was cached of the one before.
 *
 * The caller holds the file open while it asks, so `mountId` (the table's own number, reused only
 * after an unmount) still names the very mount the file was read through.
 */
import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { lstat, open, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type MountEntry, major, minor, parseMountinfo } from '../common/mountinfo.js';
import { loopBacking, mountsKnown, readIdentity } from './file-id.js';

/** Mounts whose verdict is remembered (by unique id); a machine has a few hundred at most. */
const MEMO_MAX = 4096;
/** Devices stacked below one another at most (dm over md over partitions over a loop…). */
const MAX_DEPTH = 8;

/** Verdicts by `<unique mount id>:<file's device>`: a mount of another namespace is judged by the device. */
const memo = new Map<string, boolean>();

/** Where the tables are read from (tests pass their own roots). */
export interface MountTrustPaths {
  readonly mountinfo: string;
  readonly sysDevBlock: string;
  readonly sysClassBlock: string;
  readonly devBlock: string;
}

const SYSTEM: MountTrustPaths = {
  mountinfo: '/proc/self/mountinfo',
  sysDevBlock: '/sys/dev/block',
  sysClassBlock: '/sys/class/block',
  devBlock: '/dev/block',
};

/**
 * Whether what is read of a file (`file`: its device, and its mount's unique id, 0 unknown)
 * through mount `mountId` (the mountinfo id, -1 unknown) may be cached. Without native/fileid
 * (not Linux, not built) identities carry no mount and everything is cached as before.
 */
export async function cacheableMount(
  file: { readonly dev: number; readonly mount: number },
  mountId: number,
  paths = SYSTEM,
): Promise<boolean> {
  const { mount } = file;
  if (!mountsKnown && paths === SYSTEM) return true;
  // A file's device is part of the key: what is found by it (classify) may differ within one
  // mount (overlay gives its layers' files devices of their own).
  const key = `${mount}:${file.dev}`;
  if (mount !== 0) {
    const known = memo.get(key);
    if (known !== undefined) return known;
  }
  let ok: boolean;
  try {
    ok = await classify(mountId, file.dev, paths, 0);
  } catch {
    // not remembered: a read that failed for a while (EMFILE, ENOMEM) must not leave the mount
    // uncached for as long as it stays mounted
    return false;
  }
  if (mount !== 0) {
    if (memo.size >= MEMO_MAX) memo.delete(memo.keys().next().value as string);
    memo.set(key, ok);
  }
  return ok;
}

/**
 * Whether mount `mountId` of a file on device `fileDev` may be cached (`depth`: devices stacked so
 * far). A mount of another mount namespace (a service's private one, a container's, a user's) is
 * not in guardd's table, but its file system is when guardd has it mounted too, found by the
 * file's device: what is judged is the file system (device, type, source, options), the same
 * through every mount of it. Found in review: every exec in a private mount namespace was decided
 * and hashed afresh, so a user's `unshare -Urm` loop had guardd hash a large program at every
 * exec. A file system mounted only there (a user's FUSE or tmpfs in their namespace) is not in
 * the table and never cached; it is never judged by that namespace's own table either, where a
 * user's FUSE mount in their user namespace reads `user_id=0`. (btrfs gives a subvolume's files
 * a device of their own, not the table's: those are found by a mount of guardd's whose root is on
 * the same device, the same subvolume — subvolumeMount.)
 */
async function classify(
  mountId: number,
  fileDev: number,
  paths: MountTrustPaths,
  depth: number,
): Promise<boolean> {
  const table = parseMountinfo(await readFile(paths.mountinfo, 'utf8'));
  const on = fileDev >= 0 ? `${major(fileDev)}:${minor(fileDev)}` : '';
  const m =
    table.find((x) => x.id === mountId) ??
    table.find((x) => x.device === on) ??
    (await subvolumeMount(table, fileDev));
  const dev = /^(\d+):(\d+)$/.exec(m?.device ?? '');
  if (!m || !dev) return false;
  if (m.fstype === 'fuse' || m.fstype.startsWith('fuse.')) return m.superOptions.includes('user_id=0');
  if (dev[1] !== '0') return blockTrusted(Number(dev[1]), Number(dev[2]), paths, depth);
  // Anonymous device numbers: a file system on a block device (btrfs) names it as its source;
  // fuseblk (ntfs-3g) too. The rest (tmpfs, overlay, NFS…) has no device a user could write.
  if (m.source.startsWith('/dev/')) {
    const st = await stat(m.source).catch(() => null);
    if (st?.isBlockDevice()) return blockTrusted(major(st.rdev), minor(st.rdev), paths, depth);
    // btrfs names the device path it was given, which may name no device now: unknown
    if (m.fstype === 'btrfs') return false;
  }
  return m.fstype !== 'fuseblk';
}

/**
 * The btrfs mount of guardd's table whose root shows device `fileDev`: the subvolume the file is
 * in, mounted here too (btrfs gives each subvolume a device of its own while the file system is
 * mounted, and mountinfo shows the file system's). Found in review: on a btrfs root (Fedora's,
 * openSUSE's) a mount of another namespace was never found by the file's device, so every exec in
 * a private mount namespace was decided and hashed afresh. A subvolume guardd has not mounted on
 * its own (one nested in another) is still not found: never cached from another namespace.
 */
async function subvolumeMount(
  table: readonly MountEntry[],
  fileDev: number,
): Promise<MountEntry | undefined> {
  if (fileDev < 0) return undefined;
  for (const x of table) {
    if (x.fstype !== 'btrfs') continue;
    const st = await stat(x.mountPoint).catch(() => null);
    if (st?.dev === fileDev) return x;
  }
  return undefined;
}

/** Whether no user can write block device maj:min, or any device it is built on. */
async function blockTrusted(
  maj: number,
  min: number,
  paths: MountTrustPaths,
  depth: number,
): Promise<boolean> {
  if (depth > MAX_DEPTH) return false;
  const sys = `${paths.sysDevBlock}/${maj}:${min}`;
  // A device /sys does not show (no sysfs here): what it is built on cannot be known.
  if (!(await exists(sys))) return false;
  const node = await blockNode(maj, min, sys, paths);
  if (node && (node.st.uid !== 0 || (node.st.mode & 0o002) !== 0)) return false;
  // A loop device with a file attached has `loop/`, whether or not its backing_file can be read:
  // the kernel cannot write a path longer than a page there (ENAMETOOLONG), and a user may put
  // their image at one (found in review: such an image was taken for no loop device, and cached).
  if (await exists(`${sys}/loop`)) {
    const backing = await readFile(`${sys}/loop/backing_file`, 'utf8').catch(() => null);
    const reads = node ? await loopReads(node.path, maj, min) : null;
    if (backing === null || !reads || !(await rootOnlyFile(backing.replace(/\n$/, ''), reads, paths, depth)))
      return false;
  }
  // A partition: the disk it is on.
  if (await exists(`${sys}/partition`)) {
    const disk = await readFile(`${dirname(await realpath(sys))}/dev`, 'utf8');
    const [a, b] = disk.trim().split(':').map(Number);
    if (a === undefined || b === undefined || !(await blockTrusted(a, b, paths, depth + 1))) return false;
  }
  // device-mapper, md: every device under it.
  for (const name of await readdir(`${sys}/slaves`).catch(absent([] as string[]))) {
    const dev = await readFile(`${paths.sysClassBlock}/${name}/dev`, 'utf8');
    const [a, b] = dev.trim().split(':').map(Number);
    if (a === undefined || b === undefined || !(await blockTrusted(a, b, paths, depth + 1))) return false;
  }
  return true;
}

/**
 * A loop device's backing file is root's alone: only root can write the blocks under the mount.
 * The kernel names it by the path it was opened at, in the mount namespace it was opened in: a
 * user hands udisks a descriptor of a file in a namespace of theirs (a tmpfs over /etc), and its
 * path names root's file here (/etc/passwd). So the file at that path must be the file the loop
 * device reads (`reads`: its device and inode; found in review). In directories only root may
 * change (owner root, no write bit for group or others, no links: every one from / down), no one
 * else can have put another file at that name, nor turn the path elsewhere before root opens it.
 * And the file system it is on must be trusted itself (judged by the mount it opens through, as
 * any file's): on an image of the user's, every owner and mode is what the user wrote into it,
 * and its blocks (the backing file's bytes) are theirs to write. Found in review: a
 * root's-looking image inside the user's, attached and mounted for them, was cached.
 */
async function rootOnlyFile(
  path: string,
  reads: { dev: number; ino: number },
  paths: MountTrustPaths,
  depth: number,
): Promise<boolean> {
  if (!path.startsWith('/') || path.endsWith(' (deleted)')) return false;
  // Every directory on the way, not only the last: a link or directory of a user's anywhere
  // above it passes every check here and names something else a moment later, when root opens
  // it (found in review: a user's namespace names root's image through a directory of theirs).
  // From / down, stopping at the first that is not root's: nothing below a user's directory is
  // looked up (their FUSE mount there would answer root's lstat, or never).
  const rootOnly = (x: Stats | null): boolean => x !== null && x.uid === 0 && (x.mode & 0o022) === 0;
  const names = path.split('/').filter((x) => x !== '');
  for (let i = 0; i < names.length; i++) {
    const d = await lstat(`/${names.slice(0, i).join('/')}`).catch(() => null);
    // above the file's own directory, root's sticky ones too (/tmp): no one else may move
    // root's entries there
    const sticky = i < names.length - 1 && d?.uid === 0 && (d.mode & 0o1000) !== 0;
    if (!d?.isDirectory() || !(rootOnly(d) || sticky)) return false;
  }
  const st = await lstat(path).catch(() => null);
  if (
    !(rootOnly(st) && st?.isFile() === true && st.nlink === 1) ||
    st.dev !== reads.dev ||
    st.ino !== reads.ino
  )
    return false;
  const fh = await open(
    path,
    constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
  );
  try {
    const r = await readIdentity(fh);
    if (r.identity.dev !== reads.dev || r.identity.ino !== reads.ino) return false;
    return await classify(r.mountId, r.identity.dev, paths, depth + 1);
  } finally {
    await fh.close();
  }
}

/**
 * Block device maj:min's node: `/dev/block/M:m`, or `/dev/<DEVNAME>` where udev made no such
 * link (found in review: without udev the node's owner and mode were never checked). Null when
 * neither is that device.
 */
async function blockNode(
  maj: number,
  min: number,
  sys: string,
  paths: MountTrustPaths,
): Promise<{ path: string; st: Stats } | null> {
  const name = /^DEVNAME=(.+)$/m.exec(await readFile(`${sys}/uevent`, 'utf8').catch(absent('')))?.[1];
  const link = `${paths.devBlock}/${maj}:${min}`;
  const st = await stat(link).catch(() => null);
  if (st) return { path: link, st };
  if (!name) return null;
  const dev = await stat(`/dev/${name}`).catch(() => null);
  return dev?.isBlockDevice() && major(dev.rdev) === maj && minor(dev.rdev) === min
    ? { path: `/dev/${name}`, st: dev }
    : null;
}

/** The device and inode of the file loop device maj:min (its node at `node`) reads; null when unknown. */
async function loopReads(
  node: string,
  maj: number,
  min: number,
): Promise<{ dev: number; ino: number } | null> {
  const fh = await open(node, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY).catch(
    () => null,
  );
  if (!fh) return null;
  try {
    const st = await fh.stat();
    return st.isBlockDevice() && major(st.rdev) === maj && minor(st.rdev) === min
      ? await loopBacking(fh)
      : null;
  } finally {
    await fh.close();
  }
}

/**
 * A catch giving `value` for a file that is not there, and passing any other error on (to
 * cacheableMount: not cached) — a directory that could not be read (EMFILE) is not an empty one:
 * a device-mapper device whose slaves could not be listed is not one over nothing.
 */
function absent<T>(value: T): (err: NodeJS.ErrnoException) => T {
  return (err) => {
    if (err.code === 'ENOENT') return value;
    throw err;
  };
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null;
}
