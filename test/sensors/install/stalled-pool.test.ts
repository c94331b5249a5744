/**
 * Calls into a user's stalled mount that the full scan does not wait for still each keep one of
 * libuv's four pool threads until the mount answers; four of them and no file call of guardd's
 * ends any more (another user's install is never read). A user must not be able to pin more than
 * their own share, however they place their mounts:
 *  - a mount point among the entries of a watched directory — their root (`node_modules/.bin`)
 *    or their home (watched where a root may appear) — while they change that directory once a
 *    second: the watcher statted every entry of a watched directory at each change;
 *  - bin links their banned packages declare that are mount points (the wait for npm's bin links
 *    statted them, once per package);
 *  - package dirs on a FUSE daemon that claims they belong to other users and never answers a
 *    lookup below them: package.json reads were keyed by the owner the file system claimed, so two
 *    such dirs held both of the install gate's slots, under the victim's key and a third user's.
 */
import { join } from 'node:path';
import { afterAll, it } from 'vitest';
import { LOCKED_TEST_TIMEOUT_MS } from '../../helpers/machine-lock.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, spawnAs, type TestUser } from '../../helpers/unix-user.js';
import { BANNED_UNSCOPED } from './harness.js';
import { manifest, mountAs, shAs, type UserMount, victimSurvives } from './stall-attack.js';

const base = tempDir('tg-spool-');
const mounts: UserMount[] = [];
afterAll(async () => {
  for (const m of mounts) await m.release();
});

/**
 * Once `dir` is watched, the staller mounts at `entry` in it and changes `dir` six times, a little
 * over a second apart (the watcher re-read a changed directory at most once a second).
 */
async function mountAndChurn(staller: TestUser, dir: string, entry: string): Promise<UserMount[]> {
  shAs(staller, `mkdir '${join(dir, entry)}'`);
  const mount = await mountAs(staller, join(dir, entry), base);
  const loop = spawnAs(staller, 'sh', [
    '-c',
    `for i in 1 2 3 4 5 6; do mkdir "${dir}/churn$i"; sleep 1.2; done`,
  ]);
  await new Promise((r) => loop.once('exit', r));
  return [mount];
}

it(
  'node_modules/.bin becomes a mount point and the user keeps changing their root',
  async () => {
    await victimSurvives({
      base,
      name: 'dotbin',
      mounts,
      place: async () => [],
      attack: (u, root) => mountAndChurn(u, root, '.bin'),
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a mount point appears in their home, which is watched for roots to appear, and they keep changing it',
  async () => {
    await victimSurvives({
      base,
      name: 'home',
      mounts,
      place: async () => [],
      attack: (u) => mountAndChurn(u, u.home, 'mnt'),
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'four banned packages of theirs whose declared bin links are mount points',
  async () => {
    await victimSurvives({
      base,
      name: 'bins',
      mounts,
      place: async (u, root) => {
        const bin = join(u.home, '.npm-global', 'bin');
        const placed: UserMount[] = [];
        for (const i of [1, 2, 3, 4]) {
          const pkg = join(root, `b${i}`);
          shAs(
            u,
            `mkdir -p '${pkg}' '${bin}/b${i}' && printf '%s' '${manifest(BANNED_UNSCOPED, { bin: { [`b${i}`]: 'cli.js' } })}' > '${pkg}/package.json' && touch '${pkg}/cli.js'`,
          );
          placed.push(await mountAs(u, join(bin, `b${i}`), base));
        }
        return placed;
      },
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'package dirs whose file system claims they are the victim’s and a third user’s',
  async () => {
    const third = createTestUser('tgsp');
    await victimSurvives({
      base,
      name: 'liars',
      mounts,
      stallsScan: true,
      place: async (u, root, victim) => {
        shAs(u, `mkdir '${root}/l1' '${root}/l2'`);
        return [
          await mountAs(u, join(root, 'l1'), base, { claimUid: victim.uid }),
          await mountAs(u, join(root, 'l2'), base, { claimUid: third.uid }),
        ];
      },
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);
