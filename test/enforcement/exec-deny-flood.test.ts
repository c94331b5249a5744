/**
 * A user's flood of refused execs against a real root guardd with pre-exec deny (the execperm
 * addon) and a sha256 rule. Each exec of a file refused before is answered from the native
 * verdict cache at once and reported to JS as a refusal to record; four processes of the user
 * calling execv() of such a file in a loop make tens of thousands of those a second. Found in
 * review: the reports filled the queue the native thread shares with exec decisions, and every
 * banned file new to the cache (a fresh copy of the banned program) was allowed at once as
 * overflow; bounded to the queue alone, JS recording the reports made the new file's decision
 * miss the deadline instead. Refusal reports are now bounded in number and rate
 * (native/execperm/execperm.c MAX_REPORTS, REPORTS_PER_SEC), the rest refused and counted.
 * Found in a later review: the flood took every report token the moment it was refilled, so
 * another user's refusal in those seconds was counted and never became an event; each user now
 * has a share of the reports (USER_MAX_REPORTS, USER_REPORTS_PER_SEC). Found in the review of that:
 * a user given subordinate uids (/etc/subuid, which useradd fills; newuidmap from the uidmap
 * package) flooded as their own uid and some of those, a share each, and took every report again;
 * a process in a user namespace is now charged to the owner of its outermost one.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/control-client.js';
import type { ExecPermCounters } from '../../src/enforcement/exec-deny.js';
import { execDenyCounters, type Guardd, startDenyingGuardd } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';
import { compileC } from '../sensors/hostile-fs.js';

const TRUE = realpathSync('/bin/true');
const dir = tempDir('tgdf-');
const TAG = randomBytes(4).toString('hex');
/** A copy of `true` with bytes appended: the banned hash, unique to this run. */
const BANNED = join(dir, `banned-${TAG}`);
/** Refusals the flood must have made before the fresh copies are tried. */
const FLOOD = 10_000;
/** guardd's process.denied events of one file. */
async function deniedOf(exe: string): Promise<number> {
  const r = await callDaemon<{ events: { event: Record<string, unknown> }[] }>(
    join((g as Guardd).socketDir, 'guardd.sock'),
    'events.list',
    { type: 'process.denied', limit: 5000 },
  );
  return r.events.filter((e) => e.event.exe === exe).length;
}

/** Fresh copies of the banned program run during the flood. */
const COPIES = 10;
/** The banned program where another user runs it, refused once before the flood. */
const SHARED = join(dir, `shared-${TAG}`);
/** That user's runs of it during the flood, each refused from the verdict cache. */
const OTHER_TRIES = 5;

let user: TestUser;
let other: TestUser;
let g: Guardd | undefined;
let loop: string;

afterAll(async () => {
  await g?.stop();
});

const counters = (): Promise<ExecPermCounters> => execDenyCounters(g as Guardd);

function asUser(script: string, who: TestUser = user): string {
  const r = spawnSync('sh', ['-c', script], {
    uid: who.uid,
    gid: who.gid,
    cwd: who.home,
    env: { PATH: '/usr/bin:/bin', HOME: who.home },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return r.stdout;
}

describe("a user's flood of refused execs (real guardd, real user)", () => {
  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgdf');
    other = createTestUser('tgdo');
    writeFileSync(BANNED, Buffer.concat([readFileSync(TRUE), randomBytes(64)]));
    chmodSync(dir, 0o755);
    chmodSync(BANNED, 0o644);
    copyFileSync(BANNED, SHARED);
    chmodSync(SHARED, 0o755);
    loop = compileC(
      dir,
      'refusedloop',
      readFileSync(join(import.meta.dirname, '..', 'fixtures', 'native', 'refusedloop.c'), 'utf8'),
    );
    chmodSync(loop, 0o755);
    const hash = createHash('sha256').update(readFileSync(BANNED)).digest('hex');
    g = await startDenyingGuardd(
      dir,
      {
        id: `tgdf-${TAG}`,
        name: 'tgdf banned tool',
        action: 'block',
        message: 'tgdf: not approved.',
        process: { sha256: [hash] },
      },
      {
        // a generous deadline: a busy test machine must not be what lets a copy run
        'enforcement.exec_deny_deadline_ms': 1000,
      },
    );
  });

  /**
   * While `startFlood(stop)` floods refusals of the user's copy `a` until `stop` exists: the user's
   * fresh copies of the banned program are refused, and the other user's refusals recorded.
   */
  async function duringFlood(startFlood: (stop: string) => ChildProcess): Promise<void> {
    // the user's own copy, refused once: its verdict is cached
    expect(asUser(`cp "${BANNED}" a && chmod 755 a && ./a; echo "code=$?"`)).toContain('code=126');
    // the other user's program too, recorded (decided by guardd's loop, not from the cache)
    const shared = await deniedOf(SHARED);
    expect(asUser(`"${SHARED}"; echo "code=$?"`, other)).toContain('code=126');
    await waitFor(
      async () => (await deniedOf(SHARED)) === shared + 1,
      'the first refusal of the shared copy recorded',
    );
    const before = await counters();
    const stop = join(user.home, 'stop');
    spawnSync('rm', ['-f', stop]);
    const flood = startFlood(stop);
    const flooded = new Promise((res) => flood.once('close', res));
    let out: string;
    let otherOut: string;
    let after: ExecPermCounters;
    try {
      await waitFor(async () => (await counters()).denied > before.denied + FLOOD, 'the flood of refusals', {
        timeoutMs: 60_000,
      });
      out = asUser(
        `for i in $(seq ${COPIES}); do cp "${BANNED}" b$i && chmod 755 b$i && ./b$i; echo "code=$?"; done`,
      );
      otherOut = asUser(`for i in $(seq ${OTHER_TRIES}); do "${SHARED}"; echo "code=$?"; done`, other);
      // still flooding: the other user's reports were taken while the flood had the tokens
      after = await counters();
      await waitFor(
        async () => (await deniedOf(SHARED)) === shared + 1 + OTHER_TRIES,
        "the other user's refusals during the flood recorded, one event each",
        { timeoutMs: 20_000 },
      );
    } finally {
      writeFileSync(stop, '');
      await flooded;
    }
    const codes = out.split('\n').filter((l) => l.startsWith('code='));
    expect(codes, JSON.stringify(after)).toEqual(Array(COPIES).fill('code=126'));
    expect(otherOut.split('\n').filter((l) => l.startsWith('code='))).toEqual(
      Array(OTHER_TRIES).fill('code=126'),
    );
    expect(after.overflow - before.overflow, JSON.stringify(after)).toBe(0);
    // the flood reached the bound: refusals past it were counted, not reported
    expect(after.deny_reports_dropped - before.deny_reports_dropped).toBeGreaterThan(0);
  }

  it("while a user floods refusals: fresh copies of the banned program are still refused, and another user's refusals still recorded", async () => {
    await duringFlood((stop) =>
      spawn(loop, [join(user.home, 'a'), stop, '4'], { uid: user.uid, gid: user.gid, stdio: 'ignore' }),
    );
  });

  it("while a user floods refusals as their own uid and subordinate ones (newuidmap): another user's refusals still recorded", async () => {
    // one process of the flood as the user (uid 0 of their namespace), one as each of their
    // first seven subordinate uids: eight uids to guardd, each with a share, one user
    await duringFlood((stop) =>
      spawn(
        'unshare',
        [
          '--user',
          '--map-auto',
          '--map-root-user',
          'sh',
          '-c',
          'for u in 1 2 3 4 5 6 7; do setpriv --reuid=$u --regid=$u --clear-groups "$L" "$A" "$S" 1 & done; "$L" "$A" "$S" 1; wait',
        ],
        {
          uid: user.uid,
          gid: user.gid,
          cwd: user.home,
          stdio: 'ignore',
          env: { PATH: '/usr/bin:/bin', L: loop, A: join(user.home, 'a'), S: stop },
        },
      ),
    );
  });
});
