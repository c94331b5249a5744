/**
 * The real daemon (dist/, as root) configured for the macOS exec source
 * (`sensors.process.source: eslogger`) with a stand-in eslogger (`sensors.process.exec_program`):
 * `guardctl status` names the source and counts the replayed exec, and the heartbeat says exec
 * events are on (schema-valid); with a stand-in that is refused (no Full Disk Access), status names
 * the ps-list fallback and the error code, the heartbeat says off, and ps-list polling still kills a
 * banned program.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { esloggerExecLine } from '../../../bench/lib/exec-stream-fixtures.js';
import { callDaemon } from '../../../src/control/control-client.js';
import { validateEvent } from '../../../src/events/event-schema.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  runGuardctl,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { launch } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

interface Details {
  source: string;
  exec_source?: string;
  exec_events?: string;
  exec_events_error?: string;
  exec_events_received?: number;
}

function details(g: Guardd): Details | undefined {
  const r = runGuardctl(['--socket-dir', g.socketDir, 'status', '--json']);
  if (r.code !== 0) return undefined;
  return r.json<{ sensors: { name: string; details: Details }[] }>().sensors.find((x) => x.name === 'process')
    ?.details;
}

async function heartbeats(g: Guardd): Promise<Record<string, unknown>[]> {
  const r = await callDaemon<{ events: { event: Record<string, unknown> }[] }>(
    join(g.socketDir, 'guardd.sock'),
    'events.list',
    { type: 'agent.heartbeat', limit: 1000 },
  );
  return r.events.map((e) => e.event);
}

describe.runIf(runnable)('guardd with the eslogger source (stand-in eslogger)', () => {
  const dir = tempDir('tgxos-gd-');
  chmodSync(dir, 0o755);
  const tool = `tgxg${Date.now().toString(36).slice(-6)}`;
  const binary = join(dir, tool);
  const key = makeKey();
  const daemons: Guardd[] = [];
  copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), binary);
  chmodSync(binary, 0o755);
  const policyFile = writeSignedPolicy(
    join(dir, 'policy.dsse.json'),
    policyBody([
      { id: 'tgx-banned', name: 'Banned', action: 'block', message: 'banned', process: { names: [tool] } },
    ]),
    key,
  );

  /**
   * A stand-in eslogger: writes `stdout`, then `stderr`, then exits with `exit` (or stays until
   * guardd is gone: the real one writes on and dies of SIGPIPE then; this one has nothing more to
   * write, and the test stops guardd with SIGKILL — it was left running after every suite run).
   */
  function standIn(name: string, stdout: string, stderr: string, exit: number | null): string {
    const path = join(dir, name, 'eslogger');
    mkdirSync(join(dir, name), { recursive: true });
    writeFileSync(
      path,
      `#!${process.execPath}
process.stdout.write(${JSON.stringify(stdout)}, () => {
  ${exit === null ? 'const parent = process.ppid; setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 100);' : `process.stderr.write(${JSON.stringify(stderr)}, () => process.exit(${exit}));`}
});
`,
    );
    chmodSync(path, 0o755);
    return path;
  }

  async function start(name: string, program: string): Promise<Guardd> {
    const g = await startGuardd(join(dir, name), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
      'sensors.process.source': 'eslogger',
      'sensors.process.exec_program': program,
      'shipper.heartbeat_cron': '* * * * * *', // node-cron with seconds: a heartbeat every second
    });
    daemons.push(g);
    return g;
  }

  afterAll(async () => {
    for (const g of daemons) await g.stop('SIGKILL');
  });

  it('status names eslogger and counts the replayed exec; the heartbeat says exec events are on', async () => {
    const line = esloggerExecLine({
      pid: 4_000_000,
      ppid: 1,
      uid: 0,
      exe: '/usr/local/bin/tgx-replayed',
      argv: ['tgx-replayed'],
      startMs: Date.now(),
      teamId: 'ABCDE12345',
    });
    const g = await start('on', standIn('on', `${line}\n`, '', null));
    const d = await waitFor(() => {
      const x = details(g);
      return x && (x.exec_events_received ?? 0) >= 1 ? x : undefined;
    }, 'the replayed exec counted in status');
    expect(d).toMatchObject({ source: 'eslogger', exec_source: 'eslogger', exec_events: 'active' });
    const hb = await waitFor(
      async () =>
        (await heartbeats(g)).find((e) => ((e.exec_events as { received?: number })?.received ?? 0) >= 1),
      'a heartbeat with exec events on',
    );
    expect(hb.exec_events).toMatchObject({ state: 'on', source: 'eslogger', received: 1, kernel_drops: 0 });
    expect(validateEvent(hb)).toEqual({ ok: true });
  });

  it('refused (no Full Disk Access): status and heartbeat say polling and why; ps-list still kills', async () => {
    const program = standIn('refused', '', 'ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED\n', 78);
    const g = await start('refused', program);
    const d = await waitFor(() => {
      const x = details(g);
      return x?.exec_events === 'unavailable' ? x : undefined;
    }, 'the refusal in status');
    expect(d.source).toBe('ps-list');
    expect(d.exec_events_error).toMatch(/^GUARD_EXEC_STREAM_NOT_PERMITTED: /);
    const text = runGuardctl(['--socket-dir', g.socketDir, 'status']);
    expect(text.stdout).toContain('GUARD_EXEC_STREAM_NOT_PERMITTED');
    const hb = await waitFor(async () => (await heartbeats(g)).at(-1), 'a heartbeat');
    expect(hb.exec_events).toEqual({ state: 'off', source: 'ps-list' });
    const l = launch(binary, ['30']);
    expect(await l.exited).toBe('SIGKILL');
  });
});
