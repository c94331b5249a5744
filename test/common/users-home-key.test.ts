/**
 * A home's stat in a users() round (src/common/users.ts) is gated under its user's key: a stat the
 * user's own FUSE mount holds counts against that user's share of libuv's pool (ReadGate: 3
 * threads pinned at most in all, 2 per key), never adds a thread beyond it.
 *
 * The attack: a real user whose home an admin's link in the home root leads to (`<root>/<name>` →
 * their home) mounts a FUSE file system whose daemon never answers over their home after guardd's
 * first round (made with `allow_other`, as fusermount3 makes it where /etc/fuse.conf allows, so
 * root reaches it), and holds two calls of theirs stuck on it (the install sensor's and the script
 * reader's, gated under their uid). The next round's stat follows the link into the mount (the
 * mount table names the home, not the link). Keyed by the path, it took a third pool thread: every
 * gate was full, and another user's read through the install gate was refused (`busy`) — guardd
 * blind to everyone's installs, scripts and quarantines for as long as the daemon held. Now it
 * waits in the user's own line (and gives up at its deadline): the other read answers.
 *
 * Runs the real UserDirectory and gates (dist/) in a child node, killed at the end (a pool thread
 * stuck in a stat holds a normal exit). Needs root, like CI.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { ROOT } from '../helpers/daemon.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../helpers/machine-lock.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser } from '../helpers/unix-user.js';
import { mountAs, type UserMount } from '../sensors/install/stall-attack.js';

const dist = (p: string): string => JSON.stringify(join(ROOT, 'dist', p));
const scratch = tempDir('tg-uhk-');
chmodSync(scratch, 0o755);
let mount: UserMount | undefined;
afterAll(async () => {
  await mount?.release();
});

it(
  "a home stat held by its user's FUSE mount counts against that user's pool share: another user's read still answers",
  async () => {
    const user = createTestUser('tguhk');
    const homeRoot = join(scratch, 'homes');
    mkdirSync(homeRoot, { mode: 0o755 });
    symlinkSync(user.home, join(homeRoot, user.name));
    const go = join(scratch, 'go');
    const script = `
const { UserDirectory } = await import(${dist('common/users.js')});
const { installReadGate } = await import(${dist('sensors/package-reader.js')});
const { ReadGate, readUserFile } = await import(${dist('sensors/safe-read.js')});
const { lstat } = await import('node:fs/promises');
const { existsSync } = await import('node:fs');
const d = new UserDirectory({ platform: 'linux', homeRoots: [${JSON.stringify(homeRoot)}], refreshMs: 1 });
d.users();
await d.settleUsers(20_000);
const first = d.users().some((u) => u.uid === ${user.uid});
console.log('round1');
for (let i = 0; i < 400 && !existsSync(${JSON.stringify(go)}); i++) await new Promise((r) => setTimeout(r, 50));
// The user's two stuck calls, each through a gate under their uid.
const inMount = ${JSON.stringify(join(user.home, 'x'))};
const mine = await Promise.all([
  installReadGate.run(${user.uid}, 2000, () => lstat(inMount)),
  new ReadGate('script_package', 2, 2).run(${user.uid}, 2000, () => lstat(inMount)),
]);
d.users();
await d.settleUsers(20_000);
const other = await readUserFile('/etc/passwd', { maxBytes: 1 << 20, gate: installReadGate, key: 'someone-else' });
console.log(JSON.stringify({ first, mine: mine.map((r) => r.admitted && r.timedOut), other: other.ok ? 'ok' : other.reason,
  pinned: ReadGate.pendingAll, counts: d.roundCounts() }));
process.kill(process.pid, 'SIGKILL');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.stderr.on('data', (b) => {
      err += b;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    try {
      for (let i = 0; i < 600 && !out.includes('round1\n') && child.exitCode === null; i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(out, `the child's first round did not end: ${err}`).toContain('round1\n');
      // After guardd's first round: the user covers their home with a mount that never answers.
      mount = await mountAs(user, user.home, scratch);
      writeFileSync(go, '');
      await closed;
    } finally {
      clearTimeout(killer);
    }
    const line = out.split('\n').find((l) => l.startsWith('{'));
    expect(line, `the child did not answer: ${err}`).toBeDefined();
    const r = JSON.parse(line as string);
    expect(r.first).toBe(true);
    // The user's two calls are stuck on their mount (each timed out, its thread held).
    expect(r.mine).toEqual([true, true]);
    // Their home's stat waited in their own line; the pool kept a thread for everyone else.
    expect(r.other).toBe('ok');
    expect(r.pinned).toBe(2);
    expect(r.counts.homeTimeouts).toBeGreaterThanOrEqual(1);
  },
  LOCKED_TEST_TIMEOUT_MS,
);
