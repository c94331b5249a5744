/**
 * The process half of the compiled matcher, table-driven: every criterion, the names a process
 * goes by, the argv/exe prefilters agreeing with rule-by-rule testing (also for patterns that
 * cannot be joined), strongest action winning, and exceptions.
 */
import { describe, expect, it } from 'vitest';
import { compileMatcher } from '../../../src/policy/matcher.js';
import type { PolicyRule } from '../../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../../src/sensors/observation.js';
import { policy } from './harness.js';

const ctx = { now: Date.parse('2026-11-24T12:00:00Z'), hostname: 'dev-1', deviceTags: [] };

function obs(o: Partial<ProcessObservation>): ProcessObservation {
  return {
    kind: 'process',
    pid: 100,
    ppid: 1,
    startTime: 1,
    name: 'bash',
    exe: '/usr/bin/bash',
    argv: ['bash'],
    owner: { uid: 1000, user: 'dev', groups: ['staff'], home: '/home/dev' },
    tty: null,
    ...o,
  };
}

const rule = (
  id: string,
  process: PolicyRule['process'],
  action: PolicyRule['action'] = 'block',
): PolicyRule => ({
  id,
  name: id,
  action,
  message: 'm',
  process,
});

const HASH = 'ab'.repeat(32);
const rules: PolicyRule[] = [
  rule('by-name', { names: ['claude'] }),
  rule('by-hash', { sha256: [HASH.toUpperCase()] }),
  rule('by-pkg', { script_packages: ['@anthropic-ai/claude-code'] }),
  rule('by-glob', { exe_globs: ['**/node_modules/@evil/cli*/**', '/opt/evil/bin/*'] }),
  rule('by-argv', { argv_patterns: ['--dangerously-skip-permissions\\b', '^aider( |$)'] }),
  // A named group (RE2 syntax; backreferences are refused by the schema since argv patterns run on RE2).
  rule('by-group', { argv_patterns: ['--key=(?P<key>\\w+) --again\\b'] }, 'warn'),
];

describe('matcher: processes', () => {
  const m = compileMatcher(policy(rules), { platform: 'linux', homes: [] });

  const table: [string, Partial<ProcessObservation>, string | null, string | null][] = [
    ['comm', { name: 'claude' }, 'by-name', 'name'],
    ['exe basename', { name: 'x', exe: '/opt/x/claude' }, 'by-name', 'name'],
    ['argv[0] basename', { name: 'x', exe: '/x', argv: ['/usr/local/bin/claude'] }, 'by-name', 'name'],
    ['hash (case-folded in the policy)', { sha256: HASH }, 'by-hash', 'sha256'],
    [
      'script package',
      { scriptPackage: { name: '@anthropic-ai/claude-code', version: '1', root: '/r', script: '/r/cli.js' } },
      'by-pkg',
      'script_package',
    ],
    ['exe glob', { exe: '/opt/evil/bin/run' }, 'by-glob', 'exe_path'],
    [
      'exe glob on the script',
      {
        exe: '/usr/bin/node',
        scriptPackage: { name: 'x', version: null, root: '/p', script: '/p/node_modules/@evil/cli-2/a.js' },
      },
      'by-glob',
      'exe_path',
    ],
    ['argv pattern', { argv: ['node', 'cli.js', '--dangerously-skip-permissions'] }, 'by-argv', 'argv'],
    ['argv anchored pattern', { argv: ['aider', '--yes'] }, 'by-argv', 'argv'],
    ['argv named group', { argv: ['tool', '--key=abc', '--again'] }, 'by-group', 'argv'],
    [
      'no match: similar names',
      { name: 'claude2', exe: '/usr/bin/claudex', argv: ['claude-helper'] },
      null,
      null,
    ],
    ['no match: argv near miss', { argv: ['x', '--dangerously-skip-permissionsX', 'not-aider'] }, null, null],
    ['no match: word continues past \\b', { argv: ['tool', '--key=abc', '--again2'] }, null, null],
    ['no match: glob near miss', { exe: '/opt/evil/bin/sub/run' }, null, null],
  ];
  for (const [label, o, id, reason] of table) {
    it(label, () => {
      const d = m.match(obs(o), ctx);
      expect(d?.rule.id ?? null).toBe(id);
      expect(d?.reason ?? null).toBe(reason);
    });
  }

  it('needs hashes and script packages only when a rule names them', () => {
    expect(m.needs).toEqual({ sha256: true, scriptPackage: true, markers: false });
    const bare = compileMatcher(policy([rule('n', { names: ['x'] })]), { platform: 'linux', homes: [] });
    expect(bare.needs).toEqual({ sha256: false, scriptPackage: false, markers: false });
  });

  it('the strongest action wins; exceptions skip a rule for the user until they expire', () => {
    const body = {
      ...policy([
        rule('audit-it', { names: ['tool'] }, 'audit'),
        rule('block-it', { names: ['tool'] }, 'block'),
      ]),
      exceptions: [{ rule: 'block-it', users: ['dev'], expires_at: '2026-12-01T00:00:00Z' }],
    };
    const em = compileMatcher(body, { platform: 'linux', homes: [] });
    expect(em.match(obs({ name: 'tool' }), ctx)?.rule.id).toBe('audit-it');
    expect(
      em.match(obs({ name: 'tool', owner: { uid: 1, user: 'eve', groups: [], home: null } }), ctx)?.rule.id,
    ).toBe('block-it');
    expect(
      em.match(obs({ name: 'tool' }), { ...ctx, now: Date.parse('2027-01-01T00:00:00Z') })?.rule.id,
    ).toBe('block-it');
  });

  it('Windows/macOS names match without .exe and case-insensitively on paths', () => {
    const w = compileMatcher(policy([rule('n', { names: ['claude'], exe_globs: ['C:/Tools/**'] })]), {
      platform: 'win32',
      homes: [],
    });
    expect(w.match(obs({ name: 'claude.exe', exe: null, argv: [] }), ctx)?.reason).toBe('name');
    // The file systems there ignore case: a renamed-case copy runs all the same.
    expect(w.match(obs({ name: 'CLAUDE.EXE', exe: null, argv: [] }), ctx)?.reason).toBe('name');
    expect(w.match(obs({ name: 'x', exe: 'C:\\Tools2\\Claude.exe', argv: [] }), ctx)?.reason).toBe('name');
    const mac = compileMatcher(policy([rule('n', { names: ['Claude'] })]), { platform: 'darwin', homes: [] });
    expect(mac.match(obs({ name: 'cLaUdE', exe: null, argv: [] }), ctx)?.reason).toBe('name');
    // Linux names stay exact.
    const lin = compileMatcher(policy([rule('n', { names: ['claude'] })]), { platform: 'linux', homes: [] });
    expect(lin.match(obs({ name: 'Claude', exe: null, argv: [] }), ctx)).toBeNull();
    expect(w.match(obs({ name: 'x.exe', exe: 'c:\\tools\\x.exe', argv: [] }), ctx)?.reason).toBe('exe_path');
  });

  it('a 1,000-rule policy with joined prefilters decides exactly like one rule at a time', () => {
    const many: PolicyRule[] = [];
    for (let i = 0; i < 1000; i++) {
      many.push(
        rule(
          `r${i}`,
          i % 2
            ? { argv_patterns: [`--model[= ]m${i}\\b`] }
            : { exe_globs: [`**/node_modules/@v${i}/cli*/**`] },
        ),
      );
    }
    const big = compileMatcher(policy(many), { platform: 'linux', homes: [] });
    const probes: [Partial<ProcessObservation>, string | null][] = [
      [{ argv: ['x', '--model', 'm999'] }, 'r999'],
      [{ argv: ['x', '--model=m99'] }, 'r99'],
      [{ argv: ['x', '--model=m9999'] }, null],
      [{ exe: '/g/lib/node_modules/@v998/cli-x/bin.js' }, 'r998'],
      [{ exe: '/g/lib/node_modules/@v997/cli-x/bin.js' }, null],
    ];
    for (const [o, id] of probes) expect(big.match(obs(o), ctx)?.rule.id ?? null).toBe(id);
  });
});
