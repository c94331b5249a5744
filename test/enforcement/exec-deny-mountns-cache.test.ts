/**
 * The verdict cache for execs in a private mount namespace, against a real root guardd with
 * pre-exec deny and a sha256 rule: a real user runs a settled program 20 times inside their own
 * `unshare -Urm` (as a service with PrivateTmp, a container or a sandbox runs in a namespace of
 * its own). The file is reached through the namespace's copy of a mount guardd has too, so its
 * verdict is cached like any other (src/sensors/mount-trust.ts judges the file system, found by
 * the file's device when the mount is not in guardd's table). Found in review: every one of those
 * execs was decided — and its program hashed — afresh (0 cache hits of 20), so a user's loop in
 * their own namespace had guardd read and hash a large program at every exec.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execDenyCounters, type Guardd, startDenyingGuardd } from '../helpers/daemon.js';
import { waitSettled } from '../helpers/settled.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';

const dir = tempDir('tgmc-');
const RUNS = 20;
let g: Guardd | undefined;
let user: TestUser;

afterAll(async () => {
  await g?.stop();
});

describe('the verdict cache in a private mount namespace (real guardd, real user)', () => {
  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgmc');
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'g'));
    g = await startDenyingGuardd(join(dir, 'g'), {
      id: 'tgmc-block',
      name: 'tgmc banned tool',
      action: 'block',
      message: 'tgmc: not approved.',
      // a hash no program has: every exec needs its program's hash to be decided
      process: { sha256: ['00'.repeat(32)] },
    });
  });

  it(`a settled program run ${RUNS} times in the user's own mount namespace is answered from the cache`, async () => {
    const prog = join(dir, 'prog');
    copyFileSync(realpathSync('/bin/true'), prog);
    chmodSync(prog, 0o755);
    await waitSettled(prog);
    const before = await execDenyCounters(g as Guardd);
    const r = spawnSync(
      'unshare',
      ['-Urm', 'sh', '-c', `for i in $(seq ${RUNS}); do "$P" || exit 1; done; echo ran=$i`],
      {
        uid: user.uid,
        gid: user.gid,
        cwd: user.home,
        env: { PATH: '/usr/bin:/bin', P: prog },
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(r.stdout.trim(), r.stderr).toBe(`ran=${RUNS}`);
    const after = await execDenyCounters(g as Guardd);
    // the first run decided by guardd (and a few more while its verdict is on its way, on a busy
    // machine); the rest from the cache — none on the code before
    expect(after.cache_hits - before.cache_hits, JSON.stringify(after)).toBeGreaterThanOrEqual(RUNS / 2);
  });
});
