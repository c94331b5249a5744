/**
 * QuarantineStore and QuarantineAction on real files and a real SQLite DB: cross-filesystem moves,
 * TOCTOU refusals, recovery of interrupted moves, restore errors, control methods, guardctl commands.
 */

import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../src/cli/command.js';
import { quarantineListCommand } from '../../src/cli/commands/quarantine-list.js';
import { quarantineRestoreCommand } from '../../src/cli/commands/quarantine-restore.js';
import { silentLogger } from '../../src/common/logger.js';
import { QuarantineAction } from '../../src/enforcement/actions/quarantine.js';
import {
  type QuarantineManifest,
  QuarantineStore,
  quarantineControlMethods,
  treeHash,
} from '../../src/enforcement/quarantine-store.js';
import type { Decision } from '../../src/policy/matcher.js';
import type { PackageObservation } from '../../src/sensors/observation.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { MemoryEventSink } from '../helpers/event-sink.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import {
  BANNED,
  FAKE_FILES,
  FAKE_MANIFEST,
  makeRig,
  RecordingNotifier,
  writePackage,
} from '../sensors/install/harness.js';

const base = tempDir('tg-q-');
let n = 0;
const fresh = (): string => {
  const d = join(base, `t${++n}`);
  mkdirSync(d, { recursive: true });
  return d;
};
const logger = silentLogger();
/** True when nothing (not even a dangling link) is at `p`. */
const gone = (p: string): boolean => {
  try {
    lstatSync(p);
    return false;
  } catch {
    return true;
  }
};

async function storeIn(dir: string, quarantineDir = join(dir, 'state', 'quarantine')) {
  const { db } = openDatabase(join(dir, 'state', 'state.db'), {
    migrations: MIGRATIONS,
    synchronous: 'NORMAL',
  });
  const store = new QuarantineStore({ db, quarantineDir, logger });
  await store.init();
  return { db, store };
}

const decision: Decision = {
  rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
  reason: 'npm_package',
  detail: `${BANNED}@*`,
  message: 'not approved',
  url: null,
  policyVersion: 3,
  mode: 'enforce',
};

function obsFor(root: string, path: string, name = BANNED): PackageObservation {
  return {
    kind: 'package',
    ecosystem: 'npm',
    name,
    version: '1.0.99',
    path,
    root,
    manager: 'npm',
    owner: { uid: 0, user: 'root', groups: [], home: null },
  };
}

/** An npm prefix with the fake package, an odd-mode tree, an inner symlink and a bin link. */
function npmTree(dir: string): { prefix: string; root: string; pkg: string; bin: string } {
  const prefix = join(dir, 'prefix');
  const root = join(prefix, 'lib', 'node_modules');
  const pkg = join(root, '@anthropic-ai', 'claude-code');
  writePackage(pkg, FAKE_MANIFEST, { ...FAKE_FILES, 'secret/key.txt': 'k\n' });
  chmodSync(join(pkg, 'secret', 'key.txt'), 0o600);
  chmodSync(join(pkg, 'secret'), 0o750);
  symlinkSync('/etc/passwd', join(pkg, 'passwd-link'));
  mkdirSync(join(prefix, 'bin'), { recursive: true });
  const bin = join(prefix, 'bin', 'claude');
  symlinkSync('../lib/node_modules/@anthropic-ai/claude-code/cli.js', bin);
  return { prefix, root, pkg, bin };
}

describe('QuarantineAction + QuarantineStore', () => {
  const shmDirs: string[] = [];
  afterAll(() => {
    for (const d of shmDirs) rmSync(d, { recursive: true, force: true });
  });

  it.skipIf(!existsSync('/dev/shm'))(
    'moves across filesystems (copy + verify + remove) and restores exactly',
    async () => {
      // /dev/shm is tmpfs, the temp dir is not: rename fails with EXDEV. (Skipped where /dev/shm is absent.)
      const dir = fresh();
      const shm = mkdtempSync('/dev/shm/tg-q-');
      shmDirs.push(shm);
      const { db, store } = await storeIn(dir, join(shm, 'quarantine'));
      const t = npmTree(dir);
      const before = await treeHash(t.pkg);
      const action = new QuarantineAction({ store, notifier: new RecordingNotifier(), logger });
      const r = await action.execute(obsFor(t.root, t.pkg), decision);
      expect(r.actionTaken).toBe('quarantined');
      const id = r.details?.quarantine_id as string;
      const m = store.get(id)?.manifest as QuarantineManifest;
      expect(m.method).toBe('copy');
      expect(m.treeHash).toBe(before.hash);
      expect(existsSync(t.pkg)).toBe(false);
      expect(existsSync('/etc/passwd')).toBe(true); // the inner link was copied as a link, not followed
      expect(statSync(join(shm, 'quarantine')).mode & 0o777).toBe(0o700);
      const res = await store.restore(id, { force: false, stillBanned: () => false });
      expect(res.hashVerified).toBe(true);
      expect((await treeHash(t.pkg)).hash).toBe(before.hash);
      expect(statSync(join(t.pkg, 'secret', 'key.txt')).mode & 0o777).toBe(0o600);
      expect(readlinkSync(t.bin)).toBe('../lib/node_modules/@anthropic-ai/claude-code/cli.js');
      expect(existsSync(join(shm, 'quarantine', id))).toBe(false);
      db.close();
    },
  );

  it.skipIf(!existsSync('/dev/shm'))(
    'a setuid/setgid file does not make a cross-filesystem move fail verification (owner set before mode)',
    async () => {
      // chown clears S_ISUID/S_ISGID on files, so copying mode-then-owner lost the bits, the copy's
      // hash differed and the package could never be quarantined across filesystems.
      const dir = fresh();
      const shm = mkdtempSync('/dev/shm/tg-q-');
      shmDirs.push(shm);
      const { db, store } = await storeIn(dir, join(shm, 'quarantine'));
      const t = npmTree(dir);
      chmodSync(join(t.pkg, 'cli.js'), 0o6755);
      const before = await treeHash(t.pkg);
      const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
        obsFor(t.root, t.pkg),
        decision,
      );
      expect(r.error, String(r.error)).toBeNull();
      expect(r.actionTaken).toBe('quarantined');
      const id = r.details?.quarantine_id as string;
      expect(store.get(id)?.manifest.treeHash).toBe(before.hash);
      const res = await store.restore(id, { force: false, stillBanned: () => false });
      expect(res.hashVerified).toBe(true);
      expect(statSync(join(t.pkg, 'cli.js')).mode & 0o7777).toBe(0o6755);
      db.close();
    },
  );

  it('TOCTOU: a package dir replaced by a symlink to /etc before the move is refused and /etc untouched', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    const obs = obsFor(t.root, t.pkg);
    renameSync(t.pkg, join(dir, 'moved-away'));
    symlinkSync('/etc', t.pkg);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obs,
      decision,
    );
    expect(r.actionTaken).toBe('failed');
    expect(r.error).toMatch(/^GUARD_QUARANTINE_UNSAFE_PATH/);
    expect(lstatSync(t.pkg).isSymbolicLink()).toBe(true);
    expect(existsSync('/etc/passwd')).toBe(true);
    expect(lstatSync(t.bin).isSymbolicLink()).toBe(true); // nothing removed either
    expect(store.list()).toHaveLength(0);
    db.close();
  });

  it('TOCTOU: a parent (scope dir) swapped for a symlink out of the root is refused', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    const outside = join(dir, 'outside');
    renameSync(join(t.root, '@anthropic-ai'), outside);
    symlinkSync(outside, join(t.root, '@anthropic-ai'));
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obsFor(t.root, t.pkg),
      decision,
    );
    expect(r.error).toMatch(/^GUARD_QUARANTINE_UNSAFE_PATH.*outside the root/);
    expect(existsSync(join(outside, 'claude-code', 'cli.js'))).toBe(true);
    db.close();
  });

  it('TOCTOU through the pipeline: swapped between detection and move → package.quarantined with failed outcome', async () => {
    const dir = fresh();
    const t = npmTree(dir);
    const rig = await makeRig({
      dir,
      extraRoots: [t.root],
      beforeEnforce: () => {
        renameSync(t.pkg, join(dir, 'moved-away'));
        symlinkSync('/etc', t.pkg);
      },
    });
    const ev = await waitFor(() => rig.sink.ofType('package.quarantined')[0], 'package.quarantined');
    const outcome = ev.outcome as { action_taken: string; error: string };
    expect(outcome.action_taken).toBe('failed');
    expect(outcome.error).toMatch(/^GUARD_QUARANTINE_UNSAFE_PATH/);
    expect(rig.sensor.status().running).toBe(true);
    expect(existsSync('/etc/passwd')).toBe(true);
    await rig.close();
  });

  it('sweeps bin links created after the move (an installer still linking) and restores them too', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obsFor(t.root, t.pkg),
      decision,
    );
    const id = r.details?.quarantine_id as string;
    const late = join(t.prefix, 'bin', 'claude-late');
    symlinkSync('../lib/node_modules/@anthropic-ai/claude-code/cli.js', late);
    const unrelated = join(t.prefix, 'bin', 'other');
    symlinkSync('../lib/node_modules/other/cli.js', unrelated);
    // The action sweeps on its own a second after the move: it records the link, then removes it.
    await waitFor(
      () => gone(late) && store.get(id)?.manifest.links.length === 2,
      'late link removed and recorded',
    );
    expect(store.get(id)?.manifest.links.map((l) => l.path)).toEqual([t.bin, late]);
    expect(lstatSync(unrelated).isSymbolicLink()).toBe(true);
    expect(await store.sweepLinks(id)).toBe(0);
    const res = await store.restore(id, { force: false, stillBanned: () => false });
    expect(res.linksRestored).toBe(2);
    expect(readlinkSync(late)).toBe('../lib/node_modules/@anthropic-ai/claude-code/cli.js');
    expect(await store.sweepLinks(id)).toBe(0); // restored: nothing to sweep
    db.close();
  });

  it('a restore asked for while a late-link sweep runs waits for it: the late link comes back too', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obsFor(t.root, t.pkg),
      decision,
    );
    const id = r.details?.quarantine_id as string;
    const late = join(t.prefix, 'bin', 'claude-late2');
    symlinkSync('../lib/node_modules/@anthropic-ai/claude-code/cli.js', late);
    // Both started in the same turn of the event loop: the restore reads the manifest only after
    // the sweep has recorded and removed the late link.
    const [swept, res] = await Promise.all([
      store.sweepLinks(id),
      store.restore(id, { force: false, stillBanned: () => false }),
    ]);
    expect(swept).toBe(1);
    expect(res.linksRestored).toBe(2);
    expect(readlinkSync(late)).toBe('../lib/node_modules/@anthropic-ai/claude-code/cli.js');
    expect(readlinkSync(t.bin)).toBe('../lib/node_modules/@anthropic-ai/claude-code/cli.js');
    expect(store.get(id)?.state).toBe('restored');
    db.close();
  });

  it('restore refuses a parent swapped for a symlink out of the root: nothing written outside, still quarantined', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obsFor(t.root, t.pkg),
      decision,
    );
    const id = r.details?.quarantine_id as string;
    // The (now empty) scope dir, owned by the user, becomes a link to a directory outside the root.
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    rmSync(join(t.root, '@anthropic-ai'), { recursive: true });
    symlinkSync(outside, join(t.root, '@anthropic-ai'));
    await expect(store.restore(id, { force: false, stillBanned: () => false })).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_UNSAFE_PATH',
    });
    expect(gone(join(outside, 'claude-code'))).toBe(true);
    expect(gone(t.bin)).toBe(true);
    expect(store.get(id)?.state).toBe('quarantined');
    // Once the path is sane again the restore goes through.
    rmSync(join(t.root, '@anthropic-ai'));
    const res = await store.restore(id, { force: false, stillBanned: () => false });
    expect(res.hashVerified).toBe(true);
    db.close();
  });

  it('restore never writes a link or shim through a bin dir swapped for a symlink (the tree still comes back)', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    // A cmd-shim style file naming the package, besides the bin symlink.
    const shim = join(t.prefix, 'bin', 'ld.so.preload');
    writeFileSync(
      shim,
      '#!/bin/sh\nexec node "$basedir/../lib/node_modules/@anthropic-ai/claude-code/cli.js"\n',
    );
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obsFor(t.root, t.pkg),
      decision,
    );
    const id = r.details?.quarantine_id as string;
    expect(gone(shim)).toBe(true);
    // While quarantined, the user points their bin dir at a directory root must not write into.
    const victim = join(dir, 'etc-like');
    mkdirSync(victim);
    rmSync(join(t.prefix, 'bin'), { recursive: true });
    symlinkSync(victim, join(t.prefix, 'bin'));
    const res = await store.restore(id, { force: false, stillBanned: () => false });
    expect(res.hashVerified).toBe(true);
    expect(res.linksRestored).toBe(0);
    expect(readdirSync(victim)).toEqual([]);
    db.close();
  });

  it.skipIf(process.getuid?.() !== 0)(
    'restore recreates a missing parent (scope dir) owned by the package owner, not root (root only)',
    async () => {
      const dir = fresh();
      // The user-side work runs as uid 4242: it must be able to reach its tree, as a real user can.
      for (const d of [base, dir]) chmodSync(d, 0o755);
      const { db, store } = await storeIn(dir);
      const t = npmTree(dir);
      const scope = join(t.root, '@anthropic-ai');
      for (const p of [t.prefix, join(t.prefix, 'lib'), t.root, scope]) chownSync(p, 4242, 4343);
      execFileSync('chown', ['-hR', '4242:4343', t.pkg]);
      const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
        obsFor(t.root, t.pkg),
        decision,
      );
      expect(r.error).toBeNull();
      rmSync(scope, { recursive: true }); // the user removed the now empty scope dir
      await store.restore(r.details?.quarantine_id as string, { force: false, stillBanned: () => false });
      expect(lstatSync(scope)).toMatchObject({ uid: 4242, gid: 4343 });
      expect(lstatSync(t.pkg)).toMatchObject({ uid: 4242, gid: 4343 });
      db.close();
    },
  );

  it('a tree whose paths do not fit PATH_MAX in quarantine is refused and rolled back whole (not stuck in "moving")', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    // A hostile tree whose deepest path only fits PATH_MAX where it was installed: built in two
    // parts (no path above 4 KiB is ever named), then writing it in quarantine fails ENAMETOOLONG.
    const seg = 'd'.repeat(250);
    const chain = (base: string, n: number): string => {
      let p = base;
      for (let i = 0; i < n; i++) p = join(p, seg);
      mkdirSync(p, { recursive: true });
      return p;
    };
    const deep = chain(join(t.pkg, 'deep'), 10);
    chain(join(dir, 'extra'), 8);
    renameSync(join(dir, 'extra', seg), join(deep, 'x'));
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obsFor(t.root, t.pkg),
      decision,
    );
    // Copying is by path (as the owner), so it fails; the move is rolled back, nothing half-done.
    expect(r.actionTaken).toBe('failed');
    expect(r.error).toMatch(/^GUARD_QUARANTINE_IO: .*ENAMETOOLONG/);
    const entries = store.list();
    expect(entries.at(-1)?.state).toBe('rolled_back');
    expect(existsSync(join(t.pkg, 'cli.js'))).toBe(true);
    expect(readlinkSync(t.bin)).toBe('../lib/node_modules/@anthropic-ai/claude-code/cli.js');
    expect(readdirSync(join(dir, 'state', 'quarantine'))).toEqual([]);
    renameSync(join(deep, 'x'), join(dir, 'x-back')); // so the temp dir can be removed
    db.close();
  });

  it('restore refuses an occupied original path and unknown ids with their codes', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obsFor(t.root, t.pkg),
      decision,
    );
    const id = r.details?.quarantine_id as string;
    writePackage(t.pkg, { name: 'something-else', version: '1.0.0' });
    await expect(store.restore(id, { force: false, stillBanned: () => false })).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_IO',
    });
    expect(store.get(id)?.state).toBe('quarantined');
    await expect(
      store.restore('0190f0f0-0000-7000-8000-000000000000', { force: true, stillBanned: () => false }),
    ).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_NOT_FOUND',
    });
    db.close();
  });
});

describe('recovery of interrupted moves (write-ahead manifest)', () => {
  /** Inserts a row as a crash would have left it. */
  function crashRow(db: ReturnType<typeof openDatabase>['db'], m: QuarantineManifest, state: string): void {
    db.prepare('INSERT INTO quarantine(id, created_at, state, manifest) VALUES (?, ?, ?, ?)').run(
      m.id,
      m.quarantinedAt,
      state,
      JSON.stringify(m),
    );
  }
  function manifest(id: string, t: ReturnType<typeof npmTree>, qdir: string): QuarantineManifest {
    return {
      id,
      kind: 'package',
      originalPath: t.pkg,
      root: t.root,
      storedPath: join(qdir, id, 'payload'),
      entryType: 'directory',
      owner: { uid: 0, gid: 0, user: 'root' },
      mode: 0o755,
      links: [{ path: t.bin, type: 'symlink', target: readlinkSync(t.bin), uid: 0, gid: 0 }],
      treeHash: null,
      files: 0,
      bytes: 0,
      method: null,
      quarantinedAt: new Date().toISOString(),
      rule: decision.rule,
      policyVersion: 3,
      package: { name: BANNED, version: '1.0.99', manager: 'npm' },
      restoredAt: null,
      restoredForced: null,
      note: null,
    };
  }

  it('finishes a move that happened (payload in quarantine) and rolls back one that did not', async () => {
    const dir = fresh();
    const qdir = join(dir, 'state', 'quarantine');
    const { db, store } = await storeIn(dir);
    // A: crashed after the rename, before links were removed and the state was written.
    const a = npmTree(join(dir, 'a'));
    const hashA = await treeHash(a.pkg);
    const ma = manifest('0190f0f0-0000-7000-8000-00000000000a', a, qdir);
    mkdirSync(join(qdir, ma.id), { recursive: true });
    renameSync(a.pkg, ma.storedPath);
    crashRow(db, ma, 'moving');
    // B: crashed during a cross-filesystem copy: original whole, partial copy in quarantine.
    const b = npmTree(join(dir, 'b'));
    const hashB = await treeHash(b.pkg);
    const mb = manifest('0190f0f0-0000-7000-8000-00000000000b', b, qdir);
    mkdirSync(join(mb.storedPath, 'partial'), { recursive: true });
    crashRow(db, mb, 'moving');
    // C: crashed after a verified copy, while removing the original.
    const c = npmTree(join(dir, 'c'));
    const mc = { ...manifest('0190f0f0-0000-7000-8000-00000000000c', c, qdir), method: 'copy' as const };
    mkdirSync(join(qdir, mc.id), { recursive: true });
    const { copyTree } = await import('../../src/enforcement/quarantine-store.js');
    await copyTree(c.pkg, mc.storedPath);
    rmSync(join(c.pkg, 'cli.js'));
    crashRow(db, mc, 'copied');

    const summary = await store.recover();
    expect(summary).toEqual({ finished: 2, rolledBack: 1, failed: 0 });
    expect(store.get(ma.id)?.state).toBe('quarantined');
    expect(store.get(ma.id)?.manifest.treeHash).toBe(hashA.hash);
    expect(existsSync(a.bin)).toBe(false);
    expect(store.get(mb.id)?.state).toBe('rolled_back');
    expect((await treeHash(b.pkg)).hash).toBe(hashB.hash);
    expect(existsSync(join(qdir, mb.id))).toBe(false);
    expect(existsSync(b.bin)).toBe(true);
    expect(store.get(mc.id)?.state).toBe('quarantined');
    expect(existsSync(c.pkg)).toBe(false);
    expect(await store.recover()).toEqual({ finished: 0, rolledBack: 0, failed: 0 });
    db.close();
  });

  it('recovery never removes an original whose parent now leads outside the root (copied / restoring)', async () => {
    const dir = fresh();
    const qdir = join(dir, 'state', 'quarantine');
    const { db, store } = await storeIn(dir);
    const { copyTree } = await import('../../src/enforcement/quarantine-store.js');
    // F: crashed after a verified cross-filesystem copy; then the user swapped the scope dir for a
    // link to a directory outside the root that holds a same-named directory.
    const f = npmTree(join(dir, 'f'));
    const mf = { ...manifest('0190f0f0-0000-7000-8000-00000000000f', f, qdir), method: 'copy' as const };
    mkdirSync(join(qdir, mf.id), { recursive: true });
    await copyTree(f.pkg, mf.storedPath);
    const outsideF = join(dir, 'outside-f');
    renameSync(join(f.root, '@anthropic-ai'), outsideF);
    symlinkSync(outsideF, join(f.root, '@anthropic-ai'));
    crashRow(db, mf, 'copied');
    // G: crashed during a cross-filesystem restore copy (payload still in quarantine), same swap.
    const g = npmTree(join(dir, 'g'));
    const mg = manifest('0190f0f0-0000-7000-8000-000000000010', g, qdir);
    mkdirSync(join(qdir, mg.id), { recursive: true });
    await copyTree(g.pkg, mg.storedPath);
    const outsideG = join(dir, 'outside-g');
    renameSync(join(g.root, '@anthropic-ai'), outsideG);
    symlinkSync(outsideG, join(g.root, '@anthropic-ai'));
    crashRow(db, mg, 'restoring');

    const summary = await store.recover();
    expect(summary).toEqual({ finished: 0, rolledBack: 0, failed: 2 });
    expect(existsSync(join(outsideF, 'claude-code', 'cli.js'))).toBe(true);
    expect(existsSync(join(outsideG, 'claude-code', 'cli.js'))).toBe(true);
    expect(store.get(mf.id)?.state).toBe('copied');
    expect(store.get(mg.id)?.state).toBe('restoring');
    expect(existsSync(mf.storedPath)).toBe(true);
    expect(existsSync(mg.storedPath)).toBe(true);
    db.close();
  });

  it('finishing a move never unlinks a recorded shim through a bin dir swapped for a symlink', async () => {
    const dir = fresh();
    const qdir = join(dir, 'state', 'quarantine');
    const { db, store } = await storeIn(dir);
    const h = npmTree(join(dir, 'h'));
    const shim = join(h.prefix, 'bin', 'passwd');
    const shimText = '#!/bin/sh\nexec node "$basedir/../lib/node_modules/@anthropic-ai/claude-code/cli.js"\n';
    writeFileSync(shim, shimText);
    const mh: QuarantineManifest = {
      ...manifest('0190f0f0-0000-7000-8000-000000000011', h, qdir),
      links: [
        {
          path: shim,
          type: 'file',
          mode: 0o644,
          uid: 0,
          gid: 0,
          content: Buffer.from(shimText).toString('base64'),
        },
      ],
    };
    mkdirSync(join(qdir, mh.id), { recursive: true });
    renameSync(h.pkg, mh.storedPath);
    crashRow(db, mh, 'moving');
    // Before recovery runs, the bin dir becomes a link to a directory holding a file of that name.
    const victim = join(dir, 'etc-like');
    mkdirSync(victim);
    writeFileSync(join(victim, 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    rmSync(join(h.prefix, 'bin'), { recursive: true });
    symlinkSync(victim, join(h.prefix, 'bin'));
    expect((await store.recover()).finished).toBe(1);
    expect(readFileSync(join(victim, 'passwd'), 'utf8')).toBe('root:x:0:0::/root:/bin/sh\n');
    expect(store.get(mh.id)?.manifest.links).toEqual([]);
    db.close();
  });

  it('an interrupted restore goes back to quarantined (payload still there) or finishes (payload moved)', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const action = new QuarantineAction({ store, notifier: new RecordingNotifier(), logger });
    const d = npmTree(join(dir, 'd'));
    const e = npmTree(join(dir, 'e'));
    const hashE = await treeHash(e.pkg);
    const idD = (await action.execute(obsFor(d.root, d.pkg), decision)).details?.quarantine_id as string;
    const idE = (await action.execute(obsFor(e.root, e.pkg), decision)).details?.quarantine_id as string;
    db.prepare("UPDATE quarantine SET state = 'restoring' WHERE id IN (?, ?)").run(idD, idE);
    const me = store.get(idE)?.manifest as QuarantineManifest;
    renameSync(me.storedPath, me.originalPath); // E crashed right after its rename back
    const summary = await store.recover();
    expect(summary).toEqual({ finished: 1, rolledBack: 1, failed: 0 });
    expect(store.get(idD)?.state).toBe('quarantined');
    expect(existsSync(d.pkg)).toBe(false);
    expect(store.get(idE)?.state).toBe('restored');
    expect((await treeHash(e.pkg)).hash).toBe(hashE.hash);
    expect(readlinkSync(e.bin)).toBe('../lib/node_modules/@anthropic-ai/claude-code/cli.js');
    db.close();
  });
});

describe('control methods and guardctl commands', () => {
  it('list is public, restore is admin, still-banned needs force, a restore is recorded as an event', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const t = npmTree(dir);
    const id = (
      await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
        obsFor(t.root, t.pkg),
        decision,
      )
    ).details?.quarantine_id as string;
    const events = new MemoryEventSink();
    const banned = true;
    const methods = quarantineControlMethods(store, { stillBanned: () => banned, events });
    const list = methods['quarantine.list'] as NonNullable<(typeof methods)['quarantine.list']>;
    const restore = methods['quarantine.restore'] as NonNullable<(typeof methods)['quarantine.restore']>;
    expect(list.admin).toBe(false);
    expect(restore.admin).toBe(true);
    const listed = (await list.handle({})) as { entries: { id: string; path: string; links: string[] }[] };
    expect(listed.entries).toEqual([expect.objectContaining({ id, path: t.pkg, links: [t.bin] })]);
    for (const bad of [{}, { id: 5 }, { id: 'x'.repeat(65) }, { id, force: 'yes' }]) {
      await expect(Promise.resolve().then(() => restore.handle(bad))).rejects.toMatchObject({
        code: 'GUARD_CONTROL_BAD_REQUEST',
      });
    }
    await expect(restore.handle({ id })).rejects.toMatchObject({ code: 'GUARD_QUARANTINE_STILL_BANNED' });
    const out = (await restore.handle({ id, force: true })) as { forced: boolean; hash_verified: boolean };
    expect(out).toMatchObject({ forced: true, hash_verified: true });
    const [ev] = events.ofType('package.audited');
    expect(ev?.outcome).toMatchObject({
      action_taken: 'audited',
      error: null,
      details: { quarantine_id: id, restored: true, forced: true, links_removed: [t.bin] },
    });
    expect((await list.handle({})) as { entries: unknown[] }).toEqual({ entries: [] });
    expect(((await list.handle({ all: true })) as { entries: unknown[] }).entries).toHaveLength(1);
    expect(readFileSync(join(t.pkg, 'cli.js'), 'utf8')).toContain('fake');
    db.close();
  });

  it('guardctl quarantine list / restore call the right methods and render', async () => {
    const calls: { method: string; params: unknown }[] = [];
    const ctx = (args: string[], options: Record<string, unknown>, answer: unknown): CommandContext => ({
      args,
      options,
      json: false,
      sockets: { public: '/p', admin: '/a' },
      configFile: '/c',
      async call<T>(method: string, params?: Record<string, unknown>): Promise<T> {
        calls.push({ method, params });
        return answer as T;
      },
    });
    expect(quarantineRestoreCommand.needsRoot).toBe(true);
    expect(quarantineListCommand.needsRoot).toBe(false);
    const empty = await quarantineListCommand.run(ctx([], {}, { entries: [] }));
    expect(empty.text).toBe('Quarantine is empty.');
    const r = await quarantineRestoreCommand.run(
      ctx(
        ['abc'],
        { force: true },
        { id: 'abc', path: '/x', hash_verified: true, links_restored: 2, forced: true },
      ),
    );
    expect(calls.at(-1)).toEqual({ method: 'quarantine.restore', params: { id: 'abc', force: true } });
    expect(r.text).toContain('forced');
    expect(r.exitCode).toBe(0);
    await expect(quarantineRestoreCommand.run(ctx([], {}, null))).rejects.toMatchObject({
      code: 'GUARD_CLI_USAGE',
    });
  });
});
