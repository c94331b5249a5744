/**
 * Owns the default locations of toolguard's files on each OS (DESIGN.md "Identities and paths").
 * Every one of them is overridable in the config, so tests and the local mode run unprivileged.
 */
import { join } from 'node:path';

export type Platform = 'linux' | 'darwin' | 'win32';

export interface PlatformPaths {
  /** The MDM-written config file. */
  readonly configFile: string;
  /** Root-owned state: DB, quarantine, policy cache. */
  readonly stateDir: string;
  /** Directory of the control sockets (on Windows: unused, named pipes are used). */
  readonly socketDir: string;
  /** Public (read-only) control endpoint. */
  readonly publicSocket: string;
  /** Admin (root-only) control endpoint. */
  readonly adminSocket: string;
}

/** The current platform, narrowed to the three toolguard supports (others are treated as linux). */
export function currentPlatform(): Platform {
  const p = process.platform;
  return p === 'darwin' || p === 'win32' ? p : 'linux';
}

/** Default paths for `platform`. */
export function defaultPaths(platform: Platform = currentPlatform()): PlatformPaths {
  switch (platform) {
    case 'darwin': {
      const base = '/Library/Application Support/toolguard';
      return {
        configFile: join(base, 'config.json'),
        stateDir: base,
        socketDir: '/var/run/toolguard',
        publicSocket: '/var/run/toolguard/guardd.sock',
        adminSocket: '/var/run/toolguard/admin.sock',
      };
    }
    case 'win32': {
      const base = join(process.env.ProgramData ?? 'C:\\ProgramData', 'toolguard');
      return {
        configFile: join(base, 'config.json'),
        stateDir: base,
        socketDir: base,
        publicSocket: '\\\\.\\pipe\\toolguard',
        adminSocket: '\\\\.\\pipe\\toolguard-admin',
      };
    }
    default:
      return {
        configFile: '/etc/toolguard/config.json',
        stateDir: '/var/lib/toolguard',
        socketDir: '/run/toolguard',
        publicSocket: '/run/toolguard/guardd.sock',
        adminSocket: '/run/toolguard/admin.sock',
      };
  }
}

/** The control socket paths inside `socketDir` (Windows keeps its fixed pipe names unless overridden). */
export function socketPaths(
  socketDir: string,
  platform: Platform = currentPlatform(),
): { public: string; admin: string } {
  if (platform === 'win32' && !socketDir.startsWith('\\\\.\\pipe\\')) {
    return { public: '\\\\.\\pipe\\toolguard', admin: '\\\\.\\pipe\\toolguard-admin' };
  }
  return { public: join(socketDir, 'guardd.sock'), admin: join(socketDir, 'admin.sock') };
}
