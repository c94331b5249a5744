/**
 * The real daemon with a user's stalled mount in their npm root from the moment it starts: guardd
 * starts the install sensor first and the process sensor (and its policy updates, shipping and
 * heartbeats) only once the install sensor's first full scan ended — which waited for ever on the
 * mount, so a user who placed one before a reboot ran banned programs unhindered. Now the scan
 * ends, every sensor runs, `guardctl status` answers and shows the stalled tree, and another
 * user's banned install is quarantined as usual. And guardd stops (SIGTERM, exit 0) while its
 * call into the mount is still stuck: process.exit() waited for that pool thread for ever.
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { makeKey, policyBody, runGuardctl, startGuardd, writeSignedPolicy } from '../../helpers/daemon.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../../helpers/machine-lock.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED_UNSCOPED } from './harness.js';
import { installBanned, mountAs, npmRoot, shAs, type UserMount } from './stall-attack.js';

const dir = tempDir('tg-sgd-');
const mounts: UserMount[] = [];
afterAll(async () => {
  for (const m of mounts) await m.release();
});

interface SensorState {
  name: string;
  running: boolean;
  details: Record<string, unknown>;
}

it(
  "a user's stalled npm root at start: every sensor runs, status answers, another user's install is quarantined",
  async () => {
    const staller = createTestUser('tgsg');
    const victim = createTestUser('tgsg');
    const root = npmRoot(staller);
    const victimRoot = npmRoot(victim);
    shAs(staller, `mkdir '${root}/stuck'`);
    const mount = await mountAs(staller, join(root, 'stuck'), dir);
    mounts.push(mount);
    const key = makeKey();
    const policy = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody(
        [
          {
            id: 'banned-tool',
            name: 'Banned tool',
            action: 'block',
            message: 'not approved',
            packages: [{ ecosystem: 'npm', name: BANNED_UNSCOPED, range: '*' }],
          },
        ],
        { version: 2 },
      ),
      key,
    );
    const guardd = await startGuardd(join(dir, 'agent'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policy,
      'sensors.install.enabled': true,
      'sensors.install.homes': [staller.home, victim.home],
      'sensors.install.system_roots': false,
    });
    const sock = ['--socket-dir', guardd.socketDir];
    const sensors = (): SensorState[] => {
      const r = runGuardctl([...sock, '--json', 'status']);
      return r.code === 0 ? r.json<{ sensors: SensorState[] }>().sensors : [];
    };
    try {
      // The install sensor's first full scan ended, so the process sensor was started after it.
      const started = await waitFor(
        () => {
          const s = sensors();
          const install = s.find((x) => x.name === 'install');
          return (
            s.find((x) => x.name === 'process')?.running === true &&
            (install?.details.scans_completed as number) >= 1 &&
            install
          );
        },
        'the process sensor running and a full scan ended',
        { timeoutMs: 20_000 },
      );
      expect(started.details.stalled_trees).toBe(1);
      // The victim installs the banned package (staged, renamed in, as npm does): quarantined.
      const pkg = installBanned(victim, victimRoot);
      const entry = await waitFor(
        () => {
          const r = runGuardctl([...sock, '--json', 'quarantine', 'list']);
          const e = r.code === 0 ? r.json<{ entries: { path: string }[] }>().entries : [];
          return e.find((x) => x.path === pkg);
        },
        "the victim's banned package quarantined",
        { timeoutMs: 25_000 },
      );
      expect(entry).toMatchObject({ path: pkg });
      // guardd stops while its call into the mount is still stuck in a pool thread: libuv joins
      // its pool threads at exit, so process.exit() never returned (until systemd's stop timeout
      // killed it); now it ends with _exit once everything it owns is closed (quick-exit.ts).
      expect(mount.path).toBe(join(root, 'stuck'));
      expect(await guardd.stop()).toBe(0);
    } finally {
      await guardd.stop('SIGKILL');
      await mount.release();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);
