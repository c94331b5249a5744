/**
 * One lock across the test processes (vitest runs files in parallel forks) for tests that depend on,
 * or upset, something every process on the machine shares: each native/procevents addon's walker
 * walks the script candidates of every interpreter exec on the machine, so a file that execs node
 * into a stalled FUSE mount (test/sensors/hostile-fs.ts `mountStalled`) pins the walker another
 * file is asserting on. mkdir is atomic; the holder's pid inside makes a lock left by a process
 * that died stale. Re-entrant within a process (a walker test that mounts a stalled file system).
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOCK = join(tmpdir(), 'toolguard-tests-machine.lock');
let depth = 0;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** A lock whose holder died, or whose holder never wrote its pid within 10 s, is taken over. */
function stale(): boolean {
  try {
    const pid = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
    return Number.isInteger(pid) && pid > 0 && !alive(pid);
  } catch {
    try {
      return Date.now() - statSync(LOCK).mtimeMs > 10_000;
    } catch {
      return false;
    }
  }
}

/** How long acquireMachineLock waits by default: other files may hold the lock that long. */
export const MACHINE_LOCK_WAIT_MS = 120_000;

/**
 * The timeout of a test or hook that takes the lock: the lock's own wait (files of the parallel
 * forks hold it in turn), then the 60 s every test has.
 */
export const LOCKED_TEST_TIMEOUT_MS = MACHINE_LOCK_WAIT_MS + 60_000;

/** Waits (at most `timeoutMs`) until this process holds the lock. */
export async function acquireMachineLock(timeoutMs = MACHINE_LOCK_WAIT_MS): Promise<void> {
  if (depth > 0) {
    depth++;
    return;
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      depth = 1;
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (stale()) rmSync(LOCK, { recursive: true, force: true });
    else if (Date.now() > deadline)
      throw new Error(`the machine lock ${LOCK} was not free within ${timeoutMs} ms`);
    else await new Promise((r) => setTimeout(r, 100));
  }
}

/** Releases one hold (the lock itself with the last). */
export function releaseMachineLock(): void {
  if (depth === 0) return;
  depth--;
  if (depth === 0) rmSync(LOCK, { recursive: true, force: true });
}
