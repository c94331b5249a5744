/**
 * A real user's own FUSE mount for the tests of reading executables as their owner
 * (src/sensors/fuse-exe.ts): fuse-passthrough.c (beside this file) compiled with gcc, run as the
 * user, mounted with the setuid fusermount3 on a directory of theirs without `allow_other` — the
 * kernel then refuses everyone else, root included. Optionally a daemon that answers the exec's
 * open and never the next ones (`stallOpensAfter`), or one mounted by the user in a user and mount
 * namespace of their own (`inOwnNamespace`: `unshare -Urm`, where the mount says `user_id=0`).
 *
 * Users may open /dev/fuse on every distribution (udev's rule makes it 0666); a machine without
 * udev leaves the kernel's 0600. `userFuse()` makes it what udev makes it for as long as the test
 * runs, under the machine lock (machine-lock.ts), and puts the mode back.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { callDaemon } from '../../../src/control/control-client.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  startGuardd,
  unitNodeArgs,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { acquireMachineLock, releaseMachineLock } from '../../helpers/machine-lock.js';
import type { TestUser } from '../../helpers/unix-user.js';
import { spawnAs } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { compileC, type FuseDaemon, runFuseDaemon } from '../hostile-fs.js';

const FUSERMOUNT = '/usr/bin/fusermount3';
const DEV_FUSE = '/dev/fuse';

/**
 * Takes the machine lock and lets users open /dev/fuse (as udev does); the returned function puts
 * its mode back and releases the lock.
 */
export async function userFuse(): Promise<() => void> {
  if (!existsSync(FUSERMOUNT)) throw new Error('fusermount3 is missing (Debian package fuse3)');
  await acquireMachineLock();
  const mode = statSync(DEV_FUSE).mode & 0o7777;
  if ((mode & 0o006) !== 0o006) chmodSync(DEV_FUSE, 0o666);
  return () => {
    if ((mode & 0o006) !== 0o006) chmodSync(DEV_FUSE, mode);
    releaseMachineLock();
  };
}

/** Compiles the daemon into `dir` (searchable by everyone) and returns its path. */
export function buildPassthrough(dir: string): string {
  const bin = compileC(
    dir,
    'fuse-passthrough',
    readFileSync(join(import.meta.dirname, 'fuse-passthrough.c'), 'utf8'),
  );
  chmodSync(bin, 0o755);
  return bin;
}

export interface UserMount {
  /** Where the user's files appear (`<home>/<name>`), refused to everyone but the user. */
  readonly mnt: string;
  /** The user's directory the mount serves (`<home>/<name>-src`). */
  readonly src: string;
  /** The program run in the namespace (`inOwnNamespace`), by its pid on the machine. */
  readonly pid?: number;
  /** Ends the daemon (its pending requests fail) and unmounts. Idempotent. */
  release(): Promise<void>;
}

/**
 * Mounts `daemon` (buildPassthrough) on `mnt` for `user` with `allow_other` — what fusermount3 -o
 * allow_other makes for them where /etc/fuse.conf has user_allow_other, so root sees the files —
 * serving `src` (theirs); the daemon then runs as the user and reports every file as owned by
 * `claim.uid` and group `claim.gid` (default: the same number). `detachAtOpen`: at that open of
 * a file the daemon lazily unmounts its mount (`fusermount3 -u -z`, as the user) before answering;
 * `detachAtGetattr`: the same at that getattr (the first asks for the mount's root). `onSignal`:
 * the daemon starts, and mounts only when `mount()` (on the answer) tells it to. Resolves once it
 * serves (`onSignal`: once it waits); the caller releases it (the machine lock is held until then).
 */
export async function mountClaiming(
  user: TestUser,
  daemon: string,
  src: string,
  mnt: string,
  claim: { readonly uid: number; readonly gid?: number },
  {
    detachAtOpen,
    detachAtGetattr,
    onSignal = false,
  }: { detachAtOpen?: number; detachAtGetattr?: number; onSignal?: boolean } = {},
): Promise<FuseDaemon & { mount(): Promise<void> }> {
  const gid = claim.gid === undefined ? [] : ['--claim-gid', String(claim.gid)];
  const detach = [
    ...(detachAtOpen === undefined ? [] : ['--detach-at-open', String(detachAtOpen)]),
    ...(detachAtGetattr === undefined ? [] : ['--detach-at-getattr', String(detachAtGetattr)]),
    ...(onSignal ? ['--mount-on-signal'] : []),
  ];
  const d = await runFuseDaemon(
    () => [
      daemon,
      [
        '--claim-uid',
        String(claim.uid),
        ...gid,
        '--for-user',
        String(user.uid),
        String(user.gid),
        ...detach,
        src,
        mnt,
      ],
    ],
    mnt,
    onSignal ? 'waiting' : 'mounted',
  );
  return {
    ...d,
    mount: async () => {
      if (!onSignal) return;
      process.kill(d.pid, 'SIGUSR1');
      await waitFor(() => {
        if (d.output().includes('mount:')) throw new Error(`the mount at ${mnt} failed: ${d.output()}`);
        return d.output().includes('mounted');
      }, `the mount at ${mnt}`);
    },
  };
}

/** The first of `user`'s subordinate ids in `file` (/etc/subuid or /etc/subgid; useradd gives them). */
export function subordinate(file: string, user: TestUser): number {
  const line = readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user.name}:`));
  if (!line) throw new Error(`${user.name} has no range in ${file}`);
  return Number(line.split(':')[1]);
}

/**
 * Mounts `daemon` as `user` on `<home>/<name>`, serving `<home>/<name>-src` (both created, the
 * user's; `populate` fills the source first); resolves once it serves. `inOwnNamespace`: mounted
 * in a user and mount namespace of the user's, where `run` (a file of the source and its
 * arguments) is started at once — the mount is not seen outside.
 */
export async function mountAsUser(
  user: TestUser,
  daemon: string,
  name: string,
  options: {
    stallOpensAfter?: number;
    populate?: (src: string) => void;
    /**
     * `wrap`: a command (and its arguments) run first in the namespace, which execs the daemon's.
     * `as`: the namespace also maps the user's subordinate ids (/etc/subuid, /etc/subgid, through
     * the setuid newuidmap) from 1 on, and the mount and the program are those of id `as` there —
     * on the machine, the user's subordinate id `as - 1`.
     */
    inOwnNamespace?: { run: readonly string[]; wrap?: readonly string[]; as?: number };
  } = {},
): Promise<UserMount> {
  const mnt = join(user.home, name);
  const src = join(user.home, `${name}-src`);
  for (const d of [mnt, src]) {
    mkdirSync(d, { recursive: true });
    chownSync(d, user.uid, user.gid);
  }
  options.populate?.(src);
  const stall =
    options.stallOpensAfter === undefined ? [] : ['--stall-opens-after', String(options.stallOpensAfter)];
  const ns = options.inOwnNamespace;
  const unshare =
    ns?.as === undefined
      ? ['-Urm']
      : [
          '-rm',
          `--map-users=${subordinate('/etc/subuid', user)},1,65536`,
          `--map-groups=${subordinate('/etc/subgid', user)},1,65536`,
        ];
  const as = ns?.as === undefined ? [] : ['--as', String(ns.as)];
  const child: ChildProcess = ns
    ? spawnAs(
        user,
        'unshare',
        [...unshare, ...(ns.wrap ?? []), daemon, ...stall, '--direct', ...as, src, mnt, ...ns.run],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      )
    : spawnAs(user, daemon, [...stall, src, mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`fuse-passthrough exited: ${out}`);
    return out.includes('mounted') && (!ns || /^pid \d+$/m.test(out));
  }, `${user.name}'s FUSE mount on ${mnt}`);
  const pid = ns ? Number(/^pid (\d+)$/m.exec(out)?.[1]) : undefined;
  let released = false;
  return {
    mnt,
    src,
    ...(pid !== undefined ? { pid } : {}),
    release: async () => {
      if (released) return;
      released = true;
      if (pid !== undefined) spawnSync('kill', ['-KILL', String(pid)], { stdio: 'ignore' });
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      spawnSync('umount', ['-l', mnt], { stdio: 'ignore' });
    },
  };
}

/** The process sensor's `details.fuse_exe` counts of a running guardd. */
export async function fuseExeStatus(guardd: Guardd): Promise<Record<string, number>> {
  const s = await callDaemon<{ sensors: { name: string; details: { fuse_exe?: Record<string, number> } }[] }>(
    join(guardd.socketDir, 'guardd.sock'),
    'status',
    {},
    15_000,
  );
  const f = s.sensors.find((x) => x.name === 'process')?.details.fuse_exe;
  if (!f) throw new Error('no fuse_exe in the process sensor status');
  return f;
}

/**
 * guardd from dist in `dir`/agent, with the unit's heap cap, blocking the program whose bytes are
 * `banned` (rule `<tag>-hash`, by sha256) and any holding both `markers` (rule `<tag>-content`):
 * both rules make it read a program on a user's FUSE mount (hash and markers).
 */
export async function startReadingGuardd(
  dir: string,
  tag: string,
  banned: Buffer,
  markers: readonly [string, string],
): Promise<Guardd> {
  const key = makeKey();
  const policyFile = writeSignedPolicy(
    join(dir, 'policy.dsse.json'),
    policyBody([
      {
        id: `${tag}-hash`,
        name: 'Banned by hash',
        action: 'block',
        message: 'banned by hash',
        process: { sha256: [createHash('sha256').update(banned).digest('hex')] },
      },
      {
        id: `${tag}-content`,
        name: 'Banned by content',
        action: 'block',
        message: 'banned by content',
        process: { markers: [[...markers]] },
      },
    ]),
    key,
  );
  return startGuardd(
    join(dir, 'agent'),
    { 'policy.trusted_keys': [key.publicKeyPem], 'paths.bootstrap_policy': policyFile },
    { nodeArgs: unitNodeArgs() },
  );
}
