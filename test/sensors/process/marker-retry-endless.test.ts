/**
 * Review finding: a content-marker scan the user keeps from answering (their own walk parked on a
 * stalled FUSE mount holds their one slot for as long as the mount stays stalled) was retried 150
 * times (~10 min at the real waits) and then given up: the copied banned bundle then ran for good,
 * though the docs say the flood "delays the kill, it cannot prevent it". The retries must go on
 * while the process runs the same program. The waits are shortened here (1 ms) so the old limit of
 * 150 tries is passed within seconds; the stall then ends and the bundle must still be killed.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../../src/policy/policy-types.js';
import { ReadGate } from '../../../src/sensors/safe-read.js';
import { ScriptPackageResolver } from '../../../src/sensors/script-package.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser, spawnAs } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { mountStalled, type StalledMount } from '../hostile-fs.js';
import { alive, type Pipeline, policy, startPipeline } from './harness.js';

/** The limit the sensor had, per process: the bundle's walk is asked more often than this. */
const OLD_LIMIT = 150;

/** The real resolver, counting the walks to one file (each marker scan of the bundle walks to it once). */
class CountingResolver extends ScriptPackageResolver {
  walks = 0;
  constructor(
    readonly file: string,
    options: ConstructorParameters<typeof ScriptPackageResolver>[0],
  ) {
    super(options);
  }
  override locate(
    ...args: Parameters<ScriptPackageResolver['locate']>
  ): ReturnType<ScriptPackageResolver['locate']> {
    if (args[0] === this.file) this.walks++;
    return super.locate(...args);
  }
}

describe('content-marker retries while the user keeps their line stalled', () => {
  const dir = tempDir('tgrv-mretry-');
  let mnt: StalledMount | undefined;
  let p: Pipeline | undefined;

  afterAll(async () => {
    await mnt?.release();
    await p?.stop();
  });

  it('never give up on a process still running the same program: killed when the stall ends, however late', {
    timeout: 150_000,
  }, async () => {
    expect(process.getuid?.()).toBe(0); // mounts FUSE
    // The user's own processes: their walks wait in their own line (uid), not root's, so other
    // root processes on this machine are not held behind the stall.
    const user = createTestUser('tgrv');
    chmodSync(dir, 0o755);
    mnt = await mountStalled(dir);
    const marker = `tgrv-mretry-bundle-${process.pid}-${Date.now().toString(36)}`;
    const bundle = join(dir, 'renamed-bundle.js');
    writeFileSync(bundle, `// ${marker}\nsetTimeout(() => {}, 120000);\n`, { mode: 0o644 });
    const rule = {
      id: 'tgrv-mretry',
      name: 'Banned bundle',
      action: 'block',
      message: 'banned',
      process: { markers: [[marker]] },
    } as PolicyRule;
    // One slot per uid, a short line deadline: the walk to the user's stuck script holds theirs.
    const gate = new ReadGate('tgrv-marker-retry', 4, 1);
    const scripts = new CountingResolver(bundle, { gate, timeoutMs: 20 });
    p = await startPipeline(policy([rule]), {
      scripts,
      keepObservations: true,
      markerRetryWaitsMs: [1],
    });
    const pipeline = p;
    const stuck = spawnAs(user, process.execPath, [join(mnt.path, 'cli.js')]);
    try {
      await waitFor(() => gate.pending >= 1 && gate.counts.timeout >= 1, 'the stuck walk holding the slot');
      const banned = spawnAs(user, process.execPath, [bundle]);
      const exited = new Promise((r) => banned.once('exit', (code, signal) => r(signal ?? code)));
      const pid = banned.pid as number;
      const skipped = (): Record<string, number> => pipeline.sensor.status().skipped;
      await waitFor(
        () => scripts.walks > OLD_LIMIT + 20 || (skipped().markers_gave_up ?? 0) > 0,
        "the bundle's scan retried past the old limit (or a give-up)",
        { timeoutMs: 90_000 },
      ).catch((err: Error) => {
        throw new Error(`${err.message}; walks ${scripts.walks}, skipped ${JSON.stringify(skipped())}`);
      });
      expect(skipped().markers_gave_up ?? 0).toBe(0);
      expect(alive(pid)).toBe(true); // still stalled: not found yet
      await mnt.release();
      expect(await exited).toBe('SIGKILL');
      const ev = await waitFor(
        () => pipeline.events.ofType('process.blocked').find((e) => e.pid === pid),
        'process.blocked after the stall ended',
      );
      expect(ev).toMatchObject({ rule: { id: 'tgrv-mretry' } });
    } finally {
      stuck.kill('SIGKILL');
    }
  });
});
