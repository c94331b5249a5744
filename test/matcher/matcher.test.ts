import { describe, expect, it } from 'vitest';
import { compileMatcher, type MatchContext } from '../../src/policy/matcher.js';
import type { PolicyBody, PolicyRule } from '../../src/policy/policy-types.js';
import type { Observation, Owner, ProcessObservation } from '../../src/sensors/observation.js';

const owner = (user: string, groups: string[] = []): Owner => ({
  uid: 1000,
  user,
  groups,
  home: `/home/${user}`,
});
const ctx: MatchContext = {
  now: Date.parse('2026-11-24T12:00:00Z'),
  hostname: 'laptop-1',
  deviceTags: ['eng'],
};

const proc = (p: Partial<ProcessObservation>): ProcessObservation => ({
  kind: 'process',
  pid: 10,
  ppid: 1,
  startTime: 1,
  name: 'x',
  exe: '/usr/bin/x',
  argv: ['x'],
  owner: owner('bob'),
  tty: null,
  ...p,
});

const rule = (r: Partial<PolicyRule>): PolicyRule => ({
  id: 'r',
  name: 'R',
  action: 'block',
  message: 'm',
  ...r,
});

function policy(rules: PolicyRule[], extra: Partial<PolicyBody> = {}): PolicyBody {
  return {
    schema: 'toolguard.policy/v1',
    version: 3,
    issued_at: '2026-11-24T00:00:00Z',
    expires_at: '2026-12-08T00:00:00Z',
    mode: 'enforce',
    rules,
    ...extra,
  };
}

describe('compileMatcher', () => {
  const cases: [string, PolicyRule, Observation, string | null][] = [
    ['name = comm', rule({ process: { names: ['claude'] } }), proc({ name: 'claude' }), 'name'],
    [
      'name = exe basename',
      rule({ process: { names: ['claude'] } }),
      proc({ name: 'node', exe: '/opt/bin/claude' }),
      'name',
    ],
    [
      'name no match',
      rule({ process: { names: ['claude'] } }),
      proc({ name: 'claudette', exe: '/bin/claudette', argv: ['claudette'] }),
      null,
    ],
    [
      'exe glob',
      rule({ process: { exe_globs: ['**/node_modules/@anthropic-ai/claude-code*/**'] } }),
      proc({ exe: '/u/lib/node_modules/@anthropic-ai/claude-code/bin/x' }),
      'exe_path',
    ],
    [
      'exe glob on a script of an interpreter',
      rule({ process: { exe_globs: ['**/claude-code/cli.js'] } }),
      proc({
        exe: '/usr/bin/node',
        scriptPackage: { name: 'y', version: null, root: '/a/claude-code', script: '/a/claude-code/cli.js' },
      }),
      'exe_path',
    ],
    [
      'argv regex',
      rule({ process: { argv_patterns: ['--dangerously-skip-permissions'] } }),
      proc({ argv: ['x', '--dangerously-skip-permissions'] }),
      'argv',
    ],
    [
      'script package',
      rule({ process: { script_packages: ['@anthropic-ai/claude-code'] } }),
      proc({
        exe: '/usr/bin/node',
        scriptPackage: {
          name: '@anthropic-ai/claude-code',
          version: '1.0.0',
          root: '/r',
          script: '/r/cli.js',
        },
      }),
      'script_package',
    ],
    ['sha256', rule({ process: { sha256: ['AB'.repeat(32)] } }), proc({ sha256: 'ab'.repeat(32) }), 'sha256'],
    [
      'npm package in range',
      rule({ packages: [{ ecosystem: 'npm', name: '@openai/codex', range: '>=0.1.0' }] }),
      {
        kind: 'package',
        ecosystem: 'npm',
        name: '@openai/codex',
        version: '0.50.0',
        path: '/p',
        root: '/',
        manager: 'npm',
        owner: owner('bob'),
      },
      'npm_package',
    ],
    [
      'npm package out of range',
      rule({ packages: [{ ecosystem: 'npm', name: '@openai/codex', range: '<0.1.0' }] }),
      {
        kind: 'package',
        ecosystem: 'npm',
        name: '@openai/codex',
        version: '0.50.0',
        path: '/p',
        root: '/',
        manager: 'npm',
        owner: owner('bob'),
      },
      null,
    ],
    [
      'npm package without version fails closed',
      rule({ packages: [{ ecosystem: 'npm', name: 'x', range: '<1.0.0' }] }),
      {
        kind: 'package',
        ecosystem: 'npm',
        name: 'x',
        version: null,
        path: '/p',
        root: '/',
        manager: 'npm',
        owner: owner('bob'),
      },
      'npm_package',
    ],
    [
      'path with ~ for each home',
      rule({ paths: ['~/.local/share/claude/versions/*'] }),
      {
        kind: 'path',
        path: '/home/carol/.local/share/claude/versions/1.0.0',
        isDirectory: false,
        owner: owner('carol'),
      },
      'path',
    ],
    [
      'rule for another platform ignored',
      rule({ platforms: ['darwin'], process: { names: ['x'] } }),
      proc({}),
      null,
    ],
  ];
  it.each(cases)('%s', (_n, r, obs, reason) => {
    const m = compileMatcher(policy([r]), { platform: 'linux', homes: ['/home/bob', '/home/carol'] });
    expect(m.match(obs, ctx)?.reason ?? null).toBe(reason);
  });

  it('picks the strongest action when several rules match', () => {
    const m = compileMatcher(
      policy([
        rule({ id: 'a', action: 'audit', process: { names: ['x'] } }),
        rule({ id: 'b', action: 'block', process: { names: ['x'] } }),
        rule({ id: 'w', action: 'warn', process: { names: ['x'] } }),
      ]),
      { platform: 'linux', homes: [] },
    );
    expect(m.match(proc({}), ctx)?.rule.id).toBe('b');
  });

  it('honours exceptions by user, group, host glob and device tag until they expire', () => {
    const r = rule({ id: 'c', process: { names: ['x'] } });
    const exc = (e: object) =>
      compileMatcher(policy([r], { exceptions: [{ rule: 'c', expires_at: '2026-12-31T00:00:00Z', ...e }] }), {
        platform: 'linux',
        homes: [],
      });
    expect(exc({ users: ['bob'] }).match(proc({}), ctx)).toBeNull();
    expect(exc({ users: ['alice'] }).match(proc({}), ctx)).not.toBeNull();
    expect(exc({ groups: ['ai'] }).match(proc({ owner: owner('bob', ['ai']) }), ctx)).toBeNull();
    expect(exc({ hosts: ['laptop-*'] }).match(proc({}), ctx)).toBeNull();
    expect(exc({ hosts: ['ai-lab-*'] }).match(proc({}), ctx)).not.toBeNull();
    expect(exc({ device_tags: ['eng'] }).match(proc({}), ctx)).toBeNull();
    expect(exc({ users: ['bob'], hosts: ['ai-lab-*'] }).match(proc({}), ctx)).not.toBeNull();
    expect(
      exc({ users: ['bob'] }).match(proc({}), { ...ctx, now: Date.parse('2027-01-01T00:00:00Z') }),
    ).not.toBeNull();
  });

  it('reports what sensors must fill, and the names and paths to watch', () => {
    const m = compileMatcher(
      policy([
        rule({
          process: { sha256: ['a'.repeat(64)] },
          packages: [{ ecosystem: 'npm', name: 'p', range: '*' }],
          paths: ['~/x/*'],
        }),
      ]),
      { platform: 'linux', homes: ['/home/a', '/home/b/'] },
    );
    expect(m.needs).toEqual({ sha256: true, scriptPackage: false, markers: false });
    expect([...m.packageNames]).toEqual(['p']);
    expect(m.pathScanBases).toEqual([
      { base: '/home/a/x', depth: 0 },
      { base: '/home/b/x', depth: 0 },
    ]);
    expect(m.pathMatches('/home/b/x/y')).toBe(true);
    expect(m.pathMatches('/home/c/x/y')).toBe(false);
  });

  it('carries the policy mode and version into the decision', () => {
    const m = compileMatcher(
      policy([rule({ process: { names: ['x'] }, url: 'https://i/x' })], { mode: 'monitor', version: 9 }),
      { platform: 'linux', homes: [] },
    );
    expect(m.match(proc({}), ctx)).toMatchObject({
      mode: 'monitor',
      policyVersion: 9,
      url: 'https://i/x',
      message: 'm',
    });
  });
});

describe('argv matching bounds', () => {
  it('matches argv patterns only in the first MAX_ARGV_MATCH_CHARS of the joined command line', async () => {
    const { MAX_ARGV_MATCH_CHARS } = await import('../../src/policy/matcher.js');
    const m = compileMatcher(policy([rule({ process: { argv_patterns: ['--banned-flag'] } })]), {
      platform: 'linux',
      homes: [],
    });
    const near = proc({ argv: ['tool', 'x'.repeat(MAX_ARGV_MATCH_CHARS - 100), '--banned-flag'] });
    const far = proc({ argv: ['tool', 'x'.repeat(MAX_ARGV_MATCH_CHARS), '--banned-flag'] });
    expect(m.match(near, ctx)?.reason).toBe('argv');
    expect(m.match(far, ctx)).toBeNull();
  });
});
