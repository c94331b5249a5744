/**
 * Local mode's directory must be guardd's own: as root, `guardd --local` in a directory another
 * user can change would follow their links (overwriting a root-owned file through a planted
 * config.json link) or read a signing key they planted. Root-only: it hands files to other uids.
 */
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { assertPrivateDir, makePrivateDir, makeVettedDirs } from '../../src/common/private-dir.js';
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

  it('a part another user links in a sticky directory after the check, before it is made: refused before root makes anything through it', () => {
    // /tmp-like: sticky and writable by everyone; the state dir's parent `a` does not exist yet
    const sticky = join(base, 'sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const state = join(sticky, 'a', 'state');
    expect(codeOf(() => assertPrivateDir(state, 0, 0, LOCAL_DIR_OPTIONS))).toBeUndefined();
    // … and now the other user wins the race: `a` is their link to a root-owned directory
    const target = join(base, 'root-owned-target');
    mkdirSync(target, { mode: 0o700 });
    symlinkSync(target, join(sticky, 'a'));
    lchownSync(join(sticky, 'a'), OTHER, OTHER);
    // what makePrivateDir does after its first check: each part vetted before the next is made
    expect(codeOf(() => makeVettedDirs(state, 0o700, 0, 0, LOCAL_DIR_OPTIONS))).toBe(
      'GUARD_CONFIG_UNSAFE_DIR',
    );
    expect(existsSync(join(target, 'state'))).toBe(false);
    // their own directory there instead of a link: the same
    const state2 = join(sticky, 'b', 'state');
    mkdirSync(join(sticky, 'b'));
    chownSync(join(sticky, 'b'), OTHER, OTHER);
    expect(codeOf(() => makeVettedDirs(state2, 0o700, 0, 0, LOCAL_DIR_OPTIONS))).toBe(
      'GUARD_CONFIG_UNSAFE_DIR',
    );
    expect(existsSync(state2)).toBe(false);
    // nobody in the way: made, private
    const state3 = join(sticky, 'c', 'state');
    expect(codeOf(() => makePrivateDir(state3, 0o700, LOCAL_DIR_OPTIONS))).toBeUndefined();
    expect(existsSync(state3)).toBe(true);
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
