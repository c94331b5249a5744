import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import type { Action, ActionResult } from '../../src/enforcement/action.js';
import { Enforcer } from '../../src/enforcement/enforcer.js';
import type { Decision } from '../../src/policy/matcher.js';
import type { Observation, PackageObservation, ProcessObservation } from '../../src/sensors/observation.js';
import { MemoryEventSink } from '../helpers/event-sink.js';

const owner = { uid: 1000, user: 'dev', groups: [], home: '/home/dev' };
const proc: ProcessObservation = {
  kind: 'process',
  pid: 4242,
  ppid: 1,
  startTime: 99,
  name: 'claude',
  exe: '/tmp/claude',
  argv: ['claude', '--api-key', 'sk-ant-secretsecretsecretsecret'],
  owner,
  tty: null,
};
const pkg: PackageObservation = {
  kind: 'package',
  ecosystem: 'npm',
  name: '@anthropic-ai/claude-code',
  version: '1.0.0',
  path: '/p/lib/node_modules/@anthropic-ai/claude-code',
  root: '/p/lib/node_modules',
  manager: 'npm',
  owner,
};
const decision = (action: 'block' | 'warn' | 'audit', mode: 'enforce' | 'monitor' = 'enforce'): Decision => ({
  rule: { id: 'r1', name: 'Rule one', action },
  reason: 'name',
  detail: 'claude',
  message: 'no',
  url: null,
  policyVersion: 7,
  mode,
});

/** A recording action: the edge the enforcer drives (the real actions have their own tests). */
class Recorder<O extends Observation> implements Action<O> {
  calls: O[] = [];
  constructor(
    private readonly result: Partial<ActionResult> = {},
    private readonly fail = false,
  ) {}
  async execute(obs: O): Promise<ActionResult> {
    this.calls.push(obs);
    if (this.fail) throw new Error('boom');
    return { actionTaken: 'killed', latencyMs: 1, error: null, ...this.result };
  }
}

function setup(opts: { warnIntervalMs?: number; failBlock?: boolean; now?: () => number } = {}) {
  const actions = {
    blockProcess: new Recorder<ProcessObservation>({ actionTaken: 'killed' }, opts.failBlock),
    notifyProcess: new Recorder<ProcessObservation>({ actionTaken: 'warned' }),
    quarantine: new Recorder<PackageObservation>({ actionTaken: 'quarantined' }),
    notifyInstall: new Recorder<PackageObservation>({ actionTaken: 'warned' }),
  };
  const events = new MemoryEventSink();
  const enforcer = new Enforcer({
    actions: actions as never,
    events,
    logger: silentLogger(),
    warnIntervalMs: opts.warnIntervalMs ?? 0,
    ...(opts.now ? { now: opts.now } : {}),
  });
  return { actions, events, enforcer };
}

describe('Enforcer', () => {
  it('block in enforce mode kills the process and records process.blocked with redacted argv', async () => {
    const { actions, events, enforcer } = setup();
    await enforcer.handle(proc, decision('block'));
    expect(actions.blockProcess.calls).toHaveLength(1);
    const [e] = events.ofType('process.blocked');
    expect(e?.outcome).toMatchObject({ action_taken: 'killed', error: null });
    expect(e?.argv).toEqual(['claude', '--api-key', '[REDACTED]']);
    expect(e?.policy_version).toBe(7);
    expect(enforcer.status().blocked).toBe(1);
  });

  it('block in monitor mode only warns and says would_block', async () => {
    const { actions, events, enforcer } = setup();
    await enforcer.handle(proc, decision('block', 'monitor'));
    expect(actions.blockProcess.calls).toHaveLength(0);
    expect(actions.notifyProcess.calls).toHaveLength(1);
    expect(events.ofType('process.warned')[0]?.outcome).toMatchObject({ action_taken: 'would_block' });
  });

  it('rate-limits warnings per user and rule but records every occurrence', async () => {
    let now = 1_000_000;
    const { actions, events, enforcer } = setup({ warnIntervalMs: 60_000, now: () => now });
    await enforcer.handle(proc, decision('warn'));
    await enforcer.handle(proc, decision('warn'));
    now += 61_000;
    await enforcer.handle(proc, decision('warn'));
    expect(actions.notifyProcess.calls).toHaveLength(2);
    expect(
      events.ofType('process.warned').map((e) => (e.outcome as { action_taken: string }).action_taken),
    ).toEqual(['warned', 'warn_suppressed', 'warned']);
  });

  it('a wall clock stepped back does not silence warnings until it catches up', async () => {
    let now = 10_000_000;
    const { actions, enforcer } = setup({ warnIntervalMs: 60_000, now: () => now });
    await enforcer.handle(proc, decision('warn'));
    now -= 3_600_000; // the clock was an hour fast and NTP corrected it
    await enforcer.handle(proc, decision('warn'));
    await enforcer.handle(proc, decision('warn'));
    expect(actions.notifyProcess.calls).toHaveLength(2);
  });

  it('audit records only', async () => {
    const { actions, events, enforcer } = setup();
    await enforcer.handle(proc, decision('audit'));
    expect(Object.values(actions).every((a) => a.calls.length === 0)).toBe(true);
    expect(events.ofType('process.audited')).toHaveLength(1);
  });

  it('block on a package quarantines it', async () => {
    const { actions, events, enforcer } = setup();
    await enforcer.handle(pkg, decision('block'));
    expect(actions.quarantine.calls).toHaveLength(1);
    expect(events.ofType('package.quarantined')[0]).toMatchObject({
      package: { name: '@anthropic-ai/claude-code' },
    });
  });

  it('an action that throws still yields one event, marked failed', async () => {
    const { events, enforcer } = setup({ failBlock: true });
    const r = await enforcer.handle(proc, decision('block'));
    expect(r.actionTaken).toBe('failed');
    expect(events.ofType('process.blocked')[0]?.outcome).toMatchObject({
      action_taken: 'failed',
      error: 'boom',
    });
    expect(enforcer.status()).toMatchObject({ blocked: 0, failed: 1 });
  });
});
