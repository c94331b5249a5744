/**
 * Kernel-cached allows with the real addon (root, Linux, fanotify) in this process, which plays
 * guardd, and execs by a real unprivileged user: a root-only program allowed twice from the
 * verdict cache gets an inode mark ignoring FAN_OPEN_EXEC_PERM, so the kernel stops asking about
 * it. Proof without timing: once its mtime is changed (an attribute change, which keeps an
 * ignored mask; a verdict-cache miss otherwise), an exec still raises no decide event — while
 * every file a user could change or rename (theirs, group-writable, a second link, under a
 * directory of theirs or a world-writable one) keeps being asked about, a write to the marked file
 * or a new policy (setGeneration) makes the kernel ask again, and a refused file is never handed
 * to the kernel.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, linkSync, mkdirSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecPermAddon } from '../../src/enforcement/exec-deny.js';
import { waitSettled } from '../helpers/settled.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { rootProgram, startDecidingListener } from './execperm-listener.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(runnable)('kernel-cached allows (native/execperm ignore marks)', () => {
  // A root-only directory: /var/lib is root's and 0755 all the way up (tmpdir is world-writable).
  const root = `/var/lib/tgkc-${randomBytes(4).toString('hex')}`;
  let addon: ExecPermAddon;
  let user: TestUser;
  let refused: Set<string>;
  let asked: (path: string) => number;
  let generation = 0;

  /**
   * The user runs `path` from a shell (decided like any user's exec, not as this process's child);
   * resolves with its exit code. Asynchronous: this loop answers the exec's permission event.
   */
  function run(path: string): Promise<number | null> {
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', `"${path}"; exit $?`], {
        uid: user.uid,
        gid: user.gid,
        stdio: 'ignore',
      });
      child.on('error', reject);
      child.on('close', (code) => resolve(code));
    });
  }

  /**
   * Runs `path` three times (a decision, then two cache hits: the second hands it to the kernel
   * when it may), changes its mtime (a verdict-cache miss, not a write), runs it once more, and
   * returns whether that last exec was asked about.
   */
  async function askedAfterCaching(path: string): Promise<boolean> {
    await waitSettled(path); // an allow is cached only then
    for (let i = 0; i < 3; i++) await run(path);
    const before = asked(path);
    const t = new Date(Date.now() - 3_600_000);
    utimesSync(path, t, t);
    await run(path);
    return asked(path) > before;
  }

  beforeAll(() => {
    user = createTestUser('tgkc');
    mkdirSync(root, { mode: 0o755 });
    ({ addon, refused, asked } = startDecidingListener());
    addon.mark(root, 'mount');
  });

  afterAll(() => {
    addon?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('a root-only program allowed twice is left to the kernel: its next execs raise no event', async () => {
    const p = rootProgram(join(root, 'sys', 'bin', 'tool'));
    await waitSettled(p);
    const added = addon.counters().ignore_marks_added;
    expect(await run(p)).toBe(0);
    expect(asked(p)).toBe(1);
    expect(await run(p)).toBe(0); // from the verdict cache: the mark is added
    expect(addon.counters().ignore_marks_added).toBeGreaterThan(added);
    expect(await askedAfterCaching(p)).toBe(false);
    expect(addon.counters().ignore_marks).toBeGreaterThanOrEqual(1);
    expect(addon.counters().ignore_mark_errors).toBe(0);
    // what the mark relies on: the user cannot give it a second name (fs.protected_hardlinks)
    const play = join(root, 'play');
    mkdirSync(play);
    chownSync(play, user.uid, user.gid);
    const ln = spawnSync('ln', [p, join(play, 'claude')], { uid: user.uid, gid: user.gid, encoding: 'utf8' });
    expect(ln.status).not.toBe(0);
    expect(ln.stderr).toMatch(/Operation not permitted/);
  });

  it('every file a user could change, replace or reach under another name keeps being asked about', async () => {
    const own = rootProgram(join(root, 'theirs', 'tool'));
    chownSync(own, user.uid, user.gid);
    expect(await askedAfterCaching(own)).toBe(true);

    expect(await askedAfterCaching(rootProgram(join(root, 'gw', 'tool'), 0o775))).toBe(true);

    const linked = rootProgram(join(root, 'linked', 'tool'));
    linkSync(linked, join(root, 'linked', 'other-name'));
    expect(await askedAfterCaching(linked)).toBe(true);

    // root's file in a directory of the user's, who may rename it (name and path rules)
    const inTheirs = rootProgram(join(root, 'userdir', 'sub', 'tool'));
    chownSync(join(root, 'userdir'), user.uid, user.gid);
    expect(await askedAfterCaching(inTheirs)).toBe(true);

    // under a world-writable sticky directory, like /tmp
    const sticky = rootProgram(join(root, 'sticky', 'tool'));
    chmodSync(join(root, 'sticky'), 0o1777);
    expect(await askedAfterCaching(sticky)).toBe(true);
  });

  it('a write to the program makes the kernel ask again', async () => {
    const p = rootProgram(join(root, 'written', 'tool'));
    expect(await askedAfterCaching(p)).toBe(false);
    appendFileSync(p, Buffer.from([0])); // an ELF runs with a byte appended
    const before = asked(p);
    expect(await run(p)).toBe(0);
    expect(asked(p)).toBe(before + 1);
  });

  it('a new policy (setGeneration) removes every kernel-cached allow: a banned program is refused', async () => {
    const p = rootProgram(join(root, 'policy', 'tool'));
    expect(await askedAfterCaching(p)).toBe(false);
    expect(addon.counters().ignore_marks).toBeGreaterThanOrEqual(1);
    refused.add(p);
    addon.setGeneration(++generation);
    expect(addon.counters().ignore_marks).toBe(0);
    const before = asked(p);
    expect(await run(p)).toBe(126);
    expect(asked(p)).toBe(before + 1);
  });

  it('a refused program is never left to the kernel', async () => {
    const p = rootProgram(join(root, 'refused', 'tool'));
    refused.add(p);
    await waitSettled(p);
    for (let i = 0; i < 3; i++) expect(await run(p)).toBe(126);
    const t = new Date(Date.now() - 7_200_000);
    utimesSync(p, t, t);
    const before = asked(p);
    expect(await run(p)).toBe(126);
    expect(asked(p)).toBe(before + 1);
  });
});
