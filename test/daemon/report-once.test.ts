/**
 * One report per process identity and decision, with a real guardd (root, dist/): a matched
 * process that keeps running is recorded once; a policy change with the same decision and a
 * restart of guardd count it as a repeat (heartbeat counts.repeats) instead of recording it again;
 * a changed decision (audit → warn) records one new event.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Guardd,
  makeKey,
  policyBody,
  ROOT,
  ruleEvents,
  startCollectorProcess,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgtr-once-');
const NAME = 'tgtr-once-run';
const SLEEP = spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
let child: ChildProcess | undefined;

afterAll(() => {
  child?.kill('SIGKILL');
});

function rule(action: 'audit' | 'warn') {
  return { id: 'once', name: 'Once', action, message: 'noted', process: { names: [NAME] } };
}

/** guardctl without blocking this process (guardd's policy fetch is answered by a child collector, but keep the loop free). */
function guardctl(args: readonly string[]): Promise<string> {
  return new Promise((res) => {
    const c = spawn(process.execPath, [join(ROOT, 'bin', 'guardctl.js'), ...args], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.on('close', () => res(out));
  });
}

/** Newest heartbeat's counts.repeats, through guardctl events. */
async function repeats(g: Guardd): Promise<number> {
  const out = await guardctl([
    '--socket-dir',
    g.socketDir,
    '--json',
    'events',
    '--type',
    'agent.heartbeat',
    '--limit',
    '1',
  ]);
  try {
    const e = (JSON.parse(out) as { events: { event: { counts?: { repeats?: number } } }[] }).events[0];
    return e?.event.counts?.repeats ?? -1;
  } catch {
    return -1;
  }
}

describe('report once per process identity and decision', () => {
  it('a running match is recorded once across a policy change and a restart; a new decision once more', async () => {
    const key = makeKey();
    const policyFile = join(dir, 'policy.dsse.json');
    writeSignedPolicy(policyFile, policyBody([rule('audit')], { version: 1 }), key);
    const collector = await startCollectorProcess(join(dir, 'collector'), policyFile);
    const config = {
      'collector.url': collector.url,
      'collector.enroll_secret_file': join(dir, 'collector', 'enroll-secret'),
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
      'shipper.heartbeat_cron': '* * * * * *',
    };
    mkdirSync(join(dir, 'bin'), { recursive: true });
    const exe = join(dir, 'bin', NAME);
    copyFileSync(SLEEP, exe);
    chmodSync(exe, 0o755);
    child = spawn(exe, ['120'], { stdio: 'ignore' });
    const pid = child.pid as number;
    const mine = (g: Guardd, type: string) => ruleEvents(g, type, 'once').filter((e) => e.pid === pid);

    let guardd = await startGuardd(join(dir, 'agent'), config);
    await waitFor(() => mine(guardd, 'process.audited').length === 1, 'the first process.audited');

    // A policy change with the same decision: the sensor sees the process again → a repeat.
    writeSignedPolicy(policyFile, policyBody([rule('audit')], { version: 2 }), key);
    const reload = JSON.parse(
      await guardctl(['--socket-dir', guardd.socketDir, '--json', 'policy', 'reload']),
    ) as {
      status: string;
    };
    expect(reload.status).toBe('applied');
    await waitFor(async () => (await repeats(guardd)) >= 1, 'a repeat counted after the policy change');
    expect(mine(guardd, 'process.audited')).toHaveLength(1);

    // A restart: the first scan sees it again → a repeat, not an event.
    expect(await guardd.stop('SIGTERM')).toBe(0);
    guardd = await startGuardd(join(dir, 'agent'), config);
    await waitFor(async () => (await repeats(guardd)) >= 1, 'a repeat counted after the restart');
    expect(mine(guardd, 'process.audited')).toHaveLength(1);

    // A changed decision: one new event.
    writeSignedPolicy(policyFile, policyBody([rule('warn')], { version: 3 }), key);
    await guardctl(['--socket-dir', guardd.socketDir, '--json', 'policy', 'reload']);
    await waitFor(() => mine(guardd, 'process.warned').length === 1, 'process.warned for the new decision');
    expect(mine(guardd, 'process.audited')).toHaveLength(1);
    expect(child.exitCode).toBeNull();
    await guardd.stop('SIGTERM');
    await collector.stop();
  }, 90_000);
});
