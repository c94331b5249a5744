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
 */

import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
/** Fresh copies of the banned program run during the flood. */
const COPIES = 10;

let user: TestUser;
let g: Guardd | undefined;
let loop: string;

afterAll(async () => {
  await g?.stop();
});

const counters = (): Promise<ExecPermCounters> => execDenyCounters(g as Guardd);

function asUser(script: string): string {
  const r = spawnSync('sh', ['-c', script], {
    uid: user.uid,
    gid: user.gid,
    cwd: user.home,
    env: { PATH: '/usr/bin:/bin', HOME: user.home },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return r.stdout;
}

describe("a user's flood of refused execs (real guardd, real user)", () => {
  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgdf');
    writeFileSync(BANNED, Buffer.concat([readFileSync(TRUE), randomBytes(64)]));
    chmodSync(dir, 0o755);
    chmodSync(BANNED, 0o644);
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

  it('fresh copies of the banned program are still refused while the user floods refusals of another', async () => {
    // the user's own copy, refused once: its verdict is cached
    expect(asUser(`cp "${BANNED}" a && chmod 755 a && ./a; echo "code=$?"`)).toContain('code=126');
    const before = await counters();
    const stop = join(user.home, 'stop');
    const flood = spawn(loop, [join(user.home, 'a'), stop, '4'], {
      uid: user.uid,
      gid: user.gid,
      stdio: 'ignore',
    });
    const flooded = new Promise((res) => flood.once('close', res));
    let out: string;
    let after: ExecPermCounters;
    try {
      await waitFor(async () => (await counters()).denied > before.denied + FLOOD, 'the flood of refusals', {
        timeoutMs: 60_000,
      });
      out = asUser(
        `for i in $(seq ${COPIES}); do cp "${BANNED}" b$i && chmod 755 b$i && ./b$i; echo "code=$?"; done`,
      );
      after = await counters();
    } finally {
      writeFileSync(stop, '');
      await flooded;
    }
    const codes = out.split('\n').filter((l) => l.startsWith('code='));
    expect(codes, JSON.stringify(after)).toEqual(Array(COPIES).fill('code=126'));
    expect(after.overflow - before.overflow, JSON.stringify(after)).toBe(0);
    // the flood reached the bound: refusals past it were counted, not reported
    expect(after.deny_reports_dropped - before.deny_reports_dropped).toBeGreaterThan(0);
  });
});
