/**
 * One user cannot make guardd hold a watch (an inotify watch and ~3 KiB of heap each) for every
 * directory they make: a real unprivileged user fills their own global npm root with `@scope`
 * directories (one `mkdir` each; 20,000 took guardd's heap up ~59 MiB, and a root may list 50,000,
 * so one home's flood alone passed the unit's 192 MiB heap cap and every start of guardd aborted
 * out of memory). A home's roots and scope dirs are watched up to a budget; what is past it is
 * counted and found by the full rescans, and the budget a scope dir held is free again once it goes.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED, BANNED_UNSCOPED, makeRig } from './harness.js';

const base = tempDir('tg-watch-budget-');
const FLOOD = 3_000;

/** Runs `script` (node -e) as `user`, with `args`; fails on a non-zero exit. */
function nodeAs(user: { uid: number; gid: number }, script: string, ...args: string[]): void {
  const r = spawnSync(process.execPath, ['-e', script, ...args], {
    uid: user.uid,
    gid: user.gid,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`node as ${user.uid} exited ${r.status}: ${r.stderr}`);
}

const MKDIRS = `const fs = require('node:fs'); const [root, n] = process.argv.slice(1);
fs.mkdirSync(root, { recursive: true });
for (let i = 0; i < Number(n); i++) fs.mkdirSync(root + '/@flood' + i);`;

/** Writes a package as the user: staged beside the root, renamed in (one step, as npm does). */
const PACKAGE = `const fs = require('node:fs'); const [staged, to, name] = process.argv.slice(1);
fs.mkdirSync(staged, { recursive: true });
fs.writeFileSync(staged + '/package.json', JSON.stringify({ name, version: '1.0.0' }));
fs.mkdirSync(require('node:path').dirname(to), { recursive: true });
fs.renameSync(staged, to);`;

it("a user's flood of scope dirs holds at most their budget of watches; the rest is found by rescans", async () => {
  const user = createTestUser('tgwb');
  const root = join(user.home, '.npm-global', 'lib', 'node_modules');
  nodeAs(user, MKDIRS, root, String(FLOOD));
  const rig = await makeRig({ dir: base, homes: [user.home], action: 'warn' });
  try {
    const st = rig.sensor.status();
    expect(st.details.watched_dirs).toBeLessThanOrEqual(2_100);
    expect(st.skipped.watch_budget_exceeded).toBe(1);
    // A banned package in the user's root (watched) is still reported from its watch event.
    nodeAs(user, PACKAGE, join(user.home, 'stage1'), join(root, BANNED_UNSCOPED), BANNED_UNSCOPED);
    await waitFor(() => rig.sink.ofType('package.warned').length === 1, 'the watched root reports', {
      timeoutMs: 25_000,
    });
    // One in a new scope dir past the budget (not watched: listed at the root's event or a rescan).
    nodeAs(user, PACKAGE, join(user.home, 'stage2'), join(root, '@anthropic-ai', 'claude-code'), BANNED);
    await rig.sensor.rescan();
    const ev = await waitFor(
      () => rig.sink.ofType('package.warned')[1],
      'the package in a scope dir past the budget is reported',
      { timeoutMs: 25_000 },
    );
    expect(ev).toMatchObject({ package: { name: BANNED } });
  } finally {
    await rig.close();
  }
});
