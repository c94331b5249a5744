/**
 * The quarantine action on a user's FUSE mount that never answers (issue 13). The action and the
 * store's own looks at the path (owner-fs `actorFor`) called lstat/realpath on it from guardd
 * directly, ungated and with no deadline: each try pinned one of libuv's 4 pool threads for as long
 * as the mount stalled — four of the user's banned packages on such mounts stopped every file call
 * of guardd, another user's quarantine with them — and the action never ended. Now every such look
 * goes through the install read gate under the tree's key with a deadline: the action ends as
 * `failed` with GUARD_QUARANTINE_BUSY within a few seconds, nothing recorded or moved, the user's
 * tries pin one pool thread between them, and another user's package is quarantined meanwhile.
 *
 * Real parts: real users made here, their trees written as them, real FUSE mounts of theirs whose
 * daemon never answers (stall-attack.ts `mountAs`), the real action, store, owner-fs children and
 * SQLite journal.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { QuarantineAction } from '../../src/enforcement/actions/quarantine.js';
import { ownerOperations } from '../../src/enforcement/owner-fs.js';
import { QuarantineStore } from '../../src/enforcement/quarantine-store.js';
import type { Decision } from '../../src/policy/matcher.js';
import type { PackageObservation } from '../../src/sensors/observation.js';
import { installReadGate } from '../../src/sensors/package-reader.js';
import { ReadGate } from '../../src/sensors/safe-read.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../helpers/machine-lock.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { BANNED_UNSCOPED, RecordingNotifier } from '../sensors/install/harness.js';
import {
  installBanned,
  mountAs,
  npmRoot,
  shAs,
  type UserMount,
  within,
} from '../sensors/install/stall-attack.js';

const logger = silentLogger();
const base = tempDir('tgqs-');
chmodSync(base, 0o755);

/** A stalled action ends within this: one 2 s deadline per look, and slack for a loaded machine. */
const ACTION_BOUND_MS = 15_000;

const decision = {
  rule: { id: 'banned-tool', name: 'Banned tool', action: 'block' },
  reason: 'npm_package',
  message: 'not approved',
  url: null,
  policyVersion: 1,
  mode: 'enforce',
} as Decision;

function rig(name: string): { store: QuarantineStore; action: QuarantineAction } {
  const state = join(base, name, 'state');
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const { db } = openDatabase(join(state, 'state.db'), { migrations: MIGRATIONS, synchronous: 'NORMAL' });
  const store = new QuarantineStore({ db, quarantineDir: join(state, 'quarantine'), logger });
  return { store, action: new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }) };
}

/** What the install sensor reports for `user`'s package at `path` in `root` (its tree: their uid). */
function observed(user: TestUser, root: string, path: string, extra: Partial<PackageObservation> = {}) {
  return {
    kind: 'package',
    ecosystem: 'npm',
    name: BANNED_UNSCOPED,
    version: '1.0.0',
    path,
    root,
    manager: 'npm',
    owner: { uid: user.uid, user: user.name, groups: [], home: user.home },
    treeKey: user.uid,
    ...extra,
  } as PackageObservation;
}

it(
  "four of a user's banned packages on stalled FUSE mounts: each action fails with GUARD_QUARANTINE_BUSY, another user's package is quarantined meanwhile",
  async () => {
    const staller = createTestUser('tgqs');
    const other = createTestUser('tgqs');
    const root = npmRoot(staller);
    const mounts: UserMount[] = [];
    const { store, action } = rig('four');
    try {
      const stalled: string[] = [];
      for (const n of ['a', 'b', 'c', 'd']) {
        const pkg = join(root, `${BANNED_UNSCOPED}-${n}`);
        shAs(staller, `mkdir '${pkg}'`);
        mounts.push(await mountAs(staller, pkg, base));
        stalled.push(pkg);
      }
      const otherPkg = installBanned(other, npmRoot(other));
      const tries = stalled.map((p) => action.execute(observed(staller, root, p), decision));
      const done = await within(
        action.execute(
          observed(other, join(other.home, '.npm-global', 'lib', 'node_modules'), otherPkg),
          decision,
        ),
        ACTION_BOUND_MS,
        "the other user's quarantine",
      );
      expect(done).toMatchObject({ actionTaken: 'quarantined', error: null });
      const results = await within(Promise.all(tries), ACTION_BOUND_MS, "the staller's quarantines");
      for (const r of results) {
        expect(r.actionTaken).toBe('failed');
        expect(r.error).toMatch(/^GUARD_QUARANTINE_BUSY: .*did not answer in time/);
      }
      // Nothing recorded (write-ahead: nothing moved either) but the other user's package.
      expect(store.list().map((e) => [e.manifest.originalPath, e.state])).toEqual([
        [otherPkg, 'quarantined'],
      ]);
      // The four tries pin one pool thread between them (the first look, stuck until the mount goes).
      expect(ReadGate.pendingAll).toBe(1);
      expect(ownerOperations().running).toBe(0);
    } finally {
      for (const m of mounts) await m.release();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a banned package whose package.json is a stalled FUSE mount: the action fails with GUARD_QUARANTINE_BUSY, nothing moved',
  async () => {
    const staller = createTestUser('tgqs');
    const root = npmRoot(staller);
    const pkg = installBanned(staller, root);
    const { store, action } = rig('manifest');
    const mount = await mountAs(staller, join(pkg, 'package.json'), base, { file: true });
    try {
      const r = await within(
        action.execute(observed(staller, root, pkg), decision),
        ACTION_BOUND_MS,
        'the action',
      );
      expect(r.actionTaken).toBe('failed');
      expect(r.error).toMatch(/^GUARD_QUARANTINE_BUSY: .*package\.json did not answer in time/);
      expect(store.list()).toEqual([]);
    } finally {
      await mount.release();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  "a package its installer removed, whose bin dir is a stalled FUSE mount: cleaning its links fails with GUARD_QUARANTINE_BUSY, the operation's place is given back",
  async () => {
    const staller = createTestUser('tgqs');
    const root = npmRoot(staller);
    const { action } = rig('leftovers');
    const mount = await mountAs(staller, join(staller.home, '.npm-global', 'bin'), base);
    try {
      const r = await within(
        action.execute(
          observed(staller, root, join(root, BANNED_UNSCOPED), { removed: true, version: null }),
          decision,
        ),
        ACTION_BOUND_MS,
        'the action',
      );
      expect(r.actionTaken).toBe('failed');
      expect(r.error).toMatch(/^GUARD_QUARANTINE_BUSY: leftover links not removed: .*\.npm-global\/bin/);
      expect(ownerOperations().running).toBe(0);
    } finally {
      await mount.release();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  "twelve cleanups behind a user's stalled bin dir: once one look is stuck past its deadline the others are refused at once, not each after its own deadline, and another user's quarantine queued behind them goes through",
  async () => {
    const staller = createTestUser('tgqs');
    const other = createTestUser('tgqs');
    const root = npmRoot(staller);
    const { store, action } = rig('many');
    const mount = await mountAs(staller, join(staller.home, '.npm-global', 'bin'), base);
    try {
      const before = { ...installReadGate.counts };
      // 12 operations of theirs take the 4 owner-fs places first; the other user's waits behind them
      const tries = Array.from({ length: 12 }, () =>
        action.execute(
          observed(staller, root, join(root, BANNED_UNSCOPED), { removed: true, version: null }),
          decision,
        ),
      );
      const otherPkg = installBanned(other, npmRoot(other));
      const done = action.execute(
        observed(other, join(other.home, '.npm-global', 'lib', 'node_modules'), otherPkg),
        decision,
      );
      const results = await within(Promise.all(tries), ACTION_BOUND_MS, "the staller's cleanups");
      for (const r of results) expect(r.error).toMatch(/^GUARD_QUARANTINE_BUSY: /);
      expect(await within(done, ACTION_BOUND_MS, "the other user's quarantine")).toMatchObject({
        actionTaken: 'quarantined',
        error: null,
      });
      // The first batch of 4 met the stalled look (one timed out, three waited in line); the 8
      // after it were refused at once: a wait of a full deadline each (2 s, four at a time) before.
      expect(installReadGate.counts.timeout - before.timeout).toBe(1);
      expect(installReadGate.counts.stuck - before.stuck).toBeGreaterThanOrEqual(8);
      expect(store.list().map((e) => e.manifest.originalPath)).toEqual([otherPkg]);
      expect(ownerOperations().running).toBe(0);
    } finally {
      await mount.release();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);
