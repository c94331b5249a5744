/**
 * A notification helper run as a user (notify-send on Linux) must not inherit guardd's nice −10
 * (src/daemon/priority.ts): a process of the user's is one the user can ptrace or signal, so they
 * would get a high-priority process out of every notification. The real spawn runner, called on a
 * thread at guardd's nice, runs the command as a real unprivileged user at nice 0 — and already at
 * nice 0 when the command starts, not after (it reads its own nice as its first act) — also from a
 * thread whose reset-on-fork flag already starts its children at nice 0 (guardd's JS thread after
 * its first exec-events boost), where lowering by the thread's own nice again would overshoot —
 * and the unit's real-time allowance (LimitRTPRIO=2) is dropped even from a guardd at nice 0.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, readFileSync, writeFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { asUserAtNormalPriority, DAEMON_NICE } from '../../src/daemon/priority.js';
import { spawnRunner } from '../../src/enforcement/notify/command-runner.js';
import { createTestUser } from '../helpers/unix-user.js';

const root = process.platform === 'linux' && process.getuid?.() === 0;
const before = root ? getPriority(0) : 0;
afterAll(() => {
  // lowering back is always allowed; the worker thread gets the nice it had
  if (root) setPriority(0, before);
  // and its reset-on-fork flag cleared (root has CAP_SYS_NICE here)
  if (root) execFileSync('chrt', ['-o', '-p', '0', String(process.pid)]);
});

/**
 * Runs `sh -c` as `user` through the real runner and checks what it saw of itself as it started:
 * nice 0, no real-time allowance, the user's uid and only their group.
 */
async function expectNormalUserChild(user: ReturnType<typeof createTestUser>): Promise<void> {
  const out = join(user.home, 'seen');
  writeFileSync(out, '');
  chownSync(out, user.uid, user.gid);
  const outcome = await spawnRunner({
    command: 'sh',
    args: [
      '-c',
      `echo "$(cut -d' ' -f19 /proc/$$/stat) $(awk '/^Max realtime priority/{print $4 ":" $5}' /proc/$$/limits) $(id -u) $(id -G)" > ${out}`,
    ],
    uid: user.uid,
    gid: user.gid,
    env: { PATH: '/usr/bin:/bin' },
    timeoutMs: 10_000,
  });
  expect(outcome).toEqual({ ok: true, error: null });
  const [nice, rtprio, uid, ...groups] = readFileSync(out, 'utf8').trim().split(' ');
  expect(Number(nice)).toBe(0);
  expect(rtprio).toBe('0:0');
  expect(Number(uid)).toBe(user.uid);
  expect(groups.map(Number)).toEqual([user.gid]);
}

describe.runIf(root)('notification commands run as a user', () => {
  it("start at nice 0 as the user, not at guardd's nice as the user", async () => {
    const user = createTestUser('tgnice');
    setPriority(0, DAEMON_NICE);
    expect(getPriority(0)).toBe(DAEMON_NICE);
    try {
      // the real-time allowance too (0 here already: raising it needs CAP_SYS_RESOURCE, which this
      // machine's root lacks, so this pins the outcome, not the drop from the unit's LimitRTPRIO=2)
      await expectNormalUserChild(user);
    } finally {
      setPriority(0, before);
    }
  });

  it('from a thread whose children start at nice 0 (reset-on-fork), still nice 0: not lowered twice', async () => {
    const user = createTestUser('tgnicer');
    setPriority(0, DAEMON_NICE);
    // SCHED_OTHER with reset-on-fork, nice kept (what boost.c leaves on guardd's JS thread)
    execFileSync('chrt', ['-o', '-R', '-p', '0', String(process.pid)]);
    try {
      await expectNormalUserChild(user);
    } finally {
      setPriority(0, before);
      execFileSync('chrt', ['-o', '-p', '0', String(process.pid)]);
    }
  });

  it("from a guardd at nice 0, still without the unit's real-time allowance: prlimit runs whatever the nice", async () => {
    const user = createTestUser('tgnice0');
    setPriority(0, 0);
    try {
      // LimitRTPRIO=2 comes from the unit, not from the nice: a guardd left at nice 0 (a drop-in's
      // Nice=0, a refused raise) hands it to every child. This machine's root cannot raise
      // RLIMIT_RTPRIO (no CAP_SYS_RESOURCE), so the drop is pinned by the command line the real
      // runner is given, then that command line is run as the user.
      const dropped = asUserAtNormalPriority(user.uid, user.gid, 'sh', ['-c', 'true']);
      expect(dropped?.command).toBe('/usr/bin/prlimit');
      expect(dropped?.args.slice(0, 2)).toEqual(['--rtprio=0:0', '--']);
      await expectNormalUserChild(user);
    } finally {
      setPriority(0, before);
    }
  });
});
