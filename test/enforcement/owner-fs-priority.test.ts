/**
 * The owner-fs child runs as a user who can take it over (owner-fs.ts): it must not keep the nice
 * −10 it inherits from guardd (src/daemon/priority.ts), or the user would get a high-priority
 * process out of it — not even for the moment before its own code could lower it (a ptrace
 * attached then keeps it): guardd starts it through nice and setpriv, at nice 0 before it is the user's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { DAEMON_NICE } from '../../src/daemon/priority.js';
import { OwnerSession } from '../../src/enforcement/owner-fs.js';
import { OWNER_FS_CHILD_SOURCE } from '../../src/enforcement/owner-fs-child.js';
import { createTestUser } from '../helpers/unix-user.js';

const root = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(root)('owner-fs child priority', () => {
  it("started at guardd's nice, it runs at nice 0 once it answers", async () => {
    const child = spawn('nice', ['-n', String(DAEMON_NICE), process.execPath, '-e', OWNER_FS_CHILD_SOURCE], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    try {
      const answered = new Promise<string>((resolve) => child.stdout.once('data', (d) => resolve(String(d))));
      child.stdin.write(`${JSON.stringify({ id: 1, op: 'lstat', args: { path: '/' } })}\n`);
      expect(await answered).toMatch(/"id":1/);
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe.runIf(root)('owner-fs child started from guardd at nice -10', () => {
  const before = root ? getPriority(0) : 0;
  afterAll(() => {
    if (root) setPriority(0, before);
  });

  it("is never the user's process at nice -10, not even while node starts", async () => {
    const user = createTestUser('tgofs');
    setPriority(0, DAEMON_NICE);
    const session = new OwnerSession({ uid: user.uid, gid: user.gid });
    setPriority(0, before);
    const pid = (session as unknown as { child: ChildProcess }).child.pid as number;
    try {
      // right after spawn: the process is `nice` or `setpriv` (root) or already the user's; when it
      // is the user's (uid read first), its nice must be 0 — node has not run a line yet
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      if (uid === user.uid) expect(nice).toBe(0);
      else expect(uid).toBe(0);
      // and it works as the user
      expect((await session.lstat(user.home)).uid).toBe(user.uid);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(Number(/^Uid:\s+(\d+)/m.exec(status)?.[1])).toBe(user.uid);
      expect(/^Groups:[ \t]*(.*)$/m.exec(status)?.[1]?.trim()).toBe('');
    } finally {
      session.close();
    }
  });
});
