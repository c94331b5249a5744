/**
 * A package.json read that gets no answer in time (the tree's one read slot busy with a stalled
 * read, or a slow disk under load) says nothing about the package: the install sensor must look
 * again once the tree answers instead of dropping the candidate until the next full rescan
 * (which, by default, is hours away). Driven by observed state: the test holds the tree's slot and
 * releases it only after the sensor has been turned away at least once.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { installReadGate } from '../../../src/sensors/package-reader.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED, makeRig, writePackage } from './harness.js';

const base = tempDir('tg-stall-');

it('a banned package whose package.json read was turned away (slot busy) is reported once the slot frees', async () => {
  const home = join(base, 'home');
  const root = join(home, '.npm-global', 'lib', 'node_modules');
  mkdirSync(root, { recursive: true });
  const rig = await makeRig({ dir: base, homes: [home], action: 'warn' });
  try {
    // Hold the tree's only install-read slot (a home no user has is its own key), as a read
    // stalled on a hung mount would.
    let release: () => void = () => {};
    const held = installReadGate.run(home, 120_000, () => new Promise<void>((r) => (release = r)));
    const busyBefore = installReadGate.counts.busy;
    writePackage(join(root, '@anthropic-ai', 'claude-code'), { name: BANNED, version: '1.0.0' });
    await waitFor(() => installReadGate.counts.busy > busyBefore, 'the sensor turned away by the busy slot', {
      timeoutMs: 25_000,
    });
    expect(rig.sink.ofType('package.warned')).toHaveLength(0);
    release();
    await held;
    await waitFor(
      () => rig.sink.ofType('package.warned').length === 1,
      'package.warned after the slot freed',
      {
        timeoutMs: 25_000,
      },
    );
  } finally {
    await rig.close();
  }
});
