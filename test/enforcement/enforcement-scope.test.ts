import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import type { Action, ActionResult } from '../../src/enforcement/action.js';
import {
  type EnforcementScope,
  LocalEnforcementScope,
  type OutOfScope,
  ownStartTime,
} from '../../src/enforcement/enforcement-scope.js';
import { Enforcer } from '../../src/enforcement/enforcer.js';
import type { Decision } from '../../src/policy/matcher.js';
import type {
  Observation,
  PackageObservation,
  PathObservation,
  ProcessObservation,
} from '../../src/sensors/observation.js';
import { readStartTime } from '../../src/sensors/process-sources/proc-files.js';
import { MemoryEventSink } from '../helpers/event-sink.js';

const DEV = 1000;
const OTHER = 1001;
const GUARDD_START = 5000;
const DIR = '/home/dev/project/.toolguard';

const owner = (uid: number) => ({ uid, user: `u${uid}`, groups: [], home: `/home/u${uid}` });
const proc = (uid: number, startTime: number): ProcessObservation => ({
  kind: 'process',
  pid: 4242,
  ppid: 1,
  startTime,
  name: 'claude',
  exe: '/tmp/claude',
  argv: ['claude'],
  owner: owner(uid),
  tty: null,
});
const pkg = (uid: number, path: string): PackageObservation => ({
  kind: 'package',
  ecosystem: 'npm',
  name: '@anthropic-ai/claude-code',
  version: '1.0.0',
  path,
  root: path.replace(/\/@anthropic-ai\/claude-code$/, ''),
  manager: 'other',
  owner: owner(uid),
});
const artifact = (uid: number, path: string): PathObservation => ({
  kind: 'path',
  path,
  isDirectory: true,
  owner: owner(uid),
});

const scope = (uid: number, enforceAsRoot = false): LocalEnforcementScope =>
  new LocalEnforcementScope({ uid, enforceAsRoot, startTime: GUARDD_START, ownDir: DIR });

describe('LocalEnforcementScope', () => {
  const demoPkg = `${DIR}/npm-global/lib/node_modules/@anthropic-ai/claude-code`;
  const realPkg = '/home/dev/.npm-global/lib/node_modules/@anthropic-ai/claude-code';
  const cases: [string, LocalEnforcementScope, Observation, OutOfScope | null][] = [
    ['user: own process started after guardd', scope(DEV), proc(DEV, GUARDD_START + 1), null],
    ['user: own process already running', scope(DEV), proc(DEV, GUARDD_START - 1), 'started_before'],
    ['user: own process in guardd’s own clock tick', scope(DEV), proc(DEV, GUARDD_START), 'started_before'],
    ['user: start time unknown (0)', scope(DEV), proc(DEV, 0), 'started_before'],
    ["user: another user's new process", scope(DEV), proc(OTHER, GUARDD_START + 1), 'other_user'],
    ["user: root's new process", scope(DEV), proc(0, GUARDD_START + 1), 'other_user'],
    ['user: package in its demo prefix', scope(DEV), pkg(DEV, demoPkg), null],
    ["user: package in the user's real npm tree", scope(DEV), pkg(DEV, realPkg), 'outside_local_dir'],
    ["user: another user's file in its demo prefix", scope(DEV), pkg(OTHER, demoPkg), 'other_user'],
    ['user: the local dir itself is not inside it', scope(DEV), artifact(DEV, DIR), 'outside_local_dir'],
    [
      'user: a sibling named like it',
      scope(DEV),
      artifact(DEV, `${DIR}-x/home/.claude/local`),
      'outside_local_dir',
    ],
    [
      'user: a path escaping with ..',
      scope(DEV),
      artifact(DEV, `${DIR}/home/../../../.claude/local`),
      'outside_local_dir',
    ],
    ['user: an artifact in its demo home', scope(DEV), artifact(DEV, `${DIR}/home/.claude/local`), null],
    ['root: a new process', scope(0), proc(DEV, GUARDD_START + 1), 'monitor_only'],
    ['root: its own new process', scope(0), proc(0, GUARDD_START + 1), 'monitor_only'],
    ['root: a package in its demo prefix', scope(0), pkg(0, demoPkg), 'monitor_only'],
    ['root --enforce: any user’s new process', scope(0, true), proc(DEV, GUARDD_START + 1), null],
    [
      'root --enforce: a process already running',
      scope(0, true),
      proc(OTHER, GUARDD_START - 1),
      'started_before',
    ],
    ['root --enforce: a package in its demo prefix', scope(0, true), pkg(DEV, demoPkg), null],
    ['root --enforce: a package elsewhere', scope(0, true), pkg(DEV, realPkg), 'outside_local_dir'],
    // Windows (uid -1): no owners to compare, so it is read as root: an elevated `npm start` must
    // not act on every user's new processes without --enforce
    ['windows: a new process', scope(-1), proc(-1, GUARDD_START + 1), 'monitor_only'],
    ["windows: another user's new process", scope(-1), proc(DEV, GUARDD_START + 1), 'monitor_only'],
    ['windows: a package in its demo prefix', scope(-1), pkg(-1, demoPkg), 'monitor_only'],
    ['windows --enforce: a new process', scope(-1, true), proc(-1, GUARDD_START + 1), null],
    [
      'windows --enforce: a process already running',
      scope(-1, true),
      proc(-1, GUARDD_START - 1),
      'started_before',
    ],
    ['windows --enforce: a package in its demo prefix', scope(-1, true), pkg(-1, demoPkg), null],
    ['windows --enforce: a package elsewhere', scope(-1, true), pkg(-1, realPkg), 'outside_local_dir'],
    [
      '--enforce means nothing more to a normal user',
      scope(DEV, true),
      proc(OTHER, GUARDD_START + 1),
      'other_user',
    ],
  ];
  it.each(cases)('%s', (_name, s, obs, expected) => {
    expect(s.exclude(obs)).toBe(expected);
  });

  it('is monitor-only exactly for root and Windows (uid -1) without --enforce', () => {
    expect([
      scope(0).monitorOnly,
      scope(0, true).monitorOnly,
      scope(-1).monitorOnly,
      scope(-1, true).monitorOnly,
      scope(DEV).monitorOnly,
      scope(DEV, true).monitorOnly,
    ]).toEqual([true, false, true, false, false, false]);
  });
});

describe.runIf(process.platform === 'linux')("ownStartTime on Linux: the sources' unit (clock ticks)", () => {
  it('is guardd’s own /proc start time, and a child started now is later', async () => {
    const mine = ownStartTime('linux');
    expect(mine).toBe(readStartTime('/proc', process.pid));
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const childStart = readStartTime('/proc', child.pid as number);
      expect(childStart).not.toBeNull();
      expect(childStart as number).toBeGreaterThanOrEqual(mine);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

class Recorder<O extends Observation> implements Action<O> {
  calls: O[] = [];
  constructor(private readonly taken: ActionResult['actionTaken']) {}
  async execute(obs: O): Promise<ActionResult> {
    this.calls.push(obs);
    return { actionTaken: this.taken, latencyMs: 1, error: null };
  }
}

const decision = (action: 'block' | 'warn' | 'audit', mode: 'enforce' | 'monitor' = 'enforce'): Decision => ({
  rule: { id: 'r1', name: 'Rule one', action },
  reason: 'name',
  detail: 'claude',
  message: 'no',
  url: null,
  policyVersion: 7,
  mode,
});

function enforcerWith(scopeOf?: EnforcementScope) {
  const actions = {
    blockProcess: new Recorder<ProcessObservation>('killed'),
    notifyProcess: new Recorder<ProcessObservation>('warned'),
    quarantine: new Recorder<PackageObservation>('quarantined'),
    notifyInstall: new Recorder<PackageObservation>('warned'),
  };
  const events = new MemoryEventSink();
  const enforcer = new Enforcer({
    actions: actions as never,
    events,
    logger: silentLogger(),
    warnIntervalMs: 0,
    ...(scopeOf ? { scope: scopeOf } : {}),
  });
  const calls = () => Object.values(actions).reduce((n, a) => n + a.calls.length, 0);
  return { actions, events, enforcer, calls };
}

describe('Enforcer with an enforcement scope', () => {
  const local = scope(DEV);

  it('out of scope, a block runs no action and is recorded as would_block with the reason', async () => {
    const { events, enforcer, calls } = enforcerWith(local);
    const r = await enforcer.handle(proc(DEV, GUARDD_START - 1), decision('block'));
    expect(r.actionTaken).toBe('would_block');
    expect(calls()).toBe(0);
    const [e] = events.ofType('process.warned');
    expect(e?.outcome).toMatchObject({
      action_taken: 'would_block',
      error: null,
      details: { scope: 'started_before' },
    });
    expect(e?.mode).toBe('enforce');
    expect(enforcer.status()).toMatchObject({ blocked: 0, warned: 1, failed: 0 });
  });

  it('out of scope, a package is not quarantined and its owner is not told', async () => {
    const { events, enforcer, calls } = enforcerWith(local);
    await enforcer.handle(pkg(DEV, '/home/dev/.npm-global/lib/node_modules/x'), decision('block'));
    expect(calls()).toBe(0);
    expect(events.ofType('package.warned')[0]?.outcome).toMatchObject({
      action_taken: 'would_block',
      details: { scope: 'outside_local_dir' },
    });
  });

  it('out of scope, a warning is not shown (another user is not written to)', async () => {
    const { events, enforcer, calls } = enforcerWith(local);
    await enforcer.handle(proc(OTHER, GUARDD_START + 1), decision('warn'));
    expect(calls()).toBe(0);
    expect(events.ofType('process.warned')[0]?.outcome).toMatchObject({
      action_taken: 'warn_suppressed',
      details: { scope: 'other_user' },
    });
  });

  it('audit is recorded as always (it never acts)', async () => {
    const { events, enforcer } = enforcerWith(local);
    await enforcer.handle(proc(OTHER, 1), decision('audit'));
    const [e] = events.ofType('process.audited');
    expect(e?.outcome).toMatchObject({ action_taken: 'audited' });
    expect(e?.outcome).not.toHaveProperty('details');
  });

  it('in scope, a block kills as in a real deployment', async () => {
    const { actions, events, enforcer } = enforcerWith(local);
    await enforcer.handle(proc(DEV, GUARDD_START + 1), decision('block'));
    expect(actions.blockProcess.calls).toHaveLength(1);
    expect(events.ofType('process.blocked')[0]?.outcome).toMatchObject({ action_taken: 'killed' });
  });

  it('without a scope (a real deployment) every match is acted on, whoever and whenever', async () => {
    const { actions, events, enforcer } = enforcerWith();
    await enforcer.handle(proc(OTHER, 1), decision('block'));
    await enforcer.handle(pkg(OTHER, '/usr/lib/node_modules/@anthropic-ai/claude-code'), decision('block'));
    expect(actions.blockProcess.calls).toHaveLength(1);
    expect(actions.quarantine.calls).toHaveLength(1);
    expect(events.events.every((e) => !(e.outcome as { details?: { scope?: unknown } }).details?.scope)).toBe(
      true,
    );
  });
});
