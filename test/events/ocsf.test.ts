import { describe, expect, test } from 'vitest';
import { validateEvent } from '../../src/events/event-schema.js';
import { type AgentEvent, EVENT_TYPES } from '../../src/events/event-types.js';
import { OCSF_MAPPING, OCSF_VERSION, toOcsf } from '../../src/events/ocsf.js';
import { sampleEvent } from './samples.js';

describe('OCSF mapping', () => {
  test('a blocked process is Process Activity (1007) Launch, denied and blocked, with the process details', () => {
    const o = toOcsf(sampleEvent('process.blocked')) as Record<string, unknown>;
    expect(o).toMatchObject({
      class_uid: 1007,
      category_uid: 1,
      activity_id: 1,
      type_uid: 100701,
      action_id: 2,
      disposition_id: 2,
      time: Date.parse('2026-11-24T10:00:00.000Z'),
      metadata: {
        version: OCSF_VERSION,
        uid: sampleEvent('process.blocked').id,
        product: { name: 'toolguard' },
      },
      device: { uid: 'dev-1', hostname: 'laptop-7' },
      actor: { user: { uid: '1000', name: 'alice' } },
      policy: { uid: 'claude-code', name: 'Claude Code', version: '12' },
    });
    expect(o.process as object).toMatchObject({
      pid: 4242,
      name: 'claude',
      parent_process: { pid: 4000 },
      cmd_line: 'node /home/alice/.npm-global/bin/claude --api-key [REDACTED]',
      file: { path: expect.stringContaining('cli.js'), hashes: [{ algorithm_id: 3, value: 'a'.repeat(64) }] },
    });
    expect((o.unmapped as { toolguard: unknown }).toolguard).toEqual(sampleEvent('process.blocked'));
  });

  test('a denied exec is Process Activity (1007) Launch, denied and blocked, with the refused file', () => {
    const o = toOcsf(sampleEvent('process.denied')) as Record<string, unknown>;
    expect(o).toMatchObject({
      class_uid: 1007,
      activity_id: 1,
      type_uid: 100701,
      action_id: 2,
      disposition_id: 2,
    });
    expect(o.process as object).toMatchObject({
      pid: 4250,
      name: 'claude',
      file: { path: '/home/alice/.local/share/claude/versions/2.1.0', name: '2.1.0' },
    });
    const failed = sampleEvent('process.denied') as Record<string, unknown>;
    failed.outcome = { action_taken: 'failed', latency_ms: 1, error: 'x' };
    expect(toOcsf(failed)).toMatchObject({ action_id: 1, disposition_id: 15 });
  });

  test('a warning is allowed; a failed block is reported as detected, not blocked', () => {
    expect(toOcsf(sampleEvent('process.warned'))).toMatchObject({ action_id: 1, disposition_id: 1 });
    const failed = sampleEvent('process.blocked') as Record<string, unknown>;
    failed.outcome = { action_taken: 'failed', latency_ms: 1, error: 'EPERM' };
    expect(toOcsf(failed)).toMatchObject({ action_id: 1, disposition_id: 15, severity_id: 4 });
  });

  test('an install the package manager reverted is denied and blocked (not quarantined: nothing was moved)', () => {
    const reverted = sampleEvent('package.quarantined') as Record<string, unknown>;
    reverted.outcome = {
      action_taken: 'install_reverted',
      latency_ms: 3,
      error: null,
      details: { links_removed: ['/home/alice/.npm-global/bin/claude'] },
    };
    expect(validateEvent(reverted as AgentEvent).ok).toBe(true);
    expect(toOcsf(reverted)).toMatchObject({ action_id: 2, disposition_id: 2, severity_id: 3 });
    expect(toOcsf(sampleEvent('package.quarantined'))).toMatchObject({ action_id: 2, disposition_id: 3 });
  });

  test.each([
    ['package.quarantined', 5020, 1],
    ['path.quarantined', 1001, 5],
    ['path.audited', 1001, 99],
    ['policy.rejected', 5019, 1],
    ['agent.tamper', 2004, 1],
    ['agent.started', 6002, 3],
    ['agent.stopped', 6002, 4],
    ['agent.heartbeat', 6002, 99],
    ['events.dropped', 6002, 99],
  ] as const)('%s maps to class %i activity %i', (type, cls, activity) => {
    expect(toOcsf(sampleEvent(type))).toMatchObject({
      class_uid: cls,
      activity_id: activity,
      type_uid: cls * 100 + activity,
    });
  });

  test('the documented mapping table agrees with toOcsf for every type, and covers every type once', () => {
    const covered = OCSF_MAPPING.flatMap((m) => m.types);
    expect([...covered].sort()).toEqual([...EVENT_TYPES].sort());
    for (const m of OCSF_MAPPING)
      for (const t of m.types) {
        const o = toOcsf(sampleEvent(t as (typeof EVENT_TYPES)[number]));
        expect(o.class_uid, t).toBe(m.class_uid);
        expect(m.activity, t).toContain(`(${String(o.activity_id)})`);
      }
  });

  test('every type maps, and odd shapes degrade without throwing', () => {
    for (const t of EVENT_TYPES) expect(typeof toOcsf(sampleEvent(t)).class_uid).toBe('number');
    for (const x of [{}, { type: 'process.blocked', argv: 'x', outcome: 5 }, { type: 'zzz', time: 'bad' }])
      expect(() => toOcsf(x)).not.toThrow();
  });
});
