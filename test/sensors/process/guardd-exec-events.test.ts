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
import { DAEMON_NICE } from '../../../src/daemon/priority.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  ROOT,
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

function processDetails(socketDir: string): ProcessDetails | undefined {
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

  it('status names the exec-events source and its counters; a banned program is killed', async () => {
    const l = launch(binary, ['30']);
    expect(await l.exited).toBe('SIGKILL');
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

  it('runs every thread at its own nice, the exec-events reader above it in real time', async () => {
    const pid = guardd.child.pid as number;
    const threads = readdirSync(`/proc/${pid}/task`).map((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields 18/19 of stat (priority, nice) are the 16th/17th after the comm
      return {
        comm: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(),
        prio: Number(f[15]),
        nice: Number(f[16]),
      };
    });
    expect(threads.length).toBeGreaterThan(1);
    for (const t of threads) expect(t, t.comm).toMatchObject({ nice: DAEMON_NICE });
    // SCHED_FIFO priority 1 shows as a negative priority (-2) in stat; an ordinary task's is 20 + nice.
    const reader = threads.find((t) => t.comm === 'tg-procevents');
    expect(reader?.prio).toBeLessThan(0);
    expect(threads.find((t) => t.comm !== 'tg-procevents')?.prio).toBe(20 + DAEMON_NICE);
  });

  it('without CAP_NET_ADMIN it polls /proc every 100 ms, says so and why, and still kills', async () => {
    const agent = join(dir, 'agent-nocap');
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
        // the kill after exec is under test: pre-exec deny would refuse the launch itself
        'enforcement.exec_deny': 'off',
        'policy.trusted_keys': [key.publicKeyPem],
        'paths.bootstrap_policy': policyFile,
      }),
    );
    // Root, but the kernel refuses the process events connector without CAP_NET_ADMIN.
    const child = spawn(
      'setpriv',
      [
        '--bounding-set=-net_admin',
        '--inh-caps=-net_admin',
        process.execPath,
        join(ROOT, 'bin', 'guardd.js'),
        '--config',
        configFile,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.stderr.on('data', (b) => {
      out += b;
    });
    extra.push({ stop: () => child.exitCode === null && child.kill('SIGKILL') });
    const d = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`guardd exited ${child.exitCode}: ${out}`);
        return processDetails(socketDir);
      },
      'guardd without CAP_NET_ADMIN to answer status',
      { intervalMs: 100 },
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
