/**
 * One user's stalled tree (a FUSE mount of theirs that never answers, or their hung network home)
 * must not stop the install sensor for other users:
 *  - the base of a path glob in that home that does not answer the gated look is not walked by
 *    the full scan (its ungated `stat` waited forever, and with it this and every later full scan
 *    of every home: the sensor's start never finished);
 *  - all of a user's calls through the install gate have one key (their uid): keyed by home
 *    (discovery, sweeps), by 'glob' (every home's glob bases) and by uid (package.json), a user
 *    whose npm prefix and glob base led into their stall held both of the gate's two slots, and
 *    no other user's package.json was read while the stall lasted.
 */
import { chownSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, type TestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { mountStalled, type StalledMount } from '../hostile-fs.js';
import { BANNED_UNSCOPED, makeRig, writePackage } from './harness.js';

const base = tempDir('tg-stall-other-');
const mounts: StalledMount[] = [];
afterAll(async () => {
  for (const m of mounts) await m.release();
});

/** `path` and the directories from `from` down to it, made and owned by `user`. */
function mkdirOwned(user: TestUser, from: string, path: string): void {
  mkdirSync(path, { recursive: true });
  for (let p = path; p.startsWith(from) && p !== from; p = join(p, '..')) chownSync(p, user.uid, user.gid);
}

/**
 * Starts the sensor for `staller`'s and a victim's homes, `links` in the staller's home leading
 * into a stalled mount; the victim then installs a banned package, which must be reported.
 */
async function victimReported(name: string, links: readonly string[]): Promise<void> {
  const staller = createTestUser('tgso');
  const victim = createTestUser('tgso');
  mkdirSync(join(base, name));
  const stalled = await mountStalled(join(base, name));
  mounts.push(stalled);
  for (const link of links) {
    mkdirOwned(staller, staller.home, join(staller.home, link, '..'));
    symlinkSync(stalled.path, join(staller.home, link));
  }
  const victimRoot = join(victim.home, '.npm-global', 'lib', 'node_modules');
  mkdirOwned(victim, victim.home, victimRoot);
  const rig = await makeRig({
    dir: join(base, name, 'rig'),
    homes: [staller.home, victim.home],
    action: 'warn',
  });
  try {
    const pkg = join(victimRoot, BANNED_UNSCOPED);
    writePackage(pkg, { name: BANNED_UNSCOPED, version: '1.0.0' });
    chownSync(pkg, victim.uid, victim.gid);
    chownSync(join(pkg, 'package.json'), victim.uid, victim.gid);
    await rig.sensor.rescan();
    const ev = await waitFor(() => rig.sink.ofType('package.warned')[0], 'package.warned', {
      timeoutMs: 25_000,
    });
    expect(ev).toMatchObject({ package: { name: BANNED_UNSCOPED, path: pkg } });
  } finally {
    // Stuck calls settle (ENOTCONN) only once the mount is gone: release it before stopping.
    await stalled.release();
    await rig.close();
  }
}

it("a user's stalled path-glob base is not walked: the sensor starts and another user's install is reported", async () => {
  await victimReported('glob', ['.local/share/claude']);
}, 120_000);

it("a user's stalled npm prefix and glob base hold one of the install gate's slots, not both", async () => {
  await victimReported('both', ['.npm-global', '.local/share/claude']);
}, 120_000);
