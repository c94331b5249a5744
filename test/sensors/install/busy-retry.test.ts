/**
 * A block turned away because the user's tree did not answer in time is tried again (issue 13).
 * The quarantine gives up on a look that does not answer within its deadline
 * (GUARD_QUARANTINE_BUSY, nothing moved), and the install sensor counted the package as reported
 * (once per policy version and identity): a user who mounted a FUSE file system that never
 * answers over their banned package right after it was reported kept it installed for good once
 * they unmounted — nothing reported it again until it changed or a new policy came. Now the
 * pipeline hands the turned-away observation back to the sensor (`Sensor.turnedAway`), which
 * forgets the report and looks at the tree again: the package is quarantined once the tree answers.
 *
 * Real parts: a real user made here, their banned package written as them, their real FUSE mount
 * that never answers (stall-attack.ts `mountAs`) made at the moment the sensor reports it, the
 * real install sensor, pipeline, enforcer, quarantine action and store on a real SQLite file.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { silentLogger } from '../../../src/common/logger.js';
import { UserDirectory } from '../../../src/common/users.js';
import { Pipeline } from '../../../src/daemon/pipeline.js';
import { QuarantineStore } from '../../../src/enforcement/quarantine-store.js';
import type { AgentEvent } from '../../../src/events/event-types.js';
import { compileMatcher } from '../../../src/policy/matcher.js';
import { InstallSensor } from '../../../src/sensors/install-sensor.js';
import type { Observation } from '../../../src/sensors/observation.js';
import { openDatabase } from '../../../src/store/database.js';
import { MIGRATIONS } from '../../../src/store/migrations.js';
import { MemoryEventSink } from '../../helpers/event-sink.js';
import { LOCKED_TEST_TIMEOUT_MS } from '../../helpers/machine-lock.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { installEnforcer, policyBody, RecordingNotifier } from './harness.js';
import { installBanned, mountAs, npmRoot, type UserMount } from './stall-attack.js';

/** An event's outcome (package events carry one). */
const outcomeOf = (e: AgentEvent): { action_taken?: string; error?: string | null } =>
  (e.outcome ?? {}) as { action_taken?: string; error?: string | null };

it(
  'a banned package the user covers with a stalled mount as it is reported: the quarantine fails GUARD_QUARANTINE_BUSY, then succeeds once the mount is gone',
  async () => {
    const base = tempDir('tg-busy-');
    const user = createTestUser('tgbr');
    const root = npmRoot(user);
    const pkg = installBanned(user, root);
    const logger = silentLogger();
    const { db } = openDatabase(join(base, 'state.db'), { migrations: MIGRATIONS, synchronous: 'NORMAL' });
    const store = new QuarantineStore({ db, quarantineDir: join(base, 'quarantine'), logger });
    await store.init();
    const sink = new MemoryEventSink();
    const notifier = new RecordingNotifier();
    const pipeline = new Pipeline({
      enforcer: installEnforcer(store, notifier, sink),
      logger,
      hostname: 'test-host',
      deviceTags: [],
    });
    let mount: UserMount | null = null;
    const reports: Observation[] = [];
    const sensor = new InstallSensor({
      users: new UserDirectory({ platform: 'linux' }),
      platform: 'linux',
      rescanCron: '0 0 1 1 *', // never during the test: the retry is not a scheduled rescan
      extraRoots: [],
      homes: [user.home],
      systemRoots: false,
      logger,
      onObservation: async (obs) => {
        reports.push(obs);
        // The user's move, the moment their package is reported: a mount that never answers over it.
        if (reports.length === 1) mount = await mountAs(user, pkg, base);
        pipeline.handle(obs);
      },
    });
    pipeline.addSensor(sensor);
    pipeline.setMatcher(compileMatcher(policyBody('block'), { platform: 'linux', homes: [user.home] }));
    try {
      await sensor.start();
      const failed = await waitFor(
        () => sink.ofType('package.quarantined').find((e) => outcomeOf(e).action_taken === 'failed'),
        'the turned-away quarantine',
        { timeoutMs: 30_000 },
      );
      expect(outcomeOf(failed).error).toMatch(/^GUARD_QUARANTINE_BUSY: /);
      expect(store.list()).toEqual([]);
      expect(sensor.status().skipped).toMatchObject({ block_turned_away: 1 });
      // The user lets go (the package is back, runnable): no change to it, no new policy.
      await (mount as UserMount | null)?.release();
      mount = null;
      const done = await waitFor(
        () => sink.ofType('package.quarantined').find((e) => outcomeOf(e).action_taken === 'quarantined'),
        'the quarantine tried again',
        { timeoutMs: 40_000 },
      );
      expect(done).toMatchObject({ package: { path: pkg }, outcome: { error: null } });
      expect(reports.length).toBeGreaterThanOrEqual(2);
      expect(store.list().map((e) => [e.manifest.originalPath, e.state])).toEqual([[pkg, 'quarantined']]);
      expect(existsSync(pkg)).toBe(false);
    } finally {
      await (mount as UserMount | null)?.release();
      await sensor.stop();
      await pipeline.drain();
      db.close();
    }
  },
  LOCKED_TEST_TIMEOUT_MS,
);
