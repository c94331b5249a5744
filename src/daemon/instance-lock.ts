/**
 * Owns guardd's single-instance lock: `<state_dir>/guardd.lock`, taken before guardd opens its
 * state database, rewrites local mode's files or binds a socket, and held until the process ends.
 * A second guardd on the same state dir is refused (GUARD_CONTROL_INSTANCE_LOCKED) even while the
 * first is still starting — the control-socket check alone (control-server.ts
 * `assertNoDaemonAnswers`) let two guardds started at the same instant both pass it, since neither
 * answered yet.
 *
 * Why SQLite: Node has no flock(). The lock is an exclusive transaction on an empty SQLite file
 * (better-sqlite3, already guardd's store), which is the kernel's own record lock (fcntl on Unix,
 * LockFileEx on Windows): released when the process ends however it ends (SIGKILL, OOM), never a
 * stale pid file to judge. Children do not inherit it (fcntl locks are per process). The file
 * holds no data; one that is not a database (left by something else) is replaced. The directory is
 * made and vetted first (private-dir.ts): root never creates the lock through a path another user
 * can change.
 */
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { GuardError } from '../common/errors.js';
import { makePrivateDir, type PrivateDirOptions } from '../common/private-dir.js';

/** The lock file's name in the state dir. */
export const INSTANCE_LOCK_FILE = 'guardd.lock';

export interface InstanceLock {
  readonly path: string;
  /** Lets the lock go (the process's end does the same). */
  release(): void;
}

const STATE_DIR: PrivateDirOptions = {
  key: 'paths.state_dir',
  hint: 'set paths.state_dir to a directory only root can change (default /var/lib/toolguard)',
};

/**
 * Creates and vets `stateDir`, then takes the lock; GUARD_CONTROL_INSTANCE_LOCKED when another
 * process holds it. `dirOptions` names the directory in errors (local mode passes its own).
 */
export function holdInstanceLock(stateDir: string, dirOptions: PrivateDirOptions = STATE_DIR): InstanceLock {
  makePrivateDir(stateDir, 0o700, dirOptions);
  const path = join(stateDir, INSTANCE_LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    const db = new Database(path, { timeout: 0 });
    chmodSync(path, 0o600);
    try {
      db.exec('BEGIN EXCLUSIVE');
      return { path, release: () => db.close() };
    } catch (err) {
      db.close();
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_BUSY')
        throw new GuardError(
          'GUARD_CONTROL_INSTANCE_LOCKED',
          `another guardd (running or still starting) holds ${path}`,
          { path },
        );
      if ((code !== 'SQLITE_NOTADB' && code !== 'SQLITE_CORRUPT') || attempt > 0) throw err;
      rmSync(path, { force: true });
    }
  }
}
