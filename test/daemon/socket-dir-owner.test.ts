/**
 * guardd's control socket dir is vetted like its state dir (src/common/private-dir.ts): root binds
 * its sockets there, removes a stale one and chmods the new ones by path, and guardctl trusts
 * whoever answers there. Found in review: a `paths.socket_dir` in a directory a user owns (a
 * careless config) was made and used as it was — its owner could then replace guardd's sockets
 * with listeners of their own (root's guardctl talks to them) or swap a socket for a link between
 * the bind and the chmod (root then chmods the link's target 0666). Real parts: guardd from dist as
 * root, a real unprivileged user and their home.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;
const GUARDD = join(import.meta.dirname, '../../bin/guardd.js');

describe.runIf(runnable)('guardd with its socket dir in a directory a user owns', () => {
  const dir = tempDir('tgsd-');
  let user: TestUser;

  beforeAll(() => {
    user = createTestUser('tgsd');
  });

  function start(socketDir: string): ReturnType<typeof spawnSync> {
    const config = join(dir, `config-${readdirSync(dir).length}.json`);
    writeFileSync(
      config,
      JSON.stringify({
        'paths.state_dir': join(dir, 'state'),
        'paths.socket_dir': socketDir,
        'sensors.install.enabled': false,
        'enforcement.exec_deny': 'off',
      }),
    );
    // bounded: the old code started and kept running
    return spawnSync(process.execPath, [GUARDD, '--config', config], {
      encoding: 'utf8',
      timeout: 20_000,
      killSignal: 'SIGKILL',
    });
  }

  it('the user’s own directory: exit 6 naming paths.socket_dir, no socket made there', () => {
    const run = join(user.home, 'tg-run');
    mkdirSync(run);
    chownSync(run, user.uid, user.gid);
    const r = start(run);
    expect(r.signal, 'guardd did not exit (it started with its sockets in the user’s directory)').toBeNull();
    expect(r.status, String(r.stderr)).toBe(6);
    expect(String(r.stderr)).toMatch(
      new RegExp(
        `^guardd: paths\\.socket_dir ${run}: ${user.home} belongs to uid ${user.uid}; .*\\[GUARD_CONFIG_UNSAFE_DIR\\]$`,
        'm',
      ),
    );
    expect(readdirSync(run)).toEqual([]);
  });

  it('below the user’s home (not made yet): refused before anything is made there', () => {
    const run = join(user.home, 'tg-later', 'run');
    const r = start(run);
    expect(r.signal).toBeNull();
    expect(r.status, String(r.stderr)).toBe(6);
    expect(String(r.stderr)).toMatch(
      new RegExp(`^guardd: paths\\.socket_dir ${run}: ${user.home} belongs to uid ${user.uid}; `, 'm'),
    );
    expect(existsSync(join(user.home, 'tg-later'))).toBe(false);
  });
});
