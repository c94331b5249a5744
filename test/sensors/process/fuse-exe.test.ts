/**
 * FuseExeReader (src/sensors/fuse-exe.ts) with real parts: a real unprivileged user, their own
 * FUSE mounts (fuse-passthrough.c through the setuid fusermount3, no `allow_other`), their real
 * processes, and real owner-fs children (OwnerSession) acting as them. What is bounded: children
 * per user and overall (stuck ones included), spawns, the deadline of a daemon that never
 * answers — with guardd's event loop never waiting — and whose credentials are used.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  copyFileSync,
  readFileSync,
  readlinkSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OwnerSession } from '../../../src/enforcement/owner-fs.js';
import { FUSE_ANSWER_MAX_CHARS, FuseExeReader, type FuseLimits } from '../../../src/sensors/fuse-exe.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../../helpers/machine-lock.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, spawnAs, type TestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { compileC } from '../hostile-fs.js';
import { buildPassthrough, mountAsUser, subordinate, type UserMount, userFuse } from './fuse-user.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

/** Made undumpable, the program may not be ptrace-read even by its own user: /proc/<pid>/exe is theirs no more. */
const UNDUMPABLE_C = `
#include <sys/prctl.h>
#include <unistd.h>
int main(void) { prctl(PR_SET_DUMPABLE, 0); for (;;) pause(); }
`;

describe.runIf(runnable)("reading an executable on its user's own FUSE mount as that user", () => {
  const dir = tempDir('tgfx-');
  const run = Date.now().toString(36);
  const users: TestUser[] = [];
  const mounts: UserMount[] = [];
  let restoreFuse: (() => void) | undefined;
  let daemon: string;

  const reader = (limits: Partial<FuseLimits> = {}, timeoutMs?: number): FuseExeReader =>
    new FuseExeReader({
      session: (actor, fd) => new OwnerSession(actor, { fds: [fd], maxAnswerChars: FUSE_ANSWER_MAX_CHARS }),
      limits,
      ...(timeoutMs ? { timeoutMs } : {}),
    });

  /** Puts `file` (or a copy of sleep with `tag` appended) on `m` as `name`, runs it as `user`; its /proc/<pid>/exe path. */
  async function running(user: TestUser, m: UserMount, name: string, file?: string): Promise<string> {
    const src = join(m.src, name);
    copyFileSync(file ?? '/bin/sleep', src);
    if (!file) appendFileSync(src, `\n${name}-${run}\n`);
    chownSync(src, user.uid, user.gid);
    chmodSync(src, 0o755);
    const child = spawnAs(user, join(m.mnt, name), file ? [] : ['60']);
    const exe = `/proc/${child.pid}/exe`;
    await waitFor(() => readlinkSync(exe) === join(m.mnt, name), `${name} exec'd`);
    return exe;
  }

  const sha256 = (m: UserMount, name: string): string =>
    createHash('sha256')
      .update(readFileSync(join(m.src, name)))
      .digest('hex');

  beforeAll(async () => {
    restoreFuse = await userFuse();
    chmodSync(dir, 0o755);
    daemon = buildPassthrough(dir);
    for (let i = 0; i < 3; i++) {
      const u = createTestUser('tgfx');
      users.push(u);
      mounts.push(await mountAsUser(u, daemon, 'fuse'));
    }
  }, LOCKED_TEST_TIMEOUT_MS);

  afterAll(async () => {
    for (const m of mounts) await m.release();
    restoreFuse?.();
  });

  it('hashes the program through the O_PATH descriptor root took, even one its own user may no longer open by /proc/<pid>/exe', async () => {
    const [u, m] = [users[0] as TestUser, mounts[0] as UserMount];
    const exe = await running(u, m, 'undumpable', compileC(dir, 'undumpable', UNDUMPABLE_C));
    // its prctl done: the kernel then shows the process's /proc files as root's
    await waitFor(() => statSync(join(dirname(exe), 'status')).uid === 0, 'the program undumpable');
    // the premise: root is refused the file, and the user their own process's exe link
    let code = '';
    try {
      readFileSync(exe);
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code ?? '';
    }
    expect(code).toBe('EACCES');
    expect(spawnSync('head', ['-c1', exe], { uid: u.uid, gid: u.gid }).status).not.toBe(0);
    const r = reader();
    const got = await r.withFile(exe, u.uid, (f) => f.hash(1 << 30));
    expect(got).toEqual({ ok: true, value: sha256(m, 'undumpable') });
    expect(r.status()).toMatchObject({ read: 1, spawned: 1 });
  });

  it('acts only as the process owner: another uid is refused (owner_mismatch), a file root may read is not_fuse, nothing spawned', async () => {
    const [u, m] = [users[0] as TestUser, mounts[0] as UserMount];
    const exe = await running(u, m, 'owned');
    const r = reader();
    const other = (users[1] as TestUser).uid;
    expect(await r.withFile(exe, other, async () => 1)).toEqual({ ok: false, reason: 'owner_mismatch' });
    const plain = spawnAs(u, '/bin/sleep', ['60']);
    await waitFor(() => readlinkSync(`/proc/${plain.pid}/exe`) !== '', 'sleep running');
    expect(await r.withFile(`/proc/${plain.pid}/exe`, u.uid, async () => 1)).toEqual({
      ok: false,
      reason: 'not_fuse',
    });
    expect(r.status()).toMatchObject({ spawned: 0, owner_mismatch: 1, not_fuse: 1 });
  });

  it('reads of one file at once share one child', async () => {
    const [u, m] = [users[0] as TestUser, mounts[0] as UserMount];
    const exe = await running(u, m, 'shared');
    const r = reader();
    const [a, b] = await Promise.all([
      r.withFile(exe, u.uid, (f) => f.hash(1 << 30)),
      r.withFile(exe, u.uid, (f) => f.hash(1 << 30)),
    ]);
    expect(a).toEqual({ ok: true, value: sha256(m, 'shared') });
    expect(b).toEqual(a);
    expect(r.status()).toMatchObject({ spawned: 1, coalesced: 1, read: 2 });
  });

  it('children are bounded per user and overall, stuck or not; what is refused is counted busy', async () => {
    const r = reader({ childrenPerUser: 2, children: 4 });
    const exes: { uid: number; exe: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const [u, m] = [users[i] as TestUser, mounts[i] as UserMount];
      for (let k = 0; k < 3; k++) exes.push({ uid: u.uid, exe: await running(u, m, `many-${k}`) });
    }
    let release: () => void = () => undefined;
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    let peak = 0;
    const reads = exes.map(({ uid, exe }) =>
      r.withFile(exe, uid, async (f) => {
        peak = Math.max(peak, r.status().children as number);
        await hold;
        return f.identity.size;
      }),
    );
    // every read has been answered or is holding its child
    await waitFor(() => r.status().busy === 5 && r.status().spawned === 4, 'four children, five refused', {
      timeoutMs: 30_000,
    });
    release();
    const results = await Promise.all(reads);
    expect(results.filter((x) => x.ok)).toHaveLength(4);
    expect(results.filter((x) => !x.ok && x.reason === 'busy')).toHaveLength(5);
    // at most two of each user's three
    for (let i = 0; i < 3; i++)
      expect(results.slice(3 * i, 3 * i + 3).filter((x) => x.ok).length).toBeLessThanOrEqual(2);
    expect(peak).toBeLessThanOrEqual(4);
    await waitFor(() => r.status().children === 0, 'the children ended');
  });

  it('a user’s subordinate uids (newuidmap) take that user’s share: running as two of them holds 2 children, not all 4, and another user is still read', async () => {
    const [a, b] = [users[0] as TestUser, users[1] as TestUser];
    // the programs run as subordinate uids of a's, which must get through a's home to the mounts
    chmodSync(a.home, 0o711);
    const sub = subordinate('/etc/subuid', a);
    const progs: { exe: string; uid: number }[] = [];
    for (const [k, as] of [
      [0, 1],
      [1, 1],
      [2, 2],
      [3, 2],
    ] as const) {
      const m = await mountAsUser(a, daemon, `sub-${k}-${run}`, {
        populate: (src) => {
          copyFileSync('/bin/sleep', join(src, 'prog'));
          chownSync(join(src, 'prog'), a.uid, a.gid);
          chmodSync(join(src, 'prog'), 0o755);
        },
        // in a's namespace, as id 1 or 2 there: a's subordinate uid sub or sub + 1 here
        inOwnNamespace: { run: ['prog', '60'], as },
      });
      mounts.push(m);
      progs.push({ exe: `/proc/${m.pid}/exe`, uid: sub + as - 1 });
    }
    const r = reader({ childrenPerUser: 2, children: 4 });
    let release: () => void = () => undefined;
    const hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const held = progs.map(({ exe, uid }) =>
      r.withFile(exe, uid, async (f) => {
        await hold;
        return f.identity.size;
      }),
    );
    await waitFor(
      () => (r.status().spawned ?? 0) + (r.status().busy ?? 0) === 4,
      'the four reads admitted or refused',
      {
        timeoutMs: 30_000,
      },
    );
    // two children for a (whichever subordinate uid), two refused
    expect(r.status()).toMatchObject({ spawned: 2, busy: 2 });
    // b's program is read meanwhile
    const other = await running(b, mounts[1] as UserMount, `sub-other-${run}`);
    expect(await r.withFile(other, b.uid, (f) => f.hash(1 << 30))).toEqual({
      ok: true,
      value: sha256(mounts[1] as UserMount, `sub-other-${run}`),
    });
    release();
    const results = await Promise.all(held);
    expect(results.filter((x) => x.ok)).toHaveLength(2);
    for (const m of mounts.splice(3)) await m.release();
    await waitFor(() => r.status().children === 0, 'the children ended');
  });

  it('children started are budgeted per user: past the burst, busy until it refills', async () => {
    const [u, m] = [users[1] as TestUser, mounts[1] as UserMount];
    const r = reader({ spawnBurstPerUser: 2, spawnsPerSPerUser: 0.001 });
    const exe = await running(u, m, 'budget');
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const got = await r.withFile(exe, u.uid, async () => 1);
      outcomes.push(got.ok ? 'read' : got.reason);
    }
    expect(outcomes).toEqual(['read', 'read', 'busy']);
    expect(r.status()).toMatchObject({ spawned: 2, busy: 1 });
  });

  it('a daemon that never answers: the read ends at its deadline with the event loop free, its mount is refused at once while the child is stuck, the user’s other mount still read', async () => {
    const u = users[2] as TestUser;
    const stall = await mountAsUser(u, daemon, `stall-${run}`, { stallOpensAfter: 1 });
    mounts.push(stall);
    const exe = await running(u, stall, 'slow');
    const r = reader({}, 1500);
    let last = performance.now();
    let maxGap = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 10);
    const started = performance.now();
    const got = await r.withFile(exe, u.uid, (f) => f.hash(1 << 30));
    const took = performance.now() - started;
    clearInterval(tick);
    expect(got).toEqual({ ok: false, reason: 'timeout' });
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(5000);
    // the loop ran all along (the child's start is the only synchronous step: a fork)
    expect(maxGap).toBeLessThan(500);
    expect(r.status()).toMatchObject({ timeout: 1, stuck: 1, children: 1 });
    // the same mount: refused at once, no second child
    const again = await r.withFile(exe, u.uid, (f) => f.hash(1 << 30));
    expect(again).toEqual({ ok: false, reason: 'stalled' });
    expect(r.status()).toMatchObject({ spawned: 1, stalled: 1 });
    // the user's other mount is read meanwhile
    const other = await running(u, mounts[2] as UserMount, 'meanwhile');
    expect(await r.withFile(other, u.uid, (f) => f.hash(1 << 30))).toEqual({
      ok: true,
      value: sha256(mounts[2] as UserMount, 'meanwhile'),
    });
    // the daemon gone, the stuck child's request fails and it ends
    await stall.release();
    await waitFor(() => r.status().stuck === 0 && r.status().children === 0, 'the stuck child ended');
  });
});
