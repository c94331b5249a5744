/**
 * The "already reported" record is keyed by a real process identity, so a new process can never
 * inherit an old decision and go unreported (reviewer): a process whose start time is unknown
 * (0, as ps-list reports on Windows) is reported every time, since its pid alone is reused by
 * other processes; and after a reboot (Linux start times count ticks since boot, so an old
 * (pid, start time) pair comes back) the records of the previous boot are forgotten.
 * Real Pipeline, real matcher, real ProcessReports on a real SQLite state DB; the enforcer only
 * records what it was handed (the point is whether the pipeline hands the match over at all).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { Pipeline } from '../../src/daemon/pipeline.js';
import type { Enforcer } from '../../src/enforcement/enforcer.js';
import { compileMatcher } from '../../src/policy/matcher.js';
import type { PolicyBody } from '../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { currentBootId, ProcessReports } from '../../src/store/process-reports.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tgrw-ident-');

const body: PolicyBody = {
  schema: 'toolguard.policy/v1',
  version: 1,
  issued_at: '2026-11-24T00:00:00Z',
  expires_at: '2099-01-01T00:00:00Z',
  mode: 'enforce',
  rules: [
    {
      id: 'audit-banned',
      name: 'Banned',
      action: 'audit',
      message: 'noted',
      process: { names: ['banned-cli'] },
    },
  ],
};

function obs(pid: number, startTime: number): ProcessObservation {
  return {
    kind: 'process',
    pid,
    ppid: 1,
    startTime,
    name: 'banned-cli',
    exe: '/opt/banned/banned-cli',
    argv: ['banned-cli'],
    owner: { uid: 1000, user: 'dev', groups: [], home: '/home/dev' },
    tty: null,
  };
}

function pipelineOn(
  file: string,
  bootId: string | null,
): { pipeline: Pipeline; handed: number[]; close(): void } {
  const { db } = openDatabase(file, { migrations: MIGRATIONS });
  const reports = new ProcessReports(db);
  reports.beginBoot(bootId, new StateStore(db));
  const handed: number[] = [];
  const enforcer = {
    handle: async (o: ProcessObservation) => {
      handed.push(o.pid);
      return { outcome: 'audited' };
    },
  } as unknown as Enforcer;
  const pipeline = new Pipeline({ enforcer, logger: silentLogger(), hostname: 'h', deviceTags: [], reports });
  pipeline.setMatcher(compileMatcher(body, { platform: 'linux', homes: [] }));
  return { pipeline, handed, close: () => db.close() };
}

describe('process report identity', () => {
  it('a process with an unknown start time (0) is reported even when its pid was reported before', () => {
    const p = pipelineOn(join(dir, 'zero.db'), null);
    p.pipeline.handle(obs(4242, 0));
    p.pipeline.handle(obs(4242, 0)); // pid 4242 reused by a new banned process: ps-list cannot tell
    expect(p.handed).toEqual([4242, 4242]);
    // a known identity is still reported once
    p.pipeline.handle(obs(5000, 123_456));
    p.pipeline.handle(obs(5000, 123_456));
    expect(p.handed).toEqual([4242, 4242, 5000]);
    expect(p.pipeline.counts().repeats).toBe(1);
    p.close();
  });

  it('after a reboot an old (pid, start time) pair is a new process: reported again', () => {
    const file = join(dir, 'boot.db');
    const a = pipelineOn(file, 'boot-a');
    a.pipeline.handle(obs(1234, 350));
    expect(a.handed).toEqual([1234]);
    a.close();
    // guardd restarted in the same boot: a repeat
    const same = pipelineOn(file, 'boot-a');
    same.pipeline.handle(obs(1234, 350));
    expect(same.handed).toEqual([]);
    same.close();
    // rebooted: same pid and ticks since boot, another process
    const b = pipelineOn(file, 'boot-b');
    b.pipeline.handle(obs(1234, 350));
    expect(b.handed).toEqual([1234]);
    b.close();
  });

  it.runIf(process.platform === 'linux')("reads Linux's boot id", () => {
    expect(currentBootId()).toMatch(/^[0-9a-f-]{36}$/);
    expect(currentBootId(join(dir, 'missing'))).toBeNull();
  });
});
