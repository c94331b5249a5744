/**
 * Reads into a home that get no answer in time (the home's read slot busy: a stalled mount, or a
 * loaded machine) say nothing about what is there:
 *  - a discovery round turned away keeps the home's roots known and watched (not dropped until
 *    some later discovery: an install into them meanwhile, or npm rolling one back, would go
 *    unreported);
 *  - a leftover sweep turned away is done again once the home answers (a link left by a reverted
 *    install is reported then, not at the next scheduled rescan, hours away).
 * Driven by observed state: each test holds the home's read slot while a full rescan runs, so
 * every call into that home is turned away, then releases it.
 */
import { mkdirSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { installReadGate } from '../../../src/sensors/package-reader.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED_UNSCOPED, makeRig, writePackage } from './harness.js';

const base = tempDir('tg-stall-disc-');

it("a discovery turned away by a busy home keeps the home's roots watched", async () => {
  const dir = join(base, 'discovery');
  const home = join(dir, 'home');
  const root = join(home, '.npm-global', 'lib', 'node_modules');
  mkdirSync(root, { recursive: true });
  const rig = await makeRig({ dir, homes: [home], action: 'warn' });
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
    const staged = join(dir, 'staged');
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

it('a leftover sweep turned away by a busy home is done again: the dangling link is reported', async () => {
  const dir = join(base, 'sweep');
  const home = join(dir, 'home');
  const prefix = join(home, '.npm-global');
  mkdirSync(join(prefix, 'lib', 'node_modules'), { recursive: true });
  mkdirSync(join(prefix, 'bin'));
  const rig = await makeRig({ dir, homes: [home] });
  let release: () => void = () => {};
  try {
    const held = installReadGate.run(home, 120_000, () => new Promise<void>((r) => (release = r)));
    // What npm leaves when it rolls back an install: a bin link into the package it removed.
    const bin = join(prefix, 'bin', BANNED_UNSCOPED);
    symlinkSync(`../lib/node_modules/${BANNED_UNSCOPED}/cli.js`, bin);
    // The full scan's sweep of the root cannot read the bin dir: nothing is reported yet.
    await rig.sensor.rescan();
    expect(rig.sink.events.filter((e) => e.type.startsWith('package.'))).toEqual([]);
    release();
    await held;
    const ev = await waitFor(() => rig.sink.ofType('package.quarantined')[0], 'package.quarantined', {
      timeoutMs: 25_000,
    });
    expect(ev).toMatchObject({
      package: { name: BANNED_UNSCOPED, path: join(prefix, 'lib', 'node_modules', BANNED_UNSCOPED) },
      outcome: { action_taken: 'install_reverted', error: null, details: { links_removed: [bin] } },
    });
  } finally {
    release();
    await rig.close();
  }
});
