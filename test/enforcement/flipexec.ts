/**
 * The rewrite-while-exec-waits attack of the pre-exec tests (exec-deny-rewrite*.test.ts), run by a
 * real user through test/fixtures/native/flipexec.c: it execs `file`, and once guardd reads it
 * writes `byte` back at `offset` (see the C file for `early`). Not a test file: shared helpers.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { TestUser } from '../helpers/unix-user.js';
import { compileC } from '../sensors/hostile-fs.js';

/** flipexec compiled into `dir`, 0755 (the user runs it). */
export function compileFlipexec(dir: string): string {
  const src = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'native', 'flipexec.c'), 'utf8');
  const bin = compileC(dir, 'flipexec', src);
  chmodSync(bin, 0o755);
  return bin;
}

/**
 * Runs the attack as `user` on `file` (their copy of `banned` with the byte at `offset` changed);
 * asserts that the write landed while the exec waited and that the file now holds `banned`'s
 * bytes. Resolves the child's exit status as flipexec printed it (126: the exec was refused).
 * With `early` in `extra` (the writer open at the request), a run in which nobody read the file
 * before the exec was refused is one too: a guardd refuses an exec whose file is open for writing
 * without reading it, and when a guardd of another test file running alongside (it marks this
 * mount too) was asked first, its refusal ended the exec before this one read anything (seen in
 * a full CI run) — then the exec must have been refused and the file left as it was.
 */
export function flipAsUser(
  flip: string,
  user: TestUser,
  file: string,
  offset: number,
  banned: Buffer,
  extra: readonly string[] = [],
): string {
  const r = spawnSync(flip, [file, String(offset), String(banned[offset]), ...extra], {
    uid: user.uid,
    gid: user.gid,
    cwd: user.home,
    encoding: 'utf8',
    timeout: 60_000,
  });
  const code = /code=(\d+)/.exec(r.stdout)?.[1] ?? r.stdout;
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  if (extra.includes('early') && r.stdout.includes('wrote=0')) {
    // refused unread (see above): nothing written back, and nothing ran
    expect(code, r.stdout).toBe('126');
    expect(sha(readFileSync(file))).not.toBe(sha(banned));
    return code;
  }
  expect(r.stdout, r.stderr).toContain('wrote=1'); // the write landed while the exec waited
  expect(sha(readFileSync(file))).toBe(sha(banned));
  return code;
}
