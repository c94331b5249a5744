/**
 * A content-marker scan of an interpreter's script that gets no answer in time (the walk to the
 * file finds no free slot: the user's own earlier walk is stuck on a stalled mount, or a burst of
 * their launches is queued ahead) is not final: the sensor asks again while the process runs the
 * same program, so a copied banned bundle is killed once the user's line frees up — flooding
 * one's own line delays the kill, it cannot prevent it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../../src/policy/policy-types.js';
import { ReadGate } from '../../../src/sensors/safe-read.js';
import { ScriptPackageResolver } from '../../../src/sensors/script-package.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { mountStalled, type StalledMount } from '../hostile-fs.js';
import { alive, launch, type Pipeline, policy, startPipeline } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(runnable)('content-marker scans that get no answer in time', () => {
  const dir = tempDir('tg-mretry-');
  let mnt: StalledMount | undefined;
  let p: Pipeline | undefined;

  afterAll(async () => {
    await mnt?.release();
    await p?.stop();
  });

  it('are asked again: a copied banned bundle queued behind a stuck scan is killed once the line frees', async () => {
    mnt = await mountStalled(dir);
    // Unique per run: no other suite's daemon on this machine carries it.
    const marker = `tg-mretry-bundle-${process.pid}-${Date.now().toString(36)}`;
    const bundle = join(dir, 'renamed-bundle.js');
    writeFileSync(bundle, `// ${marker}\nsetTimeout(() => {}, 60000);\n`);
    const rule: PolicyRule = {
      id: 'tg-mretry',
      name: 'Banned bundle',
      action: 'block',
      message: 'banned',
      process: { markers: [[marker]] },
    } as PolicyRule;
    // One slot for the walks of uid 0, a short deadline: the walk to the stuck script below holds it.
    const gate = new ReadGate('marker-retry-test', 1, 1);
    p = await startPipeline(policy([rule]), {
      scripts: new ScriptPackageResolver({ gate, timeoutMs: 300 }),
      keepObservations: true,
    });
    const pipeline = p;
    const stuck = launch(process.execPath, [join(mnt.path, 'cli.js')]);
    try {
      await waitFor(() => gate.pending === 1 && gate.counts.timeout >= 1, 'the stuck walk holding the slot');
      const banned = launch(process.execPath, [bundle]);
      const pid = banned.child.pid as number;
      // The first scan found no slot: observed without markers, not killed.
      const first = await waitFor(
        () => pipeline.observed.find((o) => o.pid === pid && o.contentMarkers !== undefined),
        'the first observation of the banned bundle',
      );
      expect(first.contentMarkers ?? []).toEqual([]);
      expect(gate.counts.busy).toBeGreaterThan(0);
      expect(alive(pid)).toBe(true);
      expect(pipeline.sensor.status().skipped.markers_retried ?? 0).toBeGreaterThan(0);
      // The mount answers (its daemon is gone): the slot comes back, a retry finds the markers.
      await mnt.release();
      expect(await banned.exited).toBe('SIGKILL');
      const ev = await waitFor(
        () => pipeline.events.ofType('process.blocked').find((e) => e.pid === pid),
        'process.blocked after the retry',
      );
      expect(ev).toMatchObject({ rule: { id: 'tg-mretry' } });
    } finally {
      stuck.child.kill('SIGKILL');
    }
  });
});
