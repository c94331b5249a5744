/**
 * Owns answering "who is uid N" (name, groups, home) and "which local users have homes", from the
 * OS's own user database: /etc/passwd and /etc/group on Linux (re-read when they change), the
 * `dscl` directory on macOS, the profile folders on Windows. Used to fill `Owner` in observations,
 * to evaluate user/group exceptions, and to find every user's install roots.
 *
 * Files are parsed defensively (they are local, but a malformed line must not stop the daemon).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Owner } from '../sensors/observation.js';
import type { Platform } from './platform-paths.js';

export interface UserRecord {
  readonly uid: number;
  readonly name: string;
  readonly home: string;
  readonly shell: string;
}

export interface UserDirectoryOptions {
  readonly platform: Platform;
  /** Overrides for tests and the local mode: where passwd/group live (Linux). */
  readonly passwdFile?: string;
  readonly groupFile?: string;
}

/**
 * macOS and Windows have no cheap change stamp for their user databases: re-read them at most this
 * often (10 min), so a user created after start has their install roots found at the next rescan.
 */
const OTHER_REFRESH_MS = 10 * 60 * 1000;

/** Shells that mean "not a login user": their homes are not scanned for install roots. */
const NOLOGIN_SHELLS = /(?:nologin|\/false|\/sync|\/shutdown|\/halt)$/;

export class UserDirectory {
  private byUid = new Map<number, UserRecord>();
  private groupsByUser = new Map<string, string[]>();
  private stamp = '';

  constructor(private readonly options: UserDirectoryOptions) {}

  /** The owner record for `uid` (name and home null when unknown). Cheap: cached, refreshed on change. */
  owner(uid: number): Owner {
    this.refresh();
    const u = this.byUid.get(uid);
    return {
      uid,
      user: u?.name ?? null,
      groups: u ? (this.groupsByUser.get(u.name) ?? []) : [],
      home: u?.home ?? null,
    };
  }

  /** Every local human user with a home directory (uid 0 included: root installs tools too). */
  users(): UserRecord[] {
    this.refresh();
    return [...this.byUid.values()].filter((u) => u.home && u.home !== '/' && !NOLOGIN_SHELLS.test(u.shell));
  }

  private refresh(): void {
    if (this.options.platform === 'linux') this.refreshLinux();
    else if (this.stamp === '' || Date.now() - this.loadedAt > OTHER_REFRESH_MS) this.loadOther();
  }

  private loadedAt = 0;

  private refreshLinux(): void {
    const passwd = this.options.passwdFile ?? '/etc/passwd';
    const group = this.options.groupFile ?? '/etc/group';
    const stamp = `${mtime(passwd)}:${mtime(group)}`;
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    this.byUid = new Map();
    const primaryGid = new Map<string, number>();
    for (const line of readLines(passwd)) {
      const f = line.split(':');
      if (f.length < 7) continue;
      const uid = Number(f[2]);
      if (!Number.isInteger(uid) || uid < 0) continue;
      const name = f[0] as string;
      if (!this.byUid.has(uid)) this.byUid.set(uid, { uid, name, home: f[5] ?? '', shell: f[6] ?? '' });
      primaryGid.set(name, Number(f[3]));
    }
    this.groupsByUser = new Map();
    const add = (user: string, g: string): void => {
      const list = this.groupsByUser.get(user) ?? [];
      if (!list.includes(g)) list.push(g);
      this.groupsByUser.set(user, list);
    };
    for (const line of readLines(group)) {
      const f = line.split(':');
      if (f.length < 4) continue;
      const gname = f[0] as string;
      const gid = Number(f[2]);
      for (const member of (f[3] ?? '').split(',').filter(Boolean)) add(member, gname);
      for (const [user, pg] of primaryGid) if (pg === gid) add(user, gname);
    }
  }

  /** macOS / Windows: read once at first use (new users on these platforms appear via rescan of homes). */
  private loadOther(): void {
    this.stamp = 'loaded';
    this.loadedAt = Date.now();
    this.byUid = new Map();
    if (this.options.platform === 'darwin') {
      try {
        const out = execFileSync('dscl', ['.', '-list', '/Users', 'UniqueID'], {
          encoding: 'utf8',
          timeout: 5000,
        });
        for (const line of out.split('\n')) {
          const m = /^(\S+)\s+(-?\d+)$/.exec(line.trim());
          if (!m || m[1]?.startsWith('_')) continue;
          const name = m[1] as string;
          const uid = Number(m[2]);
          this.byUid.set(uid, {
            uid,
            name,
            // root's home is /var/root; everyone else's is under /Users (dscl NFSHomeDirectory).
            home: uid === 0 ? '/var/root' : `/Users/${name}`,
            shell: '/bin/zsh',
          });
        }
      } catch {
        // dscl missing or failed: the owner stays unnamed; homes fall back to /Users listing.
      }
      return;
    }
    // Windows has no uids; ps-list reports none either. Homes are the profile folders.
    const base = join(process.env.SystemDrive ?? 'C:', '\\Users');
    let uid = 1000;
    for (const name of safeReaddir(base)) {
      if (['Public', 'Default', 'Default User', 'All Users'].includes(name)) continue;
      this.byUid.set(uid, { uid, name, home: join(base, name), shell: '' });
      uid++;
    }
  }
}

function mtime(file: string): string {
  try {
    const s = statSync(file);
    return `${s.mtimeMs}:${s.size}:${s.ino}`;
  } catch {
    return 'missing';
  }
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
  } catch {
    return [];
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
