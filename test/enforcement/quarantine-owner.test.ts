/**
 * Root never acts through a path the user controls (issue 12, class 1): quarantine, link/shim
 * removal and restore run as the owner of the directory they change (owner-fs), with real
 * unprivileged users created here, real files and links, a real SQLite state DB:
 *  (a) bin and shim dirs symlinked to root-owned dirs holding files named like the package's
 *      bins: nothing there is unlinked, the package is still quarantined, the refusal is recorded;
 *  (b) a path glob base symlinked to another user's ~/.ssh or to guardd's state dir: nothing
 *      moved, GUARD_QUARANTINE_UNSAFE_PATH (the real-daemon variant is in
 *      test/sensors/install/owner-attack.test.ts);
 *  (c) the user swaps the package dir for a symlink after the checks, right before the copy
 *      (driven by the store's beforeCopy hook): nothing outside the tree is read or removed;
 *  (d) an honest npm -g install in a user's prefix is quarantined and restored with its links,
 *      files owned by the user, including files the user made unreadable to themselves;
 * plus: root refuses to walk a root-owned tree with a user-owned subdir, a FIFO in the tree is
 * never opened, and a file merely named like a bin in a shim dir is not removed.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { QuarantineAction } from '../../src/enforcement/actions/quarantine.js';
import { actorFor } from '../../src/enforcement/owner-fs.js';
import { QuarantineStore, treeHash } from '../../src/enforcement/quarantine-store.js';
import type { Decision } from '../../src/policy/matcher.js';
import type { PackageObservation, PathObservation } from '../../src/sensors/observation.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { ROOT } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import {
  BANNED,
  FAKE_FILES,
  FAKE_MANIFEST,
  npmInstallGlobal,
  packFixture,
  RecordingNotifier,
  writePackage,
} from '../sensors/install/harness.js';

const logger = silentLogger();
const base = tempDir('tgq-');
// Searchable by the test users (worst case for the attacks: root's bait is even readable).
chmodSync(base, 0o755);
let n = 0;
const fresh = (): string => {
  const d = join(base, `t${++n}`);
  mkdirSync(d, { recursive: true, mode: 0o755 });
  return d;
};

const decision: Decision = {
  rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
  reason: 'npm_package',
  message: 'not approved',
  url: null,
  policyVersion: 3,
  mode: 'enforce',
} as Decision;

async function storeIn(dir: string, beforeCopy?: (p: string) => Promise<void> | void) {
  const state = join(dir, 'state');
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const { db } = openDatabase(join(state, 'state.db'), { migrations: MIGRATIONS, synchronous: 'NORMAL' });
  const store = new QuarantineStore({ db, quarantineDir: join(state, 'quarantine'), logger, beforeCopy });
  await store.init();
  return { db, store, state };
}

function chownR(path: string, u: TestUser): void {
  execFileSync('chown', ['-hR', `${u.uid}:${u.gid}`, path]);
}

function pkgObs(
  u: TestUser,
  root: string,
  path: string,
  manager: PackageObservation['manager'],
): PackageObservation {
  return {
    kind: 'package',
    ecosystem: 'npm',
    name: BANNED,
    version: '1.0.99',
    path,
    root,
    manager,
    owner: { uid: u.uid, user: u.name, groups: [], home: u.home },
  };
}

/** Everything below `dir`: relative path → [type, content or link target]. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string): void => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) out[rel] = `l ${readlinkSync(p)} ${st.uid}`;
    else if (st.isFile()) out[rel] = `f ${readFileSync(p, 'base64')} ${st.uid} ${st.mode}`;
    else if (st.isDirectory()) {
      out[rel] = `d ${st.uid} ${st.mode}`;
      for (const name of readdirSync(p)) walk(join(p, name), `${rel}/${name}`);
    }
  };
  walk(dir, '.');
  return out;
}

const attacker = createTestUser('tgq');
const victim = createTestUser('tgq');

describe('owner-fs: who acts', () => {
  it('a user tree is acted on as its owner; a path crossing two users is refused with its code', async () => {
    const home = join(fresh(), 'h');
    mkdirSync(join(home, 'a', 'b'), { recursive: true });
    chownR(home, attacker);
    expect(await actorFor(join(home, 'a', 'b'))).toEqual({ uid: attacker.uid, gid: attacker.gid });
    expect(await actorFor(base)).toEqual({ uid: 0, gid: 0 });
    symlinkSync(victim.home, join(home, 'to-victim'));
    await expect(actorFor(join(home, 'to-victim'))).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_UNSAFE_PATH',
    });
    const shared = join(fresh(), 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777); // writable by all, no sticky bit: anyone can swap entries
    await expect(actorFor(shared)).rejects.toMatchObject({ code: 'GUARD_QUARANTINE_UNSAFE_PATH' });
  });
});

describe('(c2) root acting on a root-owned tree with a user-owned subdir', () => {
  it('is refused before anything is copied: the user could swap the subdir for a link mid-walk', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const root = join(dir, 'usr-lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    writePackage(pkg, FAKE_MANIFEST, { ...FAKE_FILES, 'sub/f.txt': 'f\n' });
    chownR(join(pkg, 'sub'), attacker);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      { ...pkgObs(attacker, root, pkg, 'npm'), owner: { uid: 0, user: 'root', groups: [], home: null } },
      decision,
    );
    expect(r.error).toMatch(/^GUARD_QUARANTINE_UNSAFE_PATH: .*sub is a directory another user can change/);
    expect(existsSync(join(pkg, 'sub', 'f.txt'))).toBe(true);
    expect(store.list().at(-1)?.state).toBe('rolled_back');
    // Once the subdir is root's again, the same tree is quarantined.
    execFileSync('chown', ['-hR', '0:0', join(pkg, 'sub')]);
    const ok = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(attacker, root, pkg, 'npm'),
      decision,
    );
    expect(ok.error).toBeNull();
    expect(existsSync(pkg)).toBe(false);
    db.close();
  });
});

describe('(a) symlinked bin and shim dirs', () => {
  it('nothing in the root-owned dirs they lead to is unlinked; the package is quarantined; the refusal is recorded', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    // A Volta-style tree in the attacker's home: packages/<name>/lib/node_modules/<pkg>, its bin
    // dir packages/<name>/bin and the shim dir ~/.volta/bin.
    const home = join(dir, 'home');
    const volta = join(home, '.volta');
    const image = join(volta, 'tools', 'image', 'packages', 'claude');
    const root = join(image, 'lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    writePackage(pkg, { ...FAKE_MANIFEST, bin: { claude: 'cli.js', 'ld.so.preload': 'cli.js' } }, FAKE_FILES);
    // Root's own dirs, with bait: files named like the bins, one naming the package path, a
    // symlink into the package (all "provably" the package's by their content or target).
    const rootBin = join(dir, 'root-bin');
    const rootShims = join(dir, 'root-shims');
    for (const d of [rootBin, rootShims]) {
      mkdirSync(d, { mode: 0o755 });
      writeFileSync(join(d, 'claude'), `#!/bin/sh\nexec node "${pkg}/cli.js" "claude" "$@"\n`);
      writeFileSync(join(d, 'ld.so.preload'), 'exec "ld.so.preload"\n');
      symlinkSync(join(pkg, 'cli.js'), join(d, 'claude-link'));
    }
    const rootBefore = [snapshot(rootBin), snapshot(rootShims)];
    mkdirSync(home, { recursive: true });
    chownR(home, attacker);
    // The attacker's bin and shim dirs are symlinks to root's dirs.
    symlinkSync(rootBin, join(image, 'bin'));
    symlinkSync(rootShims, join(volta, 'bin'));
    execFileSync('chown', ['-h', `${attacker.uid}:${attacker.gid}`, join(image, 'bin'), join(volta, 'bin')]);

    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(attacker, root, pkg, 'volta'),
      decision,
    );
    expect(r.error).toBeNull();
    expect(r.actionTaken).toBe('quarantined');
    expect(existsSync(pkg)).toBe(false);
    expect([snapshot(rootBin), snapshot(rootShims)]).toEqual(rootBefore);
    const m = store.get(r.details?.quarantine_id as string)?.manifest;
    expect(m?.links).toEqual([]);
    // What was left alone, and why: the owner may not unlink in root's dirs (EACCES).
    const refused = (m?.linksRefused ?? []).map((x) => [x.path, x.reason.split(':')[0]]);
    expect(refused).toEqual(
      expect.arrayContaining([
        [join(image, 'bin', 'claude'), 'EACCES'],
        [join(image, 'bin', 'claude-link'), 'EACCES'],
        [join(volta, 'bin', 'claude'), 'EACCES'],
      ]),
    );
    db.close();
  });
});

describe('(b) a path glob base symlinked elsewhere', () => {
  it("another user's ~/.ssh: nothing moved, GUARD_QUARANTINE_UNSAFE_PATH", async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const ssh = join(victim.home, '.ssh');
    mkdirSync(ssh, { recursive: true, mode: 0o700 });
    writeFileSync(join(ssh, 'id_ed25519'), 'PRIVATE KEY\n', { mode: 0o600 });
    chownR(ssh, victim);
    const before = snapshot(ssh);
    const share = join(attacker.home, '.local', 'share', 'claude');
    mkdirSync(share, { recursive: true });
    chownR(join(attacker.home, '.local'), attacker);
    symlinkSync(ssh, join(share, 'versions'));
    execFileSync('chown', ['-h', `${attacker.uid}:${attacker.gid}`, join(share, 'versions')]);
    const obs: PathObservation = {
      kind: 'path',
      path: join(share, 'versions', 'id_ed25519'),
      isDirectory: false,
      owner: { uid: attacker.uid, user: attacker.name, groups: [], home: attacker.home },
    };
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      obs,
      decision,
    );
    expect(r.actionTaken).toBe('failed');
    expect(r.error).toMatch(/^GUARD_QUARANTINE_UNSAFE_PATH: /);
    expect(snapshot(ssh)).toEqual(before);
    expect(store.list()).toEqual([]); // refused before the write-ahead record
    db.close();
  });

  it("guardd's state dir: nothing moved, the DB still opens and the store keeps working", async () => {
    const dir = fresh();
    const { db, store, state } = await storeIn(dir);
    chmodSync(dir, 0o755);
    chmodSync(state, 0o755); // even readable by the user: the refusal must not rely on modes
    const before = snapshot(state);
    const home = join(dir, 'home');
    mkdirSync(join(home, '.local', 'share', 'claude'), { recursive: true });
    chownR(home, attacker);
    const versions = join(home, '.local', 'share', 'claude', 'versions');
    symlinkSync(state, versions);
    execFileSync('chown', ['-h', `${attacker.uid}:${attacker.gid}`, versions]);
    for (const name of ['state.db', 'quarantine']) {
      await expect(
        store.quarantine({
          kind: 'path',
          path: join(versions, name),
          root: home,
          expect: name === 'quarantine' ? 'directory' : 'file-or-symlink',
          linkDirs: [],
          shimDirs: [],
          binNames: [],
          ownerUser: attacker.name,
          rule: decision.rule,
          policyVersion: 3,
          package: null,
        }),
      ).rejects.toMatchObject({ code: 'GUARD_QUARANTINE_UNSAFE_PATH' });
    }
    // guardd's own install (here: this checkout) is as protected as its state dir.
    const app = join(home, '.local', 'share', 'claude', 'app');
    symlinkSync(ROOT, app);
    execFileSync('chown', ['-h', `${attacker.uid}:${attacker.gid}`, app]);
    await expect(
      store.quarantine({
        kind: 'path',
        path: join(app, 'package.json'),
        root: home,
        expect: 'file-or-symlink',
        linkDirs: [],
        shimDirs: [],
        binNames: [],
        ownerUser: attacker.name,
        rule: decision.rule,
        policyVersion: 3,
        package: null,
      }),
    ).rejects.toMatchObject({ code: 'GUARD_QUARANTINE_UNSAFE_PATH' });
    expect(existsSync(join(ROOT, 'package.json'))).toBe(true);
    expect(Object.keys(snapshot(state))).toEqual(Object.keys(before));
    expect(db.prepare('SELECT count(*) AS c FROM quarantine').get()).toEqual({ c: 0 });
    // Enforcement goes on: an honest artifact of the same user is quarantined.
    const honest = join(home, '.local', 'share', 'claude', 'real');
    writeFileSync(honest, 'binary\n');
    chownR(honest, attacker);
    const m = await store.quarantine({
      kind: 'path',
      path: honest,
      root: home,
      expect: 'file-or-symlink',
      linkDirs: [],
      shimDirs: [],
      binNames: [],
      ownerUser: attacker.name,
      rule: decision.rule,
      policyVersion: 3,
      package: null,
    });
    expect(existsSync(honest)).toBe(false);
    expect(store.get(m.id)?.state).toBe('quarantined');
    db.close();
  });
});

describe('(c) swap race between the checks and the copy', () => {
  it('the package dir becomes a symlink to a root-owned dir right before the copy: nothing there is read into quarantine or removed', async () => {
    const dir = fresh();
    const target = join(dir, 'root-secrets');
    mkdirSync(target, { mode: 0o755 });
    writeFileSync(join(target, 'package.json'), '{}');
    writeFileSync(join(target, 'shadow'), 'root only\n', { mode: 0o600 });
    const targetBefore = snapshot(target);
    const home = join(dir, 'home');
    const prefix = join(home, '.npm-global');
    const root = join(prefix, 'lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    writePackage(pkg, FAKE_MANIFEST, FAKE_FILES);
    mkdirSync(join(prefix, 'bin'));
    symlinkSync('../lib/node_modules/@anthropic-ai/claude-code/cli.js', join(prefix, 'bin', 'claude'));
    chownR(home, attacker);
    let swapped = false;
    const { db, store } = await storeIn(dir, () => {
      // What the attacker does at the worst moment (after every check, before the copy): the
      // real package goes aside and a link to root's dir takes its place.
      renameSync(pkg, `${pkg}.aside`);
      symlinkSync(target, pkg);
      execFileSync('chown', ['-h', `${attacker.uid}:${attacker.gid}`, pkg]);
      swapped = true;
    });
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(attacker, root, pkg, 'npm'),
      decision,
    );
    expect(swapped).toBe(true);
    expect(r.actionTaken).toBe('failed');
    expect(r.error).toMatch(/^GUARD_QUARANTINE_UNSAFE_PATH: /);
    expect(snapshot(target)).toEqual(targetBefore);
    expect(lstatSync(pkg).isSymbolicLink()).toBe(true); // the attacker's link, left alone
    expect(readlinkSync(join(prefix, 'bin', 'claude'))).toBe(
      '../lib/node_modules/@anthropic-ai/claude-code/cli.js',
    );
    const entry = store.list().at(-1);
    expect(entry?.state).toBe('rolled_back');
    expect(readdirSync(join(dir, 'state', 'quarantine'))).toEqual([]);
    db.close();
  });
});

describe('(d) honest cases', () => {
  it('a real npm install -g --prefix in a user home is quarantined and restored exactly, with its links, as the user', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const prefix = join(victim.home, '.npm-global');
    const tgz = packFixture(join(dir, 'pack'));
    await npmInstallGlobal(prefix, tgz);
    const root = join(prefix, 'lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    // The user made one of their own files and dirs unusable to themselves, to block a copy.
    writeFileSync(join(pkg, 'locked.txt'), 'locked\n');
    mkdirSync(join(pkg, 'ro'));
    writeFileSync(join(pkg, 'ro', 'f'), 'f\n');
    chownR(prefix, victim);
    chmodSync(join(pkg, 'locked.txt'), 0o000);
    chmodSync(join(pkg, 'ro'), 0o555);
    const bins = readdirSync(join(prefix, 'bin'));
    expect(bins.length).toBeGreaterThan(0);
    const before = await treeHash(pkg);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(victim, root, pkg, 'npm'),
      decision,
    );
    expect(r.error).toBeNull();
    const id = r.details?.quarantine_id as string;
    expect(existsSync(pkg)).toBe(false);
    expect(readdirSync(join(prefix, 'bin'))).toEqual([]);
    const m = store.get(id)?.manifest;
    expect(m?.treeHash).toBe(before.hash);
    expect(m?.links.map((l) => l.path).sort()).toEqual(bins.map((b) => join(prefix, 'bin', b)).sort());
    const res = await store.restore(id, { force: false, stillBanned: () => false });
    expect(res).toMatchObject({ hashVerified: true, linksRestored: bins.length });
    expect((await treeHash(pkg)).hash).toBe(before.hash);
    expect(readdirSync(join(prefix, 'bin')).sort()).toEqual([...bins].sort());
    expect(statSync(join(pkg, 'cli.js')).uid).toBe(victim.uid);
    expect(lstatSync(join(prefix, 'bin', bins[0] as string)).uid).toBe(victim.uid);
    db.close();
  });
});

describe('hostile contents and unproven links', () => {
  it('a FIFO inside the package is never opened: the move fails with GUARD_QUARANTINE_IO and rolls back', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const home = join(dir, 'home');
    const root = join(home, '.npm-global', 'lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    writePackage(pkg, FAKE_MANIFEST, FAKE_FILES);
    execFileSync('mkfifo', [join(pkg, 'pipe')]);
    chownR(home, attacker);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(attacker, root, pkg, 'npm'),
      decision,
    );
    expect(r.error).toMatch(/^GUARD_QUARANTINE_IO: .*special file/);
    expect(existsSync(join(pkg, 'cli.js'))).toBe(true);
    expect(store.list().at(-1)?.state).toBe('rolled_back');
    expect(readdirSync(join(dir, 'state', 'quarantine'))).toEqual([]);
    db.close();
  });

  it("only shims proven to be the package's are removed from a shim dir (a file merely named like a bin stays)", async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const home = join(dir, 'home');
    const volta = join(home, '.volta');
    const root = join(volta, 'tools', 'image', 'packages', 'claude', 'lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    writePackage(pkg, { ...FAKE_MANIFEST, bin: { claude: 'cli.js', notes: 'cli.js' } }, FAKE_FILES);
    mkdirSync(join(volta, 'bin'), { recursive: true });
    symlinkSync(join(volta, 'bin', 'volta-shim'), join(volta, 'bin', 'claude'));
    writeFileSync(join(volta, 'bin', 'notes'), 'my own notes, not a shim\n');
    chownR(home, attacker);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(attacker, root, pkg, 'volta'),
      decision,
    );
    expect(r.error).toBeNull();
    expect(existsSync(join(volta, 'bin', 'notes'))).toBe(true);
    expect(() => lstatSync(join(volta, 'bin', 'claude'))).toThrow();
    const res = await store.restore(r.details?.quarantine_id as string, {
      force: false,
      stillBanned: () => false,
    });
    expect(res.linksRestored).toBe(1);
    expect(readlinkSync(join(volta, 'bin', 'claude'))).toBe(join(volta, 'bin', 'volta-shim'));
    expect(lstatSync(join(volta, 'bin', 'claude')).uid).toBe(attacker.uid);
    db.close();
  });

  it('a root-owned subdir the owner cannot remove: the copy stays in quarantine as "copied", root removed nothing of it', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    const home = join(dir, 'home');
    const root = join(home, '.npm-global', 'lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    writePackage(pkg, FAKE_MANIFEST, { ...FAKE_FILES, 'rootdir/keep.txt': 'root\n' });
    chownR(home, attacker);
    execFileSync('chown', ['-R', '0:0', join(pkg, 'rootdir')]);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(attacker, root, pkg, 'npm'),
      decision,
    );
    expect(r.error).toMatch(/^GUARD_QUARANTINE_IO: copied .* but could not remove it/);
    // The user could not remove root's file, so neither did guardd.
    expect(readFileSync(join(pkg, 'rootdir', 'keep.txt'), 'utf8')).toBe('root\n');
    const entry = store.list().at(-1);
    expect(entry?.state).toBe('copied');
    expect(existsSync(join(entry?.manifest.storedPath as string, 'rootdir', 'keep.txt'))).toBe(true);
    db.close();
  });
});

describe('(e) restore after the user redirected the path', () => {
  it('a prefix replaced by a link into a root-owned tree: restore refused with GUARD_QUARANTINE_UNSAFE_PATH, nothing written there', async () => {
    const dir = fresh();
    const { db, store } = await storeIn(dir);
    // A shared sticky directory like /tmp, where the attacker keeps an npm prefix of their own.
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const prefix = join(shared, 'p');
    const root = join(prefix, 'lib', 'node_modules');
    const pkg = join(root, '@anthropic-ai', 'claude-code');
    writePackage(pkg, FAKE_MANIFEST, FAKE_FILES);
    chownR(prefix, attacker);
    const r = await new QuarantineAction({ store, notifier: new RecordingNotifier(), logger }).execute(
      pkgObs(attacker, root, pkg, 'npm'),
      decision,
    );
    expect(r.error).toBeNull();
    const id = r.details?.quarantine_id as string;
    expect(store.get(id)?.manifest.actor).toEqual({ uid: attacker.uid, gid: attacker.gid });
    // The attacker swaps their prefix for a link to a root-owned tree (a stand-in for /usr/local).
    const rootTree = join(dir, 'usr-local');
    mkdirSync(join(rootTree, 'lib', 'node_modules'), { recursive: true, mode: 0o755 });
    const before = snapshot(rootTree);
    renameSync(prefix, join(shared, 'old'));
    symlinkSync(rootTree, prefix);
    execFileSync('chown', ['-h', `${attacker.uid}:${attacker.gid}`, prefix]);
    await expect(store.restore(id, { force: true, stillBanned: () => true })).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_UNSAFE_PATH',
    });
    expect(snapshot(rootTree)).toEqual(before);
    expect(store.get(id)?.state).toBe('quarantined');
    db.close();
  });
});
