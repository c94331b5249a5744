/**
 * Process identity against a process that hides (issue 12, item 5), with real processes on the
 * real /proc: a thread-group leader that exited while its other threads run the banned program is
 * still that running process (seen, killed, all of it), and a process that execs a banned program
 * long after it started is seen within one EXEC_SWEEP_MS, not only by the slow sweep.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../../src/policy/policy-types.js';
import { ProcfsProcessControl } from '../../../src/sensors/process-sources/process-control.js';
import {
  EXEC_SWEEP_MS,
  ProcfsSource,
  SWEEP_MS,
  YOUNG_RECHECK_MS,
} from '../../../src/sensors/process-sources/procfs-source.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { compileC } from '../hostile-fs.js';
import { alive, launch, makeBannedFixtures, type Pipeline, policy, startPipeline } from './harness.js';

const linux = process.platform === 'linux';

/** The leader leaves with pthread_exit; the program goes on in a second thread until killed. */
const ZOMBIE_LEADER_C = `
#include <pthread.h>
#include <unistd.h>
static void *run(void *arg) { (void)arg; for (;;) pause(); return 0; }
int main(void) {
  pthread_t t;
  if (pthread_create(&t, 0, run, 0) != 0) return 1;
  pthread_exit(0);
}
`;

/** State letter of a pid (or of one of its threads). */
function stateOf(path: string): string {
  const s = readFileSync(path, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
}

/** True once `pid`'s leader is a zombie while another thread still runs. */
function zombieLeaderWithThread(pid: number): boolean {
  try {
    if (stateOf(`/proc/${pid}/stat`) !== 'Z') return false;
    return readdirSync(`/proc/${pid}/task`).some(
      (t) => Number(t) !== pid && stateOf(`/proc/${pid}/task/${t}/stat`) !== 'Z',
    );
  } catch {
    return false;
  }
}

describe.runIf(linux)('a thread-group leader that exits while its threads run', () => {
  const dir = tempDir('tg-zl-');
  let tool: string;
  let binary: string;
  let p: Pipeline;
  let early: ReturnType<typeof launch>;
  const control = new ProcfsProcessControl();
  let controlSaw: { exists: boolean; same: boolean; plainZombieExists: boolean } | undefined;

  beforeAll(async () => {
    tool = `tgz${Date.now().toString(36).slice(-6)}`;
    binary = compileC(dir, tool, ZOMBIE_LEADER_C, ['-pthread']);
    // Already hiding when guardd starts: the first full scan meets a zombie leader.
    early = launch(binary, []);
    const pid = early.child.pid as number;
    await waitFor(() => zombieLeaderWithThread(pid), 'the leader to exit, its thread running');
    // A plain zombie for contrast: `sleep 0` exits and its parent (exec'd into sleep) never reaps it.
    const parent = launch('sh', ['-c', 'sleep 0 & exec sleep 30']);
    const ppid = parent.child.pid as number;
    const plain = await waitFor(() => {
      const kids = readFileSync(`/proc/${ppid}/task/${ppid}/children`, 'utf8')
        .trim()
        .split(' ')
        .filter(Boolean);
      const kid = Number(kids[0]);
      return (
        kid > 0 &&
        stateOf(`/proc/${kid}/stat`) === 'Z' &&
        readFileSync(`/proc/${ppid}/comm`, 'utf8').trim() === 'sleep' &&
        kid
      );
    }, 'a plain zombie');
    const startTime = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[19]);
    controlSaw = {
      exists: control.exists(pid),
      same: control.sameProcess(pid, startTime),
      plainZombieExists: control.exists(plain),
    };
    parent.child.kill('SIGKILL');
    const rule: PolicyRule = {
      id: `zombie-${tool}`,
      name: 'Zombie tool',
      action: 'block',
      message: 'banned',
      process: { names: [tool] },
    };
    p = await startPipeline(policy([rule]), { keepObservations: true });
  });

  afterAll(async () => {
    await p?.stop();
  });

  it('counts as running for process control (the identity check before a kill), a plain zombie does not', () => {
    expect(controlSaw).toEqual({ exists: true, same: true, plainZombieExists: false });
  });

  it('is seen and killed with all its threads when it was running before the scan', async () => {
    const pid = early.child.pid as number;
    expect(await early.exited).toBe('SIGKILL');
    const ev = p.events.ofType('process.blocked').find((e) => e.pid === pid);
    expect(ev).toMatchObject({ rule: { id: `zombie-${tool}` }, outcome: { action_taken: 'killed' } });
    const obs = p.observed.find((o) => o.pid === pid);
    // Facts come from the live thread: the leader's own exe and cmdline are gone.
    expect(obs).toMatchObject({ name: tool, exe: binary, argv: [binary] });
    expect(alive(pid)).toBe(false);
  });

  it('is seen and killed when it starts while the sensor runs', async () => {
    const l = launch(binary, []);
    expect(await l.exited).toBe('SIGKILL');
    const pid = l.child.pid as number;
    await waitFor(
      () => p.events.ofType('process.blocked').find((e) => e.pid === pid),
      'process.blocked for the zombie-leader process',
    );
  });
});

describe.runIf(linux)('a process that execs a banned program late', () => {
  const dirs = [tempDir('tg-late-'), tempDir('tg-late-')];
  it(`is re-read within EXEC_SWEEP_MS (${EXEC_SWEEP_MS} ms), not only by the ${SWEEP_MS} ms sweep`, async () => {
    const dir = dirs[0] as string;
    const f = makeBannedFixtures(dir);
    const fifo = join(dir, 'go');
    execFileSync('mkfifo', [fifo]);
    // Waits (as long as the test wants) for a line on the FIFO, execs a shell that waits again,
    // which then execs the banned binary: two late execs of one process.
    // (`until`: the inner shell may open the FIFO while the first writer still holds it, and then
    // reads EOF; it must wait for the second line, not exec at once.)
    const inner = `until read x < ${fifo}; do :; done; exec ${f.binary} 30`;
    const l = launch('sh', ['-c', `read x < ${fifo}; exec sh -c '${inner}'`]);
    const pid = l.child.pid as number;
    try {
      let now = 0;
      const TICK = 100;
      const source = new ProcfsSource({ now: () => now });
      await waitFor(() => {
        now += TICK;
        return source.pollSync().some((r) => r.pid === pid && r.name === 'sh');
      }, 'the shell seen');
      // Ticks until the shell is older than the young re-check window.
      for (let t = 0; t <= YOUNG_RECHECK_MS / TICK + 1; t++) {
        now += TICK;
        source.pollSync();
      }
      const execOf = async (exe: string, argvHas: string): Promise<number> => {
        writeFileSync(fifo, 'go\n');
        await waitFor(() => {
          try {
            return (
              readlinkSync(`/proc/${pid}/exe`) === exe &&
              readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(argvHas)
            );
          } catch {
            return false;
          }
        }, `the exec of ${argvHas}`);
        let ticks = 0;
        while (ticks < (2 * SWEEP_MS) / TICK) {
          now += TICK;
          ticks++;
          if (source.pollSync().some((r) => r.pid === pid && r.argv.join(' ').includes(argvHas)))
            return ticks;
        }
        return Number.POSITIVE_INFINITY;
      };
      // The first exec lands anywhere in the sweep's round; the moment it is seen is the moment
      // the sweep re-read this process, so the second exec, right after, is the worst case: it
      // waits for a whole round.
      const shell = readlinkSync(`/proc/${pid}/exe`);
      expect(await execOf(shell, inner)).toBeLessThan(Number.POSITIVE_INFINITY);
      const ticks = await execOf(f.binary, f.binary);
      const seen = ticks < Number.POSITIVE_INFINITY;
      expect(seen).toBe(true);
      // Within one second of (fake) time, one tick of slack: not a multi-second gap.
      expect(EXEC_SWEEP_MS).toBeLessThanOrEqual(1000);
      expect(ticks * TICK).toBeLessThanOrEqual(1000 + TICK);
      expect(source.details()).toMatchObject({ held_stat_fds: expect.any(Number) });
      expect(source.details().held_stat_fds as number).toBeGreaterThan(0);
      source.reset();
      expect(source.details().held_stat_fds).toBe(0);
    } finally {
      l.child.kill('SIGKILL');
    }
  });

  it('is killed by the real pipeline after it execs', async () => {
    const dir = dirs[1] as string;
    const f = makeBannedFixtures(dir);
    const fifo = join(dir, 'go');
    execFileSync('mkfifo', [fifo]);
    const p = await startPipeline(policy([f.rule]), { keepObservations: true });
    try {
      const l = launch('sh', ['-c', `read x < ${fifo}; exec ${f.binary} 30`]);
      const pid = l.child.pid as number;
      await waitFor(() => p.observed.find((o) => o.pid === pid), 'the shell observed');
      writeFileSync(fifo, 'go\n');
      expect(await l.exited).toBe('SIGKILL');
      await waitFor(() => p.events.ofType('process.blocked').find((e) => e.pid === pid), 'process.blocked');
    } finally {
      await p.stop();
    }
  });
});
