/**
 * Owns how guardd creates and vets the directories it keeps its state in (`paths.state_dir`, the
 * control socket dir, local mode's dir): `makeDirs` creates a path, `assertPrivateDir` refuses a
 * directory another user could change, `makePrivateDir` does both (creating through
 * `makeVettedDirs`, which vets each part before making the next).
 *
 * Why not `mkdirSync(dir, { recursive: true })`: Node's loops forever where mkdir answers ENOENT
 * for a parent that exists — any path under /proc (Node 20: `mkdirSync('/proc/x', { recursive:
 * true })` never returns) — so a state_dir set there hung guardd's start with no word. Here each
 * component is tried once, top down, and a refusal is the kernel's, for that component.
 */
import { lstatSync, mkdirSync, realpathSync, type Stats, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { GuardError } from './errors.js';

/** `dir` and every directory above it, from the root down. */
function chainOf(dir: string): string[] {
  const chain: string[] = [];
  for (let p = resolve(dir); ; p = dirname(p)) {
    chain.unshift(p);
    if (dirname(p) === p) return chain;
  }
}

/**
 * Creates `dir` and the missing directories above it with `mode` (like `mkdir -p`); an existing
 * component must be a directory (or a link to one). Throws the fs error of the component that
 * failed (ENOENT under /proc, ENOTDIR, EACCES…).
 */
export function makeDirs(dir: string, mode: number): void {
  for (const path of chainOf(dir)) {
    let st: Stats | undefined = statSync(path, { throwIfNoEntry: false });
    if (st === undefined) {
      try {
        mkdirSync(path, { mode });
        continue;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        st = statSync(path);
      }
    }
    if (!st.isDirectory())
      throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), { code: 'ENOTDIR', path });
  }
}

export interface PrivateDirOptions {
  /** The setting or flag that named the directory (in the error's details and message). */
  readonly key: string;
  /** What the operator can do about a refusal (the end of the message). */
  readonly hint: string;
}

/**
 * Refuses a directory that another user could change, before anything is read from or written to
 * it: guardd keeps its database, secrets, keys and quarantined files there, and as root it would
 * otherwise follow a link or read a file another user planted (`sudo npm start` in someone's clone,
 * `--local-dir /tmp/x`, a state_dir set below a user's home). The directory itself must be
 * guardd's own and not writable by others; every directory above it, on the path as written and on
 * the real path, must belong to root or guardd's user and be writable only by them (or guardd's
 * own group), unless it is sticky like /tmp; a symbolic link on the way must belong to root or
 * guardd's user. A directory not made yet passes when what exists above it does (no other user
 * can then add the rest). Windows has no uids (euid -1): not checked there; its ACLs are out of
 * reach of this check.
 */
export function assertPrivateDir(dir: string, euid: number, egid: number, options: PrivateDirOptions): void {
  if (euid < 0) return;
  let real: string | null = null;
  try {
    real = realpathSync(dir);
  } catch {
    // not made yet (or a dangling link, which the walk below judges)
  }
  const refuse = refuser(dir, options);
  for (const target of new Set([resolve(dir), real ?? resolve(dir)])) {
    for (const path of chainOf(target)) {
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (st === undefined) break;
      vet(path, st, path === target, euid, egid, refuse);
    }
  }
}

/** Throws GUARD_CONFIG_UNSAFE_DIR for `dir`: `path` (a part of it) and why. */
function refuser(dir: string, options: PrivateDirOptions): (path: string, why: string) => never {
  return (path, why) => {
    throw new GuardError(
      'GUARD_CONFIG_UNSAFE_DIR',
      `${options.key} ${dir}: ${path} ${why}; ${options.hint}`,
      {
        key: options.key,
      },
    );
  };
}

/**
 * One part of a private dir's path (see assertPrivateDir): `isTarget`, the directory itself, must
 * be guardd's own and writable by nobody else; a directory above it must belong to root or guardd's
 * user and be writable only by them (or guardd's group) unless sticky; a link, to root or guardd's user.
 */
function vet(
  path: string,
  st: Stats,
  isTarget: boolean,
  euid: number,
  egid: number,
  refuse: (path: string, why: string) => never,
): void {
  if (isTarget ? st.uid !== euid : st.uid !== 0 && st.uid !== euid) refuse(path, `belongs to uid ${st.uid}`);
  if (st.isSymbolicLink()) return;
  const byOthers = (st.mode & 0o002) !== 0 || ((st.mode & 0o020) !== 0 && st.gid !== egid);
  if (byOthers && (isTarget || (st.mode & 0o1000) === 0))
    refuse(path, `is writable by other users (mode ${(st.mode & 0o7777).toString(8)})`);
}

/**
 * Creates the missing parts of `dir` top down, vetting each part (see `vet`) as it is found or
 * made, before anything is made below it: a part another user put there after `assertPrivateDir`
 * looked — a link in a sticky directory such as /tmp, to wherever they like — is refused before
 * root makes a directory through it. mkdir never follows a link it is asked to make, so a part is
 * either root's own new directory or what was there, which is then vetted.
 */
export function makeVettedDirs(
  dir: string,
  mode: number,
  euid: number,
  egid: number,
  options: PrivateDirOptions,
): void {
  const refuse = refuser(dir, options);
  const target = resolve(dir);
  for (const path of chainOf(target)) {
    let st = lstatSync(path, { throwIfNoEntry: false });
    if (st === undefined) {
      try {
        mkdirSync(path, { mode });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      st = lstatSync(path);
    }
    if (euid >= 0) vet(path, st, path === target, euid, egid, refuse);
    if (!st.isSymbolicLink() && !st.isDirectory())
      throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), { code: 'ENOTDIR', path });
  }
}

/**
 * `assertPrivateDir` with guardd's own ids on what exists, `makeVettedDirs`, then `assertPrivateDir` on
 * the whole (nothing is created below a directory another user controls, nor through one another
 * user made meanwhile); a directory that cannot
 * be created is GUARD_CONFIG_INVALID_VALUE naming `options.key` and the kernel's error.
 */
export function makePrivateDir(dir: string, mode: number, options: PrivateDirOptions): void {
  const euid = process.geteuid?.() ?? -1;
  const egid = process.getegid?.() ?? -1;
  assertPrivateDir(dir, euid, egid, options);
  try {
    makeVettedDirs(dir, mode, euid, egid, options);
  } catch (err) {
    if (err instanceof GuardError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      `${options.key} ${dir}: cannot create it: ${e.code ?? e.message}${e.path && e.path !== dir ? ` (${e.path})` : ''}`,
      { key: options.key, errno: e.code ?? null },
    );
  }
  assertPrivateDir(dir, euid, egid, options);
}
