/**
 * The block action on real processes: it never signals a protected pid or a pid whose identity
 * changed (pid reuse), undoes its stop if the identity changes between check and stop, kills the
 * whole tree, and tells the user on the process's real terminal (a pty made by `script`).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { ANCESTORS_REREAD_MS, BlockProcessAction } from '../../src/enforcement/actions/block-process.js';
import { SessionNotifier } from '../../src/enforcement/notify/session-notifier.js';
import type { Decision } from '../../src/policy/matcher.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { readStat } from '../../src/sensors/process-sources/proc-files.js';
import {
  ProcfsProcessControl,
  type SignalOutcome,
} from '../../src/sensors/process-sources/process-control.js';
import type { ProcessSource, RawProcess } from '../../src/sensors/process-sources/process-source.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import {
  alive,
  type BannedFixtures,
  launch,
  makeBannedFixtures,
  policy,
  RecordingNotifier,
  startPipeline,
} from '../sensors/process/harness.js';

const linux = process.platform === 'linux';
const hasScript =
  linux &&
  (() => {
    try {
      execFileSync('sh', ['-c', 'command -v script'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

const decision: Decision = {
  rule: { id: 'r1', name: 'Banned Tool', action: 'block' },
  reason: 'name',
  detail: 'x',
  message: 'Banned Tool is not approved.',
  url: 'https://intranet.example/ai',
  policyVersion: 1,
  mode: 'enforce',
};

function observation(pid: number, startTime?: number): ProcessObservation {
  const st = readStat('/proc', pid);
  return {
    kind: 'process',
    pid,
    ppid: st?.ppid ?? 0,
    startTime: startTime ?? st?.startTime ?? 0,
    name: st?.comm ?? 'x',
    exe: null,
    argv: [],
    owner: { uid: 0, user: 'root', groups: [], home: null },
    tty: null,
  };
}

function state(pid: number): string | undefined {
  return readStat('/proc', pid)?.state;
}

/** A control that records signals and can lie about identity on the n-th check. */
class SpyControl extends ProcfsProcessControl {
  readonly sent: [number, string][] = [];
  checks = 0;
  constructor(private readonly lieOnCheck = 0) {
    super('/proc');
  }
  override sameProcess(pid: number, startTime: number): boolean {
    this.checks++;
    if (this.checks === this.lieOnCheck) return false;
    return super.sameProcess(pid, startTime);
  }
  override signal(pid: number, signal: NodeJS.Signals): SignalOutcome {
    this.sent.push([pid, signal]);
    return super.signal(pid, signal);
  }
}

describe.runIf(linux)('BlockProcessAction', () => {
  const logger = silentLogger();
  const notifier = new RecordingNotifier();

  it('never signals guardd, PID 1 or an ancestor of guardd', async () => {
    const control = new SpyControl();
    const action = new BlockProcessAction({ notifier, logger, control });
    for (const pid of [process.pid, 1, process.ppid, 0, -1]) {
      const r = await action.execute(observation(pid), decision);
      expect(r).toMatchObject({ actionTaken: 'skipped', error: 'protected_process' });
    }
    const extra = launch('sleep', ['30']);
    const guarded = new BlockProcessAction({
      notifier,
      logger,
      control,
      protectedPids: () => new Set([extra.child.pid as number]),
    });
    const r = await guarded.execute(observation(extra.child.pid as number), decision);
    expect(r.error).toBe('protected_process');
    expect(control.sent).toEqual([]);
    expect(alive(extra.child.pid as number)).toBe(true);
    extra.child.kill('SIGKILL');
  });

  it("reads guardd's ancestors once, then again only after ANCESTORS_REREAD_MS", async () => {
    let reads = 0;
    class CountingControl extends SpyControl {
      override ancestors(pid: number): number[] {
        reads++;
        return super.ancestors(pid);
      }
    }
    let nowNs = 5_000_000_000;
    const action = new BlockProcessAction({
      notifier,
      logger,
      control: new CountingControl(),
      monotonicNs: () => nowNs,
    });
    for (let i = 0; i < 3; i++)
      expect(await action.execute(observation(process.ppid), decision)).toMatchObject({
        error: 'protected_process',
      });
    expect(reads).toBe(1);
    nowNs += ANCESTORS_REREAD_MS * 1e6 - 1;
    await action.execute(observation(1), decision);
    expect(reads).toBe(1);
    nowNs += 1;
    expect(await action.execute(observation(process.ppid), decision)).toMatchObject({
      error: 'protected_process',
    });
    expect(reads).toBe(2);
  });

  it('does not touch a pid whose start time differs (pid reused) or that exited', async () => {
    const control = new SpyControl();
    const action = new BlockProcessAction({ notifier, logger, control });
    const victim = launch('sleep', ['30']);
    const pid = victim.child.pid as number;
    await waitFor(() => readStat('/proc', pid)?.comm === 'sleep', 'sleep running');
    const real = observation(pid);
    const r = await action.execute({ ...real, startTime: real.startTime - 1 }, decision);
    expect(r).toMatchObject({ actionTaken: 'skipped', error: 'identity_changed' });
    expect(control.sent).toEqual([]);
    expect(state(pid)).not.toBe('T');
    expect(alive(pid)).toBe(true);
    victim.child.kill('SIGKILL');

    const done = launch('true', []);
    await done.exited;
    const gone = await action.execute({ ...observation(done.child.pid as number), startTime: 1 }, decision);
    expect(gone.actionTaken).toBe('skipped');
    expect(['exited', 'identity_changed']).toContain(gone.error);
    expect(control.sent).toEqual([]);
  });

  it('undoes its stop when the identity changes between the check and the stop', async () => {
    const control = new SpyControl(2); // the post-stop re-check sees another process
    const action = new BlockProcessAction({ notifier, logger, control });
    const victim = launch('sleep', ['30']);
    const pid = victim.child.pid as number;
    await waitFor(() => readStat('/proc', pid)?.comm === 'sleep', 'sleep running');
    const r = await action.execute(observation(pid), decision);
    expect(r).toMatchObject({ actionTaken: 'skipped', error: 'identity_changed' });
    expect(control.sent).toEqual([
      [pid, 'SIGSTOP'],
      [pid, 'SIGCONT'],
    ]);
    await waitFor(() => state(pid) !== 'T', 'process continued');
    expect(alive(pid)).toBe(true);
    victim.child.kill('SIGKILL');
  });

  it('stops and kills the process and every descendant, after notifying', async () => {
    const control = new SpyControl();
    const action = new BlockProcessAction({ notifier, logger, control });
    const tree = launch('sh', ['-c', 'sleep 30 & sleep 30 & (sleep 30 & wait) & wait']);
    const root = tree.child.pid as number;
    const descendants = (): number[] => {
      const out: number[] = [];
      const queue = [root];
      for (let i = 0; i < queue.length && i < 100; i++) {
        for (const c of control.children(queue[i] as number)) {
          out.push(c);
          queue.push(c);
        }
      }
      return out;
    };
    const all = await waitFor(() => {
      const d = descendants();
      return d.filter((p) => readStat('/proc', p)?.comm === 'sleep').length === 3 ? d : null;
    }, 'three sleeps in the tree');
    const calls = notifier.calls.length;
    const r = await action.execute(observation(root), decision);
    expect(r.actionTaken).toBe('killed');
    expect(r.error).toBeNull();
    const killed = (r.details as { killed: number[] }).killed;
    expect(killed.sort()).toEqual([root, ...all].sort());
    expect(control.sent.filter(([, s]) => s === 'SIGSTOP').length).toBe(killed.length);
    expect(notifier.calls.length).toBe(calls + 1);
    expect(await tree.exited).toBe('SIGKILL');
    await waitFor(() => all.every((p) => !alive(p)), 'descendants gone');
    // Found by a scan (no exec timestamp): no since_exec_ms.
    expect(r.details).not.toHaveProperty('since_exec_ms');
  });

  it('says how long after the exec the SIGKILL went out, on the clock of the exec timestamp', async () => {
    // The kernel's exec timestamp and the action's clock, both faked: 2.5 ms (0.01 ms steps) apart.
    const action = new BlockProcessAction({
      notifier,
      logger,
      control: new SpyControl(),
      monotonicNs: () => 7_000_000_000 + 2_504_321,
    });
    const l = launch('sleep', ['30']);
    const pid = l.child.pid as number;
    await waitFor(() => readStat('/proc', pid)?.comm === 'sleep', 'sleep exec');
    const r = await action.execute({ ...observation(pid), execNs: 7_000_000_000 }, decision);
    expect(r.actionTaken).toBe('killed');
    expect(r.details).toMatchObject({ since_exec_ms: 2.5 });
    expect(await l.exited).toBe('SIGKILL');
    // A clock behind the exec timestamp (not the same clock) gives no figure rather than a wrong one.
    const behind = new BlockProcessAction({
      notifier,
      logger,
      control: new SpyControl(),
      monotonicNs: () => 5,
    });
    const l2 = launch('sleep', ['30']);
    const pid2 = l2.child.pid as number;
    await waitFor(() => readStat('/proc', pid2)?.comm === 'sleep', 'sleep exec');
    const r2 = await behind.execute({ ...observation(pid2), execNs: 7_000_000_000 }, decision);
    expect(r2.actionTaken).toBe('killed');
    expect(r2.details).not.toHaveProperty('since_exec_ms');
    expect(await l2.exited).toBe('SIGKILL');
  });
});

describe.runIf(linux)('pid reuse through the whole pipeline', () => {
  it('a matched process whose pid now belongs to another process is never killed', async () => {
    const innocent = launch('sleep', ['30']);
    const pid = innocent.child.pid as number;
    await waitFor(() => readStat('/proc', pid)?.comm === 'sleep', 'sleep running');
    const real = readStat('/proc', pid);
    // The source saw the banned tool with this pid earlier; it has since exited and `sleep` got the pid.
    const stale: RawProcess = {
      pid,
      ppid: 1,
      startTime: (real?.startTime ?? 0) - 7,
      name: 'tgbanned',
      exe: '/opt/tgbanned',
      argv: ['tgbanned'],
      uid: 0,
      tty: null,
    };
    let polled = false;
    const source: ProcessSource = {
      kind: 'procfs',
      defaultIntervalMs: 50,
      skipped: {},
      poll: async () => {
        if (polled) return [];
        polled = true;
        return [stale];
      },
      reset: () => undefined,
      cwd: () => null,
      hashPath: () => null,
      details: () => ({}),
    };
    const rule = {
      id: 'r',
      name: 'Banned',
      action: 'block' as const,
      message: 'no',
      process: { names: ['tgbanned'] },
    };
    const p = await startPipeline(policy([rule]), { source });
    const [event] = await waitFor(() => {
      const e = p.events.ofType('process.blocked');
      return e.length > 0 ? e : null;
    }, 'block event');
    await p.stop();
    expect(event?.outcome).toMatchObject({ action_taken: 'skipped', error: 'identity_changed' });
    expect(alive(pid)).toBe(true);
    expect(state(pid)).not.toBe('T');
    innocent.child.kill('SIGKILL');
  });
});

describe.runIf(hasScript)('terminal message on the real controlling terminal', () => {
  let f: BannedFixtures;
  beforeAll(() => {
    f = makeBannedFixtures(tempDir('tg-tty-'));
  });
  afterAll(() => undefined);

  it('writes the rule message and URL to the pty the tool was started from, then kills it', async () => {
    const notifier = new SessionNotifier({
      logger: silentLogger(),
      platform: 'linux',
      terminal: true,
      desktop: false,
    });
    const p = await startPipeline(policy([f.rule]), { notifier });
    // `script` gives the tool a real pty and copies what is written to it onto its stdout. The
    // shell stays on the terminal after the tool dies, as an interactive one would, so the pty
    // lives on until the message was relayed.
    const term = launch(
      'script',
      ['-q', '-e', '-c', `${f.binary} 30; echo tool-ended; sleep 30`, '/dev/null'],
      process.env,
      undefined,
      'pipe',
    );
    let output = '';
    term.child.stdout?.on('data', (d: Buffer) => {
      output += d.toString('utf8');
    });
    await waitFor(() => output.includes('tool-ended'), 'the tool ended on the terminal');
    term.child.kill('SIGKILL');
    await term.exited;
    await p.stop();
    expect(output).toContain('toolguard: blocked Banned Tool');
    expect(output).toContain(f.rule.message);
    expect(output).toContain('More: https://intranet.example/ai-tools');
    const [event] = p.events.ofType('process.blocked');
    expect(event?.tty).toMatch(/^\/dev\/pts\/\d+$/);
    expect(event?.outcome).toMatchObject({
      action_taken: 'killed',
      details: { notified: { terminal: true, desktop: false } },
    });
  });
});

describe('BlockProcessAction where processes cannot be stopped (Windows contract, control faked)', () => {
  it('checks identity, then kills the tree top-down without SIGSTOP, skipping protected pids', async () => {
    const table = new Map([
      [500, { ppid: 1, start: 0, name: 'claude.exe' }],
      [501, { ppid: 500, start: 0, name: 'node.exe' }],
      [502, { ppid: 501, start: 0, name: 'conhost.exe' }],
      [503, { ppid: 500, start: 0, name: 'guardd-helper.exe' }],
    ]);
    const sent: [number, string][] = [];
    const control = {
      canStop: false,
      sameProcess: (pid: number, _start: number, name: string) => table.get(pid)?.name === name,
      exists: (pid: number) => table.has(pid),
      children: (pid: number) => [...table].filter(([, p]) => p.ppid === pid).map(([c]) => c),
      ancestors: () => [77],
      signal: (pid: number, signal: NodeJS.Signals): SignalOutcome => {
        sent.push([pid, signal]);
        return 'ok';
      },
    };
    // Nothing stops the tool here, so it is killed first and the user told after.
    const killsBeforeNotify: number[] = [];
    const notifier = {
      notify: async () => {
        killsBeforeNotify.push(sent.length);
        return { terminal: false, desktop: true, error: null };
      },
    };
    const action = new BlockProcessAction({
      notifier,
      logger: silentLogger(),
      control,
      selfPid: 88,
      protectedPids: () => new Set([503]),
    });
    const obs = { ...observation(process.pid), pid: 500, startTime: 0, name: 'claude.exe' };
    const r = await action.execute(obs, decision);
    expect(r.actionTaken).toBe('killed');
    expect(sent).toEqual([
      [500, 'SIGKILL'],
      [501, 'SIGKILL'],
      [502, 'SIGKILL'],
    ]);
    expect(killsBeforeNotify).toEqual([3]);
    expect(r.details).toMatchObject({ notified: { terminal: false, desktop: true } });
    sent.length = 0;
    const renamed = await action.execute({ ...obs, name: 'other.exe' }, decision);
    expect(renamed.error).toBe('identity_changed');
    expect(sent).toEqual([]);
  });

  it('PsListProcessControl answers identity, children and ancestors from snapshots', async () => {
    const { PsListProcessControl } = await import('../../src/sensors/process-sources/process-control.js');
    const snap = [
      { pid: 10, ppid: 1, name: 'explorer.exe' },
      { pid: 20, ppid: 10, name: 'claude.exe', startTime: new Date(5000) },
      { pid: 21, ppid: 20, name: 'node.exe' },
    ];
    const c = new PsListProcessControl(async () => snap, 'win32');
    expect(c.canStop).toBe(false);
    expect(await c.sameProcess(20, 5000, 'claude.exe')).toBe(true);
    expect(await c.sameProcess(20, 6000, 'claude.exe')).toBe(false);
    expect(await c.sameProcess(21, 0, 'node.exe')).toBe(true);
    expect(await c.sameProcess(21, 0, 'evil.exe')).toBe(false);
    expect(await c.children(20)).toEqual([21]);
    expect(await c.ancestors(21)).toEqual([20, 10, 1]);
    expect(await c.exists(99)).toBe(false);
    expect(new PsListProcessControl(async () => snap, 'darwin').canStop).toBe(true);
  });
});

const CLK_TCK = linux
  ? Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  : 100;

/** Clock ticks since boot, the unit of /proc start times. */
function ticksNow(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * CLK_TCK);
}

/** Whether we may steer the next pid (root, or CAP_CHECKPOINT_RESTORE): needed for a real reuse. */
const canSteerPids =
  linux &&
  process.getuid?.() === 0 &&
  (() => {
    try {
      writeFileSync('/proc/sys/kernel/ns_last_pid', readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'));
      return true;
    } catch {
      return false;
    }
  })();

// Needs root to write /proc/sys/kernel/ns_last_pid; elsewhere the simulated reuse tests above cover it.
describe.runIf(canSteerPids)('real pid reuse (ns_last_pid steered)', () => {
  it('a matched process that exited is never confused with the new process that got its pid', async () => {
    const action = new BlockProcessAction({ notifier: new RecordingNotifier(), logger: silentLogger() });
    let reused: { pid: number; stale: ProcessObservation; victim: ReturnType<typeof launch> } | null = null;
    // Other processes on the machine may take the pid first: retry a bounded number of times.
    for (let attempt = 0; attempt < 50 && reused === null; attempt++) {
      const banned = launch('sleep', ['30']);
      const pid = banned.child.pid as number;
      await waitFor(() => readStat('/proc', pid)?.comm === 'sleep', 'banned process running');
      const stale = observation(pid); // what the sensor saw and the matcher matched
      banned.child.kill('SIGKILL'); // …and it exits before the block action runs
      await banned.exited;
      // Start times have clock-tick resolution (10 ms): identity can only tell apart processes
      // started in different ticks. Unsteered, a pid comes back only after cycling through
      // pid_max pids, far longer than a tick; so the new owner starts in a later tick.
      await waitFor(() => ticksNow() > stale.startTime + 1, 'a later clock tick');
      const last = Number(readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'));
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
      const victim = launch('sleep', ['31']);
      // Put allocation back where it was at once, so other processes do not get recycled pids.
      const now = Number(readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'));
      if (now < last) writeFileSync('/proc/sys/kernel/ns_last_pid', String(last));
      if (victim.child.pid === pid) reused = { pid, stale, victim };
      else victim.child.kill('SIGKILL');
    }
    expect(reused).not.toBeNull();
    if (!reused) return;
    await waitFor(() => readStat('/proc', reused.pid)?.comm === 'sleep', 'new owner of the pid running');
    const r = await action.execute(reused.stale, decision);
    expect(r).toMatchObject({ actionTaken: 'skipped', error: 'identity_changed' });
    expect(alive(reused.pid)).toBe(true);
    expect(state(reused.pid)).not.toBe('T');
    reused.victim.child.kill('SIGKILL');
  });
});
