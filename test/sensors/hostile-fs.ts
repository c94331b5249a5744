/**
 * What a hostile local user brings, for the sensor tests (Linux, root): a real unprivileged user
 * created for the test file, small C programs compiled in the test's temp dir, and a real FUSE
 * mount whose daemon never answers (every access below it waits until the mount is released) —
 * the stalled FUSE/NFS mount guardd must survive.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireMachineLock, releaseMachineLock } from '../helpers/machine-lock.js';
import { WaitAborted, waitFor } from '../helpers/wait.js';

/** Compiles `source` (C) into `dir/name` with the machine's gcc; returns the binary's path. */
export function compileC(dir: string, name: string, source: string, flags: string[] = []): string {
  const src = join(dir, `${name}.c`);
  const out = join(dir, name);
  writeFileSync(src, source);
  execFileSync('gcc', ['-O2', '-o', out, src, ...flags], { stdio: 'pipe' });
  return out;
}

export interface TestUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * Creates a real unprivileged user named `<prefix><random>` (no home, no login shell). The caller
 * removes it with `removeUser` in its afterAll (hooks registered inside a hook do not run).
 */
export function createUser(prefix: string): TestUser {
  const name = `${prefix}${randomBytes(3).toString('hex')}`;
  execFileSync('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', '-d', '/nonexistent', name], {
    stdio: 'pipe',
  });
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { name, uid, gid };
}

/** Removes a user made by `createUser` (its processes must be gone). */
export function removeUser(user: TestUser | undefined): void {
  if (user) spawnSync('userdel', [user.name], { stdio: 'ignore' });
}

/** Runs a shell command as `user` (so what it creates is really that user's). */
export function asUser(user: TestUser, script: string): void {
  const r = spawnSync('sh', ['-c', script], { uid: user.uid, gid: user.gid, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`as ${user.name}: ${script}: ${r.stderr}`);
}

const STALLFS_C = `
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <unistd.h>
/* Mounts a FUSE file system on argv[1] and never answers it: every access below waits. */
int main(int argc, char **argv) {
  if (argc != 2) return 2;
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) { perror("open /dev/fuse"); return 1; }
  char opts[256];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fd);
  if (mount("tgstall", argv[1], "fuse.tgstall", MS_NOSUID | MS_NODEV, opts) != 0) { perror("mount"); return 1; }
  printf("ready\\n");
  fflush(stdout);
  for (;;) pause();
}
`;

export interface StalledMount {
  /** The mount point: anything below it never answers until `release`. */
  readonly path: string;
  /** Ends the FUSE daemon (pending calls fail with ENOTCONN) and unmounts. Idempotent. */
  release(): Promise<void>;
}

/** A FUSE daemon of runFuseDaemon's: the mount, its pid and what it printed so far. */
export interface FuseDaemon extends StalledMount {
  readonly pid: number;
  output(): string;
}

/**
 * Mounts a FUSE file system that never answers at `dir/mnt`. The caller releases it (in its
 * afterAll at the latest, which runs before the temp dir's removal registered earlier).
 */
export async function mountStalled(dir: string): Promise<StalledMount> {
  const path = join(dir, 'mnt');
  return runFuseDaemon(() => {
    mkdirSync(path, { recursive: true });
    return [compileC(dir, 'tgstallfs', STALLFS_C), [path]];
  }, path);
}

/**
 * Runs a FUSE daemon that mounts at `path` and prints `ready` (or `readyText`) once mounted
 * (`start` builds it and says how to run it), under the machine lock — held until release: a
 * process exec'd into the mount pins every exec-events walker (machine-lock.ts). Release ends the
 * daemon (pending calls fail with ENOTCONN), unmounts and lets the lock go; idempotent.
 */
export async function runFuseDaemon(
  start: () => [bin: string, args: string[]],
  path: string,
  readyText = 'ready',
): Promise<FuseDaemon> {
  await acquireMachineLock();
  let child: ChildProcess;
  try {
    const [bin, args] = start();
    child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    releaseMachineLock();
    throw err;
  }
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor(() => {
      if (child.exitCode !== null) throw new WaitAborted(`the FUSE daemon at ${path} exited: ${out}`);
      return out.includes(readyText);
    }, `the mount at ${path}`);
  } catch (err) {
    child.kill('SIGKILL');
    releaseMachineLock();
    throw err;
  }
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    child.kill('SIGKILL');
    await exited;
    spawnSync('umount', ['-l', path], { stdio: 'ignore' });
    releaseMachineLock();
  };
  return { path, release, pid: child.pid as number, output: () => out };
}
