/**
 * Owns reading the kernel's credentials of a control client (the peer of an accepted Unix socket)
 * through the native addon native/peercred (SO_PEERCRED on Linux, getpeereid + LOCAL_PEERPID on
 * macOS). Node exposes no peer credentials itself. The addon is built by `npm run build`
 * (scripts/build-native.js) and shipped in the packages; when it is missing or does not load
 * (Windows named pipes, a failed build), callers get a typed error from the loader and keep their
 * per-connection limits only.
 */

import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { GuardError } from '../common/errors.js';
import { nativeAddonPath } from '../common/native-addon.js';

/** What the kernel recorded for the peer at connect() time. pid is -1 where the OS does not say. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** Reads the credentials of an accepted socket's peer; throws GuardError GUARD_PEERCRED_FAILED. */
export type PeerCredentialsReader = (socket: Socket) => PeerCredentials;

/** The addon (where: src/common/native-addon.ts; the Windows payload has none). */
export const PEERCRED_ADDON_PATH = nativeAddonPath('peercred');

interface Addon {
  peerCredentials(fd: number): PeerCredentials;
}

/**
 * Loads the addon at `path` and returns a reader. Throws GuardError GUARD_PEERCRED_UNAVAILABLE
 * when the platform has no Unix sockets or the addon is missing or does not load.
 */
export function loadPeerCredentials(path: string = PEERCRED_ADDON_PATH): PeerCredentialsReader {
  if (process.platform === 'win32')
    throw new GuardError('GUARD_PEERCRED_UNAVAILABLE', 'named pipes have no peer credentials here');
  let addon: Addon;
  try {
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch (err) {
    throw new GuardError(
      'GUARD_PEERCRED_UNAVAILABLE',
      `peer credentials addon did not load: ${(err as Error).message}`,
      {
        path,
      },
    );
  }
  if (typeof addon?.peerCredentials !== 'function')
    throw new GuardError('GUARD_PEERCRED_UNAVAILABLE', 'peer credentials addon has no peerCredentials()', {
      path,
    });
  return (socket) => {
    const fd = socketFd(socket);
    if (fd === null) throw new GuardError('GUARD_PEERCRED_FAILED', 'socket has no file descriptor');
    try {
      return addon.peerCredentials(fd);
    } catch (err) {
      throw new GuardError('GUARD_PEERCRED_FAILED', (err as Error).message);
    }
  };
}

/**
 * The descriptor of an accepted net.Socket on Linux/macOS. Node keeps it on the internal handle
 * (`socket._handle.fd`, a libuv pipe); this is the one place that reaches in. Null when absent.
 */
export function socketFd(socket: Socket): number | null {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : null;
}
