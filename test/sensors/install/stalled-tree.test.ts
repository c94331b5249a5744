/**
 * A user's FUSE mount that never answers, placed anywhere below their npm root, costs that user's
 * tree and nothing else: the sensor's first full scan ends, a later one ends, and another user's
 * banned install is reported as usual. Each place is one the full scan used to reach with a call
 * outside the install gate — which waited for ever, and with it that scan, every later one (the
 * sensor's start, and with it guardd's other sensors, never finished) and every policy's rescan:
 *  - a package dir that is a mount point (the candidate's lstat);
 *  - a scope dir that is one (the scope dir's lstat and listing);
 *  - a package.json that is one, before 40 packages of theirs (each read of theirs then waited for
 *    the pinned slot until its deadline: 2 s a package, a full scan of minutes);
 *  - a directory inside their own banned package (the settle fingerprint's walk);
 *  - a package that is a link below a mount point (the link's realpath);
 *  - a path-glob artifact that is a mount point (the artifact's lstat).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, it } from 'vitest';
import { LOCKED_TEST_TIMEOUT_MS } from '../../helpers/machine-lock.js';
import { tempDir } from '../../helpers/tmp.js';
import type { TestUser } from '../../helpers/unix-user.js';
import { BANNED_UNSCOPED } from './harness.js';
import { manifest, mountAs, shAs, type UserMount, victimSurvives } from './stall-attack.js';

const base = tempDir('tg-stree-');
const mounts: UserMount[] = [];
afterAll(async () => {
  for (const m of mounts) await m.release();
});

/** `place` builds the staller's hostile tree (as them) and mounts; see victimSurvives. */
const survives = (
  name: string,
  place: (staller: TestUser, root: string) => Promise<UserMount[]>,
): Promise<void> => victimSurvives({ base, name, mounts, place, stallsScan: true });

it(
  'a package dir that is a mount point',
  async () => {
    await survives('pkg', async (u, root) => {
      shAs(u, `mkdir '${root}/stuck'`);
      return [await mountAs(u, join(root, 'stuck'), base)];
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a scope dir that is a mount point',
  async () => {
    await survives('scope', async (u, root) => {
      shAs(u, `mkdir '${root}/@stuck'`);
      return [await mountAs(u, join(root, '@stuck'), base)];
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a package.json that is a mount point, listed before 40 other packages of theirs',
  async () => {
    await survives('manifest', async (u, root) => {
      shAs(
        u,
        `for i in $(seq 1 40); do mkdir "${root}/p$i" && printf '%s' '${manifest('x')}' > "${root}/p$i/package.json"; done`,
      );
      // The first in listing order: every other package of theirs is read after it.
      const first = readdirSync(root)[0] as string;
      return [await mountAs(u, join(root, first, 'package.json'), base, { file: true })];
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a directory inside their own banned package',
  async () => {
    await survives('fingerprint', async (u, root) => {
      const pkg = join(root, BANNED_UNSCOPED);
      shAs(u, `mkdir -p '${pkg}/sub' && printf '%s' '${manifest(BANNED_UNSCOPED)}' > '${pkg}/package.json'`);
      return [await mountAs(u, join(pkg, 'sub'), base)];
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a package that is a link below a mount point',
  async () => {
    await survives('link', async (u, root) => {
      const away = join(u.home, 'away');
      shAs(u, `mkdir '${away}' && ln -s '${away}/pkg' '${root}/linked'`);
      return [await mountAs(u, away, base)];
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);

it(
  'a path-glob artifact that is a mount point',
  async () => {
    await survives('artifact', async (u) => {
      // The test policy's glob: ~/.local/share/claude/versions/*
      const version = join(u.home, '.local', 'share', 'claude', 'versions', '1.0.0');
      shAs(u, `mkdir -p '${version}'`);
      return [await mountAs(u, version, base)];
    });
  },
  LOCKED_TEST_TIMEOUT_MS,
);
