/**
 * Installs end cleanly (issue 13, item 6) in the real daemon (dist/, as root) with real
 * unprivileged users (prefix `tgin`) and real npm:
 *  - a user runs `npm install -g --prefix ~/.npm-global` of a banned package: guardd's process
 *    rules kill its postinstall, npm removes the package (and the root it had created) itself and
 *    leaves the bin link dangling; guardd removes that link as the user and records exactly one
 *    package event (`install_reverted`), beside the `process.blocked` of the postinstall;
 *  - a user swaps their bin dir for a symlink to a root-owned dir holding a root-owned link named
 *    like the bin and pointing where the banned package would be; another plants a bin-named link
 *    to a root-owned file: root's link and file are untouched (the removal runs as the user and
 *    is refused; the other link is not proven to point into a package at all).
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentEvent } from '../../../src/events/event-types.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  runGuardctl,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, spawnAs, type TestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { packFixture, writeSlowPostinstallPackage } from './harness.js';

/** A name no other test's daemon bans (root daemons of other tests may run on the same machine). */
const BANNED_UNSCOPED = 'tgin-banned-tool';

const dir = tempDir('tgin-gd-');
chmodSync(dir, 0o755); // the users read the tarball from here
const chownR = (path: string, u: TestUser): void => {
  execFileSync('chown', ['-hR', `${u.uid}:${u.gid}`, path]);
};
let guardd: Guardd;
let sock: string[];
let installer: TestUser;
let swapper: TestUser;
let planter: TestUser;
let tarball = '';
const rootBin = join(dir, 'rootbin');
const rootSecret = join(dir, 'root-secret');

const events = (type: string): AgentEvent[] => {
  const r = runGuardctl([...sock, '--json', 'events', '--type', type, '--limit', '1000']);
  return r.code === 0 ? r.json<{ events: { event: AgentEvent }[] }>().events.map((l) => l.event) : [];
};
const packageEvents = (): AgentEvent[] =>
  ['package.quarantined', 'package.warned', 'package.audited'].flatMap(events);
const installScans = (): number => {
  const s = runGuardctl([...sock, 'status', '--json']).json<{
    sensors: { name: string; details: { scans?: number } }[];
  }>();
  return s.sensors.find((x) => x.name === 'install')?.details.scans ?? 0;
};
const gone = (path: string): boolean => {
  try {
    lstatSync(path);
    return false;
  } catch {
    return true;
  }
};

beforeAll(async () => {
  installer = createTestUser('tgin');
  swapper = createTestUser('tgin');
  planter = createTestUser('tgin');
  const src = join(dir, 'src');
  writeSlowPostinstallPackage(src, BANNED_UNSCOPED);
  tarball = packFixture(join(dir, 'pack'), src);
  chmodSync(join(dir, 'pack'), 0o755);
  chmodSync(tarball, 0o644);

  // The swapper: ~/.npm-global/bin → a root-owned dir with a root-owned link named like the bin,
  // pointing (relative to the swapped path) where the banned package would be.
  mkdirSync(rootBin, { mode: 0o755 });
  symlinkSync(`../lib/node_modules/${BANNED_UNSCOPED}/cli.js`, join(rootBin, BANNED_UNSCOPED));
  mkdirSync(join(swapper.home, '.npm-global', 'lib'), { recursive: true });
  symlinkSync(rootBin, join(swapper.home, '.npm-global', 'bin'));
  chownR(join(swapper.home, '.npm-global'), swapper);
  // The planter: a bin-named link to a root-owned file, in their own bin dir.
  writeFileSync(rootSecret, 'root only\n', { mode: 0o600 });
  mkdirSync(join(planter.home, '.npm-global', 'lib'), { recursive: true });
  mkdirSync(join(planter.home, '.npm-global', 'bin'));
  symlinkSync(rootSecret, join(planter.home, '.npm-global', 'bin', BANNED_UNSCOPED));
  chownR(join(planter.home, '.npm-global'), planter);

  const key = makeKey();
  const policyFile = writeSignedPolicy(
    join(dir, 'policy.dsse.json'),
    policyBody(
      [
        {
          id: 'tgin-banned-tool',
          name: 'Banned tool',
          action: 'block',
          message: 'banned-tool is not approved.',
          process: { script_packages: [BANNED_UNSCOPED] },
          packages: [{ ecosystem: 'npm', name: BANNED_UNSCOPED, range: '*' }],
        },
      ],
      { version: 3 },
    ),
    key,
  );
  guardd = await startGuardd(join(dir, 'agent'), {
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policyFile,
    'sensors.process.enabled': true,
    'sensors.install.enabled': true,
    'sensors.install.system_roots': false,
    // A full rescan every 2 s: "nothing more is reported" is checked after two of them.
    'sensors.install.rescan_cron': '*/2 * * * * *',
    'sensors.install.homes': [installer.home, swapper.home, planter.home],
  });
  sock = ['--socket-dir', guardd.socketDir];
});
afterAll(async () => {
  await guardd?.stop();
});

describe('a banned install whose postinstall guardd kills (real guardd, real npm, real user)', () => {
  it('ends with no bin link left and exactly one package event; root-owned bait is never touched', async () => {
    const prefix = join(installer.home, '.npm-global');
    const root = join(prefix, 'lib', 'node_modules');
    const bin = join(prefix, 'bin', BANNED_UNSCOPED);
    const npm = spawnAs(
      installer,
      'npm',
      ['install', '-g', '--prefix', prefix, tarball, '--offline', '--no-audit', '--no-fund'],
      { cwd: installer.home, env: { npm_config_loglevel: 'silent' } },
    );
    const code = await new Promise<number | null>((resolve) => npm.on('exit', (c) => resolve(c)));
    expect(code).not.toBe(0);
    // The process rule killed the postinstall (that is why npm failed).
    const killed = events('process.blocked').filter(
      (e) => (e.script_package as { name?: string } | undefined)?.name === BANNED_UNSCOPED,
    );
    expect(killed.length).toBeGreaterThanOrEqual(1);
    expect(gone(join(root, BANNED_UNSCOPED))).toBe(true);

    const ev = await waitFor(
      () => packageEvents().find((e) => (e.package as { path: string }).path === join(root, BANNED_UNSCOPED)),
      'the package event of the reverted install',
      { timeoutMs: 30_000 },
    );
    expect(ev).toMatchObject({
      type: 'package.quarantined',
      uid: installer.uid,
      package: { name: BANNED_UNSCOPED, path: join(root, BANNED_UNSCOPED) },
      outcome: { action_taken: 'install_reverted', error: null, details: { links_removed: [bin] } },
    });
    expect(gone(bin)).toBe(true);
    expect(lstatSync(join(prefix, 'bin')).uid).toBe(installer.uid);

    // The swapper's attempt: reported once as a failed clean-up; root's link is still there.
    const swapEv = await waitFor(
      () => packageEvents().find((e) => (e.package as { root: string }).root.startsWith(swapper.home)),
      "the swapper's leftover link",
    );
    expect(swapEv).toMatchObject({ type: 'package.quarantined', outcome: { action_taken: 'failed' } });
    expect(String((swapEv.outcome as { error: string }).error)).toContain(BANNED_UNSCOPED);
    expect(readlinkSync(join(rootBin, BANNED_UNSCOPED))).toBe(
      `../lib/node_modules/${BANNED_UNSCOPED}/cli.js`,
    );
    expect(lstatSync(join(rootBin, BANNED_UNSCOPED)).uid).toBe(0);
    // The planter's link to a root-owned file is not a link into a package: untouched, no event.
    expect(readlinkSync(join(planter.home, '.npm-global', 'bin', BANNED_UNSCOPED))).toBe(rootSecret);
    expect(readFileSync(rootSecret, 'utf8')).toBe('root only\n');
    expect(lstatSync(rootSecret).uid).toBe(0);

    // Two more full rescans (discovery, every root, every leftover sweep): nothing more reported.
    const scans = installScans();
    await waitFor(() => installScans() >= scans + 2, 'two more full rescans', { timeoutMs: 30_000 });
    const all = packageEvents();
    expect(all.filter((e) => (e.package as { root: string }).root === root)).toHaveLength(1);
    expect(all).toHaveLength(2);
    expect(all.some((e) => (e.package as { root: string }).root.startsWith(planter.home))).toBe(false);
  });
});
