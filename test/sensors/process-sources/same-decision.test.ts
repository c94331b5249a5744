/**
 * Acceptance of the macOS and Windows exec sources: one exec, described once (bench/lib/exec-stream-fixtures.js),
 * reaches the real matcher and `decide` with the same verdict whichever source reported it — the
 * Linux exec events addon's report (fromSnapshot), an eslogger line, a Windows start-trace line —
 * each turned into an observation by the real ProcessSensor. Only the macOS source carries
 * code-signing facts: a team-id rule decides there and nowhere else.
 */
import { describe, expect, it } from 'vitest';
import {
  esloggerExecLine,
  type FixtureExec,
  procExecEvent,
  windowsStartLine,
} from '../../../bench/lib/exec-stream-fixtures.js';
import { silentLogger } from '../../../src/common/logger.js';
import { type DecideContext, decide } from '../../../src/enforcement/decide.js';
import { FULL_SCOPE } from '../../../src/enforcement/enforcement-scope.js';
import { compileMatcher } from '../../../src/policy/matcher.js';
import type { PolicyBody, PolicyRule } from '../../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../../src/sensors/observation.js';
import { ProcessSensor } from '../../../src/sensors/process-sensor.js';
import { parseEsloggerLine } from '../../../src/sensors/process-sources/eslogger-parser.js';
import { fromSnapshot } from '../../../src/sensors/process-sources/exec-events-source.js';
import type { ProcessSource, RawProcess } from '../../../src/sensors/process-sources/process-source.js';
import { parseWindowsStartLine } from '../../../src/sensors/process-sources/windows-start-parser.js';

const TEAM = 'QWERT12345';
const exec: FixtureExec = {
  pid: 31337,
  ppid: 3000,
  uid: 1000,
  exe: '/opt/vendor/node_modules/@vendor/banned-cli/bin/banned',
  argv: ['banned', '--dangerously-skip-permissions', '-p', 'hello world'],
  startMs: Date.parse('2026-12-04T10:00:07Z'),
  teamId: TEAM,
  signingId: 'com.vendor.banned',
};

const rule = (r: Partial<PolicyRule> & Pick<PolicyRule, 'id'>): PolicyRule => ({
  name: r.id,
  action: 'block',
  message: 'not here',
  ...r,
});

function body(rules: PolicyRule[]): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version: 7,
    issued_at: '2026-11-24T00:00:00Z',
    expires_at: '2099-01-01T00:00:00Z',
    mode: 'enforce',
    rules,
  };
}

/** One source that hands over exactly `raw` on its first poll: the sensor does the rest. */
function once(raw: RawProcess): ProcessSource {
  let done = false;
  return {
    kind: 'ps-list',
    defaultIntervalMs: 600_000,
    skipped: {},
    poll: async () => {
      if (done) return [];
      done = true;
      return [raw];
    },
    reset: () => undefined,
    cwd: () => null,
    hashPath: () => null,
    details: () => ({}),
  };
}

/** The observation the real ProcessSensor builds from `raw`. */
async function observe(raw: RawProcess): Promise<ProcessObservation> {
  const seen: ProcessObservation[] = [];
  const sensor = new ProcessSensor({
    source: once(raw),
    users: { owner: (uid) => ({ uid, user: `u${uid}`, groups: [], home: null }) },
    onObservation: (o) => {
      if (o.kind === 'process') seen.push(o);
    },
    intervalMs: 600_000,
    logger: silentLogger(),
    selfPid: 1,
  });
  await sensor.start();
  await sensor.stop();
  expect(seen).toHaveLength(1);
  return seen[0] as ProcessObservation;
}

function raws(e: FixtureExec): Record<'linux' | 'darwin' | 'win32', RawProcess> {
  const linux = fromSnapshot(procExecEvent(e));
  const mac = parseEsloggerLine(esloggerExecLine(e));
  const win = parseWindowsStartLine(windowsStartLine(e));
  if (!linux?.live || mac.kind !== 'exec' || win.kind !== 'exec')
    throw new Error('a parser did not read the exec');
  return { linux: linux.raw, darwin: mac.raw, win32: win.raw };
}

async function verdicts(rules: PolicyRule[], e: FixtureExec = exec) {
  const out: Record<string, unknown> = {};
  for (const [platform, raw] of Object.entries(raws(e)) as [keyof ReturnType<typeof raws>, RawProcess][]) {
    const ctx: DecideContext = {
      matcher: compileMatcher(body(rules), { platform, homes: [] }),
      match: { now: Date.parse('2026-12-04T12:00:00Z'), hostname: 'h', deviceTags: [] },
      scope: FULL_SCOPE,
    };
    const v = decide(await observe(raw), ctx);
    out[platform] = v && {
      act: v.act,
      rule: v.decision.rule.id,
      reason: v.decision.reason,
      detail: v.decision.detail,
    };
  }
  return out;
}

describe('the same exec decides the same on all three sources', () => {
  const cases: [string, PolicyRule[], unknown][] = [
    [
      'a name',
      [rule({ id: 'n', process: { names: ['banned'] } })],
      { act: 'block', rule: 'n', reason: 'name', detail: 'banned' },
    ],
    [
      'an exe glob',
      [rule({ id: 'g', process: { exe_globs: ['**/node_modules/@vendor/banned-cli/**'] } })],
      { act: 'block', rule: 'g', reason: 'exe_path', detail: exec.exe },
    ],
    [
      'an argv pattern (a warn rule)',
      [rule({ id: 'a', action: 'warn', process: { argv_patterns: ['--dangerously-skip-permissions'] } })],
      { act: 'warn', rule: 'a', reason: 'argv', detail: '--dangerously-skip-permissions' },
    ],
    [
      'the strongest of several rules',
      [
        rule({ id: 'audit', action: 'audit', process: { names: ['banned'] } }),
        rule({ id: 'blk', process: { argv_patterns: ['-p hello world$'] } }),
      ],
      { act: 'block', rule: 'blk', reason: 'argv', detail: '-p hello world$' },
    ],
    ['no rule matching', [rule({ id: 'x', process: { names: ['other'] } })], null],
  ];
  it.each(cases)('%s', async (_what, rules, expected) => {
    expect(await verdicts(rules)).toEqual({ linux: expected, darwin: expected, win32: expected });
  });

  it('a team-id rule decides only where the exec carries signing facts (eslogger)', async () => {
    const rules = [rule({ id: 'team', process: { team_ids: [TEAM] } })];
    expect(await verdicts(rules)).toEqual({
      linux: null,
      darwin: { act: 'block', rule: 'team', reason: 'signing', detail: `team:${TEAM}` },
      win32: null,
    });
    // An unsigned copy of the program: no source has a signing fact, the name still decides.
    const both = [rule({ id: 'team', process: { team_ids: [TEAM], names: ['banned'] } })];
    const unsigned = await verdicts(both, { ...exec, teamId: null, signingId: null });
    const byName = { act: 'block', rule: 'team', reason: 'name', detail: 'banned' };
    expect(unsigned).toEqual({ linux: byName, darwin: byName, win32: byName });
  });
});
