/**
 * Local mode's directory must be guardd's own: as root, `guardd --local` in a directory another
 * user can change would follow their links (overwriting a root-owned file through a planted
 * config.json link) or read a signing key they planted. Root-only: it hands files to other uids.
 */
import {
  chmodSync,
  chownSync,
  lchownSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { assertPrivateDir } from '../../src/common/private-dir.js';
import { LOCAL_DIR_OPTIONS, prepareLocalMode } from '../../src/daemon/local-mode.js';
import { tempDir } from '../helpers/tmp.js';

const root = process.getuid?.() === 0;
/** A uid and gid no account on the machine uses: files handed to "another user". */
const OTHER = 45_321;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe.runIf(root)('local mode refuses a directory another user could change', () => {
  const base = tempDir('tglmd-');

  it('another user’s directory with a planted config.json link: refused before anything is written', async () => {
    const victim = join(base, 'victim');
    writeFileSync(victim, 'root-owned content\n', { mode: 0o600 });
    const planted = join(base, 'planted');
    mkdirSync(planted, { mode: 0o700 });
    symlinkSync(victim, join(planted, 'config.json'));
    lchownSync(join(planted, 'config.json'), OTHER, OTHER);
    chownSync(planted, OTHER, OTHER);
    await expect(prepareLocalMode({ dir: planted, logger: silentLogger() })).rejects.toMatchObject({
      code: 'GUARD_CONFIG_UNSAFE_DIR',
    });
    expect(readFileSync(victim, 'utf8')).toBe('root-owned content\n');
  });

  it.each([
    ['a parent writable by everyone, not sticky', 0o777, 0, 'GUARD_CONFIG_UNSAFE_DIR'],
    ['a parent writable by a group guardd is not in', 0o775, OTHER, 'GUARD_CONFIG_UNSAFE_DIR'],
    ['a sticky parent writable by everyone (like /tmp)', 0o1777, 0, undefined],
    ['a parent writable by guardd’s own group', 0o775, 0, undefined],
  ])('%s', (_what, parentMode, parentGid, expected) => {
    const parent = join(base, `p-${parentMode.toString(8)}-${parentGid}`);
    mkdirSync(parent);
    chownSync(parent, 0, parentGid);
    chmodSync(parent, parentMode);
    const dir = join(parent, 'local');
    mkdirSync(dir, { mode: 0o700 });
    expect(codeOf(() => assertPrivateDir(dir, 0, 0, LOCAL_DIR_OPTIONS))).toBe(expected);
  });

  it('a link on the way that another user planted is refused even when it leads to a root-owned directory', () => {
    const real = join(base, 'real-root-dir');
    mkdirSync(real, { mode: 0o700 });
    const link = join(base, 'link');
    symlinkSync(real, link);
    lchownSync(link, OTHER, OTHER);
    expect(codeOf(() => assertPrivateDir(link, 0, 0, LOCAL_DIR_OPTIONS))).toBe('GUARD_CONFIG_UNSAFE_DIR');
    // The same link made by root is fine: it leads where root put it.
    lchownSync(link, 0, 0);
    expect(codeOf(() => assertPrivateDir(link, 0, 0, LOCAL_DIR_OPTIONS))).toBeUndefined();
  });

  it('its own directory, writable by others: refused; private: accepted', () => {
    const dir = join(base, 'own');
    mkdirSync(dir, { mode: 0o700 });
    expect(codeOf(() => assertPrivateDir(dir, 0, 0, LOCAL_DIR_OPTIONS))).toBeUndefined();
    chmodSync(dir, 0o777);
    expect(codeOf(() => assertPrivateDir(dir, 0, 0, LOCAL_DIR_OPTIONS))).toBe('GUARD_CONFIG_UNSAFE_DIR');
    // A directory of its own user is not root's: a normal user's guardd is checked the same way.
    chmodSync(dir, 0o700);
    expect(codeOf(() => assertPrivateDir(dir, OTHER, OTHER, LOCAL_DIR_OPTIONS))).toBe(
      'GUARD_CONFIG_UNSAFE_DIR',
    );
  });
});
