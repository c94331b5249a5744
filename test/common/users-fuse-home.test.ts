/**
 * The home list (src/common/users.ts) never waits on a user's FUSE daemon: a real user mounts a
 * FUSE file system whose daemon never answers over their own home (as fusermount3 makes it, with
 * `allow_other`, which root needs to reach it at all), and the list of users — which looks at
 * every directory under the home roots — still returns, with that user. It never returned when
 * those stats ran on guardd's event loop: guardd (discovery, the policy's homes) froze with it. Now that the homes are
 * statted off the event loop with a deadline, the stat is still not made (the daemon would answer
 * it with any owner it likes, or hold a pool thread): no home-root call timed out. Run in a child
 * process so that a hang is a timeout here, not a frozen test worker. Needs root, like CI.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { ROOT } from '../helpers/daemon.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../helpers/machine-lock.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser } from '../helpers/unix-user.js';
import { mountAs, type UserMount } from '../sensors/install/stall-attack.js';

const scratch = tempDir('tg-ufh-');
let mount: UserMount | undefined;
afterAll(async () => {
  await mount?.release();
});

it(
  'a home that is its user’s stalled FUSE mount: the list of users still returns, with that user',
  async () => {
    const user = createTestUser('tgufh');
    mount = await mountAs(user, user.home, scratch);
    const script = `
    const { UserDirectory } = await import(${JSON.stringify(join(ROOT, 'dist/common/users.js'))});
    const d = new UserDirectory({ platform: 'linux', homeRoots: [${JSON.stringify(dirname(user.home))}] });
    d.users();
    await d.settleUsers?.(20_000);
    const users = d.users();
    console.log(JSON.stringify({ users: users.map((u) => [u.uid, u.home]), counts: d.roundCounts?.() }));
    // Not a normal exit: a pool thread stuck in a stat on the mount would hold it (libuv joins its threads).
    process.kill(process.pid, 'SIGKILL');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 15_000,
      // a stat waiting on the daemon ends only for a fatal signal
      killSignal: 'SIGKILL',
    });
    expect(r.stdout, `the list of users did not return (killed at 15 s): ${r.stderr}`).toMatch(/^\{.*\}\n$/);
    const out = JSON.parse(r.stdout);
    expect(out.users).toContainEqual([user.uid, user.home]);
    // Their home was not statted (the stat would have waited for its deadline): mountinfo named its user.
    expect(out.counts).toMatchObject({ rounds: 1, homeTimeouts: 0 });
  },
  LOCKED_TEST_TIMEOUT_MS,
);
