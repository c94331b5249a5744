/**
 * The real daemon (dist/, as root) with Linux exec events: `guardctl status` names the source and
 * its counters and a banned program is killed; the same daemon started without CAP_NET_ADMIN (root
 * with the capability removed from its bounding set: a real kernel refusal) polls /proc at the
 * usual interval, says so and why in `guardctl status`, and still kills.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_NICE, DAEMON_SLICE_NS } from '../../../src/daemon/priority.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  ROOT,
  ruleEvents,
  runGuardctl,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { launch } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

interface ProcessDetails {
  source: string;
  interval_ms: number;
  exec_events?: string;
  exec_events_error?: string;
  exec_events_received?: number;
  exec_events_kernel_drops?: number;
  exec_events_resyncs?: number;
}

/** The process sensor's status details; throws when `started` (a guardd started by hand) has exited. */
function processDetails(
  socketDir: string,
  started?: { output: () => string; exited: () => number | null },
): ProcessDetails | undefined {
  if (started && started.exited() !== null)
    throw new Error(`guardd exited ${started.exited()}: ${started.output()}`);
  const r = runGuardctl(['--socket-dir', socketDir, 'status', '--json']);
  if (r.code !== 0) return undefined;
  const s = r.json<{ sensors: { name: string; details: ProcessDetails }[] }>();
  return s.sensors.find((x) => x.name === 'process')?.details;
}

describe.runIf(runnable)('guardd with exec events', () => {
  const dir = tempDir('tgev-gd-');
  chmodSync(dir, 0o755);
  const tool = `tgevg${Date.now().toString(36).slice(-6)}`;
  const binary = join(dir, tool);
  const key = makeKey();
  let policyFile: string;
  let guardd: Guardd;
  const extra: { stop(): void }[] = [];

  beforeAll(async () => {
    copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), binary);
    chmodSync(binary, 0o755);
    policyFile = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody([
        { id: 'tgev-banned', name: 'Banned', action: 'block', message: 'banned', process: { names: [tool] } },
      ]),
      key,
    );
    guardd = await startGuardd(join(dir, 'agent'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
    });
  });

  afterAll(async () => {
    await guardd?.stop('SIGKILL');
    for (const e of extra) e.stop();
  });

  /** A config for a guardd started by hand (another agent dir beside the shared one). */
  function agentFiles(name: string, extraConfig: Record<string, unknown> = {}) {
    const agent = join(dir, name);
    mkdirSync(agent, { recursive: true });
    const socketDir = join(agent, 'run');
    const configFile = join(agent, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        'paths.state_dir': join(agent, 'state'),
        'paths.socket_dir': socketDir,
        'log.level': 'warn',
        'sensors.install.enabled': false,
        'enforcement.notify_desktop': false,
        'policy.trusted_keys': [key.publicKeyPem],
        'paths.bootstrap_policy': policyFile,
        ...extraConfig,
      }),
    );
    return { socketDir, configFile };
  }

  /**
   * guardd started through `wrapper` (a command line that ends by exec'ing node, so the child's pid
   * is guardd's), killed when the file ends; `output()` is what it printed.
   */
  function startWrapped(
    wrapper: readonly string[],
    configFile: string,
  ): { pid: number; output: () => string; exited: () => number | null; kill: () => void } {
    const child = spawn(
      wrapper[0] as string,
      [...wrapper.slice(1), process.execPath, join(ROOT, 'bin', 'guardd.js'), '--config', configFile],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.stderr.on('data', (b) => {
      out += b;
    });
    extra.push({ stop: () => child.exitCode === null && child.kill('SIGKILL') });
    return {
      pid: child.pid as number,
      output: () => out,
      exited: () => child.exitCode,
      kill: () => child.kill('SIGKILL'),
    };
  }

  it('status names the exec-events source and its counters; a banned program is killed', async () => {
    const spawnedNs = process.hrtime.bigint();
    const l = launch(binary, ['30']);
    expect(await l.exited).toBe('SIGKILL');
    const exitedMs = Number(process.hrtime.bigint() - spawnedNs) / 1e6;
    // The event says how long after the kernel's exec the SIGKILL went out: the exec came after
    // this test's spawn began and the kill before it saw the exit, so 0 ≤ since_exec_ms ≤ that span.
    const blocked = await waitFor(
      () => ruleEvents(guardd, 'process.blocked', 'tgev-banned').find((e) => e.pid === l.child.pid),
      'the process.blocked event of the launch',
    );
    expect(blocked.outcome?.action_taken).toBe('killed');
    const since = blocked.outcome?.details?.since_exec_ms;
    expect(since).toBeTypeOf('number');
    expect(since as number).toBeGreaterThanOrEqual(0);
    expect(since as number).toBeLessThanOrEqual(exitedMs);
    const d = await waitFor(() => {
      const x = processDetails(guardd.socketDir);
      return x && (x.exec_events_received ?? 0) > 0 ? x : undefined;
    }, 'exec events counted in status');
    expect(d).toMatchObject({ source: 'exec-events', interval_ms: 1000, exec_events: 'active' });
    expect(d.exec_events_kernel_drops).toBeTypeOf('number');
    expect(d.exec_events_resyncs).toBeTypeOf('number');
    const text = runGuardctl(['--socket-dir', guardd.socketDir, 'status', '--verbose']).stdout;
    expect(text).toMatch(/processes +watching · exec-events \(kernel exec events\)/);
    expect(text).toMatch(/source=exec-events interval_ms=1000 /);
    expect(text).toMatch(/exec_events_kernel_drops=\d+/);
  });

  it('runs every thread at its own nice, the exec-events reader, walker and boost keeper above it in real time, the JS thread raised only while it handles a batch', async () => {
    const pid = guardd.child.pid as number;
    // The JS thread is raised for a millisecond or so at every exec on the machine: read the
    // threads at a moment it is not (its tid is the pid).
    const { threads, slices } = await waitFor(() => {
      const x = { threads: threadPriorities(pid), slices: threadSlices(pid) };
      return x.threads[0]?.tid === pid && x.threads[0].prio === 20 + DAEMON_NICE && x.slices[0]?.policy === 0
        ? x
        : undefined;
    }, "guardd's JS thread between two batches");
    expect(threads.length).toBeGreaterThan(1);
    for (const t of threads) expect(t, t.comm).toMatchObject({ nice: DAEMON_NICE });
    // SCHED_FIFO priority p shows as priority -1 - p in stat; an ordinary task's is 20 + nice. The
    // reader and the boost's keeper run one above the walker and the JS thread's boost (priority
    // 1): the keeper ends a boost JS does not, the reader reads the next exec meanwhile.
    expect(threads.find((t) => t.comm === 'tg-procevents')?.prio).toBe(-3);
    expect(threads.find((t) => t.comm === 'tg-boost')?.prio).toBe(-3);
    expect(threads.find((t) => t.comm === 'tg-walker')?.prio).toBe(-2);
    const realTime = ['tg-boost', 'tg-procevents', 'tg-walker'];
    expect(threads.find((t) => !realTime.includes(t.comm))?.prio).toBe(20 + DAEMON_NICE);
    // every other thread asked for guardd's short time slice; the real-time ones are left as they are
    expect(
      slices
        .filter((t) => t.policy === 1)
        .map((t) => t.comm)
        .sort(),
    ).toEqual(realTime); // SCHED_FIFO
    for (const t of slices.filter((x) => x.policy !== 1))
      expect(t, t.comm).toMatchObject({ policy: 0, slice: wantedSlice() });
    // It has been raised (a launch above), and lowered back to the nice and slice it had.
    const d = processDetails(guardd.socketDir) as ProcessDetails & Record<string, unknown>;
    expect(d).toMatchObject({ exec_events_boost: 'on', exec_events_boost_errors: 0 });
    expect(d.exec_events_boosts as number).toBeGreaterThan(0);
  });

  // The unit also sets LimitRTPRIO=2 so the reader may take SCHED_FIFO 2 (and raise the JS thread
  // to 1) without CAP_SYS_NICE; raising that limit needs CAP_SYS_RESOURCE, which this test
  // machine's root lacks, so this test starts guardd without it: the reader then keeps the nice -10
  // the unit's Nice= gave the process, and the JS thread is never raised.
  it('started as the systemd unit starts it (no CAP_SYS_NICE, Nice=-10): every thread at nice -10', async () => {
    const { socketDir, configFile } = agentFiles('agent-unit');
    const unit = readFileSync(join(ROOT, 'service', 'linux', 'toolguard.service'), 'utf8');
    const setting = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(unit)?.[1];
    expect(setting('CapabilityBoundingSet')).not.toMatch(/CAP_SYS_NICE/);
    const child = startWrapped(
      ['nice', '-n', String(setting('Nice')), 'setpriv', '--bounding-set=-sys_nice', '--inh-caps=-sys_nice'],
      configFile,
    );
    await waitFor(
      () => processDetails(socketDir, child)?.exec_events === 'active',
      'guardd started as the unit to read exec events',
      { intervalMs: 100 },
    );
    // nice execs setpriv, which execs node: the same pid all along.
    expect(setting('LimitRTPRIO')).toBe('2');
    expect(capable(child.pid, 23)).toBe(false); // CAP_SYS_NICE is 23
    const threads = threadPriorities(child.pid);
    for (const t of threads) expect(t, t.comm).toMatchObject({ nice: DAEMON_NICE, prio: 20 + DAEMON_NICE });
    expect(threads.some((t) => t.comm === 'tg-procevents')).toBe(true);
    // the time slice needs no privilege: every thread, the reader too (not real time here), has it
    for (const t of threadSlices(child.pid))
      expect(t, t.comm).toMatchObject({ policy: 0, slice: wantedSlice() });
    // no boost of the JS thread: the reader could not end it
    const d = processDetails(socketDir, child) as ProcessDetails & Record<string, unknown>;
    expect(d).toMatchObject({ exec_events_boost: expect.stringMatching(/^off: /), exec_events_boosts: 0 });
    // its pre-exec deny must not refuse the next test's launch
    child.kill();
  });

  it('without CAP_NET_ADMIN it polls /proc every 100 ms, says so and why, and still kills', async () => {
    // the kill after exec is under test: pre-exec deny would refuse the launch itself
    const { socketDir, configFile } = agentFiles('agent-nocap', { 'enforcement.exec_deny': 'off' });
    // Root, but the kernel refuses the process events connector without CAP_NET_ADMIN.
    const child = startWrapped(['setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin'], configFile);
    const d = await waitFor(
      () => processDetails(socketDir, child),
      'guardd without CAP_NET_ADMIN to answer status',
      {
        intervalMs: 100,
      },
    );
    expect(d).toMatchObject({ source: 'procfs', interval_ms: 100, exec_events: 'unavailable' });
    expect(d.exec_events_error).toMatch(
      /^GUARD_PROCEVENTS_OPEN_FAILED: bind\(CN_IDX_PROC\) failed: Operation not permitted/,
    );
    const text = runGuardctl(['--socket-dir', socketDir, 'status', '--verbose']).stdout;
    expect(text).toMatch(/processes +watching · procfs/);
    expect(text).toMatch(/source=procfs interval_ms=100 /);
    expect(text).toMatch(/exec_events=unavailable/);
    // Stop the exec-events daemon first, so only the polling one can kill this launch.
    await guardd.stop('SIGKILL');
    const l = launch(binary, ['30']);
    expect(await l.exited).toBe('SIGKILL');
  });
});

/** Each thread of `pid`: its name, scheduling priority and nice (fields 18 and 19 of stat). */
function threadPriorities(pid: number): { tid: number; comm: string; prio: number; nice: number }[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    return { tid: Number(tid), comm, prio: Number(f[15]), nice: Number(f[16]) };
  });
}

/**
 * Each thread of `pid`: its name, scheduling policy (0 SCHED_OTHER, 1 SCHED_FIFO) and EEVDF slice
 * in ns (`se.slice`), from /proc/<pid>/task/<tid>/sched.
 */
function threadSlices(pid: number): { comm: string; policy: number; slice: number }[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const sched = readFileSync(`/proc/${pid}/task/${tid}/sched`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}\\s*:\\s*(\\d+)`, 'm').exec(sched)?.[1]);
    const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    return { comm, policy: field('policy'), slice: field('se\\.slice') };
  });
}

/**
 * The slice guardd's threads must show: DAEMON_SLICE_NS where the kernel takes custom slices
 * (Linux ≥ 6.12), else the default one, this test process's own (it asks for none).
 */
function wantedSlice(): number {
  const [major = 0, minor = 0] = readFileSync('/proc/sys/kernel/osrelease', 'utf8')
    .split('.')
    .map((n) => Number.parseInt(n, 10));
  if (major > 6 || (major === 6 && minor >= 12)) return DAEMON_SLICE_NS;
  return threadSlices(process.pid).find((t) => t.policy === 0)?.slice ?? Number.NaN;
}

/** Whether capability `cap` is in `pid`'s effective set. */
function capable(pid: number, cap: number): boolean {
  const hex = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '0';
  return ((BigInt(`0x${hex}`) >> BigInt(cap)) & 1n) === 1n;
}
