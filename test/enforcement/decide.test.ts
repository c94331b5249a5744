/**
 * The pure decision step (decide.ts) shared by the post-exec kill, the quarantine and the pre-exec
 * verdict, table-driven over a real compiled matcher; and the enforcer's record of a refused exec
 * (one process.denied per attempt, the user told at most once per interval per file).
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { parseMountinfo } from '../../src/common/mountinfo.js';
import type { ActionResult } from '../../src/enforcement/action.js';
import { decide } from '../../src/enforcement/decide.js';
import { type EnforcementScope, FULL_SCOPE } from '../../src/enforcement/enforcement-scope.js';
import { Enforcer } from '../../src/enforcement/enforcer.js';
import { loadExecPermAddon, skippedFstype } from '../../src/enforcement/exec-deny.js';
import { compileMatcher } from '../../src/policy/matcher.js';
import type { PolicyBody } from '../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { MemoryEventSink } from '../helpers/event-sink.js';

const NOW = Date.parse('2026-11-24T12:00:00Z');
const HASH = 'ab'.repeat(32);

function body(mode: 'enforce' | 'monitor', withException = false): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version: 9,
    issued_at: '2026-11-24T00:00:00Z',
    expires_at: '2099-01-01T00:00:00Z',
    mode,
    rules: [
      {
        id: 'tool',
        name: 'Tool',
        action: 'block',
        message: 'not approved',
        url: 'https://intranet.example/t',
        process: { names: ['tool'], sha256: [HASH], argv_patterns: ['--banned-flag'] },
      },
      { id: 'meh', name: 'Meh', action: 'warn', message: 'discouraged', process: { names: ['meh'] } },
    ],
    ...(withException
      ? { exceptions: [{ rule: 'tool', users: ['alice'], expires_at: '2099-01-01T00:00:00Z' }] }
      : {}),
  };
}

/** What the pre-exec listener builds: the file's name and path, no argv. */
function preExec(name: string, user = 'bob', sha256?: string): ProcessObservation {
  return {
    kind: 'process',
    pid: 100,
    ppid: 1,
    startTime: 5,
    name,
    exe: `/tmp/${name}`,
    argv: [],
    owner: { uid: 1001, user, groups: [], home: null },
    tty: null,
    ...(sha256 ? { sha256 } : {}),
  };
}

const outOfScope: EnforcementScope = { exclude: () => 'other_user' };

describe('decide(observation, context)', () => {
  const cases: [
    string,
    PolicyBody,
    ProcessObservation,
    EnforcementScope,
    string | null,
    Record<string, unknown>?,
  ][] = [
    ['block by name, enforce → block', body('enforce'), preExec('tool'), FULL_SCOPE, 'block'],
    [
      'block by hash of a renamed file → block',
      body('enforce'),
      preExec('renamed', 'bob', HASH),
      FULL_SCOPE,
      'block',
    ],
    [
      'monitor mode → warn (would block), never block',
      body('monitor'),
      preExec('tool'),
      FULL_SCOPE,
      'warn',
      { wouldBlock: true },
    ],
    [
      'out of scope → record would_block',
      body('enforce'),
      preExec('tool'),
      outOfScope,
      'record',
      { taken: 'would_block', scope: 'other_user' },
    ],
    ['warn rule → warn', body('enforce'), preExec('meh'), FULL_SCOPE, 'warn', { wouldBlock: false }],
    ['excepted user → no verdict', body('enforce', true), preExec('tool', 'alice'), FULL_SCOPE, null],
    [
      'another user under the same exception → block',
      body('enforce', true),
      preExec('tool', 'bob'),
      FULL_SCOPE,
      'block',
    ],
    ['unrelated program → no verdict', body('enforce'), preExec('ls'), FULL_SCOPE, null],
    // argv is not known before exec: an argv rule can only act after exec (docs/process-detection.md)
    [
      'argv-only match is impossible pre-exec',
      body('enforce'),
      preExec('banned-flag-user'),
      FULL_SCOPE,
      null,
    ],
  ];
  it.each(cases)('%s', (_what, b, obs, scope, act, extra) => {
    const matcher = compileMatcher(b, { platform: 'linux', homes: [] });
    const v = decide(obs, { matcher, match: { now: NOW, hostname: 'h', deviceTags: [] }, scope });
    if (act === null) expect(v).toBeNull();
    else
      expect(v).toMatchObject({
        act,
        decision: { rule: { id: obs.name === 'meh' ? 'meh' : 'tool' } },
        ...extra,
      });
  });

  it('tells the pre-exec cache which rules depend on the user', () => {
    expect([
      ...compileMatcher(body('enforce', true), { platform: 'linux', homes: [] }).exceptedRules,
    ]).toEqual(['tool']);
    expect(compileMatcher(body('enforce'), { platform: 'linux', homes: [] }).exceptedRules.size).toBe(0);
  });
});

describe('Enforcer.denied', () => {
  it('records one process.denied per attempt and tells the user once per interval per file', async () => {
    const told: string[] = [];
    const tell = {
      execute: async (obs: ProcessObservation): Promise<ActionResult> => {
        told.push(obs.exe ?? '');
        return {
          actionTaken: 'denied',
          latencyMs: 1,
          error: null,
          details: { notified: { terminal: true, desktop: false } },
        };
      },
    };
    const skipped = {
      execute: async (): Promise<ActionResult> => ({ actionTaken: 'skipped', latencyMs: 0, error: null }),
    };
    const events = new MemoryEventSink();
    const enforcer = new Enforcer({
      actions: {
        blockProcess: skipped,
        notifyProcess: skipped,
        quarantine: skipped,
        notifyInstall: skipped,
        denyExec: tell,
      },
      events,
      logger: silentLogger(),
      warnIntervalMs: 60_000,
      now: () => NOW,
    });
    const matcher = compileMatcher(body('enforce'), { platform: 'linux', homes: [] });
    const obs = preExec('tool');
    const d = matcher.match(obs, { now: NOW, hostname: 'h', deviceTags: [] });
    if (!d) throw new Error('no decision');
    const file = { dev: 1, ino: 2, size: 3 };
    await enforcer.denied(obs, d, { latencyMs: 0.5, cached: false, fileKey: 'k1', file });
    await enforcer.denied(obs, d, { latencyMs: 0.1, cached: true, fileKey: 'k1', file });
    await enforcer.denied({ ...obs, exe: '/tmp/other/tool' }, d, {
      latencyMs: 0.1,
      cached: false,
      fileKey: 'k2',
      file,
    });
    expect(told).toEqual(['/tmp/tool', '/tmp/other/tool']);
    const denied = events.events.filter((e) => e.type === 'process.denied');
    expect(denied).toHaveLength(3);
    expect(
      denied.map((e) => (e.outcome as { details: { verdict_cached: boolean } }).details.verdict_cached),
    ).toEqual([false, true, false]);
    expect(denied[1]?.outcome).toMatchObject({
      action_taken: 'denied',
      latency_ms: 0.1,
      details: { notified: { terminal: false } },
    });
    expect(enforcer.status().denied).toBe(3);
  });

  it('a refusal the outbox cannot take (DB closed at stop) resolves with the result and is logged, not thrown', async () => {
    const skipped = {
      execute: async (): Promise<ActionResult> => ({ actionTaken: 'skipped', latencyMs: 0, error: null }),
    };
    const enforcer = new Enforcer({
      actions: { blockProcess: skipped, notifyProcess: skipped, quarantine: skipped, notifyInstall: skipped },
      events: {
        emit: () => {
          throw new TypeError('The database connection is not open');
        },
      },
      logger: silentLogger(),
      warnIntervalMs: 60_000,
      now: () => NOW,
    });
    const matcher = compileMatcher(body('enforce'), { platform: 'linux', homes: [] });
    const obs = preExec('tool');
    const d = matcher.match(obs, { now: NOW, hostname: 'h', deviceTags: [] });
    if (!d) throw new Error('no decision');
    const r = await enforcer.denied(obs, d, {
      latencyMs: 1,
      cached: false,
      fileKey: 'k',
      file: { dev: 1, ino: 2, size: 3 },
    });
    expect(r.actionTaken).toBe('denied');
    expect(enforcer.status().denied).toBe(1);
  });
});

describe('pre-exec listener pieces', () => {
  it('the loader refuses a missing addon with a typed error (guardd then runs without pre-exec deny)', () => {
    expect(() => loadExecPermAddon('/nonexistent/execperm.node')).toThrow(
      expect.objectContaining({ code: 'GUARD_EXEC_DENY_UNAVAILABLE' }),
    );
  });

  it('skips network and FUSE file systems, decodes mount points', () => {
    const text = [
      '22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
      '30 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw',
      '31 22 0:41 / /net rw - nfs4 server:/x rw',
      '32 22 0:42 / /home/u/remote rw - fuse.sshfs u@h:/ rw',
      '33 22 0:43 / /smb rw - cifs //h/s rw',
      'garbage',
    ].join('\n');
    const mounts = parseMountinfo(text);
    expect(mounts.map((m) => m.mountPoint)).toEqual([
      '/',
      '/mnt/with space',
      '/net',
      '/home/u/remote',
      '/smb',
    ]);
    expect(mounts.filter((m) => !skippedFstype(m.fstype)).map((m) => m.fstype)).toEqual(['ext4', 'tmpfs']);
  });
});
