/**
 * One user's flood of empty directories in their own trees cannot make guardd hold memory for
 * each (a directory costs its owner one `mkdir`; the unit caps guardd's heap at 192 MiB, past
 * which every start aborts out of memory):
 *  - `@scope` dirs are watched up to a budget per home and owner (an inotify watch and ~3 KiB of
 *    heap each: 20,000 scope dirs took the heap up ~59 MiB, and a root may list 50,000); what is
 *    past it is counted and found by the root's events and the full rescans; another user's root
 *    claimed by the flooding user's `.npmrc` keeps its own scope dirs watched;
 *  - a root pattern with two `*` (pnpm dlx, Volta's scoped packages) yields at most 256 roots,
 *    not 256 × 256 (65,536 roots were ~80 MiB of heap);
 *  - a mkdir loop in the home (where roots may appear, so each event asks for a discovery) keeps
 *    guardd in discovery a bounded share of its time;
 *  - banned candidates vanishing together (each one sent a sweep of every link in the root's bin
 *    dirs: 10,000 candidates × 5,000 links were 50 million readlinks) cost one or two sweeps.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ownerOperations } from '../../../src/enforcement/owner-fs.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, spawnAs } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED, BANNED_UNSCOPED, makeRig } from './harness.js';

const base = tempDir('tg-dir-flood-');
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
  const rig = await makeRig({ dir: join(base, 'scopes'), homes: [user.home], action: 'warn' });
  try {
    const st = rig.sensor.status();
    expect(st.details.watched_dirs).toBeLessThanOrEqual(1_100);
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

const MKROOTS = `const fs = require('node:fs'); const [dlx, a, b] = process.argv.slice(1);
for (let i = 0; i < Number(a); i++)
  for (let j = 0; j < Number(b); j++) fs.mkdirSync(dlx + '/k' + i + '/v' + j + '/node_modules', { recursive: true });`;

it("a user's pnpm dlx dirs yield at most 256 roots, counted; a root among them is still scanned", async () => {
  const user = createTestUser('tgwb');
  const dlx = join(user.home, '.cache', 'pnpm', 'dlx');
  nodeAs(user, MKROOTS, dlx, '3', '200');
  const rig = await makeRig({ dir: join(base, 'roots'), homes: [user.home], action: 'warn' });
  try {
    const st = rig.sensor.status();
    const roots = st.details.roots as string[];
    expect(roots.length).toBe(256);
    expect(st.skipped.discovery_truncated).toBe(1);
    // The first by name are kept: k0/v0 is a root, and a banned package in it is reported.
    const root = join(dlx, 'k0', 'v0', 'node_modules');
    expect(roots).toContain(root);
    nodeAs(user, PACKAGE, join(user.home, 'stage'), join(root, BANNED_UNSCOPED), BANNED_UNSCOPED);
    await rig.sensor.rescan();
    const ev = await waitFor(() => rig.sink.ofType('package.warned')[0], 'package.warned', {
      timeoutMs: 25_000,
    });
    expect(ev).toMatchObject({ package: { name: BANNED_UNSCOPED, path: join(root, BANNED_UNSCOPED) } });
  } finally {
    await rig.close();
  }
});

const VANISHING = `const fs = require('node:fs'); const [root, bin, links, n] = process.argv.slice(1);
fs.mkdirSync(bin, { recursive: true });
for (let i = 0; i < Number(links); i++) fs.symlinkSync('../lib/node_modules/decoy' + i + '/cli.js', bin + '/decoy' + i);
const stage = root + '/../stage';
for (let i = 0; i < Number(n); i++) {
  fs.mkdirSync(stage + i, { recursive: true });
  fs.writeFileSync(stage + i + '/package.json', JSON.stringify({ name: 'banned-tool', version: '1.0.0', bin: { bt: 'cli.js' } }));
  fs.renameSync(stage + i, root + '/x' + i);
}`;
const REMOVE = `const fs = require('node:fs'); const [root, n] = process.argv.slice(1);
for (let i = 0; i < Number(n); i++) fs.rmSync(root + '/x' + i, { recursive: true });`;

it("a user's banned candidates vanishing at once cost a sweep of their bin dirs, not one each", async () => {
  const user = createTestUser('tgwb');
  const prefix = join(user.home, '.npm-global');
  const root = join(prefix, 'lib', 'node_modules');
  const rig = await makeRig({ dir: join(base, 'vanish'), homes: [user.home], action: 'warn' });
  try {
    // 1,000 links every sweep reads, and 100 banned candidates that wait for their bin link.
    nodeAs(user, VANISHING, root, join(prefix, 'bin'), '1000', '100');
    await waitFor(() => rig.sensor.status().details.pending === 100, '100 candidates waiting', {
      timeoutMs: 25_000,
    });
    const before = rig.sensor.status().details.leftover_sweeps as number;
    nodeAs(user, REMOVE, root, '100');
    // Each vanished banned package is reported once as removed by its installer…
    await waitFor(
      () => rig.observations.filter((o) => o.kind === 'package' && o.removed).length === 100,
      '100 removals',
      {
        timeoutMs: 60_000,
      },
    );
    // …from a few sweeps of the root's bin dirs (the old code swept once per vanished candidate).
    expect((rig.sensor.status().details.leftover_sweeps as number) - before).toBeLessThanOrEqual(5);
  } finally {
    await rig.close();
  }
});

it("a user's flood does not take the watches of another user's root their .npmrc names", async () => {
  const flooder = createTestUser('tgwb');
  const victim = createTestUser('tgwb');
  const victimRoot = join(victim.home, '.npm-global', 'lib', 'node_modules');
  // The victim's root with a scope dir of theirs, and the flooder's own root with 1,100 scope dirs
  // and a .npmrc naming the victim's prefix (the flooder's home is discovered first).
  nodeAs(victim, MKDIRS, victimRoot, '0');
  nodeAs(victim, `require('node:fs').mkdirSync(process.argv[1])`, join(victimRoot, '@anthropic-ai'));
  nodeAs(flooder, MKDIRS, join(flooder.home, '.npm-global', 'lib', 'node_modules'), '1100');
  nodeAs(
    flooder,
    `require('node:fs').writeFileSync(process.argv[1], 'prefix=' + process.argv[2] + '\\n')`,
    join(flooder.home, '.npmrc'),
    join(victim.home, '.npm-global'),
  );
  const rig = await makeRig({
    dir: join(base, 'claimed'),
    homes: [flooder.home, victim.home],
    action: 'warn',
  });
  try {
    expect(rig.sensor.status().skipped.watch_budget_exceeded).toBe(1);
    // The victim installs into their existing scope dir: its watch reports it (no rescan runs).
    nodeAs(
      victim,
      PACKAGE,
      join(victim.home, 'stage'),
      join(victimRoot, '@anthropic-ai', 'claude-code'),
      BANNED,
    );
    const ev = await waitFor(() => rig.sink.ofType('package.warned')[0], 'package.warned', {
      timeoutMs: 25_000,
    });
    expect(ev).toMatchObject({
      package: { name: BANNED, path: join(victimRoot, '@anthropic-ai', 'claude-code') },
    });
  } finally {
    await rig.close();
  }
});

const MKVERSIONS = `const fs = require('node:fs'); const [home, n] = process.argv.slice(1);
for (const p of ['.nvm/versions/node/*/lib/node_modules', '.volta/tools/image/node/*/lib/node_modules',
  '.asdf/installs/nodejs/*/lib/node_modules', '.npm/_npx/*/node_modules'])
  for (let i = 0; i < Number(n); i++) fs.mkdirSync(home + '/' + p.replace('*', 'v' + i), { recursive: true });`;

it("a user's mkdir loop in their home keeps guardd in discovery a bounded share of the time", async () => {
  const user = createTestUser('tgwb');
  nodeAs(user, MKVERSIONS, user.home, '256');
  const rig = await makeRig({ dir: join(base, 'anchor-loop'), homes: [user.home], action: 'warn' });
  const ms = (): number => rig.sensor.status().details.discovery_ms as number;
  try {
    expect((rig.sensor.status().details.roots as string[]).length).toBe(1024);
    // Long enough for many discoveries whatever the machine's load: 15 times the first one.
    const window = Math.min(60_000, Math.max(6_000, 15 * ms()));
    const before = ms();
    const t0 = performance.now();
    // Every mkdir in the home (an anchor: roots may appear there) asks for a discovery.
    const loop = spawnAs(
      user,
      'sh',
      [
        '-c',
        `end=$(( $(date +%s) + ${Math.ceil(window / 1000)} )); while [ $(date +%s) -lt $end ]; do mkdir x; rmdir x; done`,
      ],
      { cwd: user.home },
    );
    await new Promise((r) => loop.on('exit', r));
    const share = (ms() - before) / (performance.now() - t0);
    // The old code ran discovery back to back (0.92 of the time, ~70 % of a core); now ~0.16.
    expect(share).toBeLessThan(0.4);
  } finally {
    await rig.close();
  }
});

const WRITER = `const fs = require('node:fs'); const [root, secs] = process.argv.slice(1);
const pkg = root + '/big';
fs.mkdirSync(pkg + '/lib', { recursive: true });
fs.writeFileSync(pkg + '/package.json', JSON.stringify({ name: 'banned-tool', version: '1.0.0' }));
for (let i = 0; i < 100; i++) fs.writeFileSync(pkg + '/lib/f' + i, '');
const end = Date.now() + Number(secs) * 1000;
let i = 0;
const t = setInterval(() => {
  fs.writeFileSync(pkg + '/lib/f0', String(i++));
  if (Date.now() > end) clearInterval(t);
}, 50);`;

it("a user's banned package kept changing is walked less and less often, not every 200 ms", async () => {
  const user = createTestUser('tgwb');
  const root = join(user.home, '.npm-global', 'lib', 'node_modules');
  nodeAs(user, MKDIRS, root, '0');
  const rig = await makeRig({ dir: join(base, 'settle'), homes: [user.home], action: 'warn' });
  try {
    const before = rig.sensor.status().details.fingerprints as number;
    // 8 s of a write every 50 ms somewhere in the tree: it never settles while that lasts.
    const writer = spawnAs(user, process.execPath, ['-e', WRITER, root, '8']);
    await new Promise((r) => writer.on('exit', r));
    const walks = (rig.sensor.status().details.fingerprints as number) - before;
    // The old code walked it every 200 ms (~40 walks, each up to 20,000 lstats: a user's four such
    // trees of 20,000 files kept guardd at a full core); now at most every 2 s after a few doublings.
    expect(walks).toBeLessThanOrEqual(15);
    // Once the writes stop it settles and is reported.
    await waitFor(() => rig.sink.ofType('package.warned')[0], 'package.warned', { timeoutMs: 25_000 });
  } finally {
    await rig.close();
  }
});

const MOVE_IN = `const fs = require('node:fs'); const [root, n] = process.argv.slice(1);
for (let i = 0; i < Number(n); i++) {
  const s = root + '/../stage' + i;
  fs.mkdirSync(s);
  fs.writeFileSync(s + '/package.json', JSON.stringify({ name: 'banned-tool', version: '1.0.0' }));
}
for (let i = 0; i < Number(n); i++) fs.renameSync(root + '/../stage' + i, root + '/p' + i);`;

it("a user's burst of banned packages is quarantined a few at a time, not one child process each at once", async () => {
  const user = createTestUser('tgwb');
  const root = join(user.home, '.npm-global', 'lib', 'node_modules');
  nodeAs(user, MKDIRS, root, '0');
  const rig = await makeRig({ dir: join(base, 'burst'), homes: [user.home], action: 'block' });
  try {
    // Each quarantine runs as the user in a node child (~40 MB): 40 at once were 24+ children in
    // guardd's cgroup, and a user's thousands of one-file packages would fill its MemoryMax.
    nodeAs(user, MOVE_IN, root, '40');
    await waitFor(() => rig.results.length >= 40, '40 quarantines', { timeoutMs: 120_000 });
    expect(rig.results.every((r) => r.actionTaken === 'quarantined')).toBe(true);
    expect(ownerOperations().peak).toBeLessThanOrEqual(4);
  } finally {
    await rig.close();
  }
});
