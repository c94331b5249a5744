/**
 * A discovery round whose calls into a home get no answer in time (the home's read slot busy: a
 * stalled mount, or a loaded machine) says nothing about that home's roots: the install sensor
 * must keep them known and watched, not drop them until some later discovery — an install into
 * them meanwhile (or npm rolling one back) would go unreported. Driven by observed state: the test
 * holds the home's read slot while a full rescan runs, so every discovery call of that home is
 * turned away, then releases it.
 */
import { mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { installReadGate } from '../../../src/sensors/package-reader.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED_UNSCOPED, makeRig, writePackage } from './harness.js';

const base = tempDir('tg-stall-disc-');

it("a discovery turned away by a busy home keeps the home's roots watched", async () => {
  const home = join(base, 'home');
  const root = join(home, '.npm-global', 'lib', 'node_modules');
  mkdirSync(root, { recursive: true });
  const rig = await makeRig({ dir: base, homes: [home], action: 'warn' });
  let release: () => void = () => {};
  try {
    expect(rig.sensor.status().details.roots).toEqual([root]);
    // Hold the home's only install-read slot, as a call stalled on a hung mount would.
    const held = installReadGate.run(home, 120_000, () => new Promise<void>((r) => (release = r)));
    // Every discovery call of the home waits for the held slot and is refused.
    await rig.sensor.rescan();
    expect(rig.sensor.status().skipped.discovery_stalled).toBe(1);
    expect(rig.sensor.status().details.roots).toEqual([root]);
    release();
    await held;
    // The root is still watched: a package moved in now is reported from its watch event.
    const staged = join(base, 'staged');
    writePackage(staged, { name: BANNED_UNSCOPED, version: '1.0.0' });
    renameSync(staged, join(root, BANNED_UNSCOPED));
    const ev = await waitFor(() => rig.sink.ofType('package.warned')[0], 'package.warned', {
      timeoutMs: 25_000,
    });
    expect(ev).toMatchObject({ package: { name: BANNED_UNSCOPED, path: join(root, BANNED_UNSCOPED), root } });
  } finally {
    release();
    await rig.close();
  }
});
