/**
 * The owner-fs child runs as a user who can take it over (owner-fs.ts): it must not keep the nice
 * −10 it inherits from guardd (src/daemon/priority.ts), or the user would get a high-priority
 * process out of it.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DAEMON_NICE } from '../../src/daemon/priority.js';
import { OWNER_FS_CHILD_SOURCE } from '../../src/enforcement/owner-fs-child.js';

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
