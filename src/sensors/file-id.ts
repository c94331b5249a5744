/**
 * Owns reading the identity of an open file for the hash and marker caches (file-facts.ts): what
 * fs.Stats gives them (device, inode, size, mtime, ctime; mode, owner) plus the mount the file was
 * reached through — its unique id (`FileIdentity.mount`, Linux 6.8+), which the caches key by, and
 * the id /proc/self/mountinfo numbers it by (`mountId`), by which mount-trust.ts judges whether
 * the mount's bytes may be cached at all, and owner-fs.ts (`actorFor`) which mount, and whose, a
 * step of its walk is on (an O_PATH descriptor's identity). From native/fileid (statx on a libuv
 * pool thread, like fh.stat()); without the addon (not built, not Linux) from fh.stat(), with no
 * mount (0, -1), as before mounts were part of the key. Also which file a loop device reads (`loopBacking`), for
 * mount-trust.ts.
 */
import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { nativeAddonPath } from '../common/native-addon.js';
import type { FileIdentity } from './content-markers.js';

/** One read of an open file's identity. */
export interface FileIdRead {
  readonly identity: FileIdentity;
  readonly isFile: boolean;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** The mount's id in /proc/self/mountinfo (held while the file is open); -1 when unknown. */
  readonly mountId: number;
}

interface FileIdAddon {
  identity(fd: number): Promise<{
    dev: number;
    ino: number;
    size: number;
    mtimeMs: number;
    ctimeMs: number;
    mode: number;
    uid: number;
    gid: number;
    mount: number;
    mountId: number;
  }>;
  loopBacking(fd: number): Promise<{ dev: number; ino: number }>;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

/** native/fileid (where: src/common/native-addon.ts); null when not built. */
const addon: FileIdAddon | null = (() => {
  if (process.platform !== 'linux') return null;
  try {
    const a = createRequire(import.meta.url)(nativeAddonPath('fileid')) as Partial<FileIdAddon>;
    return typeof a.identity === 'function' && typeof a.loopBacking === 'function'
      ? (a as FileIdAddon)
      : null;
  } catch {
    return null;
  }
})();

/** True when identities carry their mount (native/fileid built). */
export const mountsKnown = addon !== null;

/** The identity of the file open on `fh` (rejects as fh.stat() would). */
export async function readIdentity(fh: FileHandle): Promise<FileIdRead> {
  if (addon) {
    const x = await addon.identity(fh.fd);
    return {
      identity: {
        dev: x.dev,
        ino: x.ino,
        size: x.size,
        mtimeMs: x.mtimeMs,
        ctimeMs: x.ctimeMs,
        mount: x.mount,
      },
      isFile: (x.mode & S_IFMT) === S_IFREG,
      mode: x.mode,
      uid: x.uid,
      gid: x.gid,
      mountId: x.mountId,
    };
  }
  const st = await fh.stat();
  return {
    identity: { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, mount: 0 },
    isFile: st.isFile(),
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    mountId: -1,
  };
}

/**
 * The device and inode of the file the loop device open on `fh` reads (LOOP_GET_STATUS64); null
 * when it reads none, is no loop device, or the addon is not built.
 */
export async function loopBacking(fh: FileHandle): Promise<{ dev: number; ino: number } | null> {
  if (!addon) return null;
  return addon.loopBacking(fh.fd).catch(() => null);
}
