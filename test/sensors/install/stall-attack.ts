/**
 * What the install sensor's stall tests share (Linux, root): a user's hostile FUSE mount at an
 * exact place in their own tree, the users' npm trees, and the victim's install that must be
 * reported whatever the staller does.
 *
 * The mount The mount is made as `fusermount3` makes it for a user (`user_id`/`group_id`
 * the user's, `allow_other`, which root needs to reach it at all), and its daemon then runs as the
 * user. Two daemons:
 *  - `silent`: never answers anything (not even FUSE_INIT): every access below the mount point,
 *    and a stat of the mount point itself, waits until the mount is released;
 *  - `liar`: answers FUSE_INIT and every GETATTR — the mount point is a directory owned by the uid
 *    it is told to claim (another user's) — and nothing else: a lookup below it (a package.json)
 *    waits for ever. A FUSE daemon says what it likes about ownership.
 * The mount point can be a directory or a regular file (a package.json that is itself a mount).
 * Released (daemon killed, pending calls fail with ENOTCONN, `umount -l`) by the caller, before its
 * user's home is removed; the machine lock is held meanwhile (hostile-fs.ts says why).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { createTestUser, type TestUser } from '../../helpers/unix-user.js';
import { compileC, runFuseDaemon } from '../hostile-fs.js';
import { BANNED_UNSCOPED, makeRig, warnedAt } from './harness.js';

const USERFS_C = `
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
/* argv: mountpoint uid gid rootmode(octal) claim-uid (-1: answer nothing) */
static char buf[(1 << 20) + 65536];
static void reply(int fd, uint64_t unique, const void *body, size_t n) {
  char out[sizeof(struct fuse_out_header) + 256];
  struct fuse_out_header *h = (struct fuse_out_header *)out;
  h->len = sizeof *h + n; h->error = 0; h->unique = unique;
  memcpy(out + sizeof *h, body, n);
  if (write(fd, out, h->len) < 0) perror("write");
}
int main(int argc, char **argv) {
  if (argc != 6) return 2;
  unsigned uid = atoi(argv[2]), gid = atoi(argv[3]);
  unsigned rootmode = strtoul(argv[4], 0, 8);
  long claim = atol(argv[5]);
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) { perror("open /dev/fuse"); return 1; }
  char opts[256];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=%o,user_id=%u,group_id=%u,allow_other", fd, rootmode, uid, gid);
  if (mount("tguser", argv[1], "fuse.tguser", MS_NOSUID | MS_NODEV, opts) != 0) { perror("mount"); return 1; }
  if (setgid(gid) != 0 || setuid(uid) != 0) { perror("drop"); return 1; }
  printf("ready\\n");
  fflush(stdout);
  if (claim < 0) for (;;) pause();
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < (ssize_t)sizeof(struct fuse_in_header)) continue;
    struct fuse_in_header *in = (struct fuse_in_header *)buf;
    if (in->opcode == FUSE_INIT) {
      struct fuse_init_out o;
      memset(&o, 0, sizeof o);
      o.major = FUSE_KERNEL_VERSION; o.minor = FUSE_KERNEL_MINOR_VERSION;
      o.max_write = 4096; o.time_gran = 1;
      reply(fd, in->unique, &o, sizeof o);
    } else if (in->opcode == FUSE_GETATTR) {
      struct fuse_attr_out o;
      memset(&o, 0, sizeof o);
      o.attr_valid = 3600;
      o.attr.ino = in->nodeid; o.attr.mode = rootmode; o.attr.nlink = 2;
      o.attr.uid = (unsigned)claim; o.attr.gid = (unsigned)claim; o.attr.blksize = 4096;
      reply(fd, in->unique, &o, sizeof o);
    }
    /* everything else (LOOKUP, OPEN, OPENDIR, STATFS, …) is never answered */
  }
}
`;

export interface UserMount {
  readonly path: string;
  /** Ends the daemon (pending calls fail with ENOTCONN) and unmounts. Idempotent. */
  release(): Promise<void>;
}

const compiled = new Map<string, string>();

/**
 * Mounts a hostile FUSE file system of `user` at `path` (which must exist: a directory, or a
 * regular file with `file: true`). `claimUid`: a liar claiming that owner; absent: silent.
 * `scratch`: a root-owned temp dir to build the daemon in.
 */
export async function mountAs(
  user: TestUser,
  path: string,
  scratch: string,
  { file = false, claimUid }: { file?: boolean; claimUid?: number } = {},
): Promise<UserMount> {
  return runFuseDaemon(() => {
    let bin = compiled.get(scratch);
    if (!bin) {
      bin = compileC(scratch, 'tguserfs', USERFS_C);
      compiled.set(scratch, bin);
    }
    const mode = file ? '100644' : '40755';
    return [bin, [path, String(user.uid), String(user.gid), mode, String(claimUid ?? -1)]];
  }, path);
}

/** Resolves `p`'s value, or fails saying `what` did not end within `ms` (a stall is a failure, not a hang). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not end within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `script` (sh -c) as `user`: what it makes is really theirs. */
export function shAs(user: TestUser, script: string): void {
  const r = spawnSync('sh', ['-c', script], {
    uid: user.uid,
    gid: user.gid,
    cwd: user.home,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`as ${user.name}: ${script}: ${r.stderr}`);
}

/** The user's npm prefix root (`~/.npm-global/lib/node_modules`, and `bin` beside it), made as the user. */
export function npmRoot(user: TestUser): string {
  const root = join(user.home, '.npm-global', 'lib', 'node_modules');
  shAs(user, `mkdir -p '${root}' '${join(user.home, '.npm-global', 'bin')}'`);
  return root;
}

/** `name`'s package.json text (`extra` fields added). */
export function manifest(name: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ name, version: '1.0.0', ...extra });
}

/** `user` installs the banned package into `root` as npm does (staged beside it, renamed in); its path. */
export function installBanned(user: TestUser, root: string): string {
  const stage = join(user.home, 'stage');
  const pkg = join(root, BANNED_UNSCOPED);
  shAs(
    user,
    `mkdir -p '${stage}' && printf '%s' '${manifest(BANNED_UNSCOPED)}' > '${stage}/package.json' && mv '${stage}' '${pkg}'`,
  );
  return pkg;
}

/** A full scan with one stalled user ends within this (one 2 s deadline for their tree, and slack for a loaded machine). */
const SCAN_BOUND_MS = 15_000;

export interface StallScenario {
  /** Root-owned scratch dir (rig state, the FUSE daemon's build). */
  readonly base: string;
  readonly name: string;
  /** Every mount made, for the test file's afterAll (released here too, before the rig stops). */
  readonly mounts: UserMount[];
  /** Builds the staller's hostile tree (as them) before the sensor starts; its mounts. */
  readonly place: (staller: TestUser, root: string, victim: TestUser) => Promise<UserMount[]>;
  /** What the staller does once the sensor runs; its mounts. */
  readonly attack?: (staller: TestUser, root: string) => Promise<UserMount[]>;
  /** The first full scan reaches a placed mount: the staller's tree is stalled once it ended. */
  readonly stallsScan?: boolean;
}

/**
 * The install sensor for a staller's and a victim's homes: its first full scan ends, the
 * staller's `attack` runs, the victim's banned install is reported (`package.warned`) within the
 * usual bound, and a full rescan ends.
 */
export async function victimSurvives(o: StallScenario): Promise<void> {
  const staller = createTestUser('tgst');
  const victim = createTestUser('tgst');
  const root = npmRoot(staller);
  const victimRoot = npmRoot(victim);
  const placed = await o.place(staller, root, victim);
  o.mounts.push(...placed);
  const rig = await makeRig({
    dir: join(o.base, o.name),
    homes: [staller.home, victim.home],
    action: 'warn',
    start: false,
  });
  try {
    await within(rig.sensor.start(), SCAN_BOUND_MS, 'the first full scan');
    if (o.stallsScan) expect(rig.sensor.status().details.stalled_trees).toBe(1);
    const more = (await o.attack?.(staller, root)) ?? [];
    placed.push(...more);
    o.mounts.push(...more);
    const pkg = installBanned(victim, victimRoot);
    const ev = await warnedAt(rig, pkg, "the victim's banned install reported");
    expect(ev).toMatchObject({ package: { name: BANNED_UNSCOPED, path: pkg } });
    await within(rig.sensor.rescan(), SCAN_BOUND_MS, 'a full rescan');
  } finally {
    // Calls stuck in a mount settle (ENOTCONN) only once it is gone: release before stopping.
    for (const m of placed) await m.release();
    await rig.close();
  }
}
