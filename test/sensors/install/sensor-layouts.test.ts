/**
 * The install sensor end to end: real `npm install -g --prefix` trees and hand-built pnpm / yarn /
 * npm-link / nvm layouts → InstallSensor → matcher → Enforcer → QuarantineAction → events.
 */
import { existsSync, lstatSync, mkdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { treeHash } from '../../../src/enforcement/quarantine-store.js';
import type { AgentEvent } from '../../../src/events/event-types.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import {
  BANNED,
  BANNED_UNSCOPED,
  FAKE_FILES,
  FAKE_MANIFEST,
  link,
  makeRig,
  npmInstallGlobal,
  packFixture,
  type Rig,
  writePackage,
} from './harness.js';

const base = tempDir('tg-inst-');
let tarball = '';
let n = 0;
const rigs: Rig[] = [];
const fresh = (): string => {
  const d = join(base, `t${++n}`);
  mkdirSync(d, { recursive: true });
  return d;
};

beforeAll(() => {
  tarball = packFixture(join(base, 'pack'));
});
afterEach(async () => {
  await Promise.all(rigs.splice(0).map((r) => r.close()));
});

/** The first package.quarantined event, waited for. */
const quarantined = (rig: Rig): Promise<AgentEvent> =>
  waitFor(() => rig.sink.ofType('package.quarantined')[0], 'package.quarantined');

describe('npm global prefix (real npm install -g)', () => {
  it('quarantines a banned package installed while running: tree moved, bin link gone, event with id', async () => {
    const dir = fresh();
    const prefix = join(dir, 'prefix');
    const root = join(prefix, 'lib', 'node_modules');
    mkdirSync(root, { recursive: true });
    const rig = await makeRig({ dir, extraRoots: [root] });
    rigs.push(rig);
    await npmInstallGlobal(prefix, tarball);
    const ev = await quarantined(rig);
    const pkgDir = join(root, '@anthropic-ai', 'claude-code');
    expect(existsSync(pkgDir)).toBe(false);
    expect(existsSync(join(prefix, 'bin', 'claude'))).toBe(false);
    const outcome = ev.outcome as {
      action_taken: string;
      error: string | null;
      details: Record<string, unknown>;
    };
    expect(outcome.action_taken).toBe('quarantined');
    expect(outcome.error).toBeNull();
    expect(outcome.details.links_removed).toEqual([join(prefix, 'bin', 'claude')]);
    const pkg = ev.package as { name: string; version: string; path: string; manager: string };
    expect(pkg).toMatchObject({ name: BANNED, version: '1.0.99', path: pkgDir });
    const entry = rig.store.get(outcome.details.quarantine_id as string);
    expect(entry?.state).toBe('quarantined');
    expect(entry?.manifest.links).toHaveLength(1);
    expect(rig.notifier.calls).toHaveLength(1);
  });

  it('quarantines a package already present at start, and restore puts tree, modes and bin link back byte-for-byte', async () => {
    const dir = fresh();
    const prefix = join(dir, 'prefix');
    const root = join(prefix, 'lib', 'node_modules');
    await npmInstallGlobal(prefix, tarball);
    const pkgDir = join(root, '@anthropic-ai', 'claude-code');
    const before = await treeHash(pkgDir);
    const linkBefore = readlinkSync(join(prefix, 'bin', 'claude'));
    const rig = await makeRig({ dir, extraRoots: [root] });
    rigs.push(rig);
    const ev = await quarantined(rig);
    const id = (ev.outcome as { details: { quarantine_id: string } }).details.quarantine_id;
    expect(existsSync(pkgDir)).toBe(false);
    await expect(rig.store.restore(id, { force: false, stillBanned: () => true })).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_STILL_BANNED',
    });
    expect(existsSync(pkgDir)).toBe(false);
    await rig.sensor.stop(); // or it would be quarantined again at once
    const r = await rig.store.restore(id, { force: true, stillBanned: () => true });
    expect(r.hashVerified).toBe(true);
    expect(r.forced).toBe(true);
    expect((await treeHash(pkgDir)).hash).toBe(before.hash);
    expect(readlinkSync(join(prefix, 'bin', 'claude'))).toBe(linkBefore);
    expect(rig.store.get(id)?.state).toBe('restored');
    await expect(rig.store.restore(id, { force: true, stillBanned: () => false })).rejects.toMatchObject({
      code: 'GUARD_QUARANTINE_NOT_FOUND',
    });
  });

  it('warn leaves the tree in place and emits one event, not one per file or rescan', async () => {
    const dir = fresh();
    const prefix = join(dir, 'prefix');
    const root = join(prefix, 'lib', 'node_modules');
    mkdirSync(root, { recursive: true });
    const rig = await makeRig({ dir, extraRoots: [root], action: 'warn' });
    rigs.push(rig);
    await npmInstallGlobal(prefix, tarball);
    await waitFor(() => rig.sink.ofType('package.warned').length === 1, 'package.warned');
    writeFileSync(join(root, '@anthropic-ai', 'claude-code', 'extra.txt'), 'more files\n');
    await rig.sensor.rescan();
    await rig.sensor.rescan();
    await waitFor(() => rig.sensor.status().details.pending === 0, 'no pending candidates');
    expect(rig.sink.events.filter((e) => e.type.startsWith('package.'))).toHaveLength(1);
    expect(existsSync(join(root, '@anthropic-ai', 'claude-code', 'cli.js'))).toBe(true);
    expect(existsSync(join(prefix, 'bin', 'claude'))).toBe(true);
    expect(rig.notifier.calls).toHaveLength(1);
  });

  it('picks up a root that appears later (a user installs nvm and then the banned package)', async () => {
    const dir = fresh();
    const home = join(dir, 'home', 'alice');
    mkdirSync(home, { recursive: true });
    const rig = await makeRig({ dir, homes: [home] });
    rigs.push(rig);
    expect(rig.sensor.status().details.roots).toEqual([]);
    const prefix = join(home, '.nvm', 'versions', 'node', 'v22.11.0');
    mkdirSync(join(prefix, 'lib', 'node_modules'), { recursive: true });
    await waitFor(
      () => (rig.sensor.status().details.roots as string[]).includes(join(prefix, 'lib', 'node_modules')),
      'nvm root discovered',
    );
    await npmInstallGlobal(prefix, tarball);
    const ev = await quarantined(rig);
    expect((ev.package as { manager: string }).manager).toBe('nvm');
    expect(existsSync(join(prefix, 'bin', 'claude'))).toBe(false);
  });
});

describe('hand-built layouts', () => {
  it('pnpm global: the .pnpm directory is moved, the node_modules alias link and the PNPM_HOME shim removed', async () => {
    const dir = fresh();
    const home = join(dir, 'home', 'bob');
    const pnpmHome = join(home, '.local', 'share', 'pnpm');
    const root = join(pnpmHome, 'global', '5', 'node_modules');
    const real = join(
      root,
      '.pnpm',
      '@anthropic-ai+claude-code@1.0.99',
      'node_modules',
      '@anthropic-ai',
      'claude-code',
    );
    writePackage(real, FAKE_MANIFEST, FAKE_FILES);
    const alias = join(root, '@anthropic-ai', 'claude-code');
    link('../.pnpm/@anthropic-ai+claude-code@1.0.99/node_modules/@anthropic-ai/claude-code', alias);
    const shim = `#!/bin/sh\nbasedir=$(dirname "$0")\nexec node "$basedir/global/5/node_modules/@anthropic-ai/claude-code/cli.js" "$@"\n`;
    writeFileSync(join(pnpmHome, 'claude'), shim, { mode: 0o755 });
    const rig = await makeRig({ dir, homes: [home] });
    rigs.push(rig);
    const ev = await quarantined(rig);
    expect((ev.package as { path: string; manager: string }).path).toBe(real);
    expect((ev.package as { manager: string }).manager).toBe('pnpm');
    expect(existsSync(real)).toBe(false);
    expect(() => lstatSync(alias)).toThrow();
    expect(existsSync(join(pnpmHome, 'claude'))).toBe(false);
    const links = (ev.outcome as { details: { links_removed: string[] } }).details.links_removed;
    expect(links.sort()).toEqual([alias, join(pnpmHome, 'claude')].sort());
  });

  it('yarn classic global: package moved, .bin link and ~/.yarn/bin link removed', async () => {
    const dir = fresh();
    const home = join(dir, 'home', 'carol');
    const root = join(home, '.config', 'yarn', 'global', 'node_modules');
    writePackage(join(root, '@anthropic-ai', 'claude-code'), FAKE_MANIFEST, FAKE_FILES);
    link('../@anthropic-ai/claude-code/cli.js', join(root, '.bin', 'claude'));
    link('../../.config/yarn/global/node_modules/.bin/claude', join(home, '.yarn', 'bin', 'claude'));
    const rig = await makeRig({ dir, homes: [home] });
    rigs.push(rig);
    const ev = await quarantined(rig);
    expect((ev.package as { manager: string }).manager).toBe('yarn');
    expect(existsSync(join(root, '@anthropic-ai', 'claude-code'))).toBe(false);
    expect(() => lstatSync(join(root, '.bin', 'claude'))).toThrow();
    expect(() => lstatSync(join(home, '.yarn', 'bin', 'claude'))).toThrow();
  });

  it('npm link-style: the link is quarantined (never its target outside the root), bin link removed', async () => {
    const dir = fresh();
    const prefix = join(dir, 'prefix');
    const root = join(prefix, 'lib', 'node_modules');
    const src = join(dir, 'src', 'banned-tool');
    writePackage(src, { name: BANNED_UNSCOPED, version: '0.1.0', bin: { bt: 'cli.js' } }, FAKE_FILES);
    link(src, join(root, BANNED_UNSCOPED));
    link(`../lib/node_modules/${BANNED_UNSCOPED}/cli.js`, join(prefix, 'bin', 'bt'));
    const rig = await makeRig({ dir, extraRoots: [root] });
    rigs.push(rig);
    const ev = await quarantined(rig);
    expect((ev.package as { path: string }).path).toBe(join(root, BANNED_UNSCOPED));
    expect(() => lstatSync(join(root, BANNED_UNSCOPED))).toThrow();
    expect(() => lstatSync(join(prefix, 'bin', 'bt'))).toThrow();
    expect(existsSync(join(src, 'cli.js'))).toBe(true); // the user's source tree is untouched
    const id = (ev.outcome as { details: { quarantine_id: string } }).details.quarantine_id;
    expect(rig.store.get(id)?.manifest.entryType).toBe('symlink');
  });

  it('an unscoped package in a directory named differently counts by its package.json name', async () => {
    const dir = fresh();
    const root = join(dir, 'prefix', 'lib', 'node_modules');
    writePackage(join(root, 'innocent-name'), { name: BANNED_UNSCOPED, version: '2.0.0' }, FAKE_FILES);
    writePackage(join(root, 'left-pad'), { name: 'left-pad', version: '1.3.0' });
    const rig = await makeRig({ dir, extraRoots: [root] });
    rigs.push(rig);
    const ev = await quarantined(rig);
    expect(ev.package).toMatchObject({ name: BANNED_UNSCOPED, path: join(root, 'innocent-name') });
    expect(existsSync(join(root, 'left-pad'))).toBe(true);
  });

  it('monitor mode: a blocked package is left in place and reported once as would_block', async () => {
    const dir = fresh();
    const root = join(dir, 'prefix', 'lib', 'node_modules');
    writePackage(join(root, '@anthropic-ai', 'claude-code'), FAKE_MANIFEST, FAKE_FILES);
    const rig = await makeRig({ dir, extraRoots: [root], mode: 'monitor' });
    rigs.push(rig);
    const ev = await waitFor(() => rig.sink.ofType('package.warned')[0], 'package.warned');
    expect((ev.outcome as { action_taken: string }).action_taken).toBe('would_block');
    await rig.sensor.rescan();
    await waitFor(() => rig.sensor.status().details.pending === 0, 'nothing pending');
    expect(rig.sink.events).toHaveLength(1);
    expect(existsSync(join(root, '@anthropic-ai', 'claude-code', 'cli.js'))).toBe(true);
    expect(rig.store.list()).toHaveLength(0);
  });

  it('path artifact: a native-installer version appearing later is quarantined and its launcher link removed', async () => {
    const dir = fresh();
    const home = join(dir, 'home', 'dave');
    mkdirSync(join(home, '.local'), { recursive: true });
    const rig = await makeRig({ dir, homes: [home] });
    rigs.push(rig);
    const versions = join(home, '.local', 'share', 'claude', 'versions');
    mkdirSync(versions, { recursive: true });
    link('../share/claude/versions/1.0.99', join(home, '.local', 'bin', 'claude'));
    writeFileSync(join(versions, '1.0.99'), 'native binary stand-in\n', { mode: 0o755 });
    const ev = await waitFor(() => rig.sink.ofType('path.quarantined')[0], 'path.quarantined');
    expect(ev.path).toBe(join(versions, '1.0.99'));
    expect((ev.outcome as { action_taken: string }).action_taken).toBe('quarantined');
    expect(existsSync(join(versions, '1.0.99'))).toBe(false);
    expect(() => lstatSync(join(home, '.local', 'bin', 'claude'))).toThrow();
  });
});
