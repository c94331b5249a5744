/**
 * A root reached through another user's symlink is the owner's root: user A links their
 * `~/.npm-global` to user B's (root follows the link whatever B's modes), A's home is discovered
 * first, and the root was known only by A's path — B's banned install was then reported under
 * A's path, and its quarantine refused (two users control that path): B kept the package.
 */
import { chownSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { tempDir } from '../../helpers/tmp.js';
import { createTestUser } from '../../helpers/unix-user.js';
import { waitFor } from '../../helpers/wait.js';
import { BANNED_UNSCOPED, makeRig, writePackage } from './harness.js';

it("a root reached through another user's link is known by its real path: the owner's banned package is quarantined", async () => {
  const linker = createTestUser('tgcl');
  const owner = createTestUser('tgcl');
  const root = join(owner.home, '.npm-global', 'lib', 'node_modules');
  mkdirSync(root, { recursive: true });
  for (const p of [join(owner.home, '.npm-global'), join(owner.home, '.npm-global', 'lib'), root])
    chownSync(p, owner.uid, owner.gid);
  symlinkSync(join(owner.home, '.npm-global'), join(linker.home, '.npm-global'));
  const rig = await makeRig({ dir: tempDir('tgcl-'), homes: [linker.home, owner.home], action: 'block' });
  try {
    expect(rig.sensor.status().details.roots).toEqual([root]);
    const pkg = join(root, BANNED_UNSCOPED);
    writePackage(pkg, { name: BANNED_UNSCOPED, version: '1.0.0' });
    chownSync(pkg, owner.uid, owner.gid);
    chownSync(join(pkg, 'package.json'), owner.uid, owner.gid);
    await rig.sensor.rescan();
    const ev = await waitFor(() => rig.sink.ofType('package.quarantined')[0], 'package.quarantined', {
      timeoutMs: 25_000,
    });
    expect(ev).toMatchObject({
      package: { path: pkg },
      outcome: { action_taken: 'quarantined', error: null },
    });
  } finally {
    await rig.close();
  }
});

it("a user's link out of every home (to a root-owned dir) keeps the path it was found by", async () => {
  const linker = createTestUser('tgcl');
  const outside = join(tempDir('tgcl-out-'), 'prefix');
  mkdirSync(join(outside, 'lib', 'node_modules'), { recursive: true });
  symlinkSync(outside, join(linker.home, '.npm-global'));
  const rig = await makeRig({ dir: tempDir('tgcl-'), homes: [linker.home], action: 'block' });
  try {
    // not `<outside>/lib/node_modules`: nothing there is taken for a tree reached without the link
    expect(rig.sensor.status().details.roots).toEqual([
      join(linker.home, '.npm-global', 'lib', 'node_modules'),
    ]);
  } finally {
    await rig.close();
  }
});
