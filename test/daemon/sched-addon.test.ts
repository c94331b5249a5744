/**
 * native/sched (src/daemon/priority.ts) on real processes: a `sleep` child gets the slice asked for,
 * as /proc/<pid>/sched `se.slice` shows (0 restores the default, the kernel clamps below 0.1 ms); a
 * SCHED_FIFO child (`chrt -f 1`) is left alone; an unprivileged user sets its own slice but not
 * root's (EPERM); a gone thread is ESRCH; bad arguments are refused before any system call. On a
 * kernel without custom slices (< 6.12, probed) the documented fallback is asserted: 0 returned.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DAEMON_SLICE_NS, SCHED_ADDON_PATH, type SchedAddon } from '../../src/daemon/priority.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, spawnAs } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const linux = process.platform === 'linux';
const root = linux && process.getuid?.() === 0;

/** `pid`'s scheduling policy and EEVDF slice, from /proc/<pid>/sched (slice null where not shown). */
function schedOf(pid: number): { policy: number; slice: number | null } {
  const text = readFileSync(`/proc/${pid}/sched`, 'utf8');
  const field = (name: string): number | null => {
    const m = new RegExp(`^${name.replace('.', '\\.')}\\s*:\\s*(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { policy: field('policy') ?? -1, slice: field('se.slice') };
}

describe.runIf(linux)('native/sched setSlice', () => {
  const addon = createRequire(import.meta.url)(SCHED_ADDON_PATH) as SchedAddon;
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  /** `sleep 30` (run through `wrapper`, e.g. chrt), killed when the file ends; its tid is its pid. */
  function sleeper(wrapper: readonly string[] = []): ChildProcess {
    const argv = [...wrapper, 'sleep', '30'];
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: 'ignore' });
    children.push(c);
    return c;
  }

  /** Resolves once `c` runs `sleep` (a wrapper such as chrt has done its part and exec'd it). */
  async function running(c: ChildProcess): Promise<number> {
    const pid = c.pid as number;
    await waitFor(
      () => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep',
      `pid ${pid} to run sleep`,
    );
    return pid;
  }

  // A kernel without custom slices (< 6.12) ignores sched_runtime for fair tasks and reports 0.
  const probe = (() => {
    const c = sleeper();
    try {
      return addon.setSlice(c.pid as number, DAEMON_SLICE_NS);
    } finally {
      c.kill('SIGKILL');
    }
  })();

  it("sets a fair thread's slice: /proc shows it, its nice is kept; 0 restores the default; below 0.1 ms is clamped", async () => {
    const pid = await running(sleeper());
    const before = schedOf(pid);
    expect(before.policy).toBe(0); // SCHED_OTHER
    if (probe === 0) {
      // no custom slices in this kernel: nothing changes, 0 is returned
      expect(addon.setSlice(pid, DAEMON_SLICE_NS)).toBe(0);
      expect(schedOf(pid)).toEqual(before);
      return;
    }
    expect(before.slice).toBeGreaterThan(0);
    expect(addon.setSlice(pid, DAEMON_SLICE_NS)).toBe(DAEMON_SLICE_NS);
    expect(schedOf(pid)).toEqual({ policy: 0, slice: DAEMON_SLICE_NS });
    expect(addon.setSlice(pid, 0)).toBe(before.slice);
    expect(schedOf(pid).slice).toBe(before.slice);
    expect(addon.setSlice(pid, 1)).toBe(100_000);
    expect(schedOf(pid).slice).toBe(100_000);
    const niced = await running(sleeper(['nice', '-n', '5']));
    expect(addon.setSlice(niced, DAEMON_SLICE_NS)).toBe(DAEMON_SLICE_NS);
    const stat = readFileSync(`/proc/${niced}/stat`, 'utf8');
    expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])).toBe(5);
  });

  it.runIf(root)('leaves a SCHED_FIFO thread alone and returns 0', async () => {
    const pid = await running(sleeper(['chrt', '-f', '1']));
    const before = schedOf(pid);
    expect(before.policy).toBe(1); // SCHED_FIFO
    expect(addon.setSlice(pid, DAEMON_SLICE_NS)).toBe(0);
    expect(schedOf(pid)).toEqual(before);
    expect(execFileSync('chrt', ['-p', String(pid)], { encoding: 'utf8' })).toMatch(
      /SCHED_FIFO[\s\S]*priority: 1/,
    );
  });

  it.runIf(root)("an unprivileged user sets its own thread's slice, not root's (EPERM)", async () => {
    const user = createTestUser('tgsch');
    // the addon where the user can read it (the checkout may sit under a directory they cannot)
    const dir = tempDir('tgsched-');
    chmodSync(dir, 0o755);
    const copy = join(dir, 'sched.node');
    copyFileSync(SCHED_ADDON_PATH, copy);
    chmodSync(copy, 0o755);
    const rootPid = await running(sleeper());
    const script = `
      const a = require(process.argv[1]);
      const own = a.setSlice(process.pid, ${DAEMON_SLICE_NS});
      const slice = (/^se\\.slice\\s*:\\s*(\\d+)/m.exec(require('fs').readFileSync('/proc/self/sched', 'utf8')) ?? [])[1];
      let other = null;
      try { a.setSlice(Number(process.argv[2]), ${DAEMON_SLICE_NS}); } catch (e) { other = { code: e.code, errno: e.errno }; }
      process.stdout.write(JSON.stringify({ own, slice: slice === undefined ? null : Number(slice), other }));`;
    const child = spawnAs(user, process.execPath, ['-e', script, copy, String(rootPid)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout?.on('data', (b) => {
      out += b;
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    const r = JSON.parse(out) as {
      own: number;
      slice: number | null;
      other: { code: string; errno: number } | null;
    };
    if (probe !== 0) expect(r).toMatchObject({ own: DAEMON_SLICE_NS, slice: DAEMON_SLICE_NS });
    else expect(r.own).toBe(0);
    expect(r.other).toEqual({ code: 'GUARD_SCHED_FAILED', errno: 1 }); // EPERM
  });

  it('a gone thread: GUARD_SCHED_FAILED with errno ESRCH', () => {
    const r = spawnSync('true');
    expect(r.status).toBe(0);
    const gone = r.pid as number;
    expect(() => readFileSync(`/proc/${gone}/stat`)).toThrow(/ENOENT/);
    let err: (Error & { code?: string; errno?: number }) | undefined;
    try {
      addon.setSlice(gone, DAEMON_SLICE_NS);
    } catch (e) {
      err = e as Error & { code?: string; errno?: number };
    }
    expect(err).toBeInstanceOf(Error);
    expect(err?.code).toBe('GUARD_SCHED_FAILED');
    expect(err?.errno).toBe(3);
    expect(err?.message).toMatch(/No such process/);
  });

  it('refuses bad arguments with GUARD_SCHED_BAD_ARGUMENT (a TypeError)', async () => {
    const pid = await running(sleeper());
    const bad: unknown[][] = [
      [],
      [pid],
      [0, DAEMON_SLICE_NS],
      [-1, DAEMON_SLICE_NS],
      [1.5, DAEMON_SLICE_NS],
      [2 ** 31, DAEMON_SLICE_NS],
      [String(pid), DAEMON_SLICE_NS],
      [Number.NaN, DAEMON_SLICE_NS],
      [pid, -1],
      [pid, 0.5],
      [pid, 100_000_001],
      [pid, Number.POSITIVE_INFINITY],
      [pid, '700000'],
      [pid, 700_000n],
    ];
    const before = schedOf(pid);
    for (const args of bad) {
      let err: (Error & { code?: string }) | undefined;
      try {
        (addon.setSlice as (...a: unknown[]) => number)(...args);
      } catch (e) {
        err = e as Error & { code?: string };
      }
      expect(err, String(args)).toBeInstanceOf(TypeError);
      expect(err?.code, String(args)).toBe('GUARD_SCHED_BAD_ARGUMENT');
    }
    expect(schedOf(pid)).toEqual(before);
    // the bounds themselves are accepted
    expect(() => addon.setSlice(pid, 100_000_000)).not.toThrow();
    expect(() => addon.setSlice(pid, 0)).not.toThrow();
  });
});
