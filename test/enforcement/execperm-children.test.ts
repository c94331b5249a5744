/**
 * The native listener's shortcut for guardd's own children, with the real addon (root, Linux): a
 * child running as guardd's uid is allowed at once, but a child guardd started as a user (the
 * owner-fs helper, notify-send) is decided like that user's own processes — the user can ptrace it
 * (same uid, dumpable after its exec) and make it exec any program, which the shortcut let through
 * before the kernel asked anyone (review finding).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ExecPermAddon,
  type ExecPermEvent,
  loadExecPermAddon,
} from '../../src/enforcement/exec-deny.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';

const dir = tempDir('tgrv-');
const TARGET = join(dir, `tgrv-child-target-${randomBytes(4).toString('hex')}`);

let addon: ExecPermAddon;
let user: TestUser;
const decided: string[] = [];

/** Runs `sh -c 'exec TARGET'` as a direct child of this process (as `as`), resolves its exit code. */
function childExec(as: TestUser | null): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', `exec "${TARGET}"`], {
      stdio: 'ignore',
      ...(as ? { uid: as.uid, gid: as.gid } : {}),
    });
    child.on('exit', (code) => resolve(code));
  });
}

describe('execperm: guardd’s children (root, Linux, fanotify)', () => {
  beforeAll(() => {
    expect(process.getuid?.()).toBe(0);
    user = createTestUser('tgrv');
    chmodSync(dir, 0o755);
    copyFileSync(realpathSync('/bin/true'), TARGET);
    chmodSync(TARGET, 0o755);
    addon = loadExecPermAddon();
    // This process plays guardd: it refuses TARGET, allows everything else.
    addon.start({ deadlineMs: 200 }, (ev: ExecPermEvent) => {
      if (ev.kind !== 'decide') return;
      decided.push(ev.path);
      addon.respond(ev.id, ev.path !== TARGET, false);
    });
    addon.mark(dir, 'filesystem');
  });

  afterAll(() => {
    addon?.stop();
  });

  it('allows a child running as its own uid at once, and decides a child running as a user', async () => {
    expect(await childExec(null)).toBe(0);
    expect(decided).not.toContain(TARGET);
    expect(addon.counters().self_allowed).toBeGreaterThan(0);

    expect(await childExec(user), 'a user-run child exec’d a refused program').toBe(126);
    expect(decided).toContain(TARGET);
  });
});
