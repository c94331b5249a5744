/**
 * A script package lookup that finds no free slot in time (its user's earlier lookup is stuck on
 * a stalled mount, or a burst is queued ahead of it) is not final: the sensor tries again while
 * the process runs the same program, so the banned script is killed once the slot is free.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ReadGate } from '../../../src/sensors/safe-read.js';
import { ScriptPackageResolver } from '../../../src/sensors/script-package.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { mountStalled, type StalledMount } from '../hostile-fs.js';
import { alive, launch, makeBannedFixtures, type Pipeline, policy, startPipeline } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(runnable)('script package lookups that run out of time', () => {
  const dir = tempDir('tg-retry-');
  let mnt: StalledMount | undefined;
  let p: Pipeline | undefined;

  afterAll(async () => {
    await mnt?.release();
    await p?.stop();
  });

  it('are retried: a banned script queued behind a stuck lookup is killed once the slot is free', async () => {
    mnt = await mountStalled(dir);
    const f = makeBannedFixtures(dir);
    // One slot, a short deadline: the stuck lookup below takes the slot for uid 0.
    const gate = new ReadGate('retry-test', 1, 1);
    p = await startPipeline(policy([f.rule]), {
      scripts: new ScriptPackageResolver({ gate, timeoutMs: 300 }),
      keepObservations: true,
    });
    const pipeline = p;
    const stuck = launch(process.execPath, [join(mnt.path, 'cli.js')]);
    try {
      await waitFor(() => gate.pending === 1 && gate.counts.timeout >= 1, 'the stuck lookup');
      const banned = launch(process.execPath, [
        join(f.prefixes[0] as string, 'lib', 'node_modules', f.pkg, 'cli.js'),
      ]);
      const pid = banned.child.pid as number;
      // The first lookup found no slot: observed without a package, not killed.
      const first = await waitFor(
        () => pipeline.observed.find((o) => o.pid === pid && o.scriptPackage !== undefined),
        'the first observation of the banned script',
      );
      expect(first.scriptPackage).toBeNull();
      expect(gate.counts.busy).toBeGreaterThan(0);
      expect(alive(pid)).toBe(true);
      // The mount answers (its daemon is gone): the slot comes back, a retry finds the package.
      await mnt.release();
      expect(await banned.exited).toBe('SIGKILL');
      const ev = await waitFor(
        () => pipeline.events.ofType('process.blocked').find((e) => e.pid === pid),
        'process.blocked after the retry',
      );
      expect(ev).toMatchObject({ rule: { id: f.rule.id } });
    } finally {
      stuck.child.kill('SIGKILL');
    }
  });
});
