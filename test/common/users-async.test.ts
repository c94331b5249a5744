/**
 * The list of users (src/common/users.ts `users()`) never blocks guardd's event loop, whatever the
 * user database or the home roots do:
 *
 *  - a `getent passwd` enumeration that hangs (a real process that never answers, standing for a
 *    hung SSSD/LDAP: a `getent` first in PATH that sleeps) is waited for in the background; users()
 *    answers from /etc/passwd meanwhile, and the child is killed at its timeout;
 *  - a home-root entry whose stat never answers (a FUSE mount made by root whose daemon never
 *    answers — not a user's own mount, so not skipped through mountinfo: it stands for a home on a
 *    hung NFS server) is left out after its deadline, is not asked again while its stat is stuck,
 *    and the other homes are found — the install sensor finds a banned package in one of them;
 *  - macOS's `dscl` (a fake one first in PATH: macOS cannot run here) is read in the background.
 *
 * Each case runs the real UserDirectory in a child node process (from dist/) that counts timer
 * ticks: the largest gap between two ticks is how long its event loop was blocked. The old code
 * blocked it for the whole `getent` timeout (2 s), never returned from the stalled stat, and
 * waited for `dscl`. Needs root, like CI (it mounts a FUSE file system and creates a user).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { ROOT } from '../helpers/daemon.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../helpers/machine-lock.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser } from '../helpers/unix-user.js';
import { mountStalled, type StalledMount } from '../sensors/hostile-fs.js';
import { policyBody } from '../sensors/install/harness.js';
import { installBanned, npmRoot } from '../sensors/install/stall-attack.js';

const dist = (p: string): string => JSON.stringify(join(ROOT, 'dist', p));
const REAL_GETENT = spawnSync('sh', ['-c', 'command -v getent'], { encoding: 'utf8' }).stdout.trim();
/** The child's event loop may stall this long at most (a spawn, a file read): the old code's 2 s timeout is far above. */
const MAX_LOOP_GAP_MS = 750;
/** A child that has not printed its answer by then is killed (the old code's stalled stat never returns). */
const CHILD_TIMEOUT_MS = 40_000;

let stalled: StalledMount | undefined;
afterAll(async () => {
  await stalled?.release();
});

/** Prelude of every child: a 10 ms ticker recording the largest gap between ticks. */
const TICKER = `
let last = performance.now(), maxGap = 0, ticks = 0;
const ticker = setInterval(() => {
  const now = performance.now();
  maxGap = Math.max(maxGap, now - last);
  last = now;
  ticks++;
}, 10);
const timed = (f) => { const t0 = performance.now(); const v = f(); return [v, performance.now() - t0]; };
`;

interface ChildResult {
  /** The answer line the child printed, or null when it printed none before CHILD_TIMEOUT_MS or its exit. */
  readonly answer: string | null;
  readonly stderr: string;
}

/**
 * Runs `script` (an ES module) in a child node with `binDir` first in PATH, until it printed its
 * answer (one JSON line on stdout); then the child is killed. Not waited to exit: a process whose
 * pool thread is stuck in a stat on the stalled mount never finishes exiting (libuv joins its
 * threads at exit) until the mount is released.
 */
function runChild(script: string, binDir: string): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', TICKER + script], {
      env: { ...process.env, PATH: `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const done = (answer: string | null): void => {
      clearTimeout(timer);
      // A stat waiting on the FUSE daemon ends only for a fatal signal.
      child.kill('SIGKILL');
      resolve({ answer, stderr });
    };
    child.stdout.on('data', (d) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl >= 0) done(stdout.slice(0, nl));
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => done(null), CHILD_TIMEOUT_MS);
    child.on('close', () => done(null));
  });
}

function parsed<T>(r: ChildResult): T {
  expect(r.answer, `the child did not answer within ${CHILD_TIMEOUT_MS} ms: ${r.stderr}`).not.toBeNull();
  return JSON.parse(r.answer as string) as T;
}

function writeScript(dir: string, name: string, text: string): void {
  writeFileSync(join(dir, name), text, { mode: 0o755 });
}

it('a getent enumeration that hangs: users() answers at once from /etc/passwd, the loop keeps ticking, the child is killed', async () => {
  const dir = tempDir('tg-uas-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const mark = join(dir, 'getent.pid');
  // This file's own sleep (what its pids are checked to be before one is killed).
  const hang = join(bin, 'tguas-hang');
  copyFileSync('/bin/sleep', hang);
  // Enumeration hangs; a lookup by key is the real one.
  writeScript(
    bin,
    'getent',
    `#!/bin/sh
if [ "$#" = 1 ] && [ "$1" = passwd ]; then echo $$ >> '${mark}'; exec '${hang}' 30; fi
exec '${REAL_GETENT}' "$@"
`,
  );
  const r = await runChild(
    `
const { UserDirectory } = await import(${dist('common/users.js')});
const d = new UserDirectory({ platform: 'linux', homeRoots: [] });
const [first, callMs] = timed(() => d.users());
await d.settleUsers?.(20_000);
const [after, secondMs] = timed(() => d.users());
clearInterval(ticker);
console.log(JSON.stringify({ callMs, secondMs, maxGap, ticks, rounds: d.roundCounts?.()?.rounds,
  first: first.map((u) => [u.uid, u.home]), after: after.map((u) => [u.uid, u.home]) }));`,
    bin,
  );
  const out = parsed<{
    callMs: number;
    secondMs: number;
    maxGap: number;
    ticks: number;
    rounds: number;
    first: [number, string][];
    after: [number, string][];
  }>(r);
  // The hung getent really ran, and was killed at its timeout (its pid is gone). A later round
  // (another test file changed /etc/passwd meanwhile) may have started another: killed here.
  const pids = readFileSync(mark, 'utf8').trim().split('\n').map(Number);
  const alive = (pid: number): string => {
    try {
      process.kill(pid, 0);
      return 'alive';
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? '';
    }
  };
  const first = alive(pids[0] as number);
  const ours = (pid: number): boolean => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] === hang;
    } catch {
      return false;
    }
  };
  for (const pid of pids.slice(1)) if (ours(pid)) process.kill(pid, 'SIGKILL');
  expect(pids[0]).toBeGreaterThan(0);
  expect(first, 'the hung getent is still running').toBe('ESRCH');
  expect(out.callMs, 'users() waited for the enumeration').toBeLessThan(MAX_LOOP_GAP_MS);
  expect(out.maxGap, "the child's event loop was blocked").toBeLessThan(MAX_LOOP_GAP_MS);
  expect(out.secondMs).toBeLessThan(MAX_LOOP_GAP_MS);
  expect(out.rounds).toBe(1);
  // From /etc/passwd before the round, and after it (the enumeration failed: the files stand in).
  expect(out.first).toContainEqual([0, '/root']);
  expect(out.after).toContainEqual([0, '/root']);
});

it(
  'a home-root entry whose stat never answers (root-made FUSE mount: a hung NFS server): users() returns, the other homes count, the install sensor finds them',
  async () => {
    const dir = tempDir('tg-uas-');
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    const homeRoot = join(dir, 'homes');
    mkdirSync(homeRoot);
    chmodSync(dir, 0o755);
    chmodSync(homeRoot, 0o755);
    // A directory user (SSSD does not enumerate by default): `getent passwd` leaves them out, a
    // lookup by uid finds them. Their home under the home root is how they are found.
    const user = createTestUser('tguas');
    writeScript(
      bin,
      'getent',
      `#!/bin/sh
if [ "$#" = 1 ] && [ "$1" = passwd ]; then '${REAL_GETENT}' passwd | grep -v '^${user.name}:'; exit 0; fi
exec '${REAL_GETENT}' "$@"
`,
    );
    const entry = join(homeRoot, user.name);
    mkdirSync(entry);
    chownSync(entry, user.uid, user.gid);
    const pkg = installBanned(user, npmRoot(user));
    // Root's mount (user_id=0) at <home root>/mnt whose daemon never answers.
    stalled = await mountStalled(homeRoot);
    const policy = policyBody('audit');
    const r = await runChild(
      `
const { UserDirectory } = await import(${dist('common/users.js')});
const { InstallSensor } = await import(${dist('sensors/install-sensor.js')});
const { compileMatcher } = await import(${dist('policy/matcher.js')});
const { silentLogger } = await import(${dist('common/logger.js')});
const d = new UserDirectory({ platform: 'linux', homeRoots: [${JSON.stringify(homeRoot)}], refreshMs: 0 });
const [, callMs] = timed(() => d.users());
await d.settleUsers?.(20_000);
const round1 = d.roundCounts?.();
console.error('round 1', JSON.stringify(round1), Math.round(performance.now()));
const found1 = d.users().some((u) => u.uid === ${user.uid});
// A second round (refreshMs 0: started by the call above): the stuck stat is not asked again.
await d.settleUsers?.(20_000);
const round2 = d.roundCounts?.();
console.error('round 2', JSON.stringify(round2), Math.round(performance.now()));
const homes = d.users().map((u) => u.home);
// Without the home root, the wrapper's enumeration does not list the user.
const none = new UserDirectory({ platform: 'linux', homeRoots: [] });
none.users();
await none.settleUsers?.(20_000);
const withoutRoot = none.users().some((u) => u.uid === ${user.uid});
console.error('without the home root', withoutRoot, Math.round(performance.now()));
const seen = [];
const sensor = new InstallSensor({
  users: d, platform: 'linux', rescanCron: '0 0 1 1 *', extraRoots: [], systemRoots: false,
  logger: silentLogger(), onObservation: async (obs) => { seen.push(obs); },
});
sensor.setMatcher(compileMatcher(${JSON.stringify(policy)}, { platform: 'linux', homes }));
await sensor.start();
console.error('sensor started', JSON.stringify(sensor.status()), Math.round(performance.now()));
for (let i = 0; i < 400 && !seen.some((o) => o.path === ${JSON.stringify(pkg)}); i++) await new Promise((r) => setTimeout(r, 50));
console.error('reported', seen.length, Math.round(performance.now()));
await sensor.stop();
clearInterval(ticker);
console.log(JSON.stringify({ callMs, maxGap, round1, round2, found1, withoutRoot,
  homes, reported: seen.map((o) => o.path) }));
`,
      bin,
    );
    const out = parsed<{
      callMs: number;
      maxGap: number;
      round1: { rounds: number; homeTimeouts: number; homesSkipped: number };
      round2: { rounds: number; homeTimeouts: number; homesSkipped: number };
      found1: boolean;
      withoutRoot: boolean;
      homes: string[];
      reported: string[];
    }>(r);
    expect(out.callMs, 'users() waited for the home roots').toBeLessThan(MAX_LOOP_GAP_MS);
    expect(out.maxGap, "the child's event loop was blocked").toBeLessThan(MAX_LOOP_GAP_MS);
    // Round 1: the mount's stat timed out (left out), the user's home answered.
    expect(out.round1).toMatchObject({ rounds: 1, homeTimeouts: 1 });
    expect(out.found1).toBe(true);
    expect(out.withoutRoot).toBe(false);
    // Round 2: not asked again while stuck (no second timeout, no second slot held).
    expect(out.round2.rounds).toBe(2);
    expect(out.round2.homeTimeouts).toBe(1);
    expect(out.round2.homesSkipped).toBeGreaterThanOrEqual(1);
    expect(out.homes).toContain(user.home);
    expect(out.reported).toContain(pkg);
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it('macOS: dscl is read in the background; owner() and users() answer once it did', async () => {
  const dir = tempDir('tg-uas-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  // A directory that takes 2 s to answer (opendirectoryd asking a network directory).
  writeScript(
    bin,
    'dscl',
    `#!/bin/sh
[ "$*" = ". -list /Users UniqueID" ] || exit 64
sleep 2
printf 'root 0\\n_spotlight 89\\nalice 501\\n'
`,
  );
  const r = await runChild(
    `
const { UserDirectory } = await import(${dist('common/users.js')});
const d = new UserDirectory({ platform: 'darwin' });
const [first, callMs] = timed(() => d.users());
const waited = d.settle(501, 20_000);
await waited;
await d.settleUsers?.(20_000);
clearInterval(ticker);
console.log(JSON.stringify({ callMs, maxGap, waited: waited !== null, first: first.length,
  after: d.users().map((u) => [u.uid, u.name, u.home]), owner: d.owner(501).user }));`,
    bin,
  );
  const out = parsed<{
    callMs: number;
    maxGap: number;
    waited: boolean;
    first: number;
    after: [number, string, string][];
    owner: string | null;
  }>(r);
  expect(out.callMs, 'users() waited for dscl').toBeLessThan(MAX_LOOP_GAP_MS);
  expect(out.maxGap, "the child's event loop was blocked").toBeLessThan(MAX_LOOP_GAP_MS);
  expect(out.first).toBe(0);
  expect(out.waited).toBe(true);
  expect(out.after).toEqual([
    [0, 'root', '/var/root'],
    [501, 'alice', '/Users/alice'],
  ]);
  expect(out.owner).toBe('alice');
});
