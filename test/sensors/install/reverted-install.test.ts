/**
 * Installs end cleanly (issue 13, item 6), with real `npm install -g --prefix` of packages packed
 * here, through the real sensor, matcher, enforcer, quarantine store and owner-fs children:
 *  - a banned package whose postinstall is killed (what the process rules do) is removed by npm
 *    itself; its bin link is left dangling. The sensor reports it once (`install_reverted`), the
 *    link is removed, and a later full scan reports nothing more — whether the root existed before
 *    or npm created (and on rollback removed) it. The sensor is kept from seeing the package as
 *    complete while npm runs (see holdPackageReads);
 *  - roots that do not exist at start are watched when they appear: an `extra_roots` entry, a
 *    user's `~/.npm-global`, and a `.npmrc` prefix outside the home; a package installed there
 *    afterwards is quarantined.
 */
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AgentEvent } from '../../../src/events/event-types.js';
import { installReadGate } from '../../../src/sensors/package-reader.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import {
  BANNED_UNSCOPED,
  makeRig,
  npmInstallGlobal,
  packFixture,
  type Rig,
  writePackage,
  writeSlowPostinstallPackage,
} from './harness.js';

const execFileP = promisify(execFile);
const base = tempDir('tgin-rv-');
let tarball = '';
let slowTarball = '';
let n = 0;
const rigs: Rig[] = [];
const fresh = (): string => {
  const d = join(base, `t${++n}`);
  mkdirSync(d, { recursive: true });
  return d;
};

beforeAll(() => {
  // A banned package with no install script: other root daemons on a shared test machine may
  // kill a banned postinstall, and these tests are about the roots, not about scripts.
  const plain = join(base, 'plain-src');
  writePackage(
    plain,
    { name: BANNED_UNSCOPED, version: '1.0.0', bin: { 'banned-tool': 'cli.js' } },
    { 'cli.js': '#!/usr/bin/env node\nconsole.log("banned")\n' },
  );
  tarball = packFixture(join(base, 'pack'), plain);
  const pkg = join(base, 'slow-src');
  // The sensor is held by holdPackageReads, not by the package's writes (which can race npm's rollback).
  writeSlowPostinstallPackage(pkg, BANNED_UNSCOPED, { keepWriting: false });
  slowTarball = packFixture(join(base, 'pack-slow'), pkg);
});
afterEach(async () => {
  await Promise.all(rigs.splice(0).map((r) => r.close()));
});

/**
 * Runs `npm install -g --prefix <prefix>` of the slow package, kills its postinstall once it
 * runs (and `beforeKill` resolved), and resolves with npm's exit code once npm has finished
 * (rolled back). Another root daemon on the machine banning the same script may kill it first:
 * the same outcome.
 */
async function installAndKillPostinstall(
  dir: string,
  prefix: string,
  beforeKill: () => Promise<unknown> = async () => undefined,
): Promise<number> {
  const pidFile = join(dir, 'postinstall.pid');
  const npm = execFileP(
    'npm',
    ['install', '-g', '--prefix', prefix, slowTarball, '--offline', '--no-audit', '--no-fund'],
    { timeout: 60_000, env: { ...process.env, npm_config_loglevel: 'silent', TGIN_PIDFILE: pidFile } },
  ).then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  );
  let finished = false;
  void npm.then(() => {
    finished = true;
  });
  const pid = await waitFor(
    () => (existsSync(pidFile) && Number(readFileSync(pidFile, 'utf8'))) || (finished && -1),
    'the postinstall running (or npm done)',
  );
  if (pid > 0) {
    await beforeKill();
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already killed
    }
  }
  return npm;
}

/**
 * Holds the install-read slot of `home`'s tree (as a read stalled on a hung mount would) until
 * released: the sensor cannot look at the candidate, so it cannot report the package installed
 * (and, enforcing, quarantine it) before npm rolls the install back — the case these tests are
 * about; once the tree answers, its roots are scanned and swept again. The slow package's
 * writing postinstall cannot promise that: on a loaded machine its tree stays still for longer
 * than SETTLE_MS after npm has linked its bins (before the script's first write, or once it is
 * killed), and the sensor then rightly reports the installed package. `seen` resolves once the
 * sensor was turned away at least once.
 */
function holdPackageReads(home: string): { seen: () => Promise<unknown>; release: () => void } {
  let release: () => void = () => {};
  // A home no user has is its own key.
  void installReadGate.run(home, 120_000, () => new Promise<void>((r) => (release = r)));
  const busyBefore = installReadGate.counts.busy;
  return {
    seen: () =>
      waitFor(() => installReadGate.counts.busy > busyBefore, 'the sensor turned away reading the package', {
        timeoutMs: 25_000,
      }),
    release: () => release(),
  };
}

const packageEvents = (rig: Rig): AgentEvent[] =>
  rig.sink.events.filter((e) => e.type.startsWith('package.'));

const gone = (path: string): boolean => {
  try {
    lstatSync(path);
    return false;
  } catch {
    return true;
  }
};

describe('an install whose postinstall is killed (npm rolls back)', () => {
  for (const variant of ['root existed', 'npm created the root'] as const) {
    it(`${variant}: one install_reverted event, the dangling bin link removed, nothing more on rescan`, async () => {
      const dir = fresh();
      const home = join(dir, 'home');
      const prefix = join(home, '.npm-global');
      const root = join(prefix, 'lib', 'node_modules');
      if (variant === 'root existed') mkdirSync(root, { recursive: true });
      else mkdirSync(home, { recursive: true });
      const rig = await makeRig({ dir, homes: [home] });
      rigs.push(rig);
      const hold = holdPackageReads(home);
      let code: number;
      try {
        code = await installAndKillPostinstall(dir, prefix, hold.seen);
      } finally {
        hold.release();
      }
      expect(code).not.toBe(0);
      const bin = join(prefix, 'bin', 'banned-tool');
      const pkg = join(root, BANNED_UNSCOPED);
      expect(gone(pkg)).toBe(true);
      if (variant === 'npm created the root') expect(gone(root)).toBe(true);
      // after the hold, the tree answers the next probe (every 2 s) and is scanned and swept; on a
      // loaded 2-core CI machine that took more than the default 15 s once (no other event came)
      const ev = await waitFor(() => packageEvents(rig)[0], 'a package event', { timeoutMs: 45_000 });
      expect(ev).toMatchObject({
        type: 'package.quarantined',
        package: { name: BANNED_UNSCOPED, path: pkg, root },
        outcome: { action_taken: 'install_reverted', error: null, details: { links_removed: [bin] } },
      });
      expect(gone(bin)).toBe(true);
      expect(existsSync(join(prefix, 'bin'))).toBe(true);
      // A full scan (discovery, every root, every leftover sweep) finds nothing more to report.
      await rig.sensor.rescan();
      expect(packageEvents(rig)).toHaveLength(1);
      expect(rig.store.list().length).toBe(0);
    });
  }

  it('a dangling link left while guardd was not running is found at start and removed', async () => {
    const dir = fresh();
    const home = join(dir, 'home');
    const prefix = join(home, '.npm-global');
    mkdirSync(join(prefix, 'lib'), { recursive: true });
    const code = await installAndKillPostinstall(dir, prefix);
    expect(code).not.toBe(0);
    const bin = join(prefix, 'bin', 'banned-tool');
    expect(lstatSync(bin).isSymbolicLink()).toBe(true);
    // A user's own unrelated links in the same dir stay.
    writeFileSync(join(prefix, 'bin', 'mine'), '#!/bin/sh\n', { mode: 0o755 });
    const rig = await makeRig({ dir, homes: [home] });
    rigs.push(rig);
    const ev = await waitFor(() => packageEvents(rig)[0], 'a package event');
    expect(ev).toMatchObject({
      type: 'package.quarantined',
      package: { name: BANNED_UNSCOPED, version: null },
      outcome: { action_taken: 'install_reverted', details: { links_removed: [bin] } },
    });
    expect(gone(bin)).toBe(true);
    expect(existsSync(join(prefix, 'bin', 'mine'))).toBe(true);
    // The same dangling link made again is not reported again under the same policy (a user
    // cannot make guardd report or act in a loop), until something existed at the path again.
    // A link of another banned package made with it proves a sweep read the dir afterwards.
    symlinkSync('../lib/node_modules/banned-tool/cli.js', bin);
    symlinkSync('../lib/node_modules/@anthropic-ai/claude-code/cli.js', join(prefix, 'bin', 'claude'));
    const second = await waitFor(() => packageEvents(rig)[1], 'the second package event');
    expect(second).toMatchObject({ package: { name: '@anthropic-ai/claude-code' } });
    expect(lstatSync(bin).isSymbolicLink()).toBe(true);
    await rig.sensor.rescan();
    expect(packageEvents(rig)).toHaveLength(2);
    // 5,001 more symlinks in the bin dir: the sweep reads at most 5,000 of them, counted.
    for (let i = 0; i < 5_001; i++) symlinkSync(`/nowhere/${i}`, join(prefix, 'bin', `l${i}`));
    await rig.sensor.rescan();
    await waitFor(() => rig.sensor.status().skipped.leftover_sweep_truncated === 1, 'the truncation counted');
    expect(packageEvents(rig)).toHaveLength(2);
  });

  it('monitor mode: recorded as install_reverted (would not act), the link is left alone', async () => {
    const dir = fresh();
    const home = join(dir, 'home');
    const prefix = join(home, '.npm-global');
    mkdirSync(join(prefix, 'lib', 'node_modules'), { recursive: true });
    const rig = await makeRig({ dir, homes: [home], mode: 'monitor' });
    rigs.push(rig);
    const hold = holdPackageReads(home);
    try {
      await installAndKillPostinstall(dir, prefix, hold.seen);
    } finally {
      hold.release();
    }
    const ev = await waitFor(() => packageEvents(rig)[0], 'a package event');
    expect(ev).toMatchObject({
      type: 'package.warned',
      mode: 'monitor',
      outcome: { action_taken: 'install_reverted', details: { links_removed: 0 } },
    });
    expect(lstatSync(join(prefix, 'bin', 'banned-tool')).isSymbolicLink()).toBe(true);
    expect(rig.notifier.calls).toHaveLength(0);
  });
});

describe('the installer removes the package while guardd is quarantining it', () => {
  it('the move gives way, the links are removed, one install_reverted event', async () => {
    const dir = fresh();
    const prefix = join(dir, 'prefix');
    const root = join(prefix, 'lib', 'node_modules');
    mkdirSync(root, { recursive: true });
    const pkg = join(root, BANNED_UNSCOPED);
    const rig = await makeRig({
      dir,
      extraRoots: [root],
      // npm's rollback, between detection and the move.
      beforeEnforce: () => rmSync(pkg, { recursive: true, force: true }),
    });
    rigs.push(rig);
    await npmInstallGlobal(prefix, tarball);
    const ev = await waitFor(() => packageEvents(rig)[0], 'a package event');
    const bin = join(prefix, 'bin', 'banned-tool');
    expect(ev).toMatchObject({
      type: 'package.quarantined',
      package: { path: pkg },
      outcome: { action_taken: 'install_reverted', error: null, details: { links_removed: [bin] } },
    });
    expect(gone(bin)).toBe(true);
    await rig.sensor.rescan();
    expect(packageEvents(rig)).toHaveLength(1);
    expect(rig.store.list().filter((e) => e.state === 'quarantined')).toEqual([]);
  });
});

describe('roots that appear after start are watched', () => {
  it('an extra_roots entry whose parents do not exist yet', async () => {
    const dir = fresh();
    const prefix = join(dir, 'later', 'deep', 'prefix');
    const root = join(prefix, 'lib', 'node_modules');
    const rig = await makeRig({ dir, extraRoots: [root] });
    rigs.push(rig);
    await npmInstallGlobal(prefix, tarball);
    const ev = await waitFor(() => rig.sink.ofType('package.quarantined')[0], 'package.quarantined');
    expect(ev).toMatchObject({ outcome: { action_taken: 'quarantined' }, package: { root } });
    expect(gone(join(root, BANNED_UNSCOPED))).toBe(true);
    expect(gone(join(prefix, 'bin', 'banned-tool'))).toBe(true);
  });

  it("a user's ~/.npm-global created after start", async () => {
    const dir = fresh();
    const home = join(dir, 'home');
    mkdirSync(home, { recursive: true });
    const rig = await makeRig({ dir, homes: [home] });
    rigs.push(rig);
    const prefix = join(home, '.npm-global');
    await npmInstallGlobal(prefix, tarball);
    const ev = await waitFor(() => rig.sink.ofType('package.quarantined')[0], 'package.quarantined');
    expect(ev).toMatchObject({
      outcome: { action_taken: 'quarantined' },
      package: { root: join(prefix, 'lib', 'node_modules') },
    });
    expect(gone(join(prefix, 'bin', 'banned-tool'))).toBe(true);
  });

  it('a .npmrc prefix outside the home that does not exist at start', async () => {
    const dir = fresh();
    const home = join(dir, 'home');
    mkdirSync(home, { recursive: true });
    const prefix = join(dir, 'elsewhere', 'npm');
    writeFileSync(join(home, '.npmrc'), `prefix=${prefix}\n`);
    const rig = await makeRig({ dir, homes: [home] });
    rigs.push(rig);
    expect(rig.sensor.status().details.roots).toEqual([]);
    await npmInstallGlobal(prefix, tarball);
    const ev = await waitFor(() => rig.sink.ofType('package.quarantined')[0], 'package.quarantined');
    expect(ev).toMatchObject({
      outcome: { action_taken: 'quarantined' },
      package: { root: join(prefix, 'lib', 'node_modules') },
    });
  });
});
